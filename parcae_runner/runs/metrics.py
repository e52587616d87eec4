"""The one reader of ``metrics.jsonl``: one JSON record per line, appended as training goes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Every complete record of ``path`` (none when it does not exist), in file order.

    A line cut by a kill mid-write (no newline, or not JSON) is dropped: it belongs to a step
    that will be redone."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    with path.open() as f:
        for line in f:
            if not line.endswith("\n") or not line.strip():
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def format_records(records: list[dict[str, Any]]) -> str:
    """Records as ``metrics.jsonl`` text (keys sorted, one line each)."""
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
