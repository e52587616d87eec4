"""docker/requirements.lock pins every runtime dependency of pyproject.toml with hashes, except what the base image
provides, and the image is labelled with its hash: checked offline (docker/check_lock.py).

Whether ``make lock`` reproduces the file from PyPI today is ``make lock-check`` (network, run on purpose): the index
can gain files dated before LOCK_DATE after the lock was made, so that question cannot gate CI.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LOCK_TEXT = (REPO / "docker" / "requirements.lock").read_text()
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _load_check_lock():
    spec = importlib.util.spec_from_file_location("check_lock", REPO / "docker" / "check_lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


check_lock = _load_check_lock()


def _without_block(text: str, name: str) -> str:
    """The lock with the requirement block of ``name`` removed (pin, hashes and comments)."""
    blocks = re.split(r"\n(?=[^\s#])", text)
    kept = [b for b in blocks if not b.startswith(f"{name}==")]
    assert len(kept) == len(blocks) - 1, f"{name} is not pinned once in the lock"
    return "\n".join(kept)


def _without_hashes(text: str, name: str) -> str:
    """The lock with every ``--hash`` line of ``name``'s pin dropped."""
    out, in_block = [], False
    for line in text.splitlines(keepends=True):
        if line and not line[0].isspace() and not line.startswith("#"):
            in_block = line.startswith(f"{name}==")
            line = line.rstrip(" \\\n") + "\n" if in_block else line
        elif in_block and "--hash=" in line:
            continue
        out.append(line)
    return "".join(out)


def test_committed_lock_passes_the_offline_check():
    assert check_lock.problems() == []


def test_lock_pins_the_build_backend_and_no_cuda_stack():
    pins = check_lock.lock_pins(LOCK_TEXT)
    assert "setuptools" in pins and not {"torch", "triton"} & set(pins)
    assert len(check_lock.lock_blocks(LOCK_TEXT)) == sum(len(v) for v in pins.values()) > 50


@pytest.mark.parametrize("dependency", ["lightning", "codecarbon", "lm-eval", "pyarrow"])
def test_removing_a_runtime_dependency_fails_the_check(dependency):
    found = check_lock.dependency_problems(_without_block(LOCK_TEXT, dependency), PYPROJECT)
    assert len(found) == 1 and f"`{dependency}" in found[0] and "not pinned" in found[0], found


def test_dropping_a_hash_fails_the_check():
    broken = _without_hashes(LOCK_TEXT, "wandb")
    assert broken != LOCK_TEXT and check_lock.dependency_problems(broken, PYPROJECT) == []
    found = check_lock.format_problems(broken)
    assert len(found) == 1 and found[0].startswith("`wandb==") and "no --hash" in found[0], found


def test_a_pin_outside_pyproject_specifier_fails_the_check():
    (pin,) = check_lock.lock_pins(LOCK_TEXT)["submitit"]
    broken = LOCK_TEXT.replace(f"{pin} \\", "submitit==1.0.0 \\", 1)
    found = check_lock.dependency_problems(broken, PYPROJECT)
    assert found == ["`submitit==1.0.0` is outside pyproject.toml's `submitit>=1.5`"], found


def test_base_image_packages_and_a_moved_header_fail_the_check():
    torch_pin = "torch==2.9.0 \\\n    --hash=sha256:" + "0" * 64 + "\n"
    found = check_lock.dependency_problems(LOCK_TEXT + torch_pin, PYPROJECT)
    assert found == ["torch comes from the base image and must not be in the lock"], found
    assert check_lock.format_problems("# made on 2026-11-20\n" + LOCK_TEXT) == [
        "the header is not the one `make lock` writes"
    ]


def _copy_of_repo(tmp_path: Path) -> Path:
    """What the offline check reads: the Makefile, pyproject.toml, the Dockerfile and the lock."""
    for name in ("Makefile", "pyproject.toml", "docker/Dockerfile", "docker/requirements.lock"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    assert check_lock.problems(tmp_path) == []
    return tmp_path


def test_an_image_label_that_is_not_the_lock_hash_fails_the_check(tmp_path):
    repo = _copy_of_repo(tmp_path)
    makefile = repo / "Makefile"
    makefile.write_text(makefile.read_text().replace("sha256sum docker/requirements.lock", "sha256sum Makefile"))
    (found,) = check_lock.image_label_problems(repo)
    assert found.startswith("make docker-build passes LOCK_SHA256=") and "but the lock hashes to" in found
    dockerfile = repo / "docker" / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace('="${LOCK_SHA256}"', '=""'))
    assert check_lock.image_label_problems(repo)[1:] == [
        "docker/Dockerfile does not install docker/requirements.lock and label its LOCK_SHA256"
    ]


def test_the_check_command_names_each_problem_and_how_to_update(tmp_path, capsys):
    repo = _copy_of_repo(tmp_path)
    lock = repo / "docker" / "requirements.lock"
    lock.write_text(_without_hashes(_without_block(LOCK_TEXT, "wandb"), "numpy"))
    assert check_lock.main(repo) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "requirements.lock: runtime dependency `wandb>=0.17` of pyproject.toml is not pinned in the lock"
    # numpy has one pin per Python-version fork, and each has lost its hashes
    numpy = [line for line in err[1:] if line.startswith("requirements.lock: `numpy==") and "no --hash" in line]
    assert len(numpy) == len(check_lock.lock_pins(LOCK_TEXT)["numpy"]) == len(err) - 2
    assert "update it with `make lock`" in err[-1]
