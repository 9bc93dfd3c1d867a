"""Writing the page: the report folder and :func:`build_report`."""

from __future__ import annotations

import datetime as _dt
import html
import os
from collections.abc import Sequence
from pathlib import Path

from markupsafe import Markup

from ptk.files import atomic_write
from ptk.report.blocks import cell, environment, missing_list, no_run_card
from ptk.report.card import version_card
from ptk.report.chi import qfit_section
from ptk.report.comparison import class_section, comparison_section
from ptk.report.ddim import ddim_section
from ptk.report.inputs import ChiPanel, ContactPrediction, VersionInfo
from ptk.report.page import Page, Report
from ptk.report.run import Run, find_runs, latest_samples, pick_run
from ptk.report.structures import structure_section
from ptk.report.training import gradient_agreement, loss_curves, training_table

_e = html.escape


#: the file that marks a folder as a ptk report's, so a rerun may replace its page and figures.
REPORT_MARKER = ".ptk-report"


def claim_report_folder(out_dir: str | os.PathLike[str]) -> Path:
    """``out_dir``, created or checked to be a report's: new, empty, marked by
    :data:`REPORT_MARKER`, or holding only ``index.html`` and ``figures/`` (a report of ptk 0.1).
    Any other folder is refused, since writing the report replaces ``index.html`` and every
    ``figures/*.png`` in it."""
    from ptk.errors import PtkError

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise PtkError(f"--out {out}: a file, not a folder")
    if out.is_dir() and not (out / REPORT_MARKER).is_file():
        found = sorted(p.name for p in out.iterdir())
        if found and not set(found) <= {"index.html", "figures"}:
            raise PtkError(
                f"--out {out}: not a ptk report folder (it holds {', '.join(found[:3])}"
                f"{', ...' if len(found) > 3 else ''}); name a new or empty folder"
            )
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / REPORT_MARKER).write_text("written by ptk report; a rerun replaces index.html and figures/\n")
    except OSError as exc:
        raise PtkError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None
    return out


def build_report(
    version: str,
    runs_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    info: VersionInfo | None = None,
    run: Run | None = None,
    contacts: Sequence[ContactPrediction] = (),
    chi_panels: Sequence[ChiPanel] = (),
    chi_note: str | None = None,
    dpi: int = 110,
) -> Report:
    """Write the report of ``version`` (its run under ``runs_dir``, or ``run``) to ``out_dir``.

    Without a run, the page still holds the version card from ``info`` (when given), the
    comparison table and the ``ptk train`` command that would make the run.
    """
    runs_dir = Path(runs_dir)
    out = claim_report_folder(out_dir)
    page = Page(out, dpi)
    runs = find_runs(runs_dir)
    if run is None:
        run = pick_run(version, runs_dir, runs)
    elif all(r.path.resolve() != run.path.resolve() for r in runs):
        runs = [*runs, run]
    # start from a clean figures folder so a re-run leaves no stale PNG
    if page.fig_dir.is_dir():
        for old in page.fig_dir.glob("*.png"):
            old.unlink()
    _add_sections(page, version, runs_dir, runs, run, info, contacts, chi_panels, chi_note)
    text = (
        environment()
        .get_template("report.html")
        .render(
            version=version,
            summary_html=Markup(_summary_line(version, run)),
            sections=[(anchor, Markup(title), Markup(body)) for anchor, title, body in page.sections],
            generated=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            runs_dir=str(runs_dir),
        )
    )
    path = out / "index.html"
    atomic_write(path, text)
    return Report(html=path, out_dir=out, run=run, figures=list(page.figures), missing=list(page.missing))


def _add_sections(
    page: Page,
    version: str,
    runs_dir: Path,
    runs: Sequence[Run],
    run: Run | None,
    info: VersionInfo | None,
    contacts: Sequence[ContactPrediction],
    chi_panels: Sequence[ChiPanel],
    chi_note: str | None,
) -> None:
    """Every section of the page, in order: the run's own, then those across versions, then the
    list of missing pieces."""
    if run is None:
        cmd = f"ptk train --version {version} --data SHARDS --out {runs_dir / version}"
        missing = page.miss("run", f"no run of {version} under {runs_dir}", cmd)
        page.add("card", _e(version), no_run_card(version, info) + missing)
    else:
        version_card(page, run, info)
        parent = run.config.get("parent") or (info.parent if info else None)
        parent_run = pick_run(parent, runs_dir, runs) if parent else None
        training_table(page, run, parent_run)
        loss_curves(page, run, info, runs, runs_dir)
        gradient_agreement(page, run)
        sampling = latest_samples(run)
        ddim_section(page, run, sampling)
        structure_section(page, run, sampling, contacts)
        qfit_section(page, run, chi_panels, chi_note)
    class_section(page, runs, runs_dir, run)
    comparison_section(page, runs, runs_dir, run)
    if page.missing:
        page.add("missing", "Missing pieces", missing_list(page.missing))


def _summary_line(version: str, run: Run | None) -> str:
    if run is None:
        return f"No run of {_e(version)} yet."
    best = run.best_row
    text = f"{_e(run.family)} · size {_e(str(run.config.get('size', '?')))} · {run.n_epochs} epoch(s)"
    if best is not None:
        text += f" · best epoch {int(best['epoch'])}, val total {cell(best.get('val_loss'))}"
        if "ddim_tm" in run.metrics and run.metrics["ddim_tm"].notna().any():
            text += f" · last DDIM TM {cell(run.metrics['ddim_tm'].dropna().iloc[-1])}"
    return text
