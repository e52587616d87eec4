"""The comparison report of a sweep: ``results/<sweep>/report/index.html`` and its PNG plots.

``build_report(sweep_root)`` collects the sweep (``analysis/collect.py``: one row per run and
evaluated step) unless a table is passed, then writes one self-contained folder that works offline
(no CDN, no JavaScript needed) with:

- validation and training loss against steps, tokens and FLOPs: one colour per architecture, one
  line style per size, the mean over seeds with a min-max band and a +-1 std band;
- final validation loss by architecture x size (table: mean, std, min, max, seeds; bar chart with
  every seed) and the seed-to-seed spread, at the end and along training;
- energy and CO2 per run and per architecture, and tokens per kWh;
- when a ``*recurrence*`` column is present: loss against the recurrence R per FLOP budget (final
  losses for an isoFLOP design, else read off the curves at matched FLOPs);
- when several sizes share a FLOP budget (isoFLOP): loss against parameters per budget, with the
  parabola in log N of ``analysis/scaling.py`` (Chinchilla approach 2), and the compute-optimal
  frontier;
- every ``eval/...`` metric against steps.

A configuration is architecture x size x the other swept settings (dotted columns such as
``arch.mean_recurrence`` that differ between runs); seeds are its replicates, so a swept setting
never passes for seed noise.

Every number in a table is rendered from the DataFrame by one formatter per kind, and carries its
exact value in ``data-value`` (``repr`` of the float), so a test can compare the page with the
table. The folder is built beside the old one and swapped in, so a reader never sees half a report.
"""

from __future__ import annotations

import html
import json
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from parcae_runner.analysis import scaling

REPORT_DIR = "report"
INDEX = "index.html"
DPI = 100
# runs whose final FLOPs agree within this ratio share a budget: isoFLOP designs round steps to integers
BUDGET_TOLERANCE = 0.10
REQUIRED = ("run", "arch", "size", "seed", "step", "val_loss")
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">")
FIT_NAME = "parabola in ln N over the runs, scaling.fit_isoflop (Chinchilla approach 2)"

# A self-check for headless browsers only: the page needs no JavaScript. It records uncaught errors and
# resources that failed to load (capture phase: an <img> error does not bubble) and, after the load event,
# whether every image decoded, as data-* attributes on <body> that `chromium --dump-dom` shows.
SELF_CHECK_JS = """(function () {
  var errors = [];
  function save() { if (document.body) { document.body.dataset.errors = JSON.stringify(errors); } }
  window.addEventListener("error", function (e) {
    var t = e.target;
    var what = t && t !== window && t.tagName;
    errors.push(what ? "failed to load " + what + " " + (t.getAttribute("src") || t.getAttribute("href"))
                     : String(e.message));
    save();
  }, true);
  window.addEventListener("load", function () {
    var bad = Array.prototype.filter.call(document.images, function (i) {
      return !(i.complete && i.naturalWidth > 0);
    });
    document.body.dataset.imagesTotal = String(document.images.length);
    document.body.dataset.imagesBad = JSON.stringify(bad.map(function (i) { return i.getAttribute("src"); }));
    document.body.dataset.imagesOk = bad.length === 0 ? "true" : "false";
    save();
  });
})();"""

CSS = """body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; } th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
p.caption { color: #555; font-size: 0.9em; max-width: 60em; } img { display: block; max-width: 100%; height: auto; }
nav ul { columns: 2; } code { background: #f3f3f3; padding: 0 0.2em; }"""


# ---------------------------------------------------------------------------------------------- formatting


@dataclass(frozen=True)
class Col:
    """A table column: the DataFrame column ``key``, its header and its kind (which fixes its format)."""

    key: str
    header: str
    kind: str = "float"  # text | int | float | loss | sci


def _missing(value: Any) -> bool:
    """None, NaN, NaT or pd.NA (a nullable column's gap)."""
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def fmt(value: Any, kind: str) -> str:
    """The one format of each kind of number: ``int`` 1,234; ``loss`` 4 decimals; ``float`` 4 significant
    digits; ``sci`` 3 decimals in scientific notation. Missing (and infinite) values are an en dash."""
    if _missing(value) or (kind != "text" and not math.isfinite(float(value))):
        return "\u2013"
    if kind == "text":
        return str(value)
    if kind == "int":
        return f"{int(value):,}"
    if kind == "loss":
        return f"{float(value):.4f}"
    if kind == "sci":
        return f"{float(value):.3e}"
    return f"{float(value):.4g}"


