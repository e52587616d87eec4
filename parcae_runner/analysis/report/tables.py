"""The report's tables, computed from the results table (one row per run and evaluated step): swept
settings and configurations, each run's final values, summaries over seeds, energy, and FLOP budgets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from parcae_runner.analysis import scaling

# runs whose final FLOPs agree within this ratio share a budget: isoFLOP designs round steps to integers
BUDGET_TOLERANCE = 0.10


def size_order(df: pd.DataFrame) -> list[str]:
    """Sizes from small to large: by median parameters where known, else by name."""
    if "params" in df:
        return df.groupby("size")["params"].median().sort_values(kind="stable").index.tolist()
    return sorted(df["size"].unique())


def variant_columns(df: pd.DataFrame) -> list[str]:
    """Swept settings besides architecture, size and seed: the dotted config-key columns the collector adds for
    ``sweep.json``'s swept keys (``arch.mean_recurrence``, ``train.lr``) that differ between runs."""
    cols = [c for c in df.columns if "." in str(c) and not str(c).startswith("eval/")]
    return [c for c in cols if df[c].nunique(dropna=False) > 1]


def add_configs(df: pd.DataFrame, variants: Sequence[str], size_order: Sequence[str]) -> list[str]:
    """Label every row with its configuration (architecture x size x swept settings; seeds are its replicates)
    in a ``config`` column, and return the labels in display order: architecture, size (small first), settings."""
    many_sizes = df["size"].nunique() > 1
    keys = ["arch", "size", *variants]
    uniq = (
        df[keys].drop_duplicates().assign(_size_rank=lambda u: u["size"].map({s: i for i, s in enumerate(size_order)}))
    )
    uniq = uniq.sort_values(["arch", "_size_rank", *variants], na_position="last", kind="stable")

    def label(row: pd.Series) -> str:
        parts = [str(row["arch"])] + ([str(row["size"])] if many_sizes else [])
        parts += setting_labels(row, variants)
        return " ".join(parts)

    uniq["config"] = uniq.apply(label, axis=1)
    # merge on the keys, NaN matching NaN (a setting an architecture does not have)
    filled = lambda d: d[keys].astype(object).where(d[keys].notna(), "\0nan")  # noqa: E731
    lookup = dict(zip(map(tuple, filled(uniq).to_numpy()), uniq["config"], strict=True))
    df["config"] = [lookup[k] for k in map(tuple, filled(df).to_numpy())]
    return list(dict.fromkeys(uniq["config"]))


def setting_labels(row: Any, columns: Sequence[str]) -> list[str]:
    """``name=value`` of each setting ``row`` has (its column's last dotted part), as labels show them."""
    return [f"{str(c).rsplit('.', 1)[-1]}={short_value(row[c])}" for c in columns if pd.notna(row[c])]


def short_value(value: Any) -> str:
    """A swept value in a label: floats as %g, anything else as is."""
    return f"{value:g}" if isinstance(value, (float, np.floating)) else str(value)


def final_runs(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run: its last step, with the last non-missing value of every column (so the final
    loss is the last evaluation even if the final step has none). Adds ``tokens_per_kwh``."""
    d = df.sort_values(["run", "step"], kind="stable")
    # GroupBy.last skips NaN column by column: exactly "the latest value each metric has"
    out = d.groupby("run", sort=True).last().reset_index()
    if "tokens" in out and "energy_kwh" in out:
        energy = out["energy_kwh"].astype(float)
        out["tokens_per_kwh"] = out["tokens"].astype(float) / energy.where(energy > 0)
    return out


def final_loss_summary(finals: pd.DataFrame, order: Sequence[str], variants: Sequence[str] = ()) -> pd.DataFrame:
    """Final validation loss per configuration over seeds: mean, std (ddof=1), min, max, n, variance, range."""
    g = finals.groupby("config", sort=False)
    out = g["val_loss"].agg(["mean", "std", "min", "max", "count"]).rename(columns={"count": "n"})
    out = g[["arch", "size", *variants]].first().join(out)
    out["variance"] = out["std"] ** 2
    out["range"] = out["max"] - out["min"]
    out["val_bpb_mean"] = g["val_bpb"].mean() if "val_bpb" in finals else np.nan
    out["params"] = g["params"].median() if "params" in finals else np.nan
    return out.loc[[c for c in order if c in out.index]].reset_index()


def energy_summary(finals: pd.DataFrame) -> pd.DataFrame:
    """Energy and CO2 per architecture x size: totals over runs, mean per run, tokens per kWh."""
    g = finals.groupby(["arch", "size"], sort=True)
    out = g.agg(
        runs=("run", "count"),
        energy_kwh_total=("energy_kwh", "sum"),
        co2_kg_total=("co2_kg", "sum"),
        energy_kwh_mean=("energy_kwh", "mean"),
        tokens_total=("tokens", "sum"),
    ).reset_index()
    out["tokens_per_kwh"] = out["tokens_total"] / out["energy_kwh_total"].where(out["energy_kwh_total"] > 0)
    return out


def budget_bins(flops: pd.Series, tolerance: float = BUDGET_TOLERANCE) -> pd.Series:
    """The FLOP budget of each run: runs grouped as ``scaling.group_budgets`` groups them (runs planned for one
    budget end a few percent apart, as steps are whole), labelled by the group's median FLOPs (scaling's C)."""
    valid = flops[np.isfinite(flops) & (flops > 0)].astype(float)
    if valid.empty:
        return pd.Series(np.nan, index=flops.index)
    labels = scaling.group_budgets(valid.to_numpy(), tolerance)
    return valid.groupby(labels).transform("median").reindex(flops.index)


def eval_columns(df: pd.DataFrame) -> list[str]:
    """The numeric ``eval/...`` metrics, sorted; a metric's standard error is not a curve of its own (the
    seed bands show the spread)."""
    return sorted(
        c
        for c in df.columns
        if str(c).startswith("eval/") and not str(c).endswith("_stderr") and pd.api.types.is_numeric_dtype(df[c])
    )


def eval_summary(finals: pd.DataFrame, eval_cols: Sequence[str], order: Sequence[str]) -> pd.DataFrame:
    """The latest value of each metric per configuration over seeds: mean, std, n; configurations in ``order``."""
    out = (
        finals.melt(id_vars=["config"], value_vars=eval_cols, var_name="metric")
        .dropna(subset=["value"])
        .groupby(["metric", "config"], sort=True)["value"]
        .agg(["mean", "std", "count"])
        .reset_index()
        .rename(columns={"count": "n"})
    )
    return out.sort_values(
        ["metric", "config"], key=lambda c: c.map({k: i for i, k in enumerate(order)}) if c.name == "config" else c
    )
