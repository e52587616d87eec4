"""What the report reads from a sweep folder: the results table and ``sweep.json``, one function each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from parcae_runner.runs import SweepRecord


def load_table(sweep_root: Path) -> pd.DataFrame:
    """The sweep's results table, collected now (which also refreshes ``results.parquet``)."""
    from parcae_runner.analysis.collect import collect

    return collect(sweep_root)


def sweep_json(sweep_root: Path) -> dict[str, Any]:
    """The sweep's ``sweep.json`` (question, swept and fixed settings); empty when missing or unreadable."""
    try:
        return dict(SweepRecord.read(sweep_root))
    except (OSError, ValueError):
        return {}
