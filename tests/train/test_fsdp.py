"""Sharded training (``train.strategy=fsdp``, FSDP2 over gloo on the CPU) against one process: the same losses at
every logged step, the same final weights and the same global batch digest, for every kind of model the studies
train, with gradient accumulation, AdamW and Muon (Muon on the hidden matrices, AdamW on the rest)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from parcae_runner.config import compose_run_config
from parcae_runner.runs import load_model
from parcae_runner.train.runner import train

pytestmark = pytest.mark.multiprocess

STEPS = 20
CASES = {
    # activation checkpointing composes with the FSDP units (each block's forward recomputed inside its unit)
    "pythia-adamw-checkpointed": ["arch=pythia", "train.activation_checkpointing=true"],
    "pythia-muon": ["arch=pythia", "train.optimizer=muon"],
    "mamba-muon": ["arch=mamba", "train.optimizer=muon"],
    "rwkv7-muon": ["arch=rwkv7", "train.optimizer=muon"],
    # the looped core: each core block is one FSDP unit run R times per forward (R = 4 here to keep it short)
    "parcae-muon": ["arch=parcae", "arch.mean_recurrence=4", "arch.mean_backprop_depth=2", "train.optimizer=muon"],
    "llama-muon": ["arch=llama", "train.optimizer=muon"],
    "backpack-adamw": ["arch=backpack"],
}


def run_overrides(fast_overrides: list[str], case: list[str], results: Path) -> list[str]:
    base = [o for o in fast_overrides if not o.startswith(("arch=", "results_dir="))]
    return [
        *base,
        *case,
        f"results_dir={results}",
        "run_name=r",
        f"train.max_steps={STEPS}",
        "train.batch_size=8",
        "train.micro_batch_size=2",  # one process accumulates 4 micro batches, each of two ranks 2
        "train.val_interval=10",
        "train.val_batches=3",  # 6 chunks: 3 per rank, the second micro batch of each rank a short one
        "train.log_interval=1",
        "train.checkpoint.schedule=none",  # the final one only (train.checkpoint.save_last)
        "train.accelerator=cpu",
    ]


def losses(run: Path) -> dict[tuple[int, str], float]:
    out = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        for key in ("train/loss", "val/loss"):
            if key in record:
                out[(record["step"], key)] = record[key]
    return out


def batch_digest(run: Path) -> str:
    return json.loads((run / "run.json").read_text())["attempt_history"][-1]["batch_digest"]


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_two_ranks_sharded_match_one_process(case, fast_overrides, tmp_path):
    one = train(
        compose_run_config([*run_overrides(fast_overrides, CASES[case], tmp_path / "one"), "train.strategy=ddp"])
    )
    sharded = tmp_path / "two" / "single" / "r"
    overrides = run_overrides(fast_overrides, CASES[case], tmp_path / "two")
    done = subprocess.run(
        [sys.executable, "-m", "parcae_runner.cli", "train", *overrides, "train.strategy=fsdp", "train.devices=2"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "fsdp: " in done.stderr + done.stdout, "the run was sharded"
    assert (sharded / "checkpoints" / f"checkpoint-{STEPS}" / "model").is_dir(), "sharded weights (DCP)"

    expected, got = losses(one.path), losses(sharded)
    assert set(got) == set(expected) and len(expected) >= STEPS + 2
    worst = max(abs(expected[k] - got[k]) for k in expected)
    assert worst < 1e-5, f"largest loss difference {worst:.2e}"
    assert batch_digest(sharded) == batch_digest(one.path)

    # the weights themselves: AdamW's normalisation turns the rounding of a different reduction order in near-zero
    # gradients (biases) into differences of up to about 1e-4 after 20 steps; the losses above are the contract
    reference, consolidated = load_model(one.path).state_dict(), load_model(sharded).state_dict()
    assert reference.keys() == consolidated.keys()
    for name, tensor in reference.items():
        assert torch.allclose(consolidated[name], tensor, atol=5e-4, rtol=0), name


def _train_command(overrides: list[str], *extra: str) -> list[str]:
    return [sys.executable, "-m", "parcae_runner.cli", "train", *overrides, *extra]


def _kill_after_checkpoint(overrides: list[str], run: Path, step: int) -> None:
    """Start the 2-rank run in its own process group and SIGKILL the whole group once ``checkpoint-<step>`` exists."""
    proc = subprocess.Popen(
        _train_command(overrides, "train.devices=2"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    marker = run / "checkpoints" / f"checkpoint-{step}" / "meta.json"
    deadline = time.time() + 300
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
        assert time.time() < deadline, f"no checkpoint-{step} within 300 s"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    return load_model(run).state_dict()


@pytest.mark.slow
def test_elastic_resume_from_two_ranks_to_one_and_to_four(fast_overrides, tmp_path):
    """A 2-rank run killed after its step-10 checkpoint resumes on 1 rank and, separately, on 4; both end where the
    uninterrupted 2-rank run ends: weights within 1e-5, the same global batch digest.

    LLaMA, whose parameters all have a gradient: a model with attention key biases (Pythia) ends with those within
    about 3e-5 instead, every other weight within 1.2e-7. A key bias adds the same ``q . b`` to every logit of a
    query, which softmax cancels, so its true gradient is zero and AdamW (``m / (sqrt(v) + eps)``) turns the rounding
    noise it gets into steps of about 1% of the learning rate; how that noise rounds depends on the order of
    the gradient reduction, which changes with the number of ranks."""

    def overrides(results: Path) -> list[str]:
        base = [o for o in fast_overrides if not o.startswith(("results_dir=", "arch="))]
        return [
            *base,
            "arch=llama",
            f"results_dir={results}",
            "run_name=r",
            f"train.max_steps={STEPS}",
            "train.batch_size=16",
            "train.micro_batch_size=2",  # 8 micro batches per step on 1 rank, 4 on each of 2, 2 on each of 4
            "train.val_interval=5",
            "train.log_interval=1",
            "train.checkpoint.schedule=list",
            "train.checkpoint.steps=[10]",
            "train.strategy=fsdp",
            "train.accelerator=cpu",
        ]

    reference = tmp_path / "reference"
    done = subprocess.run(_train_command(overrides(reference), "train.devices=2"), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    killed = tmp_path / "killed"
    _kill_after_checkpoint(overrides(killed), killed / "single" / "r", 10)
    assert json.loads((killed / "single" / "r" / "run.json").read_text())["status"] == "running"
    shutil.copytree(killed, tmp_path / "killed-4")

    expected = final_weights(reference / "single" / "r")
    for results, ranks in ((killed, 1), (tmp_path / "killed-4", 4)):
        done = subprocess.run(
            _train_command(overrides(results), f"train.devices={ranks}"), capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-3000:]
        run = results / "single" / "r"
        record = json.loads((run / "run.json").read_text())
        assert record["status"] == "done" and record["attempt_history"][-1]["start_step"] == 10, ranks
        assert batch_digest(run) == batch_digest(reference / "single" / "r"), ranks
        got = final_weights(run)
        worst = max(float((got[name] - tensor).abs().max()) for name, tensor in expected.items())
        assert worst < 1e-5, f"{ranks} rank(s): largest weight difference {worst:.2e}"
        assert losses(run)[(STEPS, "val/loss")] == pytest.approx(
            losses(reference / "single" / "r")[(STEPS, "val/loss")], abs=1e-5
        )
