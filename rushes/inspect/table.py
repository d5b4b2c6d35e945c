"""Plain-text, CSV and JSON rendering of small result tables (stdlib only).

Used by the terminal summary and by ``rushes inspect --sql``: ``format_table`` right-aligns numbers,
left-aligns text and cuts over-long cells so a table stays readable in a terminal; CSV and JSON keep
every value whole for other tools.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from datetime import date, datetime

FORMATS = ("table", "csv", "json")


def format_value(value, digits: int = 4) -> str:
    """One cell as text: floats with ``digits`` significant digits, None as empty, lists joined."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if abs(value) >= 10 ** digits:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_value(v, digits) for v in value) + "]"
    return str(value)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def format_table(headers: Sequence[str], rows: Sequence[Sequence], max_cell: int = 60, indent: str = "") -> str:
    """Aligned text table: a header line, a rule, one line per row. Numbers are right-aligned."""
    cells = [[format_value(v) for v in row] for row in rows]
    cells = [[c if len(c) <= max_cell else c[: max_cell - 1] + "…" for c in row] for row in cells]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    numeric = [bool(rows) and all(_is_number(r[i]) or r[i] is None for r in rows) for i in range(len(headers))]

    def line(values):
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return (indent + "  ".join(parts)).rstrip()

    out = [line(list(headers)), indent + "  ".join("-" * w for w in widths)]
    out += [line(row) for row in cells]
    return "\n".join(out)


def render(columns: Sequence[str], rows: Sequence[Sequence], fmt: str = "table") -> str:
    """A query result as ``table`` (aligned text plus a row count), ``csv`` or ``json`` (list of objects)."""
    if fmt == "table":
        footer = f"({len(rows)} row{'s' if len(rows) != 1 else ''})"
        return format_table(columns, rows) + "\n" + footer
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([[_csv_value(v) for v in row] for row in rows])
        return buf.getvalue().rstrip("\n")
    if fmt == "json":
        return strict_json([dict(zip(columns, row)) for row in rows])
    raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=_json_default)
    return value


def _finite(value):
    """``value`` with every NaN or infinite float replaced by None (JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def strict_json(value, indent: int = 1) -> str:
    """JSON that strict parsers accept: NaN and infinities become null (Python's json would write NaN)."""
    return json.dumps(_finite(value), indent=indent, default=_json_default, allow_nan=False)


def _json_default(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)
