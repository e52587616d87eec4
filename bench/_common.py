"""What every benchmark script shares: writing its JSON report where ``--out`` says, and saying so."""

from __future__ import annotations

import json
from pathlib import Path


def write_report(out: Path, report: dict, summary: str = "") -> None:
    """Write ``report`` as indented JSON to ``out`` (creating its folder), then print ``summary`` and the path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    if summary:
        print(summary)
    print(f"wrote {out}")
