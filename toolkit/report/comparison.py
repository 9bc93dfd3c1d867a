"""Across versions: the comparison table of every version with a run, and the secondary structure
of each version's samples per CATH class."""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ptk.report.blocks import cell, table
from ptk.report.page import Page
from ptk.report.run import DIFFUSION_FAMILIES, Run, Sampling, latest_samples, pick_run

_e = html.escape


def comparison_section(page: Page, runs: Sequence[Run], runs_dir: Path, current: Run | None) -> None:
    versions = sorted({r.version for r in runs})
    if not versions:
        page.add("compare", "All versions", page.miss("compare", f"no runs under {runs_dir}"))
        return
    header = [
        "version",
        "family",
        "size",
        "params",
        "epochs",
        "best epoch",
        "best val total",
        "DDIM TM",
        "DDIM GDT-TS",
        "family metrics",
        "run",
    ]
    rows, classes = [], []
    for v in versions:
        r = pick_run(v, runs_dir, runs)
        if r is None:
            continue
        best = r.best_row
        tm = gdt = ""
        fam = []
        if r.metrics is not None and len(r.metrics):
            frame = r.metrics
            if "ddim_tm" in frame and frame["ddim_tm"].notna().any():
                measured = frame[frame["ddim_tm"].notna()]
                at = measured[measured["epoch"] <= (best["epoch"] if best is not None else 1e9)]
                pick = (at if len(at) else measured).iloc[-1]
                tm = f'{cell(pick["ddim_tm"])} <span class="small">(E{int(pick["epoch"])})</span>'
                gdt = cell(pick.get("ddim_gdt_ts"))
            src = best if best is not None else frame.iloc[-1]
            nll = next(
                (c for c in ("val_nll_residue", "val_nll") if c in frame and cell(src.get(c)) != ""), None
            )
            for c in (nll, "val_chi_acc_1", "val_chi_acc_2", "class_acc", "arch_acc", "contact_recall"):
                if c is not None and c in frame and not cell(src.get(c)) == "":
                    label = "nll" if c == nll else c.removeprefix("val_")
                    fam.append(f"{label} {cell(src.get(c))}")
        params = r.config.get("n_params")
        rows.append(
            [
                f"<strong>{_e(v)}</strong>",
                _e(r.family),
                _e(str(r.config.get("size", ""))),
                f"{params:,}" if isinstance(params, int) else "",
                str(r.n_epochs),
                str(int(best["epoch"])) if best is not None else "",
                cell(best.get("val_loss")) if best is not None else "",
                tm,
                gdt,
                _e(", ".join(fam)),
                f"<code>{_e(str(r.path))}</code>",
            ]
        )
        classes.append("current" if current is not None and r.path == current.path else "")
    body = (
        f"<p>Every version with a run under <code>{_e(str(runs_dir))}</code> (one run per version: "
        "<code>RUNS/&lt;version&gt;</code> when present, else the newest). Metrics are at each run's best "
        "epoch; DDIM scores at the last sampling up to it. Totals of different families are not "
        "comparable.</p>" + table(header, rows, classes, cls="data compare")
    )
    page.add("compare", "All versions", body)


def _run_classes(run: Run) -> dict[str, int]:
    """id → CATH class of the run's training shards (config.json ``data``); {} when they are
    gone or are not cath shards."""
    from ptk import shards
    from ptk.errors import ShardError

    data = (run.config.get("data") or {}).get("train")
    try:
        return shards.cath_classes(data) if data else {}
    except (OSError, ShardError):
        return {}


def _by_class(run: Run, sampling: Sampling) -> dict[Any, dict[str, dict[str, float]]]:
    """Per CATH class: TM, both sides' helix/strand fractions and long-range contact recall of
    the DDIM samples of ``sampling`` against their references."""
    import torch

    from ptk.metrics import evaluate_pairs, summarize_by

    pairs = [(r, sampling.ddim / r.name) for r in sorted(sampling.ref.glob("*.pdb"))]
    pairs = [(r, d) for r, d in pairs if d.is_file()]
    if not pairs:
        return {}
    frame = evaluate_pairs(
        [str(d) for _, d in pairs], [str(r) for r, _ in pairs], torch.device("cpu"),
        structure_stats=True, names=[r.stem for r, _ in pairs],
    )  # fmt: skip
    classes = _run_classes(run)
    frame["cath_class"] = frame["name"].map(classes).astype("Int64")
    return summarize_by(frame, "cath_class")


#: The columns of the per-class table (metric, header).
_CLASS_COLUMNS = (
    ("tm", "DDIM TM"),
    ("ref_helix", "ref helix"),
    ("pred_helix", "sample helix"),
    ("ref_strand", "ref strand"),
    ("pred_strand", "sample strand"),
    ("lr_contact_recall", "LR contact recall"),
)


def class_section(page: Page, runs: Sequence[Run], runs_dir: Path, current: Run | None) -> None:
    """The page's central question, per CATH class and version: do the samples keep the
    references' β-strands (and helices)?"""
    from ptk.labels import CATH_CLASS_NAMES

    picked = [pick_run(v, runs_dir, runs) for v in sorted({r.version for r in runs})]
    if current is not None and all(r is None or r.path != current.path for r in picked):
        picked.append(current)
    rows, classes = [], []
    for r in picked:
        sampling = latest_samples(r) if r is not None and r.family in DIFFUSION_FAMILIES else None
        if r is None or sampling is None:
            continue
        for key, summary in _by_class(r, sampling).items():
            label = "no class" if key is None else f"{int(key)} {CATH_CLASS_NAMES.get(int(key), '?')}"
            n = summary.get("tm", {}).get("n", 0)
            cells = [cell(summary[c]["mean"]) if c in summary else "" for c, _ in _CLASS_COLUMNS]
            rows.append(
                [f"<strong>{_e(r.version)}</strong> ({_e(sampling.label)})", _e(label), str(n), *cells]
            )
            classes.append("current" if current is not None and r.path == current.path else "")
    if not rows:
        if current is not None and current.family in DIFFUSION_FAMILIES:
            page.add("classes", "Did it learn β-sheets?", page.miss("classes", "no DDIM samples to classify"))
        return
    header = ["version (sampling)", "CATH class", "n", *(h for _, h in _CLASS_COLUMNS)]
    body = (
        "<p>v13 exists because v12b “learns helices but not β-sheets”. Per version's latest DDIM "
        "samples and CATH class (from the run's training shards; <em>no class</em> where they hold "
        "none): helix and strand fractions of the references and of the samples (biotite's Cα "
        "P-SEA), and the fraction of the references' long-range (|i − j| ≥ 24) Cα contacts the "
        "samples make. A version that learned β-sheets keeps the mainly-β rows' strand fraction. "
        "<code>ptk eval --structure-stats --by cath_class</code> gives the same table for any "
        "folder of samples.</p>" + table(header, rows, classes, cls="data classes")
    )
    page.add("classes", "Did it learn β-sheets? Secondary structure by CATH class", body)
