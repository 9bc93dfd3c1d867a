"""The HTML building blocks of the report's sections: table cells, tables, figures and the box
that names a missing piece."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ptk.report.page import Missing

_e = html.escape


def cell(value: Any, column: str = "") -> str:
    """A table cell: empty for NaN/None, ints as ints, LR in scientific notation, else 4 sig."""
    if value is None:
        return ""
    if isinstance(value, str):
        return _e(value)
    try:
        x = float(value)
    except (TypeError, ValueError):
        return _e(str(value))
    if math.isnan(x):
        return ""
    if column in ("epoch", "skipped_batches") or (column.endswith("epochs") and x.is_integer()):
        return str(int(x))
    if column == "lr" or (x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5)):
        return f"{x:.2e}"
    if column == "wall_time_s":
        return f"{x:.1f}"
    return f"{x:.4g}" if abs(x) >= 1 else f"{x:.4f}"


def table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    row_classes: Sequence[str] | None = None,
    cls: str = "data",
) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        klass = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        body.append(f"<tr{klass}>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>")
    table = f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
    return f'<div class="scroll">{table}</div>'


def missing_box(item: Missing) -> str:
    cmd = f"<br>To produce it, run <code>{_e(item.command)}</code>" if item.command else ""
    return f'<p class="missing"><strong>Missing:</strong> {_e(item.message)}.{cmd}</p>'


def figure(src: str, alt: str, caption: str = "") -> str:
    cap = f"<figcaption>{caption}</figcaption>" if caption else ""
    return f'<figure><img src="{_e(src)}" alt="{_e(alt)}">{cap}</figure>'
