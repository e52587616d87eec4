"""The report's first section: the sweep's question and settings, what it holds, and the runs that did not
finish."""

from __future__ import annotations

from typing import Any

from parcae_runner.analysis.report.context import ReportContext
from parcae_runner.analysis.report.markup import Section, count, paragraph, section
from parcae_runner.runs import RunStatus


def overview_section(ctx: ReportContext, sweep: dict[str, Any]) -> Section:
    """The overview, from ``sweep.json``'s facts (``sweep``) and the table."""
    df, finals = ctx.df, ctx.finals
    body = []
    if sweep.get("question"):
        body.append(paragraph(f"Question: {sweep['question']}"))
    for key, label in (("params", "Swept"), ("fixed", "Fixed")):
        if sweep.get(key):
            body.append(paragraph(f"{label}: " + "; ".join(f"{k} = {v}" for k, v in sweep[key].items())))
    body.append(
        paragraph(
            f"{count(len(finals), 'run')}, {count(df['arch'].nunique(), 'architecture')}, "
            f"{count(df['size'].nunique(), 'size')}, {count(df['seed'].nunique(), 'seed')}, "
            f"{count(len(ctx.order), 'configuration')}; {count(len(df), 'evaluated (run, step) row')}."
        )
    )
    unfinished = finals[finals["status"] != RunStatus.DONE] if "status" in finals else finals.iloc[:0]
    if len(unfinished):
        body.append(
            paragraph(
                "Not finished (their latest values are used): "
                + ", ".join(f"{r.run} ({r.status})" for r in unfinished.itertuples())
            )
        )
    return section("overview", "Overview", body)
