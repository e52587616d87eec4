"""Document sources: where the raw text comes from, before any tokenizing.

The ``embedded`` corpus: text that ships with CPython itself (the ``pydoc`` help topics and the docstrings of the
standard library), so a run works on a machine with no network and no data set. Deterministic for a given Python
version; a different Python version gives a (slightly) different corpus and therefore a different cache. The other
sources live in ``sources.py``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import io
import json
import pkgutil
import subprocess
import sys
import types
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

# This file also runs as a script, in a clean interpreter with no site-packages, to collect the embedded corpus (see
# ``_embedded_documents``); there it has no package and must import nothing outside the standard library.
if __package__:
    pass

if TYPE_CHECKING:
    from parcae_runner.config.schema import DataConfig

# shorter docstrings are mostly "Return self==value." boilerplate: noise, not language
MIN_DOC_CHARS = 64

# Top-level standard-library modules walked for docstrings (with their submodules). Fixed and sorted so the corpus
# does not depend on what else happens to be importable. Left out on purpose: modules with side effects on import
# (antigravity, this, idlelib, tkinter, turtle, turtledemo, readline, rlcompleter, site), Windows-only ones, the
# PEP 594 "dead batteries" and other deprecated modules (they warn on import and are gone in newer Pythons), and the
# test suite. Names missing from the running Python (e.g. ``annotationlib`` before 3.14) are skipped.
STDLIB_MODULES: tuple[str, ...] = (
    "abc",
    "annotationlib",
    "argparse",
    "array",
    "ast",
    "asyncio",
    "atexit",
    "base64",
    "bdb",
    "binascii",
    "bisect",
    "builtins",
    "bz2",
    "cProfile",
    "calendar",
    "cmath",
    "cmd",
    "code",
    "codecs",
    "codeop",
    "collections",
    "colorsys",
    "compileall",
    "compression",
    "concurrent",
    "configparser",
    "contextlib",
    "contextvars",
    "copy",
    "copyreg",
    "csv",
    "ctypes",
    "curses",
    "dataclasses",
    "datetime",
    "dbm",
    "decimal",
    "difflib",
    "dis",
    "doctest",
    "email",
    "encodings",
    "enum",
    "errno",
    "faulthandler",
    "fcntl",
    "filecmp",
    "fileinput",
    "fnmatch",
    "fractions",
    "ftplib",
    "functools",
    "gc",
    "genericpath",
    "getopt",
    "getpass",
    "gettext",
    "glob",
    "graphlib",
    "grp",
    "gzip",
    "hashlib",
    "heapq",
    "hmac",
    "html",
    "http",
    "imaplib",
    "importlib",
    "inspect",
    "io",
    "ipaddress",
    "itertools",
    "json",
    "keyword",
    "linecache",
    "locale",
    "logging",
    "lzma",
    "mailbox",
    "marshal",
    "math",
    "mimetypes",
    "mmap",
    "modulefinder",
    "multiprocessing",
    "netrc",
    "ntpath",
    "nturl2path",
    "numbers",
    "opcode",
    "operator",
    "optparse",
    "os",
    "pathlib",
    "pdb",
    "pickle",
    "pickletools",
    "pkgutil",
    "platform",
    "plistlib",
    "poplib",
    "posix",
    "posixpath",
    "pprint",
    "profile",
    "pstats",
    "pty",
    "pwd",
    "py_compile",
    "pyclbr",
    "pydoc",
    "pyexpat",
    "queue",
    "quopri",
    "random",
    "re",
    "reprlib",
    "resource",
    "runpy",
    "sched",
    "secrets",
    "select",
    "selectors",
    "shelve",
    "shlex",
    "shutil",
    "signal",
    "smtplib",
    "socket",
    "socketserver",
    "sqlite3",
    "ssl",
    "stat",
    "statistics",
    "string",
    "stringprep",
    "struct",
    "subprocess",
    "symtable",
    "sys",
    "sysconfig",
    "syslog",
    "tabnanny",
    "tarfile",
    "tempfile",
    "termios",
    "textwrap",
    "threading",
    "time",
    "timeit",
    "token",
    "tokenize",
    "tomllib",
    "trace",
    "traceback",
    "tracemalloc",
    "tty",
    "types",
    "typing",
    "unicodedata",
    "unittest",
    "urllib",
    "uuid",
    "venv",
    "warnings",
    "wave",
    "weakref",
    "webbrowser",
    "wsgiref",
    "xml",
    "xmlrpc",
    "zipapp",
    "zipfile",
    "zipimport",
    "zlib",
    "zoneinfo",
)
# submodule name parts that are never walked: test suites and script entry points
_SKIP_PARTS = frozenset({"test", "tests", "idle_test", "__main__"})


def _import_quietly(name: str) -> types.ModuleType | None:
    """Import ``name`` with warnings and stray prints swallowed; ``None`` if it does not import here."""
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            return importlib.import_module(name)
    except BaseException:  # ImportError, OSError, even SystemExit: any failure just means "skip it"
        return None


def _walk_modules(names: tuple[str, ...]) -> list[types.ModuleType]:
    """The importable modules among ``names`` and all their submodules, depth first, in sorted order."""
    found: list[types.ModuleType] = []
    for name in sorted(names):
        module = _import_quietly(name)
        if module is None:
            continue
        found.append(module)
        path = getattr(module, "__path__", None)
        if path is not None:
            subs = sorted(info.name for info in pkgutil.iter_modules(path, name + "."))
            found.extend(_walk_modules(tuple(s for s in subs if _SKIP_PARTS.isdisjoint(s.split(".")))))
    return found


def _doc_of(obj: object) -> str | None:
    # the object's own __doc__, not inspect.getdoc: getdoc inherits the parent's docstring, which only duplicates
    try:
        doc = obj.__doc__
    except Exception:  # some C descriptors raise on attribute access
        return None
    return inspect.cleandoc(doc) if isinstance(doc, str) else None


def _module_docstrings(module: types.ModuleType) -> list[str]:
    """The docstrings of a module, its public classes and functions, and their public members."""
    docs = [_doc_of(module)]
    for name, obj in sorted(vars(module).items()):
        # only objects defined here: re-exports are documented where they live
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        docs.append(_doc_of(obj))
        if inspect.isclass(obj):
            for member_name, member in sorted(vars(obj).items()):
                if member_name.startswith("_"):
                    continue
                # routines, properties and nested classes; plain class constants would give e.g. ``str.__doc__``
                if inspect.isroutine(member) or inspect.isdatadescriptor(member) or inspect.isclass(member):
                    docs.append(_doc_of(member))
    return [d for d in docs if d]


def _collect_embedded_documents() -> list[str]:
    """The embedded corpus, collected in this interpreter (whose state it reflects: run it in a clean one)."""
    import pydoc_data.topics

    docs = [text.strip() for text in pydoc_data.topics.topics.values()]
    for module in _walk_modules(STDLIB_MODULES):
        docs.extend(_module_docstrings(module))
    return sorted({d for d in docs if len(d) >= MIN_DOC_CHARS})


@functools.lru_cache(maxsize=1)
def _embedded_documents() -> tuple[str, ...]:
    # Collected in a fresh interpreter: -I ignores PYTHON* variables, the user site and the current directory, -S skips
    # site-packages and sitecustomize. In this process, anything imported earlier may have replaced a standard-library
    # function (importing torch swaps inspect.getfile, pytest swaps sys.unraisablehook, logging.captureWarnings swaps
    # warnings.showwarning...), and that would change the corpus, its hash and the tokenizer between entry points and
    # between ranks. It also keeps the ~500 imported modules out of the training process.
    result = subprocess.run(
        [sys.executable, "-I", "-S", str(Path(__file__).resolve())], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"collecting the embedded corpus failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return tuple(json.loads(result.stdout))


def embedded_documents() -> list[str]:
    """Documents from text that ships with Python: the ``pydoc`` help topics and standard-library docstrings.

    Returns a sorted, de-duplicated list of documents of at least ``MIN_DOC_CHARS`` characters (about 3,400
    documents, 1.55 MB on CPython 3.11). Collected in a fresh interpreter (about half a second, then cached per
    process) so that nothing this process imported can change it: the same Python version always gives the same
    list.
    """
    return list(_embedded_documents())


def text_file_documents(path: str) -> list[str]:
    """Documents from a file or a folder of ``.txt`` / ``.md`` (one document per file) and ``.jsonl`` files (one a
    line, field ``text``), walked in sorted order; whitespace-only documents dropped. Raises ``DataError`` naming
    ``data.path`` when there is nothing to read. The whole list: for small corpora (see ``sources.py`` to stream)."""
    from parcae_runner.config.schema import DataConfig
    from parcae_runner.data.sources import TextFileSource

    source = TextFileSource(DataConfig(source="text_files", path=path))
    source.check()
    return [d for d in source.documents() if isinstance(d, str)]


def load_documents(cfg: DataConfig) -> list[str]:
    """The documents ``cfg.source`` (and ``cfg.path``) name, in a deterministic order, as one list (small corpora)."""
    from parcae_runner.data.sources import source_for

    source = source_for(cfg)
    source.check()
    return [d for d in source.documents() if isinstance(d, str)]


if __name__ == "__main__":
    # ASCII JSON, so the parent reads it back whatever this interpreter's locale and stdout encoding
    json.dump(_collect_embedded_documents(), sys.stdout)
