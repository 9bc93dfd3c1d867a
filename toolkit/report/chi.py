"""qFitLatent runs: NLL, per-χ accuracy and χ densities."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from ptk.report.blocks import cell, figure, table
from ptk.report.inputs import ChiPanel
from ptk.report.page import Page
from ptk.report.run import Run

_e = html.escape


def qfit_section(page: Page, run: Run, chi_panels: Sequence[ChiPanel], note: str | None) -> None:
    from ptk.plots import chi_density_figure, loss_curves_figure

    if run.family != "qfitlatent":
        return
    parts = []
    frame = run.metrics
    acc_cols = [
        c
        for c in (f"val_chi_acc_{d}" for d in range(1, 5))
        if frame is not None and c in frame and frame[c].notna().any()
    ]
    if frame is not None and len(frame):
        best = run.best_row if run.best_row is not None else frame.iloc[-1]
        header = ["", "val NLL"] + [f"χ{c[-1]} accuracy" for c in acc_cols]
        cells = [cell(_nll(best))] + [cell(best.get(c)) for c in acc_cols]
        last = frame.iloc[-1]
        last_cells = [cell(_nll(last))] + [cell(last.get(c)) for c in acc_cols]
        parts.append(
            "<p>Occupancy-weighted von Mises mixture NLL over the valid validation residues "
            "(≥ 2 conformers, ≥ 1 defined χ) and the top-mode χ accuracy (μ of the heaviest component "
            "within 20° of the highest-occupancy altloc).</p>"
        )
        parts.append(
            table(
                header,
                [
                    ["best epoch " + str(int(best["epoch"]))] + cells,
                    ["last epoch " + str(int(last["epoch"]))] + last_cells,
                ],
            )
        )
        if acc_cols:
            acc_terms = [c.removeprefix("val_") for c in acc_cols]
            fig = loss_curves_figure(
                {run.version: frame},
                terms=["nll", *acc_terms],
                log=False,
                title="qFitLatent: NLL and per-χ accuracy per epoch",
            )
            parts.append(figure(page.save(fig, "qfit_nll_acc.png"), "NLL and per-chi accuracy"))
    for i, panel in enumerate(chi_panels):
        fig = chi_density_figure(panel.sets, title=panel.title)
        parts.append(figure(page.save(fig, f"chi_density_{i}.png"), panel.title, _e(panel.caption)))
    if not chi_panels:
        parts.append(page.miss("chi", note or "no χ densities were computed for this run"))
    page.add("qfit", "qFitLatent: χ distributions", "".join(parts))


def _nll(row: Any) -> Any:
    """The residue-weighted validation NLL of a metrics row (``val_nll_residue``; runs from before
    it had its own column wrote it in ``val_nll``), else the validation loss."""
    for column in ("val_nll_residue", "val_nll", "val_loss"):
        value = row.get(column)
        if value is not None and value == value:
            return value
    return None
