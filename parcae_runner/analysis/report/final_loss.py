"""The final-loss section: final validation loss by configuration over seeds (table and bar chart with every
seed), and the seed-to-seed spread at the end (table) and along training (plot)."""

from __future__ import annotations

import pandas as pd

from parcae_runner.analysis.report.context import ReportContext
from parcae_runner.analysis.report.markup import ARCH, SEEDS, SIZE, Col, Section, html_table, section
from parcae_runner.analysis.report.plots import Plots, bar_with_points, finish_axes, finish_bar_axes

BARS_ALT = "Bar chart of the final validation loss per architecture and size with every seed"
BARS_CAPTION = (
    "Final validation loss: bar = mean over seeds, black error bar = +-1 std, grey bar = min-max, "
    "dots = individual seeds. The y axis does not start at zero."
)


def final_loss_section(ctx: ReportContext) -> Section:
    """The loss table, the bar chart, the variance table and, with several seeds, the spread plot."""
    ident = [ARCH, SIZE, *ctx.variant_cols]
    loss_cols = [Col(k, k, "loss") for k in ("mean", "std", "min", "max")]
    body = [
        html_table(
            "final-loss",
            ctx.summary,
            [*ident, Col("params", "parameters", "int"), SEEDS, *loss_cols, Col("val_bpb_mean", "mean bpb", "loss")],
            "Final validation loss (nats/token) over seeds; std is the sample std (ddof=1)",
        ),
        _final_bars(ctx.plots, ctx.finals, ctx.summary),
        html_table(
            "seed-variance",
            ctx.summary,
            [*ident, SEEDS, Col("std", "std"), Col("variance", "variance", "sci"), Col("range", "max - min")],
            "Seed-to-seed variance of the final validation loss (sample variance, ddof=1)",
        ),
    ]
    spread = _seed_spread(ctx.plots, ctx.df)
    if spread:
        body.append(spread)
    return section("final", "Final validation loss by architecture and size", body)


def _final_bars(plots: Plots, finals: pd.DataFrame, summary: pd.DataFrame) -> str:
    fig, (ax,) = plots.new(width=min(max(6.0, 1.0 * len(summary) + 3), 14.0), height=4.2)
    for i, row in enumerate(summary.itertuples(index=False)):
        seeds = finals.loc[finals["config"] == row.config, "val_loss"].dropna()
        bar_with_points(ax, i, seeds, plots.colour[row.arch], row.mean, size=14)
        if row.n > 1:
            ax.errorbar(i, row.mean, yerr=row.std, color="black", capsize=6, linewidth=1.5)
            ax.vlines(i + 0.22, row.min, row.max, color="grey", linewidth=3, alpha=0.7)
    ax.set_xticks(range(len(summary)), summary["config"], rotation=25 if len(summary) > 5 else 0, fontsize=8)
    lo, hi = float(finals["val_loss"].min()), float(finals["val_loss"].max())
    pad = max(hi - lo, 1e-3) * 0.5
    ax.set_ylim(lo - pad, hi + pad)  # the differences between architectures, not the distance to zero
    finish_bar_axes(ax, "final validation loss (nats/token)")
    return plots.save(fig, "final_loss", BARS_ALT, BARS_CAPTION)


def _seed_spread(plots: Plots, df: pd.DataFrame) -> str | None:
    fig, (ax,) = plots.new()
    drawn = False
    for config in plots.order:
        g = df[(df["config"] == config)].dropna(subset=["val_loss"])
        s = g.groupby("step")["val_loss"].agg(["std", "count"])
        s = s[s["count"] > 1]
        if not s.empty:
            ax.plot(s.index, s["std"], **plots.look(config))
            drawn = True
    if not drawn:
        return None
    finish_axes(ax, "optimizer step", "std of validation loss over seeds")
    return plots.save(
        fig,
        "seed_spread",
        "Seed-to-seed standard deviation of the validation loss against step",
        "Seed-to-seed spread along training: the standard deviation (ddof=1) of the validation loss over the "
        "model seeds of each configuration at each evaluated step (every seed sees the same data in the same order).",
    )
