"""A pytest plugin: under ``PARCAE_REQUIRE_SYSTEM_TESTS=1`` (``.ci/run`` sets it) a skipped test fails the run.

System tests (the local Slurm cluster, Docker, Chromium, root, optional packages) skip on a machine that cannot run
them, which is right for a laptop but would let CI pass without testing the cluster or the image. Under the switch
the session ends with exit code 1 and names every such test. A skip that is a property of the test itself, not of
the machine, says so with a reason starting ``not applicable:`` and is allowed.
"""

from __future__ import annotations

import os

import pytest

SWITCH = "PARCAE_REQUIRE_SYSTEM_TESTS"
ALLOWED_PREFIX = "not applicable:"
_skipped: list[tuple[str, str]] = []


def _reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    return str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = _reason(report).removeprefix("Skipped: ")
        if not reason.startswith(ALLOWED_PREFIX):
            _skipped.append((report.nodeid, reason))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get(SWITCH) == "1" and _skipped:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if os.environ.get(SWITCH) == "1" and _skipped:
        terminalreporter.section(f"{SWITCH}=1: {len(_skipped)} skipped test(s) fail this run", red=True)
        for nodeid, reason in _skipped:
            terminalreporter.line(f"SKIPPED SYSTEM TEST {nodeid}: {reason}")
