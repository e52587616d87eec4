"""The loss-curves section: validation and training loss against steps, tokens and FLOPs, mean over seeds
with a min-max band and a +-1 std band."""

from __future__ import annotations

from parcae_runner.analysis.report.context import ReportContext
from parcae_runner.analysis.report.markup import Section, section
from parcae_runner.analysis.report.plots import band_plot, finish_axes, legend

# x axis: the column, its label, and whether it is drawn on a log scale
AXES = (
    ("step", "optimizer step", False),
    ("tokens", "training tokens", False),
    ("flops", "training FLOPs (log scale; step 0 left out)", True),
)


def curves_section(ctx: ReportContext) -> Section:
    """One figure per x axis the table has."""
    return section("curves", "Loss curves", [fig for key, label, log in AXES if (fig := _curve(ctx, key, label, log))])


def _curve(ctx: ReportContext, key: str, label: str, log: bool) -> str | None:
    plots, df = ctx.plots, ctx.df
    if key not in df or df[key].isna().all():
        return None
    fig, (ax_val, ax_train) = plots.new(ncols=2)
    if not band_plot(ax_val, plots, df, key, "val_loss", positive_x=log):
        return None
    has_train = "train_loss" in df and band_plot(ax_train, plots, df, key, "train_loss", positive_x=log)
    for ax, title in ((ax_val, "validation loss"), (ax_train, "training loss")):
        finish_axes(ax, label, "loss (nats/token)", title, with_legend=False)
        if log:
            ax.set_xscale("log")
    # one legend for both panels: the configurations are the same
    legend(ax_val)
    ax_train.set_visible(has_train)
    return plots.save(
        fig,
        f"loss_vs_{key}",
        f"Validation and training loss against {label}, one colour per architecture",
        f"Loss against {label}. Line: mean over seeds; light band: min-max over seeds; dark band: mean "
        "+- 1 standard deviation (ddof=1). Training loss is the latest logged value at or before each "
        "evaluated step.",
    )
