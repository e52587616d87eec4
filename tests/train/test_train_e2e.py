"""A real training run end to end: learning, energy, wandb offline records, the run directory."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.torch import load_file

from parcae_runner.config import compose_run_config
from parcae_runner.data import load_prepared
from parcae_runner.runs.wandb_offline import find_run_files, read_offline_run
from parcae_runner.train.runner import train
from tests.conftest import debug_overrides


def unigram_entropy_nats(tokens: np.ndarray) -> float:
    counts = np.bincount(tokens.astype(np.int64))
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_cache):
    results = tmp_path_factory.mktemp("results")
    cfg = compose_run_config(
        [
            *debug_overrides(data_cache, results),
            "logger=offline",
            "train.max_steps=300",
            "train.val_interval=100",
            "train.val_batches=16",
            "logger.measure_power_secs=1",
        ]
    )
    return cfg, train(cfg)


@pytest.mark.slow
def test_debug_pythia_beats_unigram_entropy(trained):
    _, run_dir = trained
    run = run_dir.read_run()
    data = load_prepared(run["data"]["dir"])
    entropy = unigram_entropy_nats(np.asarray(data.val))
    # a model that learned nothing beyond token frequencies sits at the unigram entropy
    assert run["final_val_loss"] < entropy - 0.5, (run["final_val_loss"], entropy)
    assert run["status"] == "done" and run["step"] == 300 and run["tokens"] == 300 * 16 * 64


@pytest.mark.slow
def test_run_directory_is_complete(trained):
    cfg, run_dir = trained
    for name in ("config.yaml", "run.json", "metrics.jsonl", "emissions.csv"):
        assert (run_dir.path / name).is_file(), name
    assert run_dir.read_config().train.max_steps == 300
    steps = sorted(int(p.name.split("-")[1]) for p in run_dir.checkpoints.glob("checkpoint-*"))
    assert steps == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300]
    final = load_file(run_dir.checkpoints / "checkpoint-300" / "model.safetensors")
    # pythia unties its head: the embedding and the head are two tensors, [vocab, d] each
    assert sorted(k for k in final if "embed" in k or "head" in k) == ["embed.weight", "lm_head.weight"]
    vocab = run_dir.read_run()["data"]["vocab_size"]
    assert final["embed.weight"].shape[0] == final["lm_head.weight"].shape[0] == vocab
    # only the two newest checkpoints keep the (large) optimizer state (keep_resume_state=2: a corrupt newest one
    # still leaves one to resume from)
    with_state = sorted(p.parent.name for p in run_dir.checkpoints.glob("checkpoint-*/trainer_state.ckpt"))
    assert with_state == ["checkpoint-256", "checkpoint-300"]
    assert not list(run_dir.checkpoints.glob(".tmp-*"))


@pytest.mark.slow
def test_energy_and_carbon_from_codecarbon(trained):
    _, run_dir = trained
    run = run_dir.read_run()
    assert run["energy_kwh"] > 0 and run["co2_kg"] > 0
    rows = (run_dir.path / "emissions.csv").read_text().splitlines()
    header = rows[0].split(",")
    last = dict(zip(header, rows[-1].split(","), strict=False))
    assert float(last["energy_consumed"]) == pytest.approx(run["energy_kwh"])
    assert run["carbon"]["source"] == "codecarbon" and run["carbon"]["intensity_kg_per_kwh"] > 0


@pytest.mark.slow
def test_wandb_offline_run_holds_logged_losses(trained):
    cfg, run_dir = trained
    (run_file,) = find_run_files(run_dir.path)
    wb = read_offline_run(run_file)
    assert wb["id"] == run_dir.read_run()["wandb_id"]
    assert wb["group"] == "single" and wb["job_type"] == "pythia" and "debug" in wb["tags"]
    assert wb["config"]["architecture"] == "pythia" and wb["config"]["seed"] == 0
    logged = {r["trainer/global_step"]: r["train/loss"] for r in wb["history"] if "train/loss" in r}
    written = {r["step"]: r["train/loss"] for r in run_dir.read_metrics() if "train/loss" in r}
    assert len(logged) == 30 and logged == written
    val = [r["val/loss"] for r in wb["history"] if "val/loss" in r]
    assert val[-1] == pytest.approx(run_dir.read_run()["final_val_loss"])


@pytest.mark.slow
def test_rerun_of_finished_run_does_nothing(trained):
    cfg, run_dir = trained
    before = (run_dir.path / "metrics.jsonl").read_text()
    train(cfg)
    assert (run_dir.path / "metrics.jsonl").read_text() == before
    assert run_dir.read_run()["attempts"] == 1
    assert json.loads((run_dir.path / "run.json").read_text())["status"] == "done"
