"""The HTML pieces of the report: one format per kind of number, tables whose numeric cells carry their
exact value in ``data-value`` (so a test can compare the page with the table), paragraphs and sections."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

# a section of the page: (anchor, title, HTML)
Section = tuple[str, str, str]


@dataclass(frozen=True)
class Col:
    """A table column: the DataFrame column ``key``, its header and its kind (which fixes its format)."""

    key: str
    header: str
    kind: str = "float"  # text | int | float | loss | sci


def _missing(value: Any) -> bool:
    """None, NaN, NaT or pd.NA (a nullable column's gap)."""
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def fmt(value: Any, kind: str) -> str:
    """The one format of each kind of number: ``int`` 1,234; ``loss`` 4 decimals; ``float`` 4 significant
    digits; ``sci`` 3 decimals in scientific notation. Missing (and infinite) values are an en dash."""
    if _missing(value) or (kind != "text" and not math.isfinite(float(value))):
        return "\u2013"
    if kind == "text":
        return str(value)
    if kind == "int":
        return f"{int(value):,}"
    if kind == "loss":
        return f"{float(value):.4f}"
    if kind == "sci":
        return f"{float(value):.3e}"
    return f"{float(value):.4g}"


def raw(value: Any, kind: str) -> str:
    """The exact value for ``data-value``: ``repr`` of the float round-trips, ints stay ints."""
    if _missing(value):
        return "nan"
    if kind == "int" and float(value).is_integer():
        return str(int(value))
    return repr(float(value))  # an "int" column holding a fraction (a median of two) keeps it


def html_table(table_id: str, df: pd.DataFrame, cols: Sequence[Col], caption: str = "") -> str:
    """``df`` as an HTML table; numeric cells carry ``data-col`` and ``data-value``."""
    head = "".join(f"<th>{html.escape(c.header)}</th>" for c in cols)
    rows = []
    for rec in df.to_dict("records"):
        cells = []
        for c in cols:
            value = rec.get(c.key)
            if c.kind == "text":
                cells.append(f'<td data-col="{html.escape(c.key)}">{html.escape(fmt(value, "text"))}</td>')
            else:
                cells.append(
                    f'<td class="num" data-col="{html.escape(c.key)}" data-value="{raw(value, c.kind)}">'
                    f"{html.escape(fmt(value, c.kind))}</td>"
                )
        rows.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return (
        f'<table id="{html.escape(table_id)}">{cap}<thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def section(anchor: str, title: str, body: Iterable[str]) -> Section:
    """A ``<section>`` with its heading, and what the page's table of contents needs."""
    return anchor, title, f'<section id="{anchor}"><h2>{html.escape(title)}</h2>{"".join(body)}</section>'


def count(n: int, noun: str) -> str:
    """``n`` and ``noun``, plural unless ``n`` is one."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def paragraph(text: str) -> str:
    return f"<p>{html.escape(text)}</p>"


def value_kind(series: pd.Series) -> str:
    """The column kind of a swept setting: numbers are floats, anything else (and booleans) text."""
    return "float" if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series) else "text"


def of_kind(kind: str, **headers: str) -> list[Col]:
    """Columns of one kind, in order, each given as ``key="header"``."""
    return [Col(key, header, kind) for key, header in headers.items()]


# columns many tables share
ARCH = Col("arch", "architecture", "text")
SIZE = Col("size", "size", "text")
SEEDS = Col("n", "seeds", "int")