def raw(value: Any, kind: str) -> str:
    """The exact value for ``data-value``: ``repr`` of the float round-trips, ints stay ints."""
    if _missing(value):
        return "nan"
    if kind == "int" and float(value).is_integer():
        return str(int(value))
    return repr(float(value))  # an "int" column holding a fraction (a median of two) keeps it


def html_table(table_id: str, df: pd.DataFrame, cols: Sequence[Col], caption: str = "") -> str:
    """``df`` as an HTML table; numeric cells carry ``data-col`` and ``data-value``."""
    head = "".join(f"<th>{html.escape(c.header)}</th>" for c in cols)
    rows = []
    for rec in df.to_dict("records"):
        cells = []
        for c in cols:
            value = rec.get(c.key)
            if c.kind == "text":
                cells.append(f'<td data-col="{html.escape(c.key)}">{html.escape(fmt(value, "text"))}</td>')
            else:
                cells.append(
                    f'<td class="num" data-col="{html.escape(c.key)}" data-value="{raw(value, c.kind)}">'
                    f"{html.escape(fmt(value, c.kind))}</td>"
                )
        rows.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return (
        f'<table id="{html.escape(table_id)}">{cap}<thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


# -------------------------------------------------------------------------------------------------- tables


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
        parts += [f"{str(v).rsplit('.', 1)[-1]}={_short(row[v])}" for v in variants if pd.notna(row[v])]
        return " ".join(parts)

    uniq["config"] = uniq.apply(label, axis=1)
    # merge on the keys, NaN matching NaN (a setting an architecture does not have)
    filled = lambda d: d[keys].astype(object).where(d[keys].notna(), "\0nan")  # noqa: E731
    lookup = dict(zip(map(tuple, filled(uniq).to_numpy()), uniq["config"], strict=True))
    df["config"] = [lookup[k] for k in map(tuple, filled(df).to_numpy())]
    return list(dict.fromkeys(uniq["config"]))


def _short(value: Any) -> str:
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


# ----------------------------------------------------------------------------------------------------- plots


class Plots:
    """Writes figures into the report folder and returns the ``<figure>`` HTML of each.

    One colour per architecture, one line style per size, one marker per swept setting of an architecture x size.
    """

    def __init__(self, folder: Path, df: pd.DataFrame, order: Sequence[str], size_order: Sequence[str]):
        self.folder = folder
        self.order = list(order)
        palette = colormaps["tab10"]
        self.colour = {a: palette(i % 10) for i, a in enumerate(sorted(df["arch"].unique()))}
        self.style = {s: LINESTYLES[i % len(LINESTYLES)] for i, s in enumerate(size_order)}
        first = df.drop_duplicates("config").set_index("config")
        self.arch = first["arch"].to_dict()
        self.size = first["size"].to_dict()
        self.marker: dict[str, str] = {}
        for _, g in first.reindex(self.order).groupby(["arch", "size"], sort=False):
            self.marker.update({c: MARKERS[i % len(MARKERS)] for i, c in enumerate(g.index)})

    def look(self, config: str) -> dict[str, Any]:
        """Matplotlib keyword arguments that draw ``config``."""
        return dict(
            color=self.colour[self.arch[config]],
            linestyle=self.style.get(self.size[config], "-"),
            marker=self.marker[config],
            markersize=3,
            label=config,
        )

    def new(self, ncols: int = 1, width: float = 10.0, height: float = 4.2, nrows: int = 1) -> tuple[Figure, list[Any]]:
        """A figure of ``nrows`` x ``ncols`` panels (``height`` per row), its axes row by row."""
        # Figure + Agg canvas, not pyplot: no global state, no GUI backend, whatever MPLBACKEND says
        fig = Figure(figsize=(width, height * nrows), dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        return fig, list(fig.subplots(nrows, ncols, squeeze=False).ravel())

    def save(self, fig: Figure, name: str, alt: str, caption: str) -> str:
        path = self.folder / f"{name}.png"
        # no bbox_inches="tight": the PNG is exactly figsize x dpi, so <img width/height> are its true size
        fig.savefig(path, dpi=DPI)
        width, height = (int(round(v)) for v in fig.get_size_inches() * DPI)
        return (
            f'<figure><img src="{html.escape(path.name)}" width="{width}" height="{height}" '
            f'alt="{html.escape(alt)}"><p class="caption">{html.escape(caption)}</p></figure>'
        )


def _legend(ax: Any) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _band_plot(ax: Any, plots: Plots, df: pd.DataFrame, x: str, y: str, positive_x: bool = False) -> bool:
    """Mean over seeds per configuration with a min-max band and a +-std band; False if nothing was drawn."""
    drawn = False
    for config in plots.order:
        g = df.loc[df["config"] == config, list(dict.fromkeys(["step", x, y]))].dropna()
        if positive_x:
            g = g[g[x] > 0]
        if g.empty:
            continue
        # seeds are aligned by step: tokens and FLOPs of one step may differ in the last digits between runs
        s = g.groupby("step").agg(x=(x, "mean"), mean=(y, "mean"), std=(y, "std"), min=(y, "min"), max=(y, "max"))
        xs, look = s["x"].to_numpy(dtype=float), plots.look(config)
        ax.plot(xs, s["mean"], **look)
        ax.fill_between(xs, s["min"], s["max"], color=look["color"], alpha=0.12, linewidth=0)
        std = s["std"].fillna(0.0)  # one seed: no band
        ax.fill_between(xs, s["mean"] - std, s["mean"] + std, color=look["color"], alpha=0.25, linewidth=0)
        drawn = True
    return drawn


def _curves(plots: Plots, df: pd.DataFrame) -> list[str]:
    out = []
    for key, label, log in (
        ("step", "optimizer step", False),
        ("tokens", "training tokens", False),
        ("flops", "training FLOPs (log scale; step 0 left out)", True),
    ):
        if key not in df or df[key].isna().all():
            continue
        fig, (ax_val, ax_train) = plots.new(ncols=2)
        if not _band_plot(ax_val, plots, df, key, "val_loss", positive_x=log):
            continue
        has_train = "train_loss" in df and _band_plot(ax_train, plots, df, key, "train_loss", positive_x=log)
        for ax, title in ((ax_val, "validation loss"), (ax_train, "training loss")):
            ax.set_xlabel(label)
            ax.set_ylabel("loss (nats/token)")
            ax.set_title(title)
            ax.grid(alpha=0.3)
            if log:
                ax.set_xscale("log")
        _legend(ax_val)
        ax_train.set_visible(has_train)
        out.append(
            plots.save(
                fig,
                f"loss_vs_{key}",
                f"Validation and training loss against {label}, one colour per architecture",
                f"Loss against {label}. Line: mean over seeds; light band: min-max over seeds; dark band: mean "
                "+- 1 standard deviation (ddof=1). Training loss is the latest logged value at or before each "
                "evaluated step.",
            )
        )
    return out


def _final_bars(plots: Plots, finals: pd.DataFrame, summary: pd.DataFrame) -> str:
    fig, (ax,) = plots.new(width=min(max(6.0, 1.0 * len(summary) + 3), 14.0), height=4.2)
    for i, row in enumerate(summary.itertuples(index=False)):
        ax.bar(i, row.mean, color=plots.colour[row.arch], alpha=0.6, width=0.6)
        if row.n > 1:
            ax.errorbar(i, row.mean, yerr=row.std, color="black", capsize=6, linewidth=1.5)
            ax.vlines(i + 0.22, row.min, row.max, color="grey", linewidth=3, alpha=0.7)
        seeds = finals.loc[finals["config"] == row.config, "val_loss"].dropna()
        ax.scatter(np.full(len(seeds), i), seeds, color="black", s=14, zorder=3)
    ax.set_xticks(range(len(summary)), summary["config"], rotation=25 if len(summary) > 5 else 0, fontsize=8)
    lo, hi = float(finals["val_loss"].min()), float(finals["val_loss"].max())
    pad = max(hi - lo, 1e-3) * 0.5
    ax.set_ylim(lo - pad, hi + pad)  # the differences between architectures, not the distance to zero
    ax.set_ylabel("final validation loss (nats/token)")
    ax.grid(axis="y", alpha=0.3)
    return plots.save(
        fig,
        "final_loss",
        "Bar chart of the final validation loss per architecture and size with every seed",
        "Final validation loss: bar = mean over seeds, black error bar = +-1 std, grey bar = min-max, "
        "dots = individual seeds. The y axis does not start at zero.",
    )


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
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("std of validation loss over seeds")
    ax.grid(alpha=0.3)
    _legend(ax)
    return plots.save(
        fig,
        "seed_spread",
        "Seed-to-seed standard deviation of the validation loss against step",
        "Seed-to-seed spread along training: the standard deviation (ddof=1) of the validation loss over the "
        "model seeds of each configuration at each evaluated step (every seed sees the same data in the same order).",
    )


def _energy_bars(plots: Plots, finals: pd.DataFrame) -> str | None:
    if not (finals["energy_kwh"] > 0).any():
        return None
    fig, axes = plots.new(ncols=3, width=12, height=4.0)
    groups = list(finals.groupby(["arch", "size"], sort=True))
    many_sizes = finals["size"].nunique() > 1
    labels = [f"{a} {s}" if many_sizes else str(a) for (a, s), _ in groups]
    for ax, key, ylabel in zip(
        axes,
        ("energy_kwh", "co2_kg", "tokens_per_kwh"),
        ("energy per run (kWh)", "CO2eq per run (kg)", "training tokens per kWh"),
        strict=True,
    ):
        for i, ((arch, _), g) in enumerate(groups):
            values = g[key].replace([np.inf, -np.inf], np.nan).dropna()
            if values.empty:
                continue
            ax.bar(i, values.mean(), color=plots.colour[arch], alpha=0.6, width=0.6)
            ax.scatter(np.full(len(values), i), values, color="black", s=12, zorder=3)
        ax.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 3 else 0, fontsize=8)
        ax.set_ylabel(ylabel)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
        ax.grid(axis="y", alpha=0.3)
    return plots.save(
        fig,
        "energy",
        "Bar charts of energy, CO2 and tokens per kWh per architecture",
        "Energy and emissions per run as metered by codecarbon (summed over a run's attempts): bar = mean over "
        "runs, dots = runs; tokens per kWh is training tokens over the run's energy.",
    )


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
            sel = runs["config"].isin(g["config"]) & (runs["budget"] == key[-1])
            try:
                fit = _quiet(
                    lambda sel=sel: scaling.fit_isoflop(
                        runs[sel], budget_col="budget", n_boot=0, min_budgets=1, min_sizes=3
                    )["budgets"][0]
                )
            except scaling.FitError:
                fit = None  # no minimum in ln N: the profile is shown without a parabola
            if fit is not None:
                # a minimum outside the sizes trained is an extrapolation: the budget wants a bigger/smaller model
                inside = g["params"].min() <= fit["N_opt"] <= g["params"].max()
                row |= dict(n_opt=fit["N_opt"], loss_opt=fit["L_min"], curvature=fit["curvature"])
                row["optimum"] = "inside the sizes trained" if inside else "extrapolated"
        rows.append(row)
    table = pd.DataFrame(rows, columns=[*series, "budget", "sizes", "n_opt", "loss_opt", "curvature", "optimum"])
    table["exponent"] = table["n_coefficient"] = np.nan
    for _, g in table.dropna(subset=["n_opt"]).groupby(list(series), dropna=False, sort=False):
        if len(g) < 2:
            continue
        exponent, intercept = np.polyfit(np.log(g["budget"]), np.log(g["n_opt"]), 1)
        table.loc[g.index, ["exponent", "n_coefficient"]] = [exponent, math.exp(intercept)]
    return table


def _budget_colours(budgets: pd.Series) -> dict[float, Any]:
    """One colour per FLOP budget, dark (small) to light (large); plasma's last, pale-yellow tenth is left out."""
    values = sorted(budgets.dropna().unique())
    cmap = colormaps["plasma"]
    return {b: cmap(0.85 * i / max(len(values) - 1, 1)) for i, b in enumerate(values)}


def _series_label(row: Any, series: Sequence[str]) -> str:
    parts = [str(row["arch"])]
    parts += [f"{str(s).rsplit('.', 1)[-1]}={_short(row[s])}" for s in series[1:] if pd.notna(row[s])]
    return " ".join(parts)


def _isoflop_plot(plots: Plots, points: pd.DataFrame, fits: pd.DataFrame, series: Sequence[str]) -> str:
    keys = fits[list(series)].drop_duplicates().to_dict("records")
    panels = len(keys) + 1
    ncols = min(panels, 4)
    fig, axes = plots.new(ncols=ncols, nrows=math.ceil(panels / ncols), width=4.5 * ncols, height=4.2)
    for ax in axes[panels:]:
        ax.set_visible(False)
    bcolour = _budget_colours(fits["budget"])

    def match(d: pd.DataFrame, key: dict[str, Any]) -> np.ndarray:
        # NaN matches NaN: pythia has no recurrence, and is still a series
        return np.logical_and.reduce([(d[s] == v) | (d[s].isna() & pd.isna(v)) for s, v in key.items()])

    for ax, key in zip(axes, keys, strict=False):
        for f in fits[match(fits, key)].to_dict("records"):
            s = points[match(points, key) & (points["budget"] == f["budget"])].sort_values("params")
            colour = bcolour[f["budget"]]
            ax.errorbar(
                s["params"],
                s["mean"],
                yerr=[s["mean"] - s["min"], s["max"] - s["mean"]],
                fmt="o",
                color=colour,
                label=f"{f['budget']:.2e} FLOPs",
            )
            if np.isfinite(f["n_opt"]):
                grid = np.exp(np.linspace(np.log(s["params"].min()), np.log(s["params"].max()), 100))
                grid = np.sort(np.append(grid, f["n_opt"]))
                parabola = f["curvature"] * (np.log(grid) - math.log(f["n_opt"])) ** 2 + f["loss_opt"]
                ax.plot(grid, parabola, color=colour, linewidth=1)
                ax.plot(f["n_opt"], f["loss_opt"], marker="*", markersize=12, color=colour, markeredgecolor="black")
        ax.set_xscale("log")
        ax.set_xlabel("parameters N")
        ax.set_ylabel("final validation loss")
        ax.set_title(f"{_series_label(key, series)}: isoFLOP profiles", fontsize=10)
        ax.grid(alpha=0.3)
        _legend(ax)
    front = axes[len(keys)]
    for i, key in enumerate(keys):
        f = fits[match(fits, key) & np.isfinite(fits["n_opt"])].sort_values("budget")
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
    front.set_xlabel("FLOP budget C")
    front.set_ylabel("compute-optimal N")
    front.set_title("compute-optimal frontier", fontsize=10)
    front.grid(alpha=0.3)
    _legend(front)
    return plots.save(
        fig,
        "isoflop",
        "IsoFLOP profiles: final loss against parameters per FLOP budget, and the compute-optimal frontier",
        "IsoFLOP profiles: mean final validation loss over seeds (bars: min-max) against parameters, one colour per "
        f"FLOP budget (runs whose final FLOPs agree within {BUDGET_TOLERANCE:.0%}); curve: {FIT_NAME}; star: its "
        "minimum (budgets with >= 3 sizes). Last panel: that minimum's N against the budget, with a power-law fit.",
    )


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
        levels = sorted(d["budget"].unique())
        rows = []
        for run in d.itertuples():
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
                rows.append(
                    {"run": run.run, "arch": run.arch, "size": run.size, "R": run.R, "budget": c, "val_loss": loss}
                )
        d = pd.DataFrame(rows, columns=["run", "arch", "size", "R", "budget", "val_loss"])
    table = (
        d.groupby(["arch", "budget", "size", "R"], sort=True)["val_loss"]
        .agg(["mean", "min", "max", "count"])
        .reset_index()
        .rename(columns={"count": "n"})
    )
    rank = table["size"].map({s: i for i, s in enumerate(size_order)})
    table = table.assign(_rank=rank).sort_values(["arch", "budget", "_rank", "R"], kind="stable")
    return table.drop(columns="_rank").reset_index(drop=True), matched


def _recurrence_plot(plots: Plots, table: pd.DataFrame, col: str, matched: bool) -> str:
    archs = sorted(table["arch"].unique())
    bcolour = _budget_colours(table["budget"])
    many_sizes = table["size"].nunique() > 1
    what = "validation loss at matched FLOPs" if matched else "final validation loss"
    fig, axes = plots.new(ncols=len(archs), width=min(max(7.0, 5.0 * len(archs)), 18.0), height=4.2)
    for ax, arch in zip(axes, archs, strict=True):
        for (budget, size), s in table[table["arch"] == arch].groupby(["budget", "size"], sort=True):
            ax.errorbar(
                s["R"],
                s["mean"],
                yerr=[s["mean"] - s["min"], s["max"] - s["mean"]],
                marker="o",
                linestyle=plots.style.get(size, "-"),
                color=bcolour[budget],
                label=f"{budget:.2e} FLOPs" + (f", {size}" if many_sizes else ""),
            )
        ax.set_xlabel(col)
        ax.set_ylabel(what)
        ax.set_title(f"{arch}: loss against recurrence", fontsize=10)
        ax.grid(alpha=0.3)
        _legend(ax)
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


def _eval_plot(plots: Plots, df: pd.DataFrame, col: str, index: int) -> str | None:
    fig, (ax,) = plots.new()
    if not _band_plot(ax, plots, df, "step", col):
        return None
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(col)
    if str(col).endswith("perplexity"):
        ax.set_yscale("log")  # it falls by orders of magnitude early in training
    ax.grid(alpha=0.3)
    _legend(ax)
    return plots.save(
        fig,
        f"eval_{index}",
        f"{col} against step, one colour per architecture",
        f"{col} against step: mean over seeds, min-max band and +-1 std band.",
    )


# ---------------------------------------------------------------------------------------------------- report


def _load_table(sweep_root: Path) -> pd.DataFrame:
    from parcae_runner.analysis.collect import collect

    return collect(sweep_root)


def _sweep_json(sweep_root: Path) -> dict[str, Any]:
    path = sweep_root / "sweep.json"
    try:
        return json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        return {}


def _section(anchor: str, title: str, body: Iterable[str]) -> tuple[str, str, str]:
    return anchor, title, f'<section id="{anchor}"><h2>{html.escape(title)}</h2>{"".join(body)}</section>'


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _p(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def _value_kind(series: pd.Series) -> str:
    return "float" if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series) else "text"


def render_sections(df: pd.DataFrame, folder: Path, sweep_root: Path) -> list[tuple[str, str, str]]:
    """Write the plots into ``folder`` and return the sections as (anchor, title, HTML).

    ``df`` gains a ``config`` column (see ``add_configs``)."""
    size_order = (
        df.groupby("size")["params"].median().sort_values(kind="stable").index.tolist()
        if "params" in df
        else sorted(df["size"].unique())
    )
    variants = variant_columns(df)
    order = add_configs(df, variants, size_order)
    plots = Plots(folder, df, order, size_order)
    finals = final_runs(df)
    summary = final_loss_summary(finals, order, variants)
    variant_cols = [Col(v, v, _value_kind(summary[v])) for v in variants]
    sections = []

    # -- overview
    sweep = _sweep_json(sweep_root)
    body = []
    if sweep.get("question"):
        body.append(_p(f"Question: {sweep['question']}"))
    if sweep.get("params"):
        body.append(_p("Swept: " + "; ".join(f"{k} = {v}" for k, v in sweep["params"].items())))
    if sweep.get("fixed"):
        body.append(_p("Fixed: " + "; ".join(f"{k} = {v}" for k, v in sweep["fixed"].items())))
    body.append(
        _p(
            f"{_count(len(finals), 'run')}, {_count(df['arch'].nunique(), 'architecture')}, "
            f"{_count(df['size'].nunique(), 'size')}, {_count(df['seed'].nunique(), 'seed')}, "
            f"{_count(len(order), 'configuration')}; {_count(len(df), 'evaluated (run, step) row')}."
        )
    )
    if "status" in finals:
        unfinished = finals[finals["status"] != "done"]
        if len(unfinished):
            body.append(
                _p(
                    "Not finished (their latest values are used): "
                    + ", ".join(f"{r.run} ({r.status})" for r in unfinished.itertuples())
                )
            )
    sections.append(_section("overview", "Overview", body))

    # -- curves
    sections.append(_section("curves", "Loss curves", _curves(plots, df)))

    # -- final loss
    ident = [Col("arch", "architecture", "text"), Col("size", "size", "text"), *variant_cols]
    body = [
        html_table(
            "final-loss",
            summary,
            [
                *ident,
                Col("params", "parameters", "int"),
                Col("n", "seeds", "int"),
                Col("mean", "mean", "loss"),
                Col("std", "std", "loss"),
                Col("min", "min", "loss"),
                Col("max", "max", "loss"),
                Col("val_bpb_mean", "mean bpb", "loss"),
            ],
            "Final validation loss (nats/token) over seeds; std is the sample std (ddof=1)",
        ),
        _final_bars(plots, finals, summary),
        html_table(
            "seed-variance",
            summary,
            [
                *ident,
                Col("n", "seeds", "int"),
                Col("std", "std", "float"),
                Col("variance", "variance", "sci"),
                Col("range", "max - min", "float"),
            ],
            "Seed-to-seed variance of the final validation loss (sample variance, ddof=1)",
        ),
    ]
    spread = _seed_spread(plots, df)
    if spread:
        body.append(spread)
    sections.append(_section("final", "Final validation loss by architecture and size", body))

    # -- energy
    if {"energy_kwh", "co2_kg", "tokens"} <= set(finals):
        run_cols = [
            Col("run", "run", "text"),
            Col("arch", "architecture", "text"),
            Col("size", "size", "text"),
            *variant_cols,
            Col("seed", "seed", "int"),
            Col("step", "steps", "int"),
            Col("tokens", "tokens", "int"),
            Col("duration_s", "duration (s)", "float"),
            Col("energy_kwh", "energy (kWh)", "sci"),
            Col("co2_kg", "CO2eq (kg)", "sci"),
            Col("tokens_per_kwh", "tokens per kWh", "sci"),
            Col("val_loss", "final val loss", "loss"),
        ]
        body = [html_table("energy-runs", finals, [c for c in run_cols if c.key in finals], "Per run")]
        body.append(
            html_table(
                "energy-arch",
                energy_summary(finals),
                [
                    Col("arch", "architecture", "text"),
                    Col("size", "size", "text"),
                    Col("runs", "runs", "int"),
                    Col("energy_kwh_total", "energy, all runs (kWh)", "sci"),
                    Col("co2_kg_total", "CO2eq, all runs (kg)", "sci"),
                    Col("energy_kwh_mean", "energy per run (kWh)", "sci"),
                    Col("tokens_per_kwh", "tokens per kWh", "sci"),
                ],
                "Per architecture and size",
            )
        )
        bars = _energy_bars(plots, finals)
        body.append(bars or _p("No run was metered (energy is zero everywhere): train with logger.codecarbon=true."))
        sections.append(_section("energy", "Energy and CO2", body))

    # -- recurrence and isoFLOP, on FLOP budgets
    recurrence = [c for c in df.columns if "recurrence" in str(c).lower()]
    if "flops" in finals:
        finals["budget"] = budget_bins(finals["flops"].astype(float))
        for i, col in enumerate(recurrence):
            table, matched = recurrence_table(finals, df, col, size_order)
            if table.empty:
                continue
            cols = [
                Col("arch", "architecture", "text"),
                Col("budget", "FLOP budget", "sci"),
                Col("size", "size", "text"),
                Col("R", col, "float"),
                Col("n", "seeds", "int"),
                Col("mean", "mean val loss", "loss"),
                Col("min", "min", "loss"),
                Col("max", "max", "loss"),
            ]
            read = "read at matched FLOPs along the curves" if matched else "at the end of the runs"
            body = [
                _recurrence_plot(plots, table, col, matched),
                html_table(f"recurrence-{i}", table, cols, f"Validation loss over seeds, {read}"),
            ]
            sections.append(_section(f"recurrence-{i}", f"Loss against {col}", body))
        if "params" in finals:
            series = ["arch", *recurrence]
            points = isoflop_points(finals, series)
            fits = isoflop_fits(finals, points, series)
            if len(fits):
                cols = [
                    Col("arch", "architecture", "text"),
                    *[Col(r, r, "float") for r in recurrence],
                    Col("budget", "FLOP budget", "sci"),
                    Col("sizes", "sizes", "int"),
                    Col("n_opt", "compute-optimal N", "sci"),
                    Col("loss_opt", "loss at optimum", "loss"),
                    Col("optimum", "optimum", "text"),
                    Col("exponent", "N_opt ~ C^a: a", "float"),
                ]
                body = [
                    _isoflop_plot(plots, points, fits, series),
                    html_table(
                        "isoflop",
                        fits,
                        cols,
                        f"Minimum of the parabola per budget (needs >= 3 sizes and a minimum); fit: {FIT_NAME}. "
                        "The exponent a of the series' frontier is repeated on each of its budgets.",
                    ),
                ]
                sections.append(_section("isoflop", "IsoFLOP profiles and the compute-optimal frontier", body))

    # -- eval metrics
    eval_cols = sorted(
        c
        for c in df.columns
        # a metric's standard error is not a curve of its own (the seed bands show the spread)
        if str(c).startswith("eval/") and not str(c).endswith("_stderr") and pd.api.types.is_numeric_dtype(df[c])
    )
    if eval_cols:
        body = [fig for i, col in enumerate(eval_cols) if (fig := _eval_plot(plots, df, col, i))]
        final_eval = (
            finals.melt(id_vars=["config"], value_vars=eval_cols, var_name="metric")
            .dropna(subset=["value"])
            .groupby(["metric", "config"], sort=True)["value"]
            .agg(["mean", "std", "count"])
            .reset_index()
            .rename(columns={"count": "n"})
        )
        final_eval = final_eval.sort_values(
            ["metric", "config"], key=lambda c: c.map({k: i for i, k in enumerate(order)}) if c.name == "config" else c
        )
        body.append(
            html_table(
                "eval-final",
                final_eval,
                [
                    Col("metric", "metric", "text"),
                    Col("config", "configuration", "text"),
                    Col("n", "seeds", "int"),
                    Col("mean", "mean (latest)", "float"),
                    Col("std", "std", "float"),
                ],
                "Latest value of each benchmark metric per run, over seeds",
            )
        )
        sections.append(_section("evals", "Benchmark metrics", body))
    return sections


def render_html(title: str, sections: list[tuple[str, str, str]]) -> str:
    nav = "".join(f'<li><a href="#{a}">{html.escape(t)}</a></li>' for a, t, _ in sections)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{CSS}</style>"
        f"<script>{SELF_CHECK_JS}</script></head>\n<body>"
        f"<h1>{html.escape(title)}</h1><nav><ul>{nav}</ul></nav>\n"
        + "\n".join(s for _, _, s in sections)
        + "\n</body></html>\n"
    )


