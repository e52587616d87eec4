"""The energy section: energy, CO2 and tokens per kWh per run and per architecture x size (tables), and bar
charts of them over runs."""

from __future__ import annotations

import numpy as np
import pandas as pd

from parcae_runner.analysis.report.context import ReportContext
from parcae_runner.analysis.report.markup import ARCH, SIZE, Col, Section, html_table, paragraph, section
from parcae_runner.analysis.report.plots import Plots
from parcae_runner.analysis.report.tables import energy_summary

ENERGY_COLUMNS = {"energy_kwh", "co2_kg", "tokens"}
TOKENS_PER_KWH = Col("tokens_per_kwh", "tokens per kWh", "sci")


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
        Col("seed", "seed", "int"),
        Col("step", "steps", "int"),
        Col("tokens", "tokens", "int"),
        Col("duration_s", "duration (s)", "float"),
        Col("energy_kwh", "energy (kWh)", "sci"),
        Col("co2_kg", "CO2eq (kg)", "sci"),
        TOKENS_PER_KWH,
        Col("val_loss", "final val loss", "loss"),
    ]
    arch_cols = [
        ARCH,
        SIZE,
        Col("runs", "runs", "int"),
        Col("energy_kwh_total", "energy, all runs (kWh)", "sci"),
        Col("co2_kg_total", "CO2eq, all runs (kg)", "sci"),
        Col("energy_kwh_mean", "energy per run (kWh)", "sci"),
        TOKENS_PER_KWH,
    ]
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
