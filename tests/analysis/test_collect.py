"""collect: real run directories into one table, equal to the runs' own records, incrementally."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from parcae_runner.analysis import collect as collect_mod
from parcae_runner.analysis.collect import collect
from parcae_runner.config import compose_run_config
from parcae_runner.models import build_model
from parcae_runner.models.flops import skip_meta_init, training_flops_per_token
from parcae_runner.train.runner import train
from tests.conftest import as_overrides

SWEEP = "collect-test"
# two points of a grid over seed and learning rate
POINTS = ({"seed": 0, "train.lr": 0.001}, {"seed": 1, "train.lr": 0.002})
# 10 steps, evaluated at 0, 5 and 10; small batches and one checkpoint, for speed
RUN_OVERRIDES = as_overrides(
    {
        "sweep": SWEEP,
        "train.max_steps": 10,
        "train.val_interval": 5,
        "train.log_interval": 5,
        "train.val_batches": 2,
        "train.batch_size": 4,
        "train.micro_batch_size": 4,
        "train.checkpoint.schedule": "list",
    }
)


@pytest.fixture(scope="module")
def _trained_store() -> dict:
    """Holds the sweep trained by the first test that asks, so the runs are trained once per module."""
    return {}


@pytest.fixture
def sweep(_trained_store, fast_overrides, tmp_path) -> Path:
    """A fresh copy (mtimes kept) of a sweep folder with two real 10-step runs and a sweep.json."""
    if "root" not in _trained_store:
        for point in POINTS:
            cfg = compose_run_config(fast_overrides + RUN_OVERRIDES + as_overrides(point))
            root = train(cfg).path.parent
        (root / "sweep.json").write_text(
            json.dumps({"name": SWEEP, "params": {"seed": "0,1", "train.lr": "0.001,0.002"}})
        )
        _trained_store["root"] = root
        _trained_store["cfg"] = cfg
    copy = tmp_path / "copy" / SWEEP
    shutil.copytree(_trained_store["root"], copy)  # copy2: mtimes are kept, as for an untouched sweep
    return copy


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_rows_equal_the_runs_own_records(sweep, _trained_store):
    df = collect(sweep)
    assert sorted(df["run"].unique()) == ["pythia-debug-s0", "pythia-debug-s1"]
    cfg = _trained_store["cfg"]
    for point, (name, rows) in zip(POINTS, df.groupby("run"), strict=True):
        run_dir = sweep / name
        run = json.loads((run_dir / "run.json").read_text())
        records = metrics(run_dir)
        val = {r["step"]: r for r in records if "val/loss" in r}
        train_loss = {r["step"]: r["train/loss"] for r in records if "train/loss" in r}
        assert list(rows["step"]) == [0, 5, 10] == sorted(val)
        assert list(rows["is_final"]) == [False, False, True]
        assert list(rows["val_loss"]) == [val[s]["val/loss"] for s in (0, 5, 10)]
        assert list(rows["val_bpb"]) == [val[s]["val/bpb"] for s in (0, 5, 10)]
        assert math.isnan(rows["train_loss"].iloc[0])  # no train record at or before step 0
        assert list(rows["train_loss"].iloc[1:]) == [train_loss[5], train_loss[10]]
        assert list(rows["tokens"]) == [s * run["tokens_per_step"] for s in (0, 5, 10)]
        model = build_model(cfg.arch, "debug", run["data"]["vocab_size"])  # on CPU: real init, same shapes
        fpt = training_flops_per_token(model, cfg.data.seq_len)
        assert list(rows["flops"]) == pytest.approx([t * fpt for t in rows["tokens"]])
        final = rows.iloc[-1]
        assert final["val_loss"] == run["final_val_loss"] and final["step"] == run["step"]
        for key in ("params", "params_non_embedding", "seed", "data_seed", "arch", "size", "status", "attempts"):
            assert (rows[key] == run[key]).all(), key
        assert (rows["sweep"] == SWEEP).all() and (rows["hardware"] == run["hardware"]["device_name"]).all()
        assert rows["cpu_hours"].iloc[0] == pytest.approx(run["duration_s"] * run["hardware"]["devices"] / 3600)
        assert (rows["gpu_hours"] == 0.0).all() and (rows["energy_kwh"] == run["energy_kwh"]).all()
        # swept keys: their own columns, values from the run's config.yaml
        assert (rows["train.lr"] == point["train.lr"]).all() and (rows["seed"] == point["seed"]).all()
    assert list(df.columns[:10]) == [*collect_mod.BASE_COLUMNS, "train.lr", "step"]


@pytest.mark.slow
def test_writes_parquet_and_csv(sweep):
    df = collect(sweep)
    pd.testing.assert_frame_equal(pd.read_parquet(sweep / "results.parquet"), df)
    csv = pd.read_csv(sweep / "results.csv")
    assert list(csv.columns) == list(df.columns) and len(csv) == len(df)
    assert list(csv["val_loss"]) == pytest.approx(list(df["val_loss"]))


@pytest.mark.slow
def test_incremental_reads_only_changed_runs(sweep, monkeypatch):
    reads: list[str] = []
    real = collect_mod.read_run_rows
    monkeypatch.setattr(
        collect_mod, "read_run_rows", lambda path, swept=(): reads.append(path.name) or real(path, swept)
    )

    first = collect(sweep)
    assert sorted(reads) == ["pythia-debug-s0", "pythia-debug-s1"]
    reads.clear()
    second = collect(sweep)
    assert reads == []  # nothing changed: no run is read again
    pd.testing.assert_frame_equal(second, first)

    # one run gains an evaluation record: only it is read again, and the eval column appears
    with (sweep / "pythia-debug-s1" / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 10, "eval/lambada/acc": 0.25}) + "\n")
    third = collect(sweep)
    assert reads == ["pythia-debug-s1"]
    s1 = third[third["run"] == "pythia-debug-s1"].set_index("step")["eval/lambada/acc"]
    assert s1[10] == 0.25 and s1[[0, 5]].isna().all()
    assert third[third["run"] == "pythia-debug-s0"]["eval/lambada/acc"].isna().all()
    # the other columns are unchanged
    pd.testing.assert_frame_equal(third.drop(columns="eval/lambada/acc"), first)

    # a run that disappears is dropped, without reading the other
    reads.clear()
    shutil.rmtree(sweep / "pythia-debug-s0")
    fourth = collect(sweep)
    assert reads == [] and list(fourth["run"].unique()) == ["pythia-debug-s1"]
    assert list(pd.read_parquet(sweep / "results.parquet")["run"].unique()) == ["pythia-debug-s1"]


@pytest.mark.slow
def test_folder_without_sweep_json(sweep):
    (sweep / "sweep.json").unlink()
    df = collect(sweep)
    assert "train.lr" not in df.columns and len(df) == 6 and df["run"].nunique() == 2


def test_unfinished_run_ends_at_its_last_record(tmp_path):
    """A resumed attempt in progress truncated metrics.jsonl to its resume step: that is where it is,
    not the previous attempt's end step still in run.json."""
    run_dir = tmp_path / "sweep" / "r"
    run_dir.mkdir(parents=True)
    run = {"status": "running", "step": 100, "tokens_per_step": 8, "arch": "pythia", "size": "debug"}
    (run_dir / "run.json").write_text(json.dumps(run))
    lines = [{"step": 0, "val/loss": 5.0}, {"step": 50, "val/loss": 4.0}, {"step": 60, "train/loss": 3.9}]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 70, "tr')
    df = collect(tmp_path / "sweep")
    assert list(df["step"]) == [0, 50, 60] and list(df["is_final"]) == [False, False, True]
    assert df["train_loss"].iloc[-1] == 3.9 and math.isnan(df["val_loss"].iloc[-1])
    assert df["flops"].isna().all()  # no config.yaml: no model to count FLOPs of


