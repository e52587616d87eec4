"""Building the report folder: the sections in page order, the page, and the swap that puts the new folder
where the old one was, so a reader never sees half a report."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from parcae_runner.analysis.report.context import prepare
from parcae_runner.analysis.report.curves import curves_section
from parcae_runner.analysis.report.energy import energy_section
from parcae_runner.analysis.report.evals import evals_section
from parcae_runner.analysis.report.final_loss import final_loss_section
from parcae_runner.analysis.report.isoflop import isoflop_section
from parcae_runner.analysis.report.markup import Section
from parcae_runner.analysis.report.overview import overview_section
from parcae_runner.analysis.report.page import render_html
from parcae_runner.analysis.report.recurrence import recurrence_sections
from parcae_runner.analysis.report.sources import load_table, sweep_json
from parcae_runner.analysis.report.tables import budget_bins

REPORT_DIR = "report"
INDEX = "index.html"
REQUIRED = ("run", "arch", "size", "seed", "step", "val_loss")


def render_sections(df: pd.DataFrame, folder: Path, sweep_root: Path) -> list[Section]:
    """Write the plots into ``folder`` and return the sections as (anchor, title, HTML).

    ``df`` gains a ``config`` column (see ``add_configs``)."""
    ctx = prepare(df, folder)
    sections = [
        overview_section(ctx, sweep_json(sweep_root)),
        curves_section(ctx),
        final_loss_section(ctx),
        energy_section(ctx),
    ]
    # recurrence and isoFLOP compare runs on FLOP budgets
    if "flops" in ctx.finals:
        ctx.finals["budget"] = budget_bins(ctx.finals["flops"].astype(float))
        sections += [*recurrence_sections(ctx), isoflop_section(ctx)]
    sections.append(evals_section(ctx))
    return [s for s in sections if s is not None]


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


def _checked(df: pd.DataFrame, sweep_root: Path) -> pd.DataFrame:
    """A copy of the results table with architecture and size as text; ValueError if it cannot be reported on."""
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(
            f"results table lacks column(s) {', '.join(missing)}; it has {', '.join(map(str, df.columns))}"
        )
    if df.empty:
        raise ValueError(f"{sweep_root}: no runs to report on")
    df = df.copy()
    df["arch"], df["size"] = df["arch"].astype(str), df["size"].astype(str)
    return df


def build_report(sweep_root: Path, df: pd.DataFrame | None = None) -> Path:
    """Write ``<sweep_root>/report/index.html`` and its plots; returns the path of ``index.html``.

    ``df`` is the results table (one row per run x evaluated step, as ``analysis.collect.collect``
    returns); without it the sweep is collected (which also refreshes ``results.parquet``).
    """
    sweep_root = Path(sweep_root)
    df = _checked(load_table(sweep_root) if df is None else df, sweep_root)
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
