"""The distillation report: held-out KL against step per norm (mean over seeds, band = min..max over seeds), and a
table of final KL / top-1 agreement per run (``<sweep>/report/distill.png`` and ``distill.md``)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from parcae_runner.runs import RunDirectory, RunStatus


def _finished(root: Path) -> list[RunDirectory]:
    runs = [RunDirectory(p) for p in sorted(root.iterdir()) if (p / "run.json").is_file()]
    return [rd for rd in runs if rd.read_run().status == RunStatus.DONE and rd.read_run().get("kind") == "distill"]


def collect(root: Path) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """norm -> run name -> [(step, val/kl)] for the finished distillation runs under ``root``."""
    curves: dict[str, dict[str, list[tuple[int, float]]]] = defaultdict(dict)
    for rd in _finished(root):
        config = rd.read_config()
        # a finished run has written its config
        assert config is not None
        norm = config["distill"]["norm"]
        curves[norm][rd.path.name] = [(r["step"], r["val/kl"]) for r in rd.read_metrics() if "val/kl" in r]
    return curves


def stage_boundary(root: Path) -> int | None:
    """The last stage-1 step of the runs under ``root`` (None without a stage 1 followed by a stage 2)."""
    for rd in _finished(root):
        records = rd.read_metrics()
        ends = [r["step"] for r in records if r.get("stage") == 1]
        if ends and any(r.get("stage") == 2 for r in records):
            return max(ends)
    return None


def write_report(root: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = collect(root)
    out = root / "report"
    out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    lines = ["| norm | run | KL start | KL final | reduction |", "|---|---|---|---|---|"]
    for norm, runs in sorted(curves.items()):
        steps = sorted(set.intersection(*(set(s for s, _ in c) for c in runs.values())))
        values = np.array([[dict(c)[s] for s in steps] for c in runs.values()])  # [seeds, steps]
        ax.plot(steps, values.mean(0), label=f"{norm} ({len(runs)} seeds)")
        ax.fill_between(steps, values.min(0), values.max(0), alpha=0.25)
        for name, c in runs.items():
            lines.append(
                f"| {norm} | {name} | {c[0][1]:.4f} | {c[-1][1]:.4f} | {c[0][1] / max(c[-1][1], 1e-12):.1f}x |"
            )
    boundary = stage_boundary(root)
    if boundary is not None:
        ax.axvline(boundary, color="grey", linestyle=":", label="stage 1 | stage 2")
    ax.set_yscale("log")
    ax.set_xlabel("step (stage 1, then stage 2)")
    ax.set_ylabel("held-out KL(teacher || student)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "distill.png", dpi=120)
    plt.close(fig)
    text = "# Distillation: held-out KL by norm\n\n![KL against step](distill.png)\n\n" + "\n".join(lines) + "\n"
    (out / "distill.md").write_text(text)
    return out
