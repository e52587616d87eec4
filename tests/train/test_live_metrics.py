"""What a researcher watches, live and afterwards: FLOP/s, MFU, memory, gradient norm, lr, skipped steps, energy and
CO2 at every log interval (metrics.jsonl and the offline wandb run alike); the run's summary in wandb; post-hoc
evaluation results in the same wandb run at the checkpoints' steps."""

from __future__ import annotations

import json
import math

import pytest
import torch

from parcae_runner.cli import main
from parcae_runner.config import compose_run_config
from parcae_runner.config.hardware import HARDWARE, device_peak_flops
from parcae_runner.runs import RunDirectory, list_checkpoints
from parcae_runner.runs.record import wandb_summary
from parcae_runner.runs.wandb_offline import find_run_files, read_offline_run
from parcae_runner.train.divergence import grad_norm
from parcae_runner.train.runner import train
from tests.conftest import debug_overrides

STEPS, LOG_INTERVAL = 150, 25
LIVE = (
    "train/flops_per_s",
    "train/flops",
    "train/peak_memory_gib",
    "train/grad_norm",
    "train/lr",
    "train/skipped_steps",
    "train/energy_kwh",
    "train/co2_kg",
)


def test_device_peak_names_the_gpu_or_falls_back_to_the_cluster_profile():
    assert device_peak_flops("cpu", "", "h100", "bf16-mixed") is None  # a CPU has no MFU
    assert device_peak_flops("cuda", "NVIDIA H100 80GB HBM3", "cpu", "bf16-mixed") == HARDWARE["h100"].peak_flops
    assert (
        device_peak_flops("cuda", "NVIDIA A100-SXM4-80GB", "cpu", "32-true") == HARDWARE["a100"].at("fp32").peak_flops
    )
    assert (
        device_peak_flops("cuda", "NVIDIA A100-SXM4-80GB", "cpu", "32-true", tf32=True)
        == HARDWARE["a100"].at("tf32").peak_flops
    )
    assert device_peak_flops("cuda", "Some Future GPU", "l40s", "bf16-mixed") == HARDWARE["l40s"].peak_flops
    assert device_peak_flops("cuda", "Some Future GPU", "cpu", "bf16-mixed") is None


def test_grad_norm_is_the_global_norm_before_clipping_and_nan_for_a_bad_gradient():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Linear(16, 4))
    model(torch.randn(3, 8)).pow(2).sum().backward()
    norm = grad_norm(model)
    expected = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1e-3)  # returns the norm before clipping
    assert float(norm) == pytest.approx(float(expected), rel=1e-6)
    model[0].weight.grad[0, 0] = float("inf")
    assert not math.isfinite(float(grad_norm(model)))
    assert grad_norm(torch.nn.Linear(2, 2)) is None  # no gradients yet


def test_wandb_summary_takes_run_json_fields_as_plain_values():
    run = {"status": "done", "final_val_loss": 3.5, "final_val_loss@R4": 3.4, "energy_kwh": 1e-4, "hardware": {}}
    assert wandb_summary(run) == {"status": "done", "final_val_loss": 3.5, "final_val_loss@R4": 3.4, "energy_kwh": 1e-4}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_cache) -> RunDirectory:
    results = tmp_path_factory.mktemp("results")
    cfg = compose_run_config(
        [
            *debug_overrides(data_cache, results),
            "logger=offline",
            f"train.max_steps={STEPS}",
            f"train.log_interval={LOG_INTERVAL}",
            "train.val_interval=75",
            "train.val_batches=1",
            "logger.measure_power_secs=1",
        ]
    )
    return train(cfg)


def _train_rows(records: list[dict]) -> list[dict]:
    return [r for r in records if "train/tokens" in r]


