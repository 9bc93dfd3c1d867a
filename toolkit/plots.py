"""Figures for evaluation and reports (matplotlib, headless).

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (so it works in
threads, servers and tests, with no display and no global state); :func:`save_figure` writes it
as PNG. Angles are in radians on input and shown in degrees.

- :func:`pseudo_ramachandran_figure`: Cα pseudo-bond angle θ vs pseudo-torsion τ densities,
  one panel per structure set (reference, DDIM samples, x0 predictions, …).
- :func:`chi_density_figure`: χ1/χ2 (or any two χ) densities, one panel per set.
- :func:`angle_density`: the 2-D angle histogram both use, for any pair of angles.
- :func:`contact_map_figure`: true Cα contact map beside a predicted probability map, with
  precision, recall and top-L long-range accuracy.
- :func:`loss_curves_figure`: train/validation curves from the ``metrics.csv`` of several runs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FormatStrFormatter
from torch import Tensor

from ptk import geometry as G
from ptk.errors import PtkError, unknown_choice
from ptk.runs import read_metrics

__all__ = [
    "angle_density",
    "pseudo_ramachandran_angles",
    "pseudo_torsion_pairs",
    "pseudo_ramachandran_figure",
    "RAMA_AXES",
    "chi_density_figure",
    "contact_map_figure",
    "read_metrics",
    "loss_curves_figure",
    "save_figure",
]

#: One Cα trace: coordinates ``[n, 3]`` (NaN where missing), optionally with a mask ``[n]``.
Trace = Tensor | np.ndarray | tuple[Tensor | np.ndarray, Tensor | np.ndarray]

_PANEL_SIZE = 3.6  # inches per panel


def _np(x: Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)


def _degrees(x: Tensor | np.ndarray) -> np.ndarray:
    return np.degrees(_np(x).astype(np.float64))


# ---------------------------------------------------------------------------------------------
# angle densities


def angle_density(
    ax: Axes,
    x_deg: np.ndarray,
    y_deg: np.ndarray,
    *,
    xlim: tuple[float, float] = (-180.0, 180.0),
    ylim: tuple[float, float] = (-180.0, 180.0),
    bins: int = 72,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    cmap: str = "viridis",
    vmax: float | None = None,
) -> Any:
    """Draw the density of angle pairs (degrees) on ``ax`` as a log-scaled 2-D histogram
    (fraction of points per bin), ticks every 60°/45°. Empty input leaves a labelled empty panel.

    Returns:
        The drawn image (for a shared colorbar), or None when there is nothing to draw.
    """
    x_deg, y_deg = np.asarray(x_deg, dtype=np.float64).ravel(), np.asarray(y_deg, dtype=np.float64).ravel()
    keep = np.isfinite(x_deg) & np.isfinite(y_deg)
    x_deg, y_deg = x_deg[keep], y_deg[keep]
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_xticks(np.arange(math.ceil(xlim[0] / 60) * 60, xlim[1] + 1, 60))
    ax.set_yticks(np.arange(math.ceil(ylim[0] / 45) * 45, ylim[1] + 1, 45))
    ax.grid(True, color="0.85", linewidth=0.5)
    ax.set_axisbelow(True)
    if title:
        ax.set_title(title, fontsize=10)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if x_deg.size == 0:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="0.4")
        return None
    hist, xe, ye = np.histogram2d(x_deg, y_deg, bins=bins, range=[list(xlim), list(ylim)])
    density = hist.T / x_deg.size
    masked = np.ma.masked_where(density <= 0, density)
    positive = density[density > 0]
    norm = LogNorm(vmin=max(positive.min(), 1e-5), vmax=vmax or positive.max())
    return ax.pcolormesh(xe, ye, masked, cmap=cmap, norm=norm, shading="flat", rasterized=True)


def _as_traces(value: Trace | Sequence[Trace]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Normalise one trace, a batch ``[b, n, 3]``, a (coords, mask) pair or a list of those to
    a list of (coords [n, 3], mask [n])."""
    if isinstance(value, tuple) and len(value) == 2 and not isinstance(value[0], tuple):
        coords, mask = _np(value[0]), _np(value[1]).astype(bool)
        if coords.ndim == 3:
            return [(c, m) for c, m in zip(coords, mask, strict=True)]
        return [(coords, mask)]
    if isinstance(value, (Tensor, np.ndarray)):
        coords = _np(value)
        if coords.ndim == 3:
            return [(c, np.isfinite(c).all(-1)) for c in coords]
        return [(coords, np.isfinite(coords).all(-1))]
    out: list[tuple[np.ndarray, np.ndarray]] = []
    for item in value:
        out.extend(_as_traces(item))
    return out


