"""The benchmark-metrics section: every ``eval/...`` metric against steps, and its latest value per
configuration over seeds."""

from __future__ import annotations

import pandas as pd

from parcae_runner.analysis.report.context import ReportContext
from parcae_runner.analysis.report.markup import SEEDS, Col, Section, html_table, section
from parcae_runner.analysis.report.plots import Plots, band_plot, finish_axes
from parcae_runner.analysis.report.tables import eval_columns, eval_summary

EVAL_COLUMNS = [
    Col("metric", "metric", "text"),
    Col("config", "configuration", "text"),
    SEEDS,
    Col("mean", "mean (latest)"),
    Col("std", "std"),
]


def evals_section(ctx: ReportContext) -> Section | None:
    """A plot per metric and the table of latest values; None when the table has no metric."""
    eval_cols = eval_columns(ctx.df)
    if not eval_cols:
        return None
    body = [fig for i, col in enumerate(eval_cols) if (fig := _eval_plot(ctx.plots, ctx.df, col, i))]
    table = eval_summary(ctx.finals, eval_cols, ctx.order)
    body.append(
        html_table("eval-final", table, EVAL_COLUMNS, "Latest value of each benchmark metric per run, over seeds")
    )
    return section("evals", "Benchmark metrics", body)


def _eval_plot(plots: Plots, df: pd.DataFrame, col: str, index: int) -> str | None:
    fig, (ax,) = plots.new()
    if not band_plot(ax, plots, df, "step", col):
        return None
    if str(col).endswith("perplexity"):
        ax.set_yscale("log")  # it falls by orders of magnitude early in training
    finish_axes(ax, "optimizer step", col)
    return plots.save(
        fig,
        f"eval_{index}",
        f"{col} against step, one colour per architecture",
        f"{col} against step: mean over seeds, min-max band and +-1 std band.",
    )
