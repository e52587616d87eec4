"""CI cannot pass while skipping what it claims to test: the require_system plugin, run on a real pytest session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

SAMPLE = """
import shutil
import pytest

def test_needs_docker():
    if shutil.which("docker-that-is-not-on-path") is None:
        pytest.skip("Docker is missing and there is no apt-get to install it")

def test_not_for_this_architecture():
    pytest.skip("not applicable: this architecture has no init_weights")

def test_plain():
    assert 1 + 1 == 2
"""


def _run(tmp_path: Path, switch: str | None) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    env = {k: v for k, v in os.environ.items() if k != "PARCAE_REQUIRE_SYSTEM_TESTS"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    if switch is not None:
        env["PARCAE_REQUIRE_SYSTEM_TESTS"] = switch
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "require_system", "-p", "no:cacheprovider", str(tmp_path)]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)


def test_a_skipped_system_test_fails_the_run_under_the_switch(tmp_path: Path) -> None:
    result = _run(tmp_path, "1")
    assert result.returncode == 1, result.stdout
    assert "SKIPPED SYSTEM TEST test_sample.py::test_needs_docker: Docker is missing" in result.stdout
    # a skip that belongs to the test, not the machine, is allowed
    assert "test_not_for_this_architecture" not in result.stdout.split("fail this run")[1]


def test_without_the_switch_skips_are_skips(tmp_path: Path) -> None:
    result = _run(tmp_path, None)
    assert result.returncode == 0 and "1 passed, 2 skipped" in result.stdout
