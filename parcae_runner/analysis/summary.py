"""The answer of a finished sweep in one table: final validation loss over its swept keys.

Rows are the first swept key (besides the seed), columns the second, cells the mean over seeds;
for the recurrence study that is loss against R per FLOP budget.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from parcae_runner.runs import RunDirectory, RunStatus, SweepRecord


def sweep_table(root: Path) -> pd.DataFrame | pd.Series | None:
    record = SweepRecord.read(root)
    keys = [k for k in record.params if k != "seed"]
    rows = []
    for name in record.runs:
        run_dir = RunDirectory(root / name)
        run, cfg = run_dir.read_run(), run_dir.read_config()
        if run.status != RunStatus.DONE or cfg is None:
            continue
        values = {k: _value(OmegaConf.select(cfg, k)) for k in keys}
        rows.append({**values, "run": name, "val_loss": run.final_val_loss})
    if not rows or not keys:
        return None
    df = pd.DataFrame(rows)
    if len(keys) == 1:
        return df.groupby(keys[0])["val_loss"].mean()
    return df.pivot_table(index=keys[0], columns=keys[1], values="val_loss", aggfunc="mean")


def _value(node):
    # a config group selects a node: show its name (arch=parcae), not the whole mapping
    if OmegaConf.is_config(node):
        return node.get("name", str(node))
    return node


def format_sweep_table(root: Path) -> str:
    table = sweep_table(root)
    if table is None:
        return "no finished runs with swept keys to tabulate"
    if isinstance(table, pd.Series):
        head = f"final validation loss by {table.index.name} (mean over seeds)"
    else:
        head = f"final validation loss: rows {table.index.name}, columns {table.columns.name} (mean over seeds)"
    return head + "\n" + table.to_string(float_format=lambda x: f"{x:.4f}")
