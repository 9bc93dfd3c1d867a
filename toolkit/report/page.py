"""The page being built: its sections, figures and missing pieces, and what
:func:`ptk.report.build_report` returns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptk.report.blocks import missing_box
from ptk.report.run import Run


@dataclass
class Missing:
    """A section the page could not fill, and the command that would."""

    section: str
    message: str
    command: str | None = None

    def line(self) -> str:
        return self.message + (f": run `{self.command}`" if self.command else "")


@dataclass
class Report:
    """What :func:`build_report` wrote."""

    html: Path
    out_dir: Path
    run: Run | None
    figures: list[Path]
    missing: list[Missing]


class Page:
    """Collects sections, figures and missing pieces while the report is built."""

    def __init__(self, out_dir: Path, dpi: int) -> None:
        self.out_dir = out_dir
        self.fig_dir = out_dir / "figures"
        self.dpi = dpi
        self.sections: list[tuple[str, str, str]] = []  # (anchor, title, html)
        self.figures: list[Path] = []
        self.missing: list[Missing] = []

    def add(self, anchor: str, title: str, body: str) -> None:
        self.sections.append((anchor, title, body))

    def miss(self, section: str, message: str, command: str | None = None) -> str:
        item = Missing(section, message, command)
        self.missing.append(item)
        return missing_box(item)

    def save(self, fig: Any, name: str) -> str:
        from ptk.plots import save_figure

        path = save_figure(fig, self.fig_dir / name, dpi=self.dpi)
        self.figures.append(path)
        return f"figures/{name}"
