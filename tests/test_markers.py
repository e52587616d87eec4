"""A test is marked with the systems its fixtures bring up, so `-m "not slurm"` can leave out every Slurm test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SYSTEM_MARKERS

REPO = Path(__file__).resolve().parents[1]

SAMPLE = """
import pytest

@pytest.fixture
def slurm_cluster_session():
    return "cluster"

@pytest.fixture
def slurm_cluster(slurm_cluster_session):
    return slurm_cluster_session

@pytest.fixture
def chromium():
    return "chromium"

def test_on_the_cluster(slurm_cluster):
    pass

def test_in_a_browser(chromium):
    pass

def test_plain():
    pass
"""


def _selected(tmp_path: Path, expression: str) -> list[str]:
    """The tests of SAMPLE that ``-m expression`` selects, with tests/conftest.py loaded as a plugin."""
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "pytest", "-q", "--collect-only", "-p", "tests.conftest", "-p", "no:cacheprovider"]
    result = subprocess.run(
        [*cmd, "-m", expression, str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    return sorted(line.split("::")[1] for line in result.stdout.splitlines() if "::" in line)


def test_a_test_is_marked_by_the_fixtures_it_uses_through_other_fixtures(tmp_path: Path) -> None:
    assert _selected(tmp_path, "slurm") == ["test_on_the_cluster"]
    assert _selected(tmp_path, "browser") == ["test_in_a_browser"]
    assert _selected(tmp_path, "not (slurm or browser)") == ["test_plain"]


def test_every_system_marker_is_registered(pytestconfig: pytest.Config) -> None:
    registered = {line.split(":")[0] for line in pytestconfig.getini("markers")}
    assert {m for markers in SYSTEM_MARKERS.values() for m in markers} <= registered
    assert {"slurm", "docker", "browser", "multiprocess", "gpu", "slow"} <= registered
