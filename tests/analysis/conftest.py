"""Fixtures for the analysis tests: a headless Chromium, installed from Debian packages when missing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# apt on a cold mirror can take minutes; past this something is wrong (lock held, no network)
APT_TIMEOUT_S = 1200


def ensure_chromium() -> Path:
    """``/usr/bin/chromium``, installing Debian's ``chromium`` package first if it is missing.

    Skips (not fails) only where installing is impossible by design (not root, no apt); an apt
    failure on a machine that could install is a failure, so a broken mirror never passes silently.
    """
    if CHROMIUM.exists():
        return CHROMIUM
    if os.geteuid() != 0:
        pytest.skip(f"{CHROMIUM} is missing and installing it needs root (apt-get install chromium)")
    if shutil.which("apt-get") is None:
        pytest.skip(f"{CHROMIUM} is missing and this machine has no apt-get to install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "chromium"],
    ):
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=APT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`{' '.join(cmd)}` did not finish in {APT_TIMEOUT_S} s")
        if out.returncode != 0:
            pytest.fail(f"`{' '.join(cmd)}` exited {out.returncode}:\n{(out.stdout + out.stderr)[-3000:]}")
    if not CHROMIUM.exists():
        pytest.fail(f"apt-get installed chromium but {CHROMIUM} is still missing")
    return CHROMIUM


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Path of a headless-capable Chromium (session-scoped: apt runs at most once per test session)."""
    return ensure_chromium()