@pytest.mark.slow
def test_every_log_interval_holds_flops_memory_grad_norm_and_energy(run_dir):
    run = run_dir.read_run()
    rows = _train_rows(run_dir.read_metrics())
    assert [r["step"] for r in rows] == list(range(LOG_INTERVAL, STEPS + 1, LOG_INTERVAL))
    for r in rows:
        assert set(LIVE) <= set(r), set(LIVE) - set(r)
        assert "train/mfu" not in r  # a CPU has no peak to divide by
        assert r["train/flops_per_s"] == pytest.approx(r["train/tokens_per_s"] * run["flops_per_token"])
        assert r["train/flops"] == pytest.approx(r["train/tokens"] * run["flops_per_token"])
        assert r["train/peak_memory_gib"] > 0.05 and 0 < r["train/grad_norm"] < 100 and r["train/skipped_steps"] == 0
    energy = [r["train/energy_kwh"] for r in rows]
    assert energy == sorted(energy) and energy[-1] > 0 and rows[-1]["train/co2_kg"] > 0
    # the energy so far at the last interval is nearly all of the run's (what is left: the final validation)
    assert energy[-1] == pytest.approx(run["energy_kwh"], rel=0.10), (energy[-1], run["energy_kwh"])
    assert run["flops"] == pytest.approx(STEPS * run["tokens_per_step"] * run["flops_per_token"])
    assert run["gpu_hours"] == 0.0


@pytest.mark.slow
def test_offline_wandb_history_and_summary_hold_the_live_metrics_and_the_whole_run(run_dir):
    run = run_dir.read_run()
    (run_file,) = find_run_files(run_dir.path)
    wb = read_offline_run(run_file)
    logged = {r["trainer/global_step"]: r for r in _train_rows(wb["history"])}
    written = {r["step"]: r for r in _train_rows(run_dir.read_metrics())}
    assert sorted(logged) == sorted(written)
    for step, r in written.items():
        assert {k: logged[step][k] for k in LIVE} == {k: r[k] for k in LIVE}, step
    summary = wb["summary"]
    for key in ("final_val_loss", "best_val_loss", "final_val_bpb", "final_train_loss", "params", "tokens", "flops"):
        assert summary[key] == run[key], key
    for key in ("energy_kwh", "co2_kg", "gpu_hours", "attempts", "status"):
        assert summary[key] == run[key], key
    assert summary["status"] == "done" and summary["energy_kwh"] > 0


@pytest.mark.slow
def test_eval_logs_into_the_same_wandb_run_at_the_checkpoints_steps(run_dir):
    rc = main(["eval", str(run_dir.path), "--all-checkpoints", "--tasks", "bpb,lambada_embedded", "--limit", "4"])
    assert rc == 0
    run = run_dir.read_run()
    train_file, eval_file = find_run_files(run_dir.path)
    wb = read_offline_run(eval_file)
    assert wb["id"] == run["wandb_id"] == read_offline_run(train_file)["id"]
    rows = {r["trainer/global_step"]: r for r in wb["history"] if "eval/bpb/bpb" in r}
    steps = [s for s, _ in list_checkpoints(run_dir.checkpoints)]
    assert sorted(rows) == steps and len(steps) > 3
    for step in steps:
        on_disk = json.loads((run_dir.path / "eval" / f"checkpoint-{step}" / "bpb.json").read_text())["metrics"]
        assert rows[step]["eval/bpb/bpb"] == pytest.approx(on_disk["bpb"])
        assert "eval/lambada_embedded/acc" in rows[step]
    # the bpb of the last checkpoint is the training's final validation bpb (same chunks)
    assert rows[STEPS]["eval/bpb/bpb"] == pytest.approx(run["final_val_bpb"], rel=1e-5)
    summary = wb["summary"]
    assert summary["energy_kwh"] == run["energy_kwh"] and summary["co2_kg"] == run["co2_kg"]
    assert summary["final_val_loss"] == run["final_val_loss"] and summary["eval/bpb/bpb"] == rows[STEPS]["eval/bpb/bpb"]
