"""The package stays readable: no module over 400 lines (outside the Triton kernels), a thin training runner, and no
function over 60 lines where the training and run-directory logic lives."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "parcae_runner"
MAX_MODULE_LINES = 400
MAX_RUNNER_LINES = 250
MAX_FUNCTION_LINES = 60
# kernels hold @triton.jit forward and backward pairs that read best whole
EXEMPT = ("kernels",)
FUNCTION_LIMITED = ("train", "runs")


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def _modules(under: Path) -> list[Path]:
    return sorted(under.rglob("*.py"))


def _functions(path: Path) -> list[tuple[str, int]]:
    """``(qualified name, lines)`` of every function and method, decorators included."""
    found: list[tuple[str, int]] = []

    def walk(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                assert child.end_lineno is not None
                found.append((f"{prefix}{child.name}", child.end_lineno - first + 1))
                walk(child, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                walk(child, f"{prefix}{child.name}.")

    walk(ast.parse(path.read_text()), "")
    return found


def test_no_module_over_400_lines_outside_kernels():
    too_long = [
        f"{p.relative_to(PACKAGE)}: {_lines(p)} lines"
        for p in _modules(PACKAGE)
        if p.relative_to(PACKAGE).parts[0] not in EXEMPT and _lines(p) > MAX_MODULE_LINES
    ]
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines (split them along a seam): {too_long}"


def test_the_training_runner_is_thin():
    lines = _lines(PACKAGE / "train" / "runner.py")
    assert lines <= MAX_RUNNER_LINES, f"train/runner.py has {lines} lines; at most {MAX_RUNNER_LINES}"


def test_no_function_over_60_lines_in_train_and_runs():
    too_long = [
        f"{p.relative_to(PACKAGE)}:{name}: {n} lines"
        for sub in FUNCTION_LIMITED
        for p in _modules(PACKAGE / sub)
        for name, n in _functions(p)
        if n > MAX_FUNCTION_LINES
    ]
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines: {too_long}"


def test_the_function_walk_sees_methods_and_nested_functions(tmp_path):
    source = "class A:\n    @staticmethod\n    def f():\n        def g():\n            pass\n        return g\n"
    (tmp_path / "m.py").write_text(source)
    assert _functions(tmp_path / "m.py") == [("A.f", 5), ("A.f.g", 2)]
