"""How training went: the per-epoch table, the loss curves overlaid on the ancestors' runs, and
the agreement of the loss terms' gradients."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ptk.report.blocks import cell, figure, table
from ptk.report.inputs import VersionInfo
from ptk.report.page import Page
from ptk.report.run import DIFFUSION_FAMILIES, Run, data_hint, pick_run
from ptk.runs import read_grad_cosines

_e = html.escape


def _pretty_name(column: str) -> str:
    name = column.removeprefix("val_").removeprefix("train_")
    return name.replace("_", " ")


def _loss_columns(frame: Any) -> tuple[list[str], list[str]]:
    """(validation columns, training columns) of the logged losses, totals first."""
    val = [c for c in frame.columns if c.startswith("val_") and c != "val_loss"]
    train = [c for c in frame.columns if c.startswith("train_") and c != "train_loss"]
    return (["val_loss"] if "val_loss" in frame else []) + val, (
        ["train_loss"] if "train_loss" in frame else []
    ) + train


def _highlights(run: Run, parent_run: Run | None) -> str:
    """Two or three plain sentences on how the run went (the page's 'what happened')."""
    frame = run.metrics
    best = run.best_row
    if frame is None or best is None or "val_loss" not in frame:
        return ""
    first = float(frame["val_loss"].iloc[0])
    value = float(best["val_loss"])
    out = [f"Best validation total {cell(value)} at epoch {int(best['epoch'])} of {len(frame)}"]
    if int(best["epoch"]) > int(frame["epoch"].iloc[0]) and first > 0:
        out[-1] += f", {100 * (first - value) / first:.0f}% below epoch {int(frame['epoch'].iloc[0])}"
    last = str(frame["status"].iloc[-1]).strip() if "status" in frame else ""
    if last.startswith("pat"):
        out.append(f"the last epoch is at {_e(last)} (no improvement for {last.split()[-1]} epochs)")
    elif "STOP" in last:
        out.append("training stopped early (patience ran out)")
    if "ddim_tm" in frame and frame["ddim_tm"].notna().any():
        measured = frame[frame["ddim_tm"].notna()]
        top = measured.loc[measured["ddim_tm"].idxmax()]
        out.append(f"the best DDIM TM-score so far is {cell(top['ddim_tm'])} (epoch {int(top['epoch'])})")
    if parent_run is not None and parent_run.best_row is not None and "val_loss" in parent_run.metrics:
        theirs = parent_run.best_row["val_loss"]
        out.append(
            f"for reference, the parent {_e(parent_run.version)}'s best validation total is {cell(theirs)} "
            f"(epoch {int(parent_run.best_row['epoch'])}, <code>{_e(str(parent_run.path))}</code>)"
        )
    return '<p class="highlights">' + "; ".join(out) + ".</p>"


def training_table(page: Page, run: Run, runs_for_parent: Run | None = None) -> None:
    title = f"{_e(run.version)}: training progress"
    frame = run.metrics
    if frame is None or not len(frame):
        body = page.miss(
            "training",
            f"{run.path}/metrics.csv has no finished epoch yet",
            f"ptk train --out {run.path} --resume",
        )
        page.add("training", title, body)
        return
    val_cols, train_cols = _loss_columns(frame)
    ddim = [c for c in ("ddim_tm", "ddim_tm_se", "ddim_rmsd", "ddim_gdt_ts") if c in frame]
    fixed = {"epoch", "status", "lr", "skipped_batches", "wall_time_s", *val_cols, *train_cols, *ddim}
    extras = [c for c in frame.columns if c not in fixed]
    # the columns read first stay in view: totals, DDIM scores and the status, then the terms
    totals = [c for c in ("val_loss", "train_loss") if c in frame]
    columns = [
        "epoch",
        *totals,
        *ddim,
        "status",
        *[c for c in val_cols if c not in totals],
        *extras,
        *[c for c in train_cols if c not in totals],
        "lr",
        "skipped_batches",
        "wall_time_s",
    ]
    keep_empty = set(ddim) if run.family in DIFFUSION_FAMILIES else set()
    columns = [
        c for c in columns if c in frame and (c in keep_empty or c == "status" or frame[c].notna().any())
    ]
    groups = {c: "val" for c in val_cols} | {c: "train" for c in train_cols} | {c: "ddim" for c in ddim}
    header = []
    for c in columns:
        label = {
            "val_loss": "val total",
            "train_loss": "train total",
            "ddim_tm": "DDIM TM",
            "ddim_tm_se": "± s.e.",
            "ddim_rmsd": "DDIM RMSD",
            "ddim_gdt_ts": "DDIM GDT-TS",
            "skipped_batches": "skipped",
            "wall_time_s": "time (s)",
            "lr": "LR",
        }.get(c, ("train " if c.startswith("train_") else "") + _pretty_name(c))
        group = groups.get(c, "")
        header.append(f'<span class="g-{group}">{_e(label)}</span>' if group else _e(label))
    best = run.best_index
    rows, classes = [], []
    for i, row in frame.iterrows():
        status = str(row.get("status", "") if "status" in frame else "").strip()
        cells = []
        for c in columns:
            v = row[c]
            if c == "status":
                klass = "st-best" if status == "NEW BEST" else ("st-stop" if "STOP" in status else "st-pat")
                cells.append(
                    f'<span class="{klass}">{_e(status)}</span>' if status and status != "nan" else ""
                )
            else:
                cells.append(cell(v, c))
        rows.append(cells)
        classes.append(("best " if status == "NEW BEST" else "") + ("overall-best" if i == best else ""))
    n = len(frame)
    best_txt = ""
    if best is not None:
        b = frame.loc[best]
        val = cell(b.get("val_loss"), "val_loss")
        best_txt = f" Best epoch: <strong>{int(b['epoch'])}</strong> (val total {val})."
    highlights = _highlights(run, runs_for_parent)
    intro = highlights + (
        f"<p>{n} epoch{'s' if n != 1 else ''} logged in "
        f"<code>{_e(str(run.path / 'metrics.csv'))}</code>.{best_txt} "
        'Rows marked <span class="st-best">NEW BEST</span> improved the validation total (EMA weights); '
        "<em>pat k</em> counts epochs since the best. The totals, DDIM scores (empty where not sampled) and "
        "the status come first, then every validation term, family metrics and every training term.</p>"
    )
    page.add("training", title, intro + table(header, rows, classes, cls="data metrics"))


def loss_curves(page: Page, run: Run, info: VersionInfo | None, runs: Sequence[Run], runs_dir: Path) -> None:
    from ptk.plots import loss_curves_figure

    title = "Loss curves"
    if run.metrics is None or not len(run.metrics):
        page.add("curves", title, page.miss("curves", "no epochs logged yet, so no curves"))
        return
    chain = list(info.ancestors) if info else []
    series: dict[str, Any] = {}
    absent = []
    for name in chain:
        ancestor = pick_run(name, runs_dir, runs)
        if ancestor is not None and ancestor.metrics is not None and len(ancestor.metrics):
            series[name] = ancestor.metrics
        else:
            absent.append(name)
    series[run.version] = run.metrics
    val_cols, _ = _loss_columns(run.metrics)
    terms = []
    for c in val_cols[1:]:
        term = c.removeprefix("val_")
        values = run.metrics[c].dropna()
        if not len(values) or f"train_{term}" not in run.metrics or "acc" in term:
            continue
        if len(values) == 1 or bool((values != values.iloc[0]).any()):
            terms.append(term)
    terms = terms[:4]
    parts = []
    label = " overlaid on " + ", ".join(k for k in series if k != run.version) if len(series) > 1 else ""
    fig = loss_curves_figure(series, terms=["loss", *terms[:3]], title=f"{run.version}{label}")
    parts.append(
        figure(
            page.save(fig, "loss_curves.png"),
            "loss curves",
            "Weighted totals (first panel) and the first loss terms per epoch: training solid, "
            "validation dashed (EMA weights); a dot marks each run's best epoch.",
        )
    )
    if chain and absent:
        cmds = "; ".join(
            f"ptk train --version {a} --data {data_hint(run)} --out {runs_dir / a}" for a in absent
        )
        parts.append(
            '<p class="note">Ancestors without a run under '
            f"<code>{_e(str(runs_dir))}</code> (not drawn): {_e(', '.join(absent))}. "
            f"Train one with <code>{_e(cmds.split('; ')[-1])}</code>.</p>"
        )
    elif not chain:
        parts.append(f'<p class="note">{_e(run.version)} has no ancestor versions to overlay.</p>')
    page.add("curves", title, "".join(parts))


def gradient_agreement(page: Page, run: Run) -> None:
    """``grad_cosine.csv`` (``--set grad_cosine_every=N``): the mean cosine between each pair of
    weighted loss terms' gradients, in the first and the last epoch logged."""
    frame = read_grad_cosines(run.path)
    if frame is None or frame.empty:
        return
    first, last = int(frame["epoch"].min()), int(frame["epoch"].max())
    mean = frame.groupby(["term_a", "term_b", "epoch"])["cosine"].mean()
    rows = []
    for (a, b), _ in frame.groupby(["term_a", "term_b"], sort=False):
        cells = [cell(mean.get((a, b, e), math.nan)) for e in (first, last)]
        rows.append([_e(a), _e(b), *cells])
    header = ["term", "term", f"mean cosine, epoch {first}", f"mean cosine, epoch {last}"]
    body = (
        "<p>Cosine similarity between the gradients of two weighted loss terms over the trainable "
        "parameters, every <code>grad_cosine_every</code> steps (<code>grad_cosine.csv</code>): "
        "negative values are terms pulling against each other, the page's gradient competition.</p>"
        + table(header, rows, cls="data gradcos")
    )
    page.add("gradcos", "Gradient agreement between loss terms", body)