def _replace_dir(new: Path, target: Path) -> None:
    """Put ``new`` where ``target`` is: renames only, so the old report stays whole until the new one is in."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build_report(sweep_root: Path, df: pd.DataFrame | None = None) -> Path:
    """Write ``<sweep_root>/report/index.html`` and its plots; returns the path of ``index.html``.

    ``df`` is the results table (one row per run x evaluated step, as ``analysis.collect.collect``
    returns); without it the sweep is collected (which also refreshes ``results.parquet``).
    """
    sweep_root = Path(sweep_root)
    if df is None:
        df = _load_table(sweep_root)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(
            f"results table lacks column(s) {', '.join(missing)}; it has {', '.join(map(str, df.columns))}"
        )
    if df.empty:
        raise ValueError(f"{sweep_root}: no runs to report on")
    df = df.copy()
    df["arch"], df["size"] = df["arch"].astype(str), df["size"].astype(str)

    sweep_root.mkdir(parents=True, exist_ok=True)  # a table passed in may come from elsewhere
    tmp = Path(tempfile.mkdtemp(dir=sweep_root, prefix=f".{REPORT_DIR}.tmp-"))
    try:
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes 0700; a report is for sharing
        sections = render_sections(df, tmp, sweep_root)
        (tmp / INDEX).write_text(render_html(f"Sweep {sweep_root.name}: comparison report", sections))
        _replace_dir(tmp, sweep_root / REPORT_DIR)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sweep_root / REPORT_DIR / INDEX
