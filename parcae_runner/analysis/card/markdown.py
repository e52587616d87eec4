"""The Markdown pieces of a card: one format for measured floats, one for counts, two-column tables."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any


def num(value: Any, digits: int = 6) -> str:
    """One format for every measured float in a card: ``digits`` significant digits (``n/a`` if missing).

    Significant digits, not decimals, because the values span ten orders of magnitude (kWh of a
    debug run to FLOPs); the card test parses these strings back and compares them with run.json.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{float(value):.{digits}g}"


def count(value: Any) -> str:
    """Integers (parameters, tokens, steps) with thousands separators."""
    return "n/a" if value is None else f"{int(value):,}"


def table_lines(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A Markdown table, one line per element: the header, its rule, then the rows."""
    return [_row(header), "|" + "---|" * len(header)] + [_row(cells) for cells in rows]


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def table(rows: list[tuple[str, str]], header: tuple[str, str] = ("", "")) -> str:
    """A two-column Markdown table of (label, value) rows under ``header``."""
    return "\n".join(table_lines(header, rows))
