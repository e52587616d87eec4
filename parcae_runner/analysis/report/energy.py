"""The energy section: energy, CO2 and tokens per kWh per run and per architecture x size (tables), and bar
charts of them over runs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from parcae_runner.analysis.report.context import ReportContext
from parcae_runner.analysis.report.markup import ARCH, SIZE, Col, Section, html_table, of_kind, paragraph, section
from parcae_runner.analysis.report.plots import Plots, bar_with_points, finish_bar_axes
from parcae_runner.analysis.report.tables import energy_summary

ENERGY_COLUMNS = {"energy_kwh", "co2_kg", "tokens"}
BARS_ALT = "Bar charts of energy, CO2 and tokens per kWh per architecture"
BARS_CAPTION = (
    "Energy and emissions per run as metered by codecarbon (summed over a run's attempts): bar = mean over "
    "runs, dots = runs; tokens per kWh is training tokens over the run's energy."
)


def energy_section(ctx: ReportContext) -> Section | None:
    """Per-run and per-architecture tables and the bar charts; None when the table has no energy columns."""
    finals = ctx.finals
    if not ENERGY_COLUMNS <= set(finals):
        return None
    run_cols = [
        Col("run", "run", "text"),
        ARCH,
        SIZE,
        *ctx.variant_cols,
        *of_kind("int", seed="seed", step="steps", tokens="tokens"),
        Col("duration_s", "duration (s)"),
        *of_kind("sci", energy_kwh="energy (kWh)", co2_kg="CO2eq (kg)", tokens_per_kwh="tokens per kWh"),
        Col("val_loss", "final val loss", "loss"),
    ]
    totals = of_kind(
        "sci",
        energy_kwh_total="energy, all runs (kWh)",
        co2_kg_total="CO2eq, all runs (kg)",
        energy_kwh_mean="energy per run (kWh)",
        tokens_per_kwh="tokens per kWh",
    )
    arch_cols = [ARCH, SIZE, Col("runs", "runs", "int"), *totals]
    bars = _energy_bars(ctx.plots, finals)
    body = [
        html_table("energy-runs", finals, [c for c in run_cols if c.key in finals], "Per run"),
        html_table("energy-arch", energy_summary(finals), arch_cols, "Per architecture and size"),
        bars or paragraph("No run was metered (energy is zero everywhere): train with logger.codecarbon=true."),
    ]
    return section("energy", "Energy and CO2", body)


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
            bar_with_points(ax, i, values, plots.colour[arch], values.mean(), size=12)
        ax.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 3 else 0, fontsize=8)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
        finish_bar_axes(ax, ylabel)
    return plots.save(fig, "energy", BARS_ALT, BARS_CAPTION)