def _per_chain(
    traces: Trace | Sequence[Trace],
    min_residues: int,
    angles: Callable[[Tensor], tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """``angles`` of every chain of ``traces`` with at least ``min_residues`` residues (masked
    residues set to NaN, so they break the chain), concatenated."""
    xs, ys = [], []
    for coords, mask in _as_traces(traces):
        if coords.shape[0] >= min_residues:
            x, y = angles(torch.from_numpy(np.where(mask[:, None], coords, np.nan).astype(np.float64)))
            xs.append(x)
            ys.append(y)
    if not xs:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(xs), np.concatenate(ys)


def _theta_tau(ca: Tensor) -> tuple[np.ndarray, np.ndarray]:
    theta, theta_ok = G.pseudo_bond_angles(ca)
    tau, tau_ok = G.pseudo_torsions(ca)
    ok = (theta_ok & tau_ok).numpy()
    return _degrees(theta)[ok], _degrees(tau)[ok]


def _tau_pairs(ca: Tensor) -> tuple[np.ndarray, np.ndarray]:
    tau, ok = G.pseudo_torsions(ca)
    tau, ok = _degrees(tau), ok.numpy()
    both = ok[:-1] & ok[1:]
    return tau[:-1][both], tau[1:][both]


def pseudo_ramachandran_angles(traces: Trace | Sequence[Trace]) -> tuple[np.ndarray, np.ndarray]:
    """Pseudo-bond angles θ and pseudo-torsions τ (degrees) of every residue of ``traces``
    where both are defined (:func:`ptk.geometry.pseudo_bond_angles`, ``pseudo_torsions``);
    masked residues break the chain."""
    return _per_chain(traces, 4, _theta_tau)


def pseudo_torsion_pairs(traces: Trace | Sequence[Trace]) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive Cα pseudo-torsions (τᵢ₋₁, τᵢ) in degrees, for every residue where both are
    defined (:func:`ptk.geometry.pseudo_torsions`; masked residues break the chain): the axes of
    the Mini-Fold page's pseudo-Ramachandran plots, where helices sit at (50°, 50°)."""
    return _per_chain(traces, 5, _tau_pairs)


#: the pseudo-Ramachandran axes: consecutive pseudo-torsions (τᵢ₋₁, τᵢ), the Mini-Fold page's
#: (helix ≈ (50°, 50°), strand ≈ (−150°, −150°), wrapping across ±180°); or pseudo-torsion τ
#: against pseudo-bond angle θ (helix ≈ (50°, 91°), strand ≈ (−170°, 120°)).
RAMA_AXES: tuple[str, ...] = ("tau-tau", "tau-theta")


def _panel_figure(n: int, height: float = _PANEL_SIZE, share: bool = True) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(_PANEL_SIZE * max(n, 1) + 0.9, height), layout="constrained")
    axes = fig.subplots(1, max(n, 1), squeeze=False, sharex=share, sharey=share)[0]
    return fig, list(axes)


def _density_panels(
    fig: Figure,
    axes: list[Axes],
    data: list[tuple[str, np.ndarray, np.ndarray]],
    *,
    xlim: tuple[float, float],
    ylim: tuple[float, float],
    xlabel: str,
    ylabel: str,
    unit: str,
    bins: int | None,
) -> None:
    counts = [int((np.isfinite(x) & np.isfinite(y)).sum()) for _, x, y in data]
    if bins is None:  # finer bins for more points; the same bins for every panel
        smallest = min([c for c in counts if c > 0], default=0)
        bins = int(np.clip(1.2 * math.sqrt(smallest), 36, 90))
    peaks = []
    for _, x, y in data:
        keep = np.isfinite(x) & np.isfinite(y)
        if keep.any():
            hist, _, _ = np.histogram2d(x[keep], y[keep], bins=bins, range=[list(xlim), list(ylim)])
            peaks.append(hist.max() / keep.sum())
    vmax = max(peaks) if peaks else None
    image = None
    for i, (ax, (label, x, y)) in enumerate(zip(axes, data, strict=True)):
        count = int((np.isfinite(x) & np.isfinite(y)).sum())
        drawn = angle_density(
            ax, x, y, xlim=xlim, ylim=ylim, bins=bins, vmax=vmax,
            title=f"{label} ({count:,} {unit})", xlabel=xlabel, ylabel=ylabel if i == 0 else None,
        )  # fmt: skip
        image = drawn if drawn is not None else image
    if image is not None:
        fig.colorbar(image, ax=axes, label="fraction per bin", shrink=0.9)


def pseudo_ramachandran_figure(
    sets: Mapping[str, Trace | Sequence[Trace]],
    *,
    axes: str = "tau-tau",
    bins: int | None = None,
    title: str | None = None,
) -> Figure:
    """Pseudo-Ramachandran densities, one panel per set side by side (e.g. ``{"reference": …,
    "DDIM": …, "x0": …}``), on a shared log colour scale, each titled with its residue count.

    Args:
        sets: label → Cα traces: ``[n, 3]``, ``[b, n, 3]`` (NaN = missing), ``(coords, mask)``
            or a list of those (one per chain; masked residues break the chain).
        axes: ``"tau-tau"`` (default, the Mini-Fold page's): consecutive pseudo-torsions τᵢ₋₁
            (x) and τᵢ (y), both −180…180°; ``"tau-theta"``: pseudo-torsion τ (x) against the
            pseudo-bond angle θ (y, 0…180°). See :data:`RAMA_AXES`.
        bins: histogram bins per axis; default from the smallest set's size (36–90).
    """
    if axes not in RAMA_AXES:
        raise unknown_choice("pseudo-Ramachandran axes", axes, RAMA_AXES)
    fig, panels = _panel_figure(len(sets))
    data = []
    for label, traces in sets.items():
        if axes == "tau-tau":
            data.append((label, *pseudo_torsion_pairs(traces)))
        else:
            theta, tau = pseudo_ramachandran_angles(traces)
            data.append((label, tau, theta))
    if axes == "tau-tau":
        limits = {"xlim": (-180, 180), "ylim": (-180, 180), "xlabel": "pseudo-torsion τᵢ₋₁ (°)",
                  "ylabel": "pseudo-torsion τᵢ (°)"}  # fmt: skip
    else:
        limits = {"xlim": (-180, 180), "ylim": (0, 180), "xlabel": "pseudo-torsion τ (°)",
                  "ylabel": "pseudo-bond angle θ (°)"}  # fmt: skip
    _density_panels(fig, panels, data, unit="residues", bins=bins, **limits)
    if title:
        fig.suptitle(title)
    return fig


def chi_density_figure(
    sets: Mapping[str, tuple[Tensor | np.ndarray, Tensor | np.ndarray]],
    *,
    chis: tuple[int, int] = (0, 1),
    bins: int | None = None,
    title: str | None = None,
) -> Figure:
    """Densities of two side-chain torsions (default χ1 on x, χ2 on y), one panel per set.

    Args:
        sets: label → ``(chi, chi_mask)`` with ``chi [..., 4]`` in radians and ``chi_mask
            [..., 4]`` (as :func:`ptk.geometry.chi_angles` returns them, any leading shape);
            a residue counts where both chosen χ are defined.
        chis: the two χ indices (0-based) to plot.
    """
    fig, axes = _panel_figure(len(sets))
    a, b = chis
    data = []
    for label, (chi, chi_mask) in sets.items():
        chi_np, mask_np = _np(chi).reshape(-1, 4), _np(chi_mask).reshape(-1, 4).astype(bool)
        ok = mask_np[:, a] & mask_np[:, b]
        data.append((label, _degrees(chi_np[ok, a]), _degrees(chi_np[ok, b])))
    _density_panels(
        fig, axes, data, xlim=(-180, 180), ylim=(-180, 180), xlabel=f"χ{a + 1} (°)",
        ylabel=f"χ{b + 1} (°)", unit="residues", bins=bins,
    )  # fmt: skip
    if title:
        fig.suptitle(title)
    return fig


# ---------------------------------------------------------------------------------------------
# contact maps


def contact_map_figure(
    prob: Tensor | np.ndarray,
    true_ca: Tensor | np.ndarray,
    mask: Tensor | np.ndarray | None = None,
    *,
    threshold: float = 0.5,
    title: str | None = None,
) -> Figure:
    """The true Cα contact map (< 8 Å) beside a predicted contact probability map, annotated
    with precision, recall (|i − j| ≥ 6, probability ≥ ``threshold``) and top-L long-range
    accuracy (|i − j| ≥ 24) from :func:`ptk.metrics.contact_metrics`. On the prediction,
    the top-L long-range pairs are circled: white where in contact, red where not."""
    from ptk.metrics import contact_metrics

    prob_t = torch.as_tensor(_np(prob), dtype=torch.float64)
    ca_t = torch.as_tensor(_np(true_ca), dtype=torch.float64)
    n = ca_t.shape[0]
    if prob_t.shape != (n, n):
        raise PtkError(f"contact probabilities of shape {tuple(prob_t.shape)} for {n} residues")
    mask_t = torch.isfinite(ca_t).all(-1) if mask is None else torch.as_tensor(_np(mask), dtype=torch.bool)
    scores = {k: float(v) for k, v in contact_metrics(prob_t, ca_t, mask_t, threshold=threshold).items()}
    truth = G.contact_map(ca_t, mask_t).numpy().astype(float)
    valid = mask_t.numpy()
    pair_ok = valid[:, None] & valid[None, :]
    truth = np.where(pair_ok, truth, np.nan)
    shown = np.where(pair_ok, prob_t.numpy(), np.nan)

    fig = Figure(figsize=(2 * _PANEL_SIZE + 1.4, _PANEL_SIZE + 0.6), layout="constrained")
    ax_true, ax_pred = fig.subplots(1, 2, sharex=True, sharey=True)
    extent = (-0.5, n - 0.5, n - 0.5, -0.5)
    ax_true.imshow(truth, cmap="Greys", vmin=0, vmax=1, extent=extent, interpolation="nearest")
    ax_true.set_title(f"truth: Cα–Cα < 8 Å ({int(scores['n_true'])} contacts, |i−j| ≥ 6)", fontsize=9)
    image = ax_pred.imshow(shown, cmap="viridis", vmin=0, vmax=1, extent=extent, interpolation="nearest")
    fig.colorbar(image, ax=ax_pred, label="predicted probability", shrink=0.85)
    # Circle the top-L long-range predictions.
    index = np.arange(n)
    long_range = pair_ok & ((index[None, :] - index[:, None]) >= 24)
    flat = np.where(long_range, prob_t.numpy(), -np.inf).ravel()
    length = int(valid.sum())
    top = np.argsort(-flat, kind="stable")[:length]
    top = top[np.isfinite(flat[top])]
    rows, cols = np.unravel_index(top, (n, n))
    hit = truth[rows, cols] > 0.5
    ax_pred.scatter(cols[hit], rows[hit], s=22, facecolors="none", edgecolors="white", linewidths=0.9)
    ax_pred.scatter(cols[~hit], rows[~hit], s=22, facecolors="none", edgecolors="#ff3b30", linewidths=0.9)
    ax_pred.set_title(f"prediction; top-L long range (L = {length}): ○ white hit, ○ red miss", fontsize=9)
    for ax in (ax_true, ax_pred):
        ax.set_xlabel("residue j")
    ax_true.set_ylabel("residue i")

    def fmt(x: float) -> str:
        return "n/a" if math.isnan(x) else f"{x:.3f}"

    summary = (
        f"precision {fmt(scores['precision'])}   recall {fmt(scores['recall'])}   "
        f"(p ≥ {threshold:g}, |i−j| ≥ 6)     top-L long-range accuracy {fmt(scores['top_l_long'])}"
    )
    fig.suptitle((title + "\n" if title else "") + summary, fontsize=10)
    return fig


# ---------------------------------------------------------------------------------------------
# loss curves


def loss_curves_figure(
    runs: Mapping[str, Any] | Sequence[str | os.PathLike[str]],
    *,
    terms: Sequence[str] | None = None,
    x: str = "epoch",
    log: bool | None = None,
    title: str | None = None,
    ylabel: str = "loss",
) -> Figure:
    """Training curves of several runs overlaid: one panel per loss term, each run in its own
    colour, training solid and validation dashed, the best epoch (last ``NEW BEST``) marked.
    A plain column (``ddim_tm``) is drawn where it has values.

    Args:
        runs: label → run folder, ``metrics.csv`` path or DataFrame; or a list of run folders /
            CSV paths (labelled by their config's version or folder name).
        terms: loss terms to plot (column ``train_<term>`` / ``val_<term>``, or a plain column
            name); default ``loss`` (the weighted totals).
        log: logarithmic y axis; default when every plotted value is positive.
    """
    import pandas as pd

    frames: dict[str, pd.DataFrame] = {}
    items = runs.items() if isinstance(runs, Mapping) else [(None, r) for r in runs]
    for label, run in items:
        frame = run if isinstance(run, pd.DataFrame) else read_metrics(run)
        name = label or frame.attrs.get("label") or f"run {len(frames) + 1}"
        while name in frames:
            name += "'"
        frames[name] = frame
    if not frames:
        raise PtkError("no runs to plot")
    terms = list(terms) if terms else ["loss"]
    fig, axes = _panel_figure(len(terms), share=False)
    colours = [f"C{i % 10}" for i in range(len(frames))]
    split = False  # whether any panel drew train/validation pairs
    for ax, term in zip(axes, terms, strict=True):
        positive = True
        drawn = False
        for colour, (name, frame) in zip(colours, frames.items(), strict=True):
            xs = frame[x] if x in frame else pd.Series(range(1, len(frame) + 1))
            columns = [(f"train_{term}", "-", "train"), (f"val_{term}", "--", "val")]
            if f"train_{term}" not in frame and f"val_{term}" not in frame and term in frame:
                columns = [(term, "-", "")]
            for column, style, kind in columns:
                if column not in frame:
                    continue
                ys = pd.to_numeric(frame[column], errors="coerce")
                keep = ys.notna()
                if not keep.any():
                    continue
                positive = positive and bool((ys[keep] > 0).all())
                ax.plot(xs[keep], ys[keep], style, color=colour, linewidth=1.4,
                        label=f"{name} {kind}".strip())  # fmt: skip
                drawn = True
                split = split or bool(kind)
            if "status" in frame and f"val_{term}" in frame:
                best = frame.index[frame["status"].astype(str).str.strip() == "NEW BEST"]
                if len(best):
                    i = best[-1]
                    ax.plot([xs[i]], [frame[f"val_{term}"][i]], "o", color=colour, markersize=5)
        if drawn and (log if log is not None else positive):
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
            ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.set_title(term, fontsize=10)
        ax.set_xlabel(x)
        ax.grid(True, color="0.88", linewidth=0.5)
        if not drawn:
            ax.text(0.5, 0.5, f"no column for {term!r}", transform=ax.transAxes, ha="center", color="0.4")
    axes[0].set_ylabel(ylabel)
    handles = [
        Line2D([], [], color=c, linewidth=1.6, label=name) for c, name in zip(colours, frames, strict=True)
    ]
    if split:
        handles += [
            Line2D([], [], color="0.35", linestyle="-", label="train"),
            Line2D([], [], color="0.35", linestyle="--", label="validation"),
            Line2D([], [], color="0.35", marker="o", linestyle="none", label="best (NEW BEST)"),
        ]
    axes[-1].legend(handles=handles, fontsize=8, loc="upper right")
    if title:
        fig.suptitle(title)
    return fig


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 150) -> Path:
    """Write ``fig`` as PNG to ``path`` (parent folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png", facecolor="white")
    return path
