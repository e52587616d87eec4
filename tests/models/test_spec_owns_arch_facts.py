"""The architecture spec owns everything per-architecture: no module outside ``parcae_runner/models/<arch>/`` names
an architecture (the import list in ``parcae_runner/models/__init__.py`` aside, which is what registers them).

"Names" means, in a module's syntax tree (so comments never count, and docstrings are left out):
- a string constant equal to a registered architecture name or alias (f-string pieces included),
- an identifier equal to one: a variable, attribute, argument, keyword, function or class name, import alias,
- an import whose dotted module path, or imported name, has one as a component (``parcae_runner.models.rwkv7``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import parcae_runner
from parcae_runner.models import ARCHITECTURES
from parcae_runner.models.registry import ALIASES

PACKAGE = Path(parcae_runner.__file__).parent
REGISTRATION = PACKAGE / "models" / "__init__.py"

# (module, name) -> why that module may spell it: values of a config field that are named after the study whose
# convention they reproduce and that apply to every architecture (renaming them would change what a run prints)
ALLOWED = {
    ("config/schema.py", "pythia"): "train.checkpoint.schedule=pythia: Pythia's checkpoint steps, for any arch",
    ("config/schema.py", "gpt2"): "data.tokenizer_recipe=gpt2: GPT-2's byte-level BPE recipe, for any arch",
    ("config/schema.py", "parcae"): "data.tokenizer_recipe=parcae: Parcae's tokenizer recipe, for any arch",
    ("models/flops.py", "parcae"): "train.flops_convention=parcae: the FLOP count of Parcae's scripts/cost.py",
    ("eval/lm_eval_cli.py", "parcae"): "lm-eval's --model parcae: this project's model adapter, not an architecture",
    ("data/published.py", "gpt2"): "corpus sizes counted in the gpt2 tokenizer's tokens: a tokenizer, not the arch",
}


def _docstrings(tree: ast.AST) -> set[int]:
    owners = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, owners)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }


def _spellings(node: ast.AST) -> list[str]:
    """The strings ``node`` spells that could be an architecture's name."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.Name):
        return [node.id]
    if isinstance(node, ast.Attribute):
        return [node.attr]
    if isinstance(node, ast.arg):
        return [node.arg]
    if isinstance(node, ast.keyword) and node.arg:
        return [node.arg]
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.alias):
        return [*node.name.split("."), *([node.asname] if node.asname else [])]
    if isinstance(node, ast.ImportFrom):
        return (node.module or "").split(".")
    return []


def architecture_names_in(source: str, names: set[str]) -> list[tuple[int, str]]:
    """(line, name) for each place ``source`` names one of ``names`` (see the module docstring)."""
    tree = ast.parse(source)
    docstrings = _docstrings(tree)
    hits = []
    for node in ast.walk(tree):
        if id(node) in docstrings:
            continue
        for word in _spellings(node):
            if word in names:
                hits.append((getattr(node, "lineno", 0), word))
    return hits


def _registration_imports(source: str) -> set[str]:
    """The architecture packages ``models/__init__.py`` imports to register them."""
    tree = ast.parse(source)
    return {
        alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module == "parcae_runner.models"
        for alias in node.names
    }


def _names() -> set[str]:
    return set(ARCHITECTURES) | set(ALIASES)


def _outside_arch_folders() -> list[Path]:
    arch_folders = {PACKAGE / "models" / name for name in _names()}
    return [p for p in sorted(PACKAGE.rglob("*.py")) if not any(f in p.parents for f in arch_folders)]


def test_the_detector_reads_syntax_not_text():
    names = {"rwkv7", "mamba"}
    source = '''"""A docstring may say rwkv7."""
# and so may a comment: mamba
import parcae_runner.models.mamba.model
from parcae_runner.models.rwkv7 import blinkdl
from parcae_runner.models import rwkv7 as seven


def f(mamba: int) -> str:
    """rwkv7 in a function's docstring."""
    if cfg.arch.name == "rwkv7":
        return f"{mamba}-x"
    return "rwkv7x" + config.mamba
'''
    found = sorted(architecture_names_in(source, names))
    assert found == [
        (3, "mamba"),
        (4, "rwkv7"),
        (5, "rwkv7"),
        (8, "mamba"),
        (10, "rwkv7"),
        (11, "mamba"),
        (12, "mamba"),
    ]


def test_no_module_outside_an_architecture_folder_names_an_architecture():
    names = _names()
    assert {"pythia", "mamba", "rwkv7"} <= names
    offenders, used = [], set()
    for path in _outside_arch_folders():
        rel = path.relative_to(PACKAGE).as_posix()
        source = path.read_text()
        exempt = _registration_imports(source) if path == REGISTRATION else set()
        for line, name in architecture_names_in(source, names):
            if (rel, name) in ALLOWED:
                used.add((rel, name))
            elif name not in exempt:
                offenders.append(f"parcae_runner/{rel}:{line}: {name}")
    assert not offenders, "ask the registry (models/registry.py) instead:\n" + "\n".join(offenders)
    assert used == set(ALLOWED), f"stale allow-list entries: {sorted(set(ALLOWED) - used)}"


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_built_in_architecture_is_one_folder_and_one_import_line(name):
    module = ARCHITECTURES[name].hparams_cls.__module__
    if module.startswith("parcae_runner.models."):
        assert module.split(".")[2] == name
        assert name in _registration_imports(REGISTRATION.read_text())
