"""`CONTAINER=docker sbatch launch_job.slurm` on the local Slurm cluster: the run trains in the image, is
checkpointed and requeued on the time-limit signal (the job script requeues, outside the container), resumes in
the image and finishes; a WANDB_API_KEY set for it reaches the container through the environment only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from parcae_runner.launch.container import JOB_LABEL
from parcae_runner.runs import RunDirectory
from tests.launch.test_sweeps import wait_for

from .conftest import REPO, docker

pytestmark = pytest.mark.slow


def running_containers(job: str) -> list[dict]:
    ids = docker("ps", "-q", "--filter", f"label={JOB_LABEL}={job}").stdout.split()
    return json.loads(docker("inspect", *ids).stdout) if ids else []


def command_lines() -> list[bytes]:
    lines = []
    for p in Path("/proc").iterdir():
        try:
            lines.append((p / "cmdline").read_bytes())
        except OSError:
            continue
    return lines


def files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and needle in p.read_bytes()]


def test_sbatch_in_docker_trains_requeues_and_keeps_the_key_out(slurm_cluster, image, tmp_path):
    key = f"fake-wandb-key-{uuid.uuid4().hex}"
    overrides = [
        f"results_dir={tmp_path / 'results'}",
        f"data.cache_dir={tmp_path / 'data'}",
        "data.vocab_size=512",
        "data.seq_len=32",
        "train.batch_size=8",
        "train.micro_batch_size=8",
        "train.val_interval=10",
        "train.val_batches=2",
        "train.log_interval=5",
        "train.max_steps=600",
        "logger.wandb=true",
        "logger.measure_power_secs=1",
        "cluster=slurm_local",
        "run_name=in-docker",
    ]
    env = {
        **os.environ,
        "CONTAINER": "docker",
        "IMAGE": image.ref,
        "CONFIG": "launch_configs/pythia-debug.yaml",
        "PYTHON": sys.executable,
        "WANDB_API_KEY": key,
        "WANDB_MODE": "offline",
    }
    out = subprocess.run(
        ["sbatch", "--parsable", "launch_job.slurm", *overrides], cwd=REPO, capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr
    job = out.stdout.strip().split(";")[0]
    run_dir = RunDirectory(tmp_path / "results" / "single" / "in-docker")
    batch_log = REPO / f"slurm-parcae-{job}.out"

    in_container = "step 40 in the container"
    wait_for(lambda: any(r.get("step", 0) >= 40 for r in run_dir.read_metrics()), 300, in_container, poll=0.1)
    (box,) = running_containers(job)
    assert box["Image"] == image.id  # the digest the job script resolved, not a tag that may move
    assert f"WANDB_API_KEY={key}" in box["Config"]["Env"]  # it did reach the run, by the environment
    assert not [c for c in command_lines() if key.encode() in c]  # and on no command line
    subprocess.run(["scancel", "--signal=USR1", job], check=True)
    wait_for(lambda: run_dir.read_run().get("attempts") == 2, 240, "the requeued attempt to start")
    wait_for(lambda: run_dir.read_run().get("status") == "done", 300, "the requeued run to finish")
    wait_for(lambda: not running_containers(job), 60, "the container to be removed")

    run = run_dir.read_run()
    history = run["attempt_history"]
    assert [h["status"] for h in history] == ["requeued", "done"]
    assert history[1]["start_step"] == history[0]["end_step"] > 0 and run["step"] == 600
    assert run["hardware"]["container"] == {
        "mode": "docker",
        "image": image.ref,
        "digest": image.id,
        "build": json.loads(docker("run", "--rm", "--entrypoint", "cat", image.ref, "/opt/parcae/image.json").stdout),
    }
    assert run["hardware"]["slurm_job_id"] == job
    step_log = (run_dir.path / "logs" / f"slurm-{job}.out").read_text()
    assert step_log.count("the job script requeues Slurm job") == 1
    assert step_log.count("requeued Slurm job") == 1  # by the job script, outside: no scontrol in the image
    assert "scontrol" not in step_log
    for f in ("config.yaml", "metrics.jsonl", "emissions.csv", "checkpoints/checkpoint-600/model.safetensors"):
        assert (run_dir.path / f).is_file(), f
    assert len(list(run_dir.path.glob("wandb/offline-run-*"))) == 2

    # the key is nowhere: run directory, logs, the image's layers and history
    needle = key.encode()
    assert batch_log.is_file() and needle not in batch_log.read_bytes()
    assert not files_containing(tmp_path, needle)
    history_text = docker("history", "--no-trunc", image.ref).stdout + docker("image", "inspect", image.ref).stdout
    assert key not in history_text
    save = subprocess.run(f"docker save {image.ref} | grep -c -F -a {key}", shell=True, capture_output=True, text=True)
    assert save.stdout.strip() == "0", "the key is in the image's layers"
    batch_log.unlink()
