"""`parcae-runner eval` and evaluation during training (lm-eval's own CLI: test_lm_eval_cli.py)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from parcae_runner.analysis.collect import collect
from parcae_runner.analysis.report import build_report
from parcae_runner.config import compose_run_config
from parcae_runner.runs import list_checkpoints
from parcae_runner.train.runner import train
from tests.eval.conftest import STEPS, eval_overrides

# each test evaluates a trained run or trains one (10 to 45 s each on a busy 2-core box)
pytestmark = pytest.mark.slow


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "parcae_runner.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _tree_digest(root: Path) -> dict[str, str]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def evaluated(trained_run):
    out = _cli("eval", str(trained_run), "--all-checkpoints", "--tasks", "bpb,lambada_embedded", "--limit", "60")
    assert out.returncode == 0, out.stderr[-3000:]
    return trained_run


def test_all_checkpoints_give_curves_in_collect_and_report(evaluated):
    steps = [s for s, _ in list_checkpoints(evaluated / "checkpoints")]
    assert steps == [0, 1, 2, 4, 8, 16, 32, STEPS]
    for step in steps:
        for task in ("bpb", "lambada_embedded"):
            record = json.loads((evaluated / "eval" / f"checkpoint-{step}" / f"{task}.json").read_text())
            assert record["step"] == step and record["task"] == task
    lamb = json.loads((evaluated / "eval" / f"checkpoint-{STEPS}" / "lambada_embedded.json").read_text())
    assert 0.0 <= lamb["metrics"]["acc"] <= 1.0 and lamb["metrics"]["perplexity"] > 1
    assert lamb["samples"]["effective"] == 60

    summary = json.loads((evaluated / "run.json").read_text())["eval"]
    assert sorted(summary, key=lambda k: int(k.split("-")[1])) == [f"checkpoint-{s}" for s in steps]

    df = collect(evaluated.parent)
    rows = df[df["run"] == evaluated.name].set_index("step")
    for col in ("eval/bpb/bpb", "eval/lambada_embedded/acc", "eval/lambada_embedded/perplexity"):
        assert rows.loc[steps, col].notna().all(), col
    # the model learns: bits per byte fall from the random init to the end
    assert rows.loc[STEPS, "eval/bpb/bpb"] < rows.loc[0, "eval/bpb/bpb"] - 0.5

    index = build_report(evaluated.parent, df)
    html = index.read_text()
    assert "eval/lambada_embedded/acc" in html and "eval/bpb/bpb" in html


def test_bpb_equals_the_training_validation_bpb(evaluated):
    metrics = [json.loads(line) for line in (evaluated / "metrics.jsonl").read_text().splitlines()]
    final_val = [m["val/bpb"] for m in metrics if m.get("step") == STEPS and "val/bpb" in m][-1]
    ours = json.loads((evaluated / "eval" / f"checkpoint-{STEPS}" / "bpb.json").read_text())["metrics"]["bpb"]
    assert abs(ours - final_val) / final_val < 0.01
    assert ours == pytest.approx(final_val, rel=1e-6)  # same chunks, same computation

    # the whole held-out split gives a nearby number on many more tokens
    out = _cli("eval", str(evaluated), "--tasks", "bpb", "--bpb-chunks", "all")
    assert out.returncode == 0, out.stderr[-2000:]
    whole = json.loads((evaluated / "eval" / f"checkpoint-{STEPS}" / "bpb.json").read_text())
    assert whole["chunks"] == "all" and whole["tokens"] > 4 * 8 * 64
    assert abs(whole["metrics"]["bpb"] - final_val) / final_val < 0.1  # 32 chunks vs all of them


def test_bad_input_exits_2_and_changes_nothing(evaluated, tmp_path):
    before = _tree_digest(evaluated)
    empty_hf = {"HF_HOME": str(tmp_path / "hf-home")}
    cases = [
        (["--tasks", "lambada_embeded"], "unknown task; did you mean lambada_embedded"),
        (["--tasks", "bpb", "--checkpoint", "3"], "no such checkpoint"),
        (["--tasks", "hellaswag"], "--download"),  # lm-eval knows it; its data is not here
        (["--tasks", "bpb", "--bpb-chunks", "some"], "--bpb-chunks=some"),
        (["--tasks", "bpb", "--recurrence", "2"], "only looped models"),
        (["--tasks", "bpb", "--checkpoint", "4", "--all-checkpoints"], "not both"),
    ]
    for args, message in cases:
        out = _cli("eval", str(evaluated), *args, env=empty_hf)
        assert out.returncode == 2, (args, out.stderr[-2000:])
        assert message in out.stderr, (args, out.stderr[-2000:])
    out = _cli("eval", str(tmp_path), "--tasks", "bpb")
    assert out.returncode == 2 and "not a run directory" in out.stderr
    assert _tree_digest(evaluated) == before


@pytest.mark.slow
def test_evaluation_during_training_leaves_training_unchanged(data_cache, tmp_path):
    # parcae draws a random depth every step while training: an evaluation that consumed or reseeded the random
    # streams training uses would change the depths drawn after it, and the weights with them
    looped = {"arch": "parcae", "train.max_steps": "16"}
    plain = train(compose_run_config(eval_overrides(data_cache, tmp_path / "plain", **looped)))
    with_eval = train(
        compose_run_config(
            eval_overrides(
                data_cache,
                tmp_path / "eval",
                **looped,
                **{"train.eval.tasks": "[bpb,lambada_embedded]", "train.eval.every": "2"},
            )
        )
    )
    # schedule 0, 1, 2, 4, 8, 16 -> every 2nd: 0, 2, 8, and the last
    evals = sorted(int(p.name.split("-")[1]) for p in (with_eval.path / "eval").iterdir())
    assert evals == [0, 2, 8, 16]
    logged = [json.loads(line) for line in (with_eval.path / "metrics.jsonl").read_text().splitlines()]
    assert sorted(m["step"] for m in logged if "eval/lambada_embedded/acc" in m) == evals
    from safetensors.torch import load_file

    # tensors, not file bytes: safetensors orders the header of tied tensors by set iteration (hash-seeded)
    for name in ("checkpoints/checkpoint-16/model.safetensors", "checkpoints/checkpoint-8/model.safetensors"):
        ours, theirs = load_file(plain.path / name), load_file(with_eval.path / name)
        assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours), name


def test_bad_training_eval_tasks_stop_before_the_run_starts(data_cache, tmp_path):
    out = _cli("show", *eval_overrides(data_cache, tmp_path, **{"train.eval.tasks": "[lambada_embeded]"}))
    assert out.returncode == 2 and "train.eval.tasks=lambada_embeded" in out.stderr, out.stderr[-2000:]
    out = _cli(
        "train",
        *eval_overrides(data_cache, tmp_path, **{"train.eval.tasks": "[hellaswag]"}),
        env={"HF_HOME": str(tmp_path / "hf-home")},
    )
    assert out.returncode == 2 and "--tasks=hellaswag" in out.stderr and "--download" in out.stderr, out.stderr[-2000:]
    assert not (tmp_path / "single").exists()  # no run directory was made
