"""The image, built for real from docker/Dockerfile on the stand-in base, and a training run in it."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO, docker, sha256_file

pytestmark = pytest.mark.slow


def git_commit() -> str:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True
    ).stdout.strip()
    return head + ("-dirty" if dirty else "")


def in_image(image, code: str) -> str:
    out = docker("run", "--rm", "--entrypoint", "python", image.ref, "-c", code, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_image_provenance_user_and_base_torch(image):
    config = json.loads(docker("image", "inspect", image.ref).stdout)[0]["Config"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.revision"] == git_commit()
    assert labels["parcae.requirements-lock.sha256"] == sha256_file(REPO / "docker" / "requirements.lock")
    assert labels["org.opencontainers.image.base.name"] == image.base
    assert image.ref.split(":")[1] == git_commit()[:7] + ("-dirty" if git_commit().endswith("-dirty") else "")
    assert config["User"] == "parcae" and config["Entrypoint"] == ["parcae-runner"]

    facts = json.loads(
        in_image(
            image,
            "import json, os, importlib.metadata as m, torch, parcae_runner;"
            "print(json.dumps({'torch': torch.__file__, 'pkg': parcae_runner.__file__, 'uid': os.getuid(),"
            " 'direct_url': json.loads(m.distribution('parcae-runner').read_text('direct_url.json')),"
            " 'info': json.load(open(os.environ['PARCAE_IMAGE_INFO']))}))",
        )
    )
    # torch is the base's (its system site-packages), the package a regular install in the image's venv
    assert facts["torch"].startswith("/usr/local/lib/python3.11/dist-packages/torch/")
    assert facts["pkg"].startswith("/opt/parcae/lib/python3.11/site-packages/parcae_runner/")
    assert not facts["direct_url"].get("dir_info", {}).get("editable")
    assert facts["uid"] != 0
    assert facts["info"]["revision"] == git_commit() and facts["info"]["base_image"] == image.base
    # every requirement is met; the stand-in's CPU torch has no triton (the NGC base has it)
    check = docker("run", "--rm", "--entrypoint", "python", image.ref, "-m", "pip", "check", check=False)
    problems = [line for line in check.stdout.splitlines() if line.strip()]
    assert problems in ([], ["parcae-runner 0.1.0 requires triton, which is not installed."]), check.stdout


def test_train_in_the_image_writes_a_run_directory_owned_by_the_caller(image, tmp_path):
    """`docker run --user $(id -u):$(id -g) -v results ... train ...` as an unprivileged uid the image does not know."""
    uid = gid = 4242
    results, cache = tmp_path / "results", tmp_path / "cache"
    for d in (results, cache):
        d.mkdir()
        os.chown(d, uid, gid)
    cmd = [
        "run",
        "--rm",
        "--init",
        "--user",
        f"{uid}:{gid}",
        "-v",
        f"{results}:/workspace/results",
        "-v",
        f"{cache}:/workspace/.cache",
        image.ref,
        "train",
        "arch=pythia",
        "size=debug",
        "train.max_steps=20",
        "data.vocab_size=512",
        "data.seq_len=64",
        "train.progress=false",
    ]
    out = docker(*cmd, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-4000:]
    run_dir = results / "single" / "pythia-debug-s0"
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "done" and run["step"] == 20 and run["attempts"] == 1
    for f in (
        "config.yaml",
        "metrics.jsonl",
        "emissions.csv",
        "card.md",
        "checkpoints/checkpoint-20/model.safetensors",
    ):
        assert (run_dir / f).is_file(), f
    assert list(run_dir.glob("wandb/offline-run-*"))
    assert run["hardware"]["container"]["build"]["revision"] == git_commit()
    owners = {(p.lstat().st_uid, p.lstat().st_gid) for p in [results, *results.rglob("*")]}
    assert owners == {(uid, gid)}, owners
    assert all(p.lstat().st_uid == uid for p in Path(cache).rglob("*"))


def test_interactive_shell_runs_as_the_caller_with_the_key_by_name(image, tmp_path):
    script = REPO / "docker" / "launch_interactive.sh"
    text = "\n".join(line for line in script.read_text().splitlines() if not line.lstrip().startswith("#"))
    assert "--privileged" not in text and not re.search(r"\b(pkill|killall|kill)\b|docker (kill|rm|stop)", text)
    key = "fake-interactive-key-0123456789"
    env = {
        **os.environ,
        "IMAGE": image.ref,
        "RESULTS_DIR": str(tmp_path / "results"),
        "DATA_DIR": str(tmp_path / "data"),
        "WANDB_API_KEY": key,
        "GPUS": "none",
    }
    code = (
        "import hashlib, json, os, pathlib; pathlib.Path('results/made-inside').touch();"
        "print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(), 'cwd': os.getcwd(),"
        " 'configs': os.environ['PARCAE_CONFIG_DIR'],"
        " 'key': hashlib.sha256(os.environ['WANDB_API_KEY'].encode()).hexdigest()}))"
    )
    out = subprocess.run(
        [str(script), "python", "-c", code], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-3000:]
    inside = json.loads(out.stdout.strip().splitlines()[-1])
    assert (inside["uid"], inside["gid"]) == (os.getuid(), os.getgid())
    assert inside["cwd"] == str(REPO) and inside["configs"] == str(REPO / "launch_configs")
    assert inside["key"] == hashlib.sha256(key.encode()).hexdigest()
    made = tmp_path / "results" / "made-inside"
    assert made.is_file() and made.stat().st_uid == os.getuid()
