"""What every benchmark script shares: writing its JSON report where ``--out`` says, and saying so."""

from __future__ import annotations

import json
from pathlib import Path


def write_report(out: Path, report: dict, summary: str = "") -> None:
    """Write ``report`` as indented JSON to ``out`` (creating its folder), then print ``summary`` and the path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    if summary:
        print(summary)
    print(f"wrote {out}")


def timing_run(arch: str, size: str, warmup: int, batch: int, micro_batch: int, seq_len: int) -> list[str]:
    """Overrides of a run timed by its logged throughput: ``warmup`` untimed steps, then ``warmup`` timed ones (one log
    interval each), no validation, checkpoints or loggers."""
    return [
        f"arch={arch}",
        f"size={size}",
        f"data.seq_len={seq_len}",
        "logger=none",
        "train.progress=false",
        "train.val_batches=0",
        f"train.max_steps={2 * warmup}",
        f"train.log_interval={warmup}",
        f"train.batch_size={batch}",
        f"train.micro_batch_size={micro_batch}",
        "train.checkpoint.schedule=none",
        "train.checkpoint.save_last=false",
    ]
