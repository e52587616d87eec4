"""What every section of the report reads: the results table labelled with configurations, each run's
final values, the final-loss summary over seeds, the table columns of the swept settings, and the plot
writer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from parcae_runner.analysis.report.markup import Col, value_kind
from parcae_runner.analysis.report.plots import Plots
from parcae_runner.analysis.report.tables import (
    add_configs,
    final_loss_summary,
    final_runs,
    size_order,
    variant_columns,
)


@dataclass
class ReportContext:
    """``df``: the results table with its ``config`` column; ``order``: configurations in display order;
    ``finals``: one row per run; ``summary``: final loss per configuration; ``variant_cols``: table columns
    of the swept settings besides architecture, size and seed."""

    df: pd.DataFrame
    order: list[str]
    size_order: list[str]
    variants: list[str]
    variant_cols: list[Col]
    finals: pd.DataFrame
    summary: pd.DataFrame
    plots: Plots


def prepare(df: pd.DataFrame, folder: Path) -> ReportContext:
    """The context of a report whose plots go into ``folder``; ``df`` gains a ``config`` column."""
    sizes = size_order(df)
    variants = variant_columns(df)
    order = add_configs(df, variants, sizes)
    finals = final_runs(df)
    summary = final_loss_summary(finals, order, variants)
    return ReportContext(
        df=df,
        order=order,
        size_order=sizes,
        variants=variants,
        variant_cols=[Col(v, v, value_kind(summary[v])) for v in variants],
        finals=finals,
        summary=summary,
        plots=Plots(folder, df, order, sizes),
    )
