"""The import layers of pyproject.toml's contract: the package keeps them, and `lint-imports` catches a breach.

`make lint` runs the same check; these tests pin down that the contract is the one meant (every subpackage and
top-level module in a layer) and that it really fails on an upward import, top-level or inside a function.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = REPO / "pyproject.toml"
# lint-imports' own entry point, run by this interpreter: the tool is a dev dependency of the package's environment
LINT_IMPORTS = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` with the repository's contract, on the ``parcae_runner`` package found under ``root``."""
    # the package is located by import, so the tree under ``root`` must come first on the path
    path = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)
    return subprocess.run(
        [sys.executable, "-c", LINT_IMPORTS, str(PYPROJECT), "--no-cache"],
        cwd=root,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=300,
    )


def contract_layers() -> list[str]:
    """The modules named by the layers contract, top layer first (siblings of a layer in their written order)."""
    (contract,) = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]
    assert contract["type"] == "layers"
    return [name.strip(" ()") for layer in contract["layers"] for name in layer.split("|")]


def test_every_subpackage_and_top_level_module_is_in_a_layer() -> None:
    package = REPO / "parcae_runner"
    modules = {p.parent.name for p in package.glob("*/__init__.py")}
    modules |= {p.stem for p in package.glob("*.py") if p.stem not in ("__init__", "__main__")}
    missing = {f"parcae_runner.{m}" for m in modules} - set(contract_layers())
    assert not missing, f"modules no layer constrains (add them to [tool.importlinter] in pyproject): {missing}"
    assert contract_layers()[-1] == "parcae_runner.util" and contract_layers()[0] == "parcae_runner.cli"


def test_the_package_keeps_its_layers() -> None:
    done = lint_imports(REPO)
    assert done.returncode == 0, f"lint-imports failed:\n{done.stdout}\n{done.stderr}"
    assert "1 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "source", "upward"),
    [
        # a module-level import of the top layer from a low one
        ("models/upward.py", '"""Upward."""\n\nimport parcae_runner.cli  # noqa: F401\n', "parcae_runner.cli (l.3)"),
        # a function-level import counts too
        (
            "kernels/upward.py",
            '"""Upward."""\n\n\ndef plan():\n    from parcae_runner.launch import plan\n\n    return plan\n',
            "parcae_runner.launch.plan (l.5)",
        ),
    ],
    ids=["module-level", "function-level"],
)
def test_an_upward_import_breaks_the_contract(tmp_path: Path, module: str, source: str, upward: str) -> None:
    shutil.copytree(REPO / "parcae_runner", tmp_path / "parcae_runner", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "parcae_runner" / module).write_text(source)
    done = lint_imports(tmp_path)
    importer = "parcae_runner." + module.removesuffix(".py").replace("/", ".")
    assert done.returncode != 0, done.stdout
    assert f"- {importer} -> {upward}" in done.stdout, f"{importer} not named:\n{done.stdout}\n{done.stderr}"
