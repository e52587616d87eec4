"""Copy a package module and every package module it imports into one flat folder, imports made relative.

``bundle("parcae_runner.models.rwkv7.model", out)`` writes ``models_rwkv7_model.py``, ``kernels_wkv7.py``,
``kernels__host.py``, ... so that the folder, loaded by transformers as trust-remote-code, runs the package's own
code without the package installed. Module-level imports of ``parcae_runner.*`` are followed and rewritten as
``from .<flat name> import ...``; an import of the package inside a function or an ``if`` (a Triton path, a
type-checking import) is not followed and becomes ``raise ImportError(...)``, as does any import there of a package
that the module level does not import, so the shipped code needs no more than its module-level imports need
(transformers asks for every package a shipped file names). With ``kernel_impl="reference"`` none of them runs.
The text is kept as it is otherwise (docstrings, comments).
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

PACKAGE = "parcae_runner"


def flat_name(module: str) -> str:
    """``parcae_runner.models.rwkv7.model`` -> ``models_rwkv7_model`` (a package's ``__init__`` is its own name)."""
    return module.removeprefix(PACKAGE + ".").replace(".", "_")


def _source(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ValueError(f"cannot bundle {module}: no source file")
    return Path(spec.origin)


def _package_imports(tree: ast.Module) -> list[tuple[ast.ImportFrom, bool]]:
    """Every ``from parcae_runner.x import ...`` in ``tree``, with whether it sits at module level."""
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == PACKAGE for a in node.names):
            raise ValueError(f"line {node.lineno}: write `from {PACKAGE}.x import y`, which a bundle can rewrite")
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == PACKAGE:
            found.append((node, id(node) in top))
    return found


def _nested_other_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Imports inside a function or an ``if`` of what the module level does not import (a Triton path): transformers
    asks for every package a shipped file names, so these must go."""
    top = {id(node) for node in tree.body}
    have = set(sys.stdlib_module_names)
    for node in tree.body:
        if isinstance(node, ast.Import):
            have |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            have.add((node.module or "").split(".")[0])
    found: list[ast.Import | ast.ImportFrom] = []
    for inner in ast.walk(tree):
        if id(inner) in top:
            continue
        if isinstance(inner, ast.Import) and any(a.name.split(".")[0] not in have for a in inner.names):
            found.append(inner)
        elif isinstance(inner, ast.ImportFrom) and inner.level == 0:
            root = (inner.module or "").split(".")[0]
            if root != PACKAGE and root not in have:
                found.append(inner)
    return found


def _rewrite(text: str, tree: ast.Module, followed: set[str]) -> str:
    """``text`` with each package import made relative (followed modules) and each import the shipped code cannot
    make turned into ``raise ImportError``."""
    lines = text.splitlines(keepends=True)
    edits: list[tuple[ast.stmt, str]] = []
    for node, _ in _package_imports(tree):
        module = node.module or ""
        if module in followed:
            names = ", ".join(a.name if a.asname is None else f"{a.name} as {a.asname}" for a in node.names)
            edits.append((node, f"from .{flat_name(module)} import {names}"))
        else:
            edits.append((node, f'raise ImportError("{module} is not shipped with this export")'))
    for nested in _nested_other_imports(tree):
        what = nested.module if isinstance(nested, ast.ImportFrom) else ", ".join(a.name for a in nested.names)
        edits.append((nested, f'raise ImportError("{what}: not needed by the shipped code")'))
    # from the bottom up, so that the line numbers above stay valid
    for stmt, new in sorted(edits, key=lambda edit: -edit[0].lineno):
        indent = lines[stmt.lineno - 1][: stmt.col_offset]
        lines[stmt.lineno - 1 : stmt.end_lineno] = [f"{indent}{new}\n"]
    return "".join(lines)


def bundle(root_module: str, out: Path) -> list[Path]:
    """Write ``root_module`` and the package modules it imports at module level, transitively, into ``out``."""
    followed: set[str] = set()
    todo, trees = [root_module], {}
    while todo:
        module = todo.pop()
        if module in followed:
            continue
        followed.add(module)
        text = _source(module).read_text()
        tree = ast.parse(text)
        trees[module] = (text, tree)
        for node, at_top in _package_imports(tree):
            for alias in node.names:
                if importlib.util.find_spec(f"{node.module}.{alias.name}") if _is_package(node.module) else False:
                    raise ValueError(f"{module}: `from {node.module} import {alias.name}` imports a module")
            if at_top:
                todo.append(node.module or "")
    written = []
    out.mkdir(parents=True, exist_ok=True)
    for module, (text, tree) in sorted(trees.items()):
        path = out / f"{flat_name(module)}.py"
        path.write_text(_rewrite(text, tree, followed))
        written.append(path)
    return written


def _is_package(module: str | None) -> bool:
    spec = importlib.util.find_spec(module or "")
    return spec is not None and spec.submodule_search_locations is not None
