"""The isoFLOP section, when several sizes share a FLOP budget: loss against parameters per budget with the
parabola in log N of ``analysis/scaling`` (Chinchilla approach 2), and the compute-optimal frontier."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from parcae_runner.analysis import scaling
from parcae_runner.analysis.report.context import ReportContext
from parcae_runner.analysis.report.markup import ARCH, Col, Section, html_table, section
from parcae_runner.analysis.report.plots import MARKERS, Plots, budget_colours, finish_axes, range_errorbar
from parcae_runner.analysis.report.recurrence import recurrence_columns
from parcae_runner.analysis.report.tables import BUDGET_TOLERANCE, setting_labels

FIT_NAME = "parabola in ln N over the runs, scaling.fit_isoflop (Chinchilla approach 2)"


def isoflop_section(ctx: ReportContext) -> Section | None:
    """Profiles, frontier and the table of optima; None when no budget has two sizes (or no parameters known)."""
    finals = ctx.finals
    if "params" not in finals:
        return None
    recurrence = recurrence_columns(ctx.df)
    series = ["arch", *recurrence]
    points = isoflop_points(finals, series)
    fits = isoflop_fits(finals, points, series)
    if not len(fits):
        return None
    optimum = [Col("n_opt", "compute-optimal N", "sci"), Col("loss_opt", "loss at optimum", "loss")]
    budget = [Col("budget", "FLOP budget", "sci"), Col("sizes", "sizes", "int")]
    cols = [ARCH, *[Col(r, r) for r in recurrence], *budget, *optimum, Col("optimum", "optimum", "text")]
    cols.append(Col("exponent", "N_opt ~ C^a: a"))
    caption = (
        f"Minimum of the parabola per budget (needs >= 3 sizes and a minimum); fit: {FIT_NAME}. "
        "The exponent a of the series' frontier is repeated on each of its budgets."
    )
    body = [_isoflop_plot(ctx.plots, points, fits, series), html_table("isoflop", fits, cols, caption)]
    return section("isoflop", "IsoFLOP profiles and the compute-optimal frontier", body)


def isoflop_points(finals: pd.DataFrame, series: Sequence[str]) -> pd.DataFrame:
    """Mean final loss over seeds per (series, budget, parameter count); where other swept settings also vary at
    one point, the best of them (a tuned isoFLOP point), named in ``config``. ``series`` columns split the
    profiles (architecture, recurrence)."""
    d = finals.dropna(subset=["budget", "val_loss", "params"])
    per_config = d.groupby([*series, "budget", "params", "config"], dropna=False)["val_loss"].agg(
        ["mean", "min", "max"]
    )
    best = per_config.reset_index().sort_values("mean", kind="stable")
    return best.groupby([*series, "budget", "params"], dropna=False, sort=True).first().reset_index()


def _quiet(fit: Callable[[], Any]) -> Any:
    # a single-budget call of scaling.fit_isoflop also fits a power law to one point; its warning is noise here
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit()


def isoflop_fits(finals: pd.DataFrame, points: pd.DataFrame, series: Sequence[str]) -> pd.DataFrame:
    """Per series and FLOP budget shared by >= 2 sizes and, with >= 3 sizes, the minimum of the loss's parabola in
    ln N (``n_opt``, ``loss_opt``, ``curvature``; NaN when it has none); per series the power law
    N_opt = ``n_coefficient`` x C^``exponent`` over its budgets (repeated on each budget's row).

    The parabolas are ``scaling.fit_isoflop``'s (Chinchilla approach 2, as in ``fits.json``), one budget at a
    time on the runs of ``points``' configurations, each seed a point; no bootstrap (``fits.json`` has the CIs).
    """
    runs = finals[finals["config"].isin(points["config"])]
    rows = []
    for key, g in points.groupby([*series, "budget"], dropna=False, sort=True):
        if g["params"].nunique() < 2:
            continue
        row = dict(zip([*series, "budget"], key, strict=True)) | {"sizes": g["params"].nunique()}
        row |= dict(n_opt=np.nan, loss_opt=np.nan, curvature=np.nan, optimum="")
        if g["params"].nunique() >= 3:
            row |= _budget_optimum(runs[runs["config"].isin(g["config"]) & (runs["budget"] == key[-1])], g["params"])
        rows.append(row)
    table = pd.DataFrame(rows, columns=[*series, "budget", "sizes", "n_opt", "loss_opt", "curvature", "optimum"])
    table["exponent"] = table["n_coefficient"] = np.nan
    for _, g in table.dropna(subset=["n_opt"]).groupby(list(series), dropna=False, sort=False):
        if len(g) < 2:
            continue
        exponent, intercept = np.polyfit(np.log(g["budget"]), np.log(g["n_opt"]), 1)
        table.loc[g.index, ["exponent", "n_coefficient"]] = [exponent, math.exp(intercept)]
    return table


def _budget_optimum(runs: pd.DataFrame, sizes: pd.Series) -> dict[str, Any]:
    """The minimum of one budget's parabola over ``runs`` and whether it lies within ``sizes``; empty without one."""
    try:
        fit = _quiet(
            lambda: scaling.fit_isoflop(runs, budget_col="budget", n_boot=0, min_budgets=1, min_sizes=3)["budgets"][0]
        )
    except scaling.FitError:
        return {}  # no minimum in ln N: the profile is shown without a parabola
    # a minimum outside the sizes trained is an extrapolation: the budget wants a bigger/smaller model
    inside = sizes.min() <= fit["N_opt"] <= sizes.max()
    return dict(
        n_opt=fit["N_opt"],
        loss_opt=fit["L_min"],
        curvature=fit["curvature"],
        optimum="inside the sizes trained" if inside else "extrapolated",
    )


def _series_label(row: Any, series: Sequence[str]) -> str:
    return " ".join([str(row["arch"]), *setting_labels(row, series[1:])])


def _matches(d: pd.DataFrame, key: dict[str, Any]) -> np.ndarray:
    """Rows of ``d`` in the series ``key``; NaN matches NaN: pythia has no recurrence, and is still a series."""
    return np.logical_and.reduce([(d[s] == v) | (d[s].isna() & pd.isna(v)) for s, v in key.items()])


def _isoflop_plot(plots: Plots, points: pd.DataFrame, fits: pd.DataFrame, series: Sequence[str]) -> str:
    """One panel of profiles per series, and a last panel with every series' frontier."""
    keys = fits[list(series)].drop_duplicates().to_dict("records")
    panels = len(keys) + 1
    ncols = min(panels, 4)
    fig, axes = plots.new(ncols=ncols, nrows=math.ceil(panels / ncols), width=4.5 * ncols, height=4.2)
    for ax in axes[panels:]:
        ax.set_visible(False)
    bcolour = budget_colours(fits["budget"])
    for ax, key in zip(axes, keys, strict=False):
        _profiles_panel(ax, points[_matches(points, key)], fits[_matches(fits, key)], bcolour)
        finish_axes(
            ax, "parameters N", "final validation loss", f"{_series_label(key, series)}: isoFLOP profiles", fontsize=10
        )
    _frontier_panel(axes[len(keys)], plots, fits, keys, series)
    return plots.save(
        fig,
        "isoflop",
        "IsoFLOP profiles: final loss against parameters per FLOP budget, and the compute-optimal frontier",
        "IsoFLOP profiles: mean final validation loss over seeds (bars: min-max) against parameters, one colour per "
        f"FLOP budget (runs whose final FLOPs agree within {BUDGET_TOLERANCE:.0%}); curve: {FIT_NAME}; star: its "
        "minimum (budgets with >= 3 sizes). Last panel: that minimum's N against the budget, with a power-law fit.",
    )


def _profiles_panel(ax: Any, points: pd.DataFrame, fits: pd.DataFrame, bcolour: dict[float, Any]) -> None:
    """One series: per budget its points with min-max bars and, where it has one, the parabola and its minimum."""
    for f in fits.to_dict("records"):
        s = points[points["budget"] == f["budget"]].sort_values("params")
        colour = bcolour[f["budget"]]
        range_errorbar(ax, s["params"], s, fmt="o", color=colour, label=f"{f['budget']:.2e} FLOPs")
        if np.isfinite(f["n_opt"]):
            grid = np.exp(np.linspace(np.log(s["params"].min()), np.log(s["params"].max()), 100))
            grid = np.sort(np.append(grid, f["n_opt"]))
            parabola = f["curvature"] * (np.log(grid) - math.log(f["n_opt"])) ** 2 + f["loss_opt"]
            ax.plot(grid, parabola, color=colour, linewidth=1)
            ax.plot(f["n_opt"], f["loss_opt"], marker="*", markersize=12, color=colour, markeredgecolor="black")
    ax.set_xscale("log")


def _frontier_panel(
    front: Any, plots: Plots, fits: pd.DataFrame, keys: list[dict[str, Any]], series: Sequence[str]
) -> None:
    """Compute-optimal N against budget per series, with its power law where it has two budgets."""
    for i, key in enumerate(keys):
        f = fits[_matches(fits, key) & np.isfinite(fits["n_opt"])].sort_values("budget")
        if f.empty:
            continue
        colour, label, marker = plots.colour[key["arch"]], _series_label(key, series), MARKERS[i % len(MARKERS)]
        front.plot(f["budget"], f["n_opt"], marker=marker, linestyle="none", color=colour)
        if np.isfinite(f["exponent"].iloc[0]):
            grid = np.array([f["budget"].min(), f["budget"].max()])
            line = f["n_coefficient"].iloc[0] * grid ** f["exponent"].iloc[0]
            label += f": N_opt ~ C^{f['exponent'].iloc[0]:.2f}"
            front.plot(grid, line, marker=marker, markevery=[], color=colour, linestyle="--", linewidth=1, label=label)
        else:
            front.plot([], [], marker=marker, color=colour, label=label)
    front.set_xscale("log")
    front.set_yscale("log")
    finish_axes(front, "FLOP budget C", "compute-optimal N", "compute-optimal frontier", fontsize=10)
