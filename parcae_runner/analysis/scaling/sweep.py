"""Every fit that applies to a sweep, per architecture, written to ``<sweep>/fits.json``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from parcae_runner.analysis.scaling.isoflop import fit_isoflop
from parcae_runner.analysis.scaling.numerics import FitError
from parcae_runner.analysis.scaling.parametric import fit_parametric
from parcae_runner.analysis.scaling.recurrence import fit_recurrence
from parcae_runner.runs import RunStatus

FITS_FILE = "fits.json"
# columns that hold a looped model's recurrence, in order of preference
RECURRENCE_COLUMNS = ("arch.mean_recurrence", "arch.recurrence", "arch.n_recurrence", "mean_recurrence", "recurrence")


def _jsonable(obj: Any) -> Any:
    """Plain JSON: numpy scalars to Python, NaN and infinities to null."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def recurrence_column(df: pd.DataFrame) -> str | None:
    """The column holding a looped model's recurrence, if the table has one that varies."""
    candidates = [c for c in RECURRENCE_COLUMNS if c in df.columns]
    candidates += [c for c in df.columns if "recurrence" in c.lower() and c not in candidates]
    for col in candidates:
        if pd.to_numeric(df[col], errors="coerce").nunique() > 1:
            return col
    return None


def fit_sweep(sweep_root: Path, n_boot: int = 200, seed: int = 0) -> dict[str, Any]:
    """Every fit that applies to a sweep, per architecture, written to ``<sweep_root>/fits.json``.

    Collects first (incremental, see :func:`parcae_runner.analysis.collect.collect`), then uses
    the final row of each finished run (``is_final`` and status ``done``, finite ``val_loss``):
    approach 2 on (flops, params, val_loss; D_opt from the runs' tokens), approach 3 on
    (params, tokens, val_loss), and the recurrence fit where a recurrence column varies. A fit the
    data cannot support is recorded as ``{"error": "..."}`` instead of numbers.
    """
    from parcae_runner.analysis.collect import collect
    from parcae_runner.util.files import atomic_write_json

    sweep_root = Path(sweep_root)
    df = collect(sweep_root)
    final = df[df["is_final"].astype(bool) & (df["status"] == RunStatus.DONE)] if len(df) else df
    final = final[np.isfinite(pd.to_numeric(final["val_loss"], errors="coerce"))] if len(final) else final

    names = df["sweep"].dropna().unique() if "sweep" in df.columns else []
    out: dict[str, Any] = {
        "sweep": str(names[0]) if len(names) == 1 else sweep_root.name,
        "runs_total": int(df["run"].nunique()) if len(df) else 0,
        "runs_used": int(len(final)),
        "loss": "val_loss",
        "by_arch": {},
    }
    for arch, rows in final.groupby("arch", sort=True) if len(final) else []:
        out["by_arch"][str(arch)] = _arch_fits(rows, n_boot, seed)
    out = _jsonable(out)
    atomic_write_json(sweep_root / FITS_FILE, out)
    return out


def _arch_fits(rows: pd.DataFrame, n_boot: int, seed: int) -> dict[str, Any]:
    """Every fit of one architecture's final rows; a fit its data cannot support is ``{"error": "..."}``."""
    fits: dict[str, Any] = {"runs": int(len(rows))}
    attempts = {
        "approach2": lambda: fit_isoflop(
            rows, "flops", "params", "val_loss", tokens_col="tokens", n_boot=n_boot, seed=seed
        ),
        "approach3": lambda: fit_parametric(
            rows["params"].to_numpy(float),
            rows["tokens"].to_numpy(float),
            rows["val_loss"].to_numpy(float),
            n_boot=n_boot,
            seed=seed,
        ),
    }
    col = recurrence_column(rows)
    if col is not None:
        attempts["recurrence"] = lambda: fit_recurrence(rows, "flops", col, "val_loss", n_boot=n_boot, seed=seed)
    for name, fit in attempts.items():
        try:
            fits[name] = fit()
        except FitError as exc:
            fits[name] = {"error": str(exc)}
    return fits
