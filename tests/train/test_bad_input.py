"""Each bad input exits with code 2 and one message naming the key, the value and what is
allowed, before anything is trained; nothing already in the run directory is lost."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from parcae_runner.config import group_options


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "parcae_runner.cli", "train", *args], capture_output=True, text=True)


@pytest.fixture
def existing_run(fast_overrides) -> tuple[list[str], Path, dict[str, bytes]]:
    """A run directory with records in it, as a crashed or finished attempt would leave it."""
    results = Path(next(o for o in fast_overrides if o.startswith("results_dir=")).split("=", 1)[1])
    run_dir = results / "single" / "pythia-debug-s0"
    (run_dir / "checkpoints" / "checkpoint-7").mkdir(parents=True)
    files = {
        run_dir / "run.json": b'{"status": "failed", "attempts": 1}\n',
        run_dir / "metrics.jsonl": b'{"step": 5, "train/loss": 4.2}\n',
        run_dir / "checkpoints" / "checkpoint-7" / "meta.json": b'{"step": 7}\n',
    }
    for path, content in files.items():
        path.write_bytes(content)
    return fast_overrides, run_dir, files


CASES = [
    (["arch=gpt5"], "arch=gpt5", "choose one of: " + ", ".join(group_options("arch"))),
    (["size=13b"], "size=13b", "choose one of"),
    (["optimizer=lion"], "optimizer=lion", "not a config group or key"),
    (["train.max_stepz=10"], "train.max_stepz=10", "allowed keys of train: max_steps"),
    (["train.max_steps=-5"], "train.max_steps=-5", "must be a positive number"),
    (["train.batch_size=10", "train.micro_batch_size=4"], "train.batch_size=10", "multiple of train.micro_batch_size"),
    (["data=text_files", "data.path=/no/such/corpus"], "data.path=/no/such/corpus", "no such file or directory"),
    # a run that would see the corpus thousands of times: refused, with the numbers
    (["train.max_steps=100000"], "run pythia-debug-s0 would repeat its data", "above data.max_epochs=4"),
]


@pytest.mark.parametrize(("bad", "names", "allowed"), CASES, ids=[c[1] for c in CASES])
def test_bad_input_exits_2_with_message_and_loses_nothing(existing_run, bad, names, allowed):
    overrides, run_dir, files = existing_run
    result = run_cli(*overrides, *bad)
    assert result.returncode == 2, result.stderr[-2000:]
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("parcae-runner: error: ") and names in message and allowed in message
    assert "Traceback" not in result.stderr
    for path, content in files.items():
        assert path.read_bytes() == content
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoints", "metrics.jsonl", "run.json"]


def test_size_the_architecture_lacks(fast_overrides, monkeypatch):
    from parcae_runner.config import ConfigErrors, compose_run_config
    from parcae_runner.config.validate import validate_run_config
    from parcae_runner.models import ARCHITECTURES

    cfg = compose_run_config(fast_overrides)
    monkeypatch.setitem(ARCHITECTURES["pythia"].sizes, "debug", None)
    monkeypatch.delitem(ARCHITECTURES["pythia"].sizes, "debug")
    with pytest.raises(ConfigErrors, match=r"size=debug: pythia has sizes: 14m"):
        validate_run_config(cfg)


def test_resuming_with_another_config_is_refused(fast_overrides):
    first = run_cli(*fast_overrides, "train.max_steps=3", "train.val_batches=0")
    assert first.returncode == 0, first.stderr[-2000:]
    second = run_cli(*fast_overrides, "train.max_steps=3", "train.val_batches=0", "train.lr=0.5")
    assert second.returncode == 2
    assert "already holds a run with a different config (differs in: train.lr)" in second.stderr
