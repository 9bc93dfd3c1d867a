"""The DDIM evaluation of a diffusion run's latest sampling: score tables and distributions."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import numpy as np

from ptk import runs
from ptk.report.blocks import cell, figure, table
from ptk.report.page import Page
from ptk.report.run import DIFFUSION_FAMILIES, Run, Sampling, data_hint

_e = html.escape


_METRIC_NAMES = {"tm": "TM-score", "rmsd": "RMSD (Å)", "gdt_ts": "GDT-TS", "gdt_ha": "GDT-HA", "lddt": "lDDT"}


def ddim_section(page: Page, run: Run, sampling: Sampling | None) -> Any:
    import pandas as pd

    title = "DDIM evaluation"
    if run.family not in DIFFUSION_FAMILIES:
        return None
    if sampling is None:
        where = runs.samples_dir(run.path) / "manual"
        cmd = f"ptk sample --run {run.path} --data {data_hint(run)} --out {where} --n 8"
        page.add("ddim", title, page.miss("ddim", f"no samples yet in {runs.samples_dir(run.path)}", cmd))
        return None
    frame = pd.read_csv(sampling.csv)
    if "method" not in frame:
        frame["method"] = "ddim"
    metrics = [m for m in ("tm", "rmsd", "gdt_ts", "gdt_ha", "lddt") if m in frame]
    rows = []
    for method, group in frame.groupby("method", sort=True):
        for m in metrics:
            vals = pd.to_numeric(group[m], errors="coerce").dropna()
            if not len(vals):
                continue
            rows.append(
                [
                    _e(str(method)),
                    _METRIC_NAMES[m],
                    str(len(vals)),
                    cell(vals.mean()),
                    cell(vals.median()),
                    cell(vals.min()),
                    cell(vals.max()),
                ]
            )
    parts = [
        f"<p>Latest sampling: <code>{_e(str(sampling.path))}</code> ({_e(sampling.label)}), "
        f"{frame['id'].nunique() if 'id' in frame else len(frame)} structures; Cα scores against the "
        "reference chains (<code>ptk.metrics.score_batch</code>). <em>ddim</em>: DDIM samples from "
        "the EMA weights; <em>x0</em>: one-step x0 predictions from the noised reference.</p>",
        table(["method", "metric", "n", "mean", "median", "min", "max"], rows, cls="data"),
    ]
    train = run.config.get("train") or {}
    if sampling.epoch is not None and "sample_steps" in train:
        parts.insert(
            1,
            f'<p class="note">Sampled during training after epoch {sampling.epoch}: '
            f"{_e(str(train.get('sample_steps')))} DDIM steps, η {_e(str(train.get('sample_eta')))}, "
            f"guidance {_e(str(train.get('sample_guidance')))}, "
            f"x0 from t = {_e(str(train.get('x0_t', 100)))}.</p>",
        )
    fig = _metric_histograms(frame, [m for m in ("tm", "rmsd", "gdt_ts") if m in frame])
    if fig is not None:
        parts.append(
            figure(
                page.save(fig, "ddim_scores.png"),
                "DDIM score distributions",
                "Distributions of TM-score, RMSD and GDT-TS per method.",
            )
        )
    sampled = run.metrics[run.metrics["ddim_tm"].notna()] if "ddim_tm" in run.metrics else None
    if sampled is not None and len(sampled) >= 2:
        from ptk.plots import loss_curves_figure

        terms = [t for t in ("ddim_tm", "ddim_rmsd") if t in sampled]
        fig = loss_curves_figure(
            {run.version: sampled}, terms=terms, log=False, title="DDIM samples over training", ylabel="score"
        )
        parts.append(
            figure(
                page.save(fig, "ddim_over_epochs.png"),
                "DDIM TM-score and RMSD over the epochs",
                "Mean over the chains sampled during training (metrics.csv ddim_tm, ddim_rmsd): rising "
                "TM-score and falling RMSD show the samples turning into the reference structures.",
            )
        )
    page.add("ddim", title, "".join(parts))
    return frame


def _metric_histograms(frame: Any, metrics: Sequence[str]) -> Any:
    """One histogram panel per metric, methods overlaid (these are score distributions, not one
    of the :mod:`ptk.plots` figure kinds)."""
    import pandas as pd
    from matplotlib.figure import Figure

    if not metrics:
        return None
    fig = Figure(figsize=(3.4 * len(metrics) + 0.6, 2.9), layout="constrained")
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    ranges = {"tm": (0, 1), "gdt_ts": (0, 1), "gdt_ha": (0, 1), "lddt": (0, 1)}
    for ax, m in zip(axes, metrics, strict=True):
        for j, (method, group) in enumerate(frame.groupby("method", sort=True)):
            vals = pd.to_numeric(group[m], errors="coerce").dropna().to_numpy()
            if not len(vals):
                continue
            lo, hi = ranges.get(m, (0.0, max(1.0, float(np.nanmax(frame[m].astype(float))) * 1.05)))
            ax.hist(
                vals, bins=20, range=(lo, hi), alpha=0.6, color=f"C{j}", label=f"{method} (n={len(vals)})"
            )
            ax.axvline(float(np.mean(vals)), color=f"C{j}", linestyle="--", linewidth=1)
        ax.set_xlabel(_METRIC_NAMES.get(m, m))
        ax.grid(True, color="0.9", linewidth=0.5)
    axes[0].set_ylabel("structures")
    axes[-1].legend(fontsize=8)
    return fig
