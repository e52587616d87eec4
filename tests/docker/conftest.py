"""A Docker engine, the stand-in for the NGC base image, and the image built from docker/Dockerfile: once per session.

The engine is Debian's docker.io: installed with apt-get where missing, and ``dockerd`` started here (as root) when no
daemon answers; like the local Slurm cluster it is left running. The stand-in base (docker/standin/build.sh: a
debootstrapped Debian with the CPU torch wheel) is kept between sessions under its tag; the image is built by
``make docker-build`` with ``BASE_IMAGE`` set to it, the only difference from a cluster build.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.launch.conftest import slurm_cluster, slurm_cluster_session  # noqa: F401  (the local Slurm cluster, for the sbatch tests)

REPO = Path(__file__).resolve().parents[2]
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
DOCKERD_LOG = Path("/var/log/parcae-dockerd.log")
PACKAGES = ("docker.io", "debootstrap")
IMAGE_NAME = "parcae-runner-test"


@dataclass(frozen=True)
class Image:
    ref: str  # <IMAGE_NAME>:<short sha>[-dirty], as make docker-build tags it
    id: str  # sha256:... of the image config
    base: str  # the stand-in base's tag
    build_s: float  # how long make docker-build took in this session


def _which(name: str) -> str | None:
    return shutil.which(name, path=SEARCH_PATH)


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=check)


def _daemon_answers() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _install() -> None:
    apt = _which("apt-get")
    if apt is None:
        pytest.skip("Docker or debootstrap is missing and there is no apt-get to install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]):
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if done.returncode != 0:
            pytest.skip(f"`{' '.join(cmd)}` failed: {done.stderr.strip()[-1000:]}")


def _start_dockerd() -> None:
    with DOCKERD_LOG.open("a") as log:
        subprocess.Popen(
            [_which("dockerd")],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd="/",
            env={**os.environ, "PATH": SEARCH_PATH},
            start_new_session=True,  # outlives this session, like the local Slurm cluster
        )
    deadline = time.monotonic() + 60
    while not _daemon_answers():
        if time.monotonic() > deadline:
            raise AssertionError(f"dockerd did not answer within 60 s:\n{DOCKERD_LOG.read_text()[-3000:]}")
        time.sleep(0.5)


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """A Docker daemon that answers; skip only where none can be had (not root, or nothing to install it with)."""
    if os.geteuid() != 0:
        pytest.skip("the Docker tests need root (apt-get, dockerd, debootstrap)")
    if not all(_which(n) for n in ("docker", "dockerd", "debootstrap")):
        _install()
    if not _daemon_answers():
        _start_dockerd()


@pytest.fixture(scope="session")
def standin_base(docker_engine) -> str:
    """The stand-in for the NGC base: built once (about a minute), then found by its tag."""
    import torch

    version = torch.__version__.split("+")[0]
    out = subprocess.run(
        [str(REPO / "docker" / "standin" / "build.sh")],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "PYTHON": sys.executable, "TORCH_VERSION": version, "PATH": SEARCH_PATH},
    )
    assert out.returncode == 0, out.stderr[-4000:]
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def image(standin_base) -> Image:
    """``make docker-build`` on the stand-in base: the same docker/Dockerfile as for a cluster."""
    earlier = set(docker("images", "-q", "--no-trunc", IMAGE_NAME).stdout.split())
    started = time.monotonic()
    out = subprocess.run(
        ["make", "--no-print-directory", "docker-build", f"BASE_IMAGE={standin_base}", f"IMAGE_NAME={IMAGE_NAME}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert out.returncode == 0, (out.stdout[-4000:], out.stderr[-4000:])
    build_s = time.monotonic() - started
    tag = out.stdout.strip().splitlines()[-1].split()[1]  # "built <name>:<tag> = sha256:..."
    found = json.loads(docker("image", "inspect", tag).stdout)[0]
    # earlier sessions' test images (other commits, or this commit before a change) share the heavy layers:
    # untag them, and remove those of them no tag names any more; no other image is touched
    older = docker("images", IMAGE_NAME, "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    older = [t for t in older if t not in (tag, f"{IMAGE_NAME}:latest")]
    if older:
        docker("rmi", *older, check=False)
    for old_id in earlier - {found["Id"]}:
        left = docker("image", "inspect", "--format", "{{len .RepoTags}}", old_id, check=False).stdout.strip()
        if left == "0":
            docker("rmi", old_id, check=False)
    print(f"\n[docker] make docker-build: {build_s:.0f} s, {tag} = {found['Id']}", file=sys.stderr)
    return Image(ref=tag, id=found["Id"], base=standin_base, build_s=build_s)


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
