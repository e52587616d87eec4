"""The report's figures: the ``Plots`` writer (one colour per architecture, one line style per size, one
marker per swept setting), and the drawing every plot shares (bands over seeds, min-max error bars,
axis labels, budget colours)."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 100
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">")


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
        """Write ``fig`` as ``<name>.png`` and return its ``<figure>`` with ``alt`` text and ``caption``."""
        path = self.folder / f"{name}.png"
        # no bbox_inches="tight": the PNG is exactly figsize x dpi, so <img width/height> are its true size
        fig.savefig(path, dpi=DPI)
        width, height = (int(round(v)) for v in fig.get_size_inches() * DPI)
        return (
            f'<figure><img src="{html.escape(path.name)}" width="{width}" height="{height}" '
            f'alt="{html.escape(alt)}"><p class="caption">{html.escape(caption)}</p></figure>'
        )


def legend(ax: Any) -> None:
    """A small legend, only when something is labelled (an empty one warns)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def band_plot(ax: Any, plots: Plots, df: pd.DataFrame, x: str, y: str, positive_x: bool = False) -> bool:
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


def finish_axes(
    ax: Any, xlabel: str, ylabel: str, title: str | None = None, with_legend: bool = True, **title_kw: Any
) -> None:
    """Axis labels, an optional title, a light grid, and (``with_legend``) a legend when something is labelled."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title, **title_kw)
    ax.grid(alpha=0.3)
    if with_legend:
        legend(ax)


def bar_with_points(ax: Any, x: float, points: Any, colour: Any, bar: float, size: float) -> None:
    """A bar of height ``bar`` at ``x`` and every one of ``points`` as a black dot over it."""
    ax.bar(x, bar, color=colour, alpha=0.6, width=0.6)
    ax.scatter(np.full(len(points), x), points, color="black", s=size, zorder=3)


def finish_bar_axes(ax: Any, ylabel: str) -> None:
    """The value axis of a bar chart: its label and a light horizontal grid."""
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)


def range_errorbar(ax: Any, x: Any, stats: pd.DataFrame, **kwargs: Any) -> None:
    """``stats``' mean over seeds at ``x`` with bars from its min to its max."""
    mean = stats["mean"]
    ax.errorbar(x, mean, yerr=[mean - stats["min"], stats["max"] - mean], **kwargs)


def budget_colours(budgets: pd.Series) -> dict[float, Any]:
    """One colour per FLOP budget, dark (small) to light (large); plasma's last, pale-yellow tenth is left out."""
    values = sorted(budgets.dropna().unique())
    cmap = colormaps["plasma"]
    return {b: cmap(0.85 * i / max(len(values) - 1, 1)) for i, b in enumerate(values)}
