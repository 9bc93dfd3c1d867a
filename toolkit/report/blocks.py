"""The HTML building blocks of the report's sections: table cells, tables, figures, the box that
names a missing piece. The blocks are macros of ``templates/blocks.html``, rendered by Jinja2 with
autoescaping: arguments that are text are escaped there, once; arguments that are HTML built by
the sections (their names say ``html``) go in as :class:`markupsafe.Markup`.
"""

from __future__ import annotations

import functools
import html
import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

if TYPE_CHECKING:
    import jinja2

    from ptk.report.inputs import VersionInfo
    from ptk.report.page import Missing

_e = html.escape


@functools.cache
def environment() -> jinja2.Environment:
    """The Jinja2 environment over this package's ``templates/`` (the page and its blocks)."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("ptk.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def _macro(name: str) -> Any:
    return getattr(environment().get_template("blocks.html").module, name)


def _html(fragments: Iterable[str]) -> list[Markup]:
    return [Markup(f) for f in fragments]


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
    """A scrollable table; ``header`` and the cells of ``rows`` are HTML."""
    rows_html = [_html(row) for row in rows]
    return str(_macro("table")(_html(header), rows_html, list(row_classes or []), cls))


def missing_box(item: Missing) -> str:
    return str(_macro("missing_box")(item.message, item.command))


def figure(src: str, alt: str, caption: str = "") -> str:
    """A figure; ``caption`` is HTML."""
    return str(_macro("figure")(src, alt, Markup(caption)))


def missing_list(items: Sequence[Missing]) -> str:
    """The page's list of missing pieces, each with the command that would produce it."""
    return str(_macro("missing_list")(items))


def card(rows: Sequence[tuple[str, str]]) -> str:
    """The version card's table: (heading, value) rows, both HTML."""
    return str(_macro("card")([(Markup(k), Markup(v)) for k, v in rows]))


def no_run_card(version: str, info: VersionInfo | None) -> str:
    """What the registry says about a version that has no run (empty without ``info``)."""
    return str(_macro("no_run_card")(version, info))
