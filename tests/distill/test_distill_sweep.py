"""The demo sweep end to end at a few steps: the demo teacher, both norms, the KL report."""

from __future__ import annotations

from pathlib import Path

import pytest

from parcae_runner.cli import main
from parcae_runner.distill.report import collect, stage_boundary
from parcae_runner.distill.sweep import run_sweep
from parcae_runner.runs import open_run

pytest.importorskip("transformers")
pytest.importorskip("matplotlib")

SWEEP = Path(__file__).resolve().parents[2] / "sweeps" / "distill.yaml"


@pytest.mark.slow
def test_demo_sweep_runs_both_norms_and_draws_the_report(tmp_path, data_cache):
    extra = [
        f"results_dir={tmp_path}",
        f"data.cache_dir={data_cache}",
        "data.vocab_size=512",
        "data.seq_len=32",
        "demo_teacher_steps=30",
        "stage1_steps=4",
        "stage2_steps=4",
        "eval_every=2",
        "eval_batches=1",
        "batch_size=4",
        "kernel_impl=reference",
    ]
    root = run_sweep(SWEEP, "demo", extra)
    assert root == tmp_path / "distill-demo"
    assert (root / "teacher-demo" / "config.json").is_file()
    names = sorted(p.name for p in root.iterdir() if (p / "run.json").is_file())
    assert names == ["groupnorm-s0", "groupnorm-s1", "none-s0", "none-s1"]
    for name in names:
        _, cfg, run = open_run(root / name)
        assert run.status == "done" and run["metrics"]["kl_final"] < run["metrics"]["kl_start"]
    curves = collect(root)
    assert sorted(curves) == ["groupnorm", "none"] and all(len(runs) == 2 for runs in curves.values())
    assert [s for s, _ in curves["none"]["none-s0"]] == [0, 2, 4, 6, 8] and stage_boundary(root) == 4
    assert (root / "report" / "distill.png").stat().st_size > 1000
    table = (root / "report" / "distill.md").read_text()
    assert table.count("| groupnorm |") == 2 and table.count("| none |") == 2
    # `parcae-runner report` on a distillation sweep draws the same report
    (root / "report" / "distill.md").unlink()
    assert main(["report", str(root)]) == 0 and (root / "report" / "distill.md").read_text() == table
    # a second call finds every run done and only redraws the report
    before = (root / "none-s0" / "metrics.jsonl").read_text()
    run_sweep(SWEEP, "demo", extra)
    assert (root / "none-s0" / "metrics.jsonl").read_text() == before
