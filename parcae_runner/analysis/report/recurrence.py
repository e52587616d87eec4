"""The recurrence sections (one per ``*recurrence*`` column): validation loss against the recurrence R per
FLOP budget, final losses for an isoFLOP design, else read off the curves at matched FLOPs."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from parcae_runner.analysis.report.context import ReportContext
from parcae_runner.analysis.report.markup import ARCH, SEEDS, SIZE, Col, Section, html_table, section
from parcae_runner.analysis.report.plots import Plots, budget_colours, finish_axes, range_errorbar
from parcae_runner.analysis.report.tables import BUDGET_TOLERANCE


def recurrence_columns(df: pd.DataFrame) -> list[str]:
    """The columns that hold a looped model's recurrence."""
    return [c for c in df.columns if "recurrence" in str(c).lower()]


def recurrence_sections(ctx: ReportContext) -> list[Section]:
    """One section per recurrence column with a table to show; needs ``ctx.finals``' ``budget`` column."""
    sections = []
    for i, col in enumerate(recurrence_columns(ctx.df)):
        table, matched = recurrence_table(ctx.finals, ctx.df, col, ctx.size_order)
        if table.empty:
            continue
        cols = [
            ARCH,
            Col("budget", "FLOP budget", "sci"),
            SIZE,
            Col("R", col),
            SEEDS,
            Col("mean", "mean val loss", "loss"),
            *(Col(k, k, "loss") for k in ("min", "max")),
        ]
        read = "read at matched FLOPs along the curves" if matched else "at the end of the runs"
        body = [
            _recurrence_plot(ctx.plots, table, col, matched),
            html_table(f"recurrence-{i}", table, cols, f"Validation loss over seeds, {read}"),
        ]
        sections.append(section(f"recurrence-{i}", f"Loss against {col}", body))
    return sections


def recurrence_table(
    finals: pd.DataFrame, df: pd.DataFrame, col: str, size_order: Sequence[str] = ()
) -> tuple[pd.DataFrame, bool]:
    """Validation loss over seeds per architecture, FLOP budget, size (in ``size_order``) and recurrence ``col``,
    and whether it was read at matched FLOPs along the curves rather than at the end of the runs.

    An isoFLOP design (a budget holding several R) compares final losses. A sweep that trains every R for the
    same steps spends more FLOPs on a larger R, so no budget holds two R; there each run's validation loss is
    read at every budget its curve spans (linear in log FLOPs between evaluations, the final value within the
    budget tolerance), which compares R at equal compute, though a run with budget to spare is mid-schedule there.
    """
    d = finals.assign(R=pd.to_numeric(finals[col], errors="coerce")).dropna(subset=["R", "val_loss", "budget"])
    matched = not (d.groupby(["arch", "budget"])["R"].nunique() > 1).any()
    if matched:
        d = _at_matched_flops(d, df)
    table = (
        d.groupby(["arch", "budget", "size", "R"], sort=True)["val_loss"]
        .agg(["mean", "min", "max", "count"])
        .reset_index()
        .rename(columns={"count": "n"})
    )
    rank = table["size"].map({s: i for i, s in enumerate(size_order)})
    table = table.assign(_rank=rank).sort_values(["arch", "budget", "_rank", "R"], kind="stable")
    return table.drop(columns="_rank").reset_index(drop=True), matched


def _at_matched_flops(finals: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """Each run's validation loss at every budget of ``finals`` its curve in ``df`` reaches."""
    levels = sorted(finals["budget"].unique())
    rows = []
    for run in finals.itertuples():
        curve = df[(df["run"] == run.run) & (df["flops"] > 0)].dropna(subset=["val_loss"]).sort_values("flops")
        if curve.empty:
            continue
        lo, hi = curve["flops"].iloc[0], curve["flops"].iloc[-1]
        for c in levels:
            if lo <= c <= hi:
                loss = np.interp(math.log(c), np.log(curve["flops"]), curve["val_loss"])
            elif hi < c <= hi * (1 + BUDGET_TOLERANCE):
                loss = curve["val_loss"].iloc[-1]
            else:
                continue
            rows.append({"run": run.run, "arch": run.arch, "size": run.size, "R": run.R, "budget": c, "val_loss": loss})
    return pd.DataFrame(rows, columns=["run", "arch", "size", "R", "budget", "val_loss"])


def _recurrence_plot(plots: Plots, table: pd.DataFrame, col: str, matched: bool) -> str:
    archs = sorted(table["arch"].unique())
    bcolour = budget_colours(table["budget"])
    many_sizes = table["size"].nunique() > 1
    what = "validation loss at matched FLOPs" if matched else "final validation loss"
    fig, axes = plots.new(ncols=len(archs), width=min(max(7.0, 5.0 * len(archs)), 18.0), height=4.2)
    for ax, arch in zip(axes, archs, strict=True):
        for (budget, size), s in table[table["arch"] == arch].groupby(["budget", "size"], sort=True):
            range_errorbar(
                ax,
                s["R"],
                s,
                marker="o",
                linestyle=plots.style.get(size, "-"),
                color=bcolour[budget],
                label=f"{budget:.2e} FLOPs" + (f", {size}" if many_sizes else ""),
            )
        finish_axes(ax, col, what, f"{arch}: loss against recurrence", fontsize=10)
    how = (
        "read off each run's curve at the budget (linear in log FLOPs between evaluations): the R were trained "
        "for equal steps, not equal FLOPs, so a run with budget to spare is mid-schedule there"
        if matched
        else f"at the end of the runs (a budget is runs whose final FLOPs agree within {BUDGET_TOLERANCE:.0%})"
    )
    return plots.save(
        fig,
        "recurrence",
        f"Validation loss against {col}, one line per FLOP budget",
        f"Validation loss (mean over seeds; bars: min-max) against {col}, one colour per FLOP budget, one line "
        f"style per size; {how}.",
    )