def test_meta_flops_match_a_real_model():
    """FLOPs/token from the meta-device build (initialisation skipped) equal a real model's."""
    for arch in ("pythia", "mamba", "rwkv4"):
        real = training_flops_per_token(build_model({"name": arch}, "debug", 512), 64)
        assert collect_mod.flops_per_token({"name": arch}, "debug", 512, 64) == real
    with torch.device("meta"), skip_meta_init():
        assert build_model({"name": "pythia"}, "debug", 512).lm_head.weight.is_meta


def test_flops_of_an_unknown_architecture_are_nan_with_one_warning():
    from parcae_runner.analysis.collect import flops_per_token

    arch = {"name": "retired-arch", "width": 3}
    with pytest.warns(UserWarning, match="no FLOPs for arch=.*retired-arch.* size=debug") as caught:
        assert math.isnan(flops_per_token(arch, "debug", 512, 64))
        assert math.isnan(flops_per_token(arch, "debug", 512, 64))
    assert len([w for w in caught if "no FLOPs" in str(w.message)]) == 1
    # a known one is the models layer's number, the same on every call (cached there)
    pythia = flops_per_token({"name": "pythia"}, "debug", 512, 64)
    assert pythia > 0 and flops_per_token({"name": "pythia"}, "debug", 512, 64) == pythia
