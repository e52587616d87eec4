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


def test_under_two_workers_the_cluster_tests_share_one_worker(tmp_path: Path) -> None:
    """`make test`'s pytest-xdist grouping (SERIAL_MARKERS): every Slurm test on one worker, the others anywhere. A
    pytest/xdist pair that drops the groups would let two workers share the one-node cluster's queue."""
    sample = SAMPLE + "".join(f"\n\ndef test_cluster_{i}(slurm_cluster):\n    pass\n" for i in range(4))
    (tmp_path / "test_sample.py").write_text(sample)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "pytest", "-v", "-p", "tests.conftest", "-p", "no:cacheprovider", "-p", "no:randomly"]
    result = subprocess.run(
        [*cmd, "-n", "2", "--dist", "loadgroup", str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-2000:]
    workers = {}
    for line in result.stdout.splitlines():
        if "PASSED" in line and line.startswith("[gw"):
            workers[line.split("::")[1].split("@")[0].split()[0]] = (line.split("]")[0][1:], "@system" in line)
    cluster_tests = {name: where for name, where in workers.items() if "cluster" in name}
    assert len(cluster_tests) == 5 and all(grouped for _, grouped in cluster_tests.values()), workers
    assert len({worker for worker, _ in cluster_tests.values()}) == 1, cluster_tests
    assert not workers["test_plain"][1]
