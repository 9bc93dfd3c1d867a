"""Structure-comparison metrics in torch, batched over many pairs, CPU or GPU.

Every metric compares a predicted Cα trace with a reference trace of the same residues:

- :func:`score_batch`: RMSD, TM-score, GDT-TS, GDT-HA and lDDT of ``[b, n, 3]`` pairs in one
  call (the one the training loop calls on DDIM samples); :func:`tm_score`, :func:`gdt_ts`,
  :func:`gdt_ha` and :func:`rmsd` are single-metric views of it.
- :func:`superposition_search`: the TM-score program's search (below), all seeds of all pairs
  at once.
- :func:`lddt`: Cα lDDT as ``biotite.structure.lddt`` computes it.
- :func:`contact_metrics`: precision, recall and top-L long-range accuracy of a contact
  probability map.
- :func:`tm_align`: sequence-independent comparison through tmtools (TM-align).
- :func:`evaluate_pairs`: structure files in, one row per pair out (what ``ptk eval`` runs).

TM-score and GDT follow the TM-score program (Zhang & Skolnick 2004; the current C++
``TMscore``, 2019–2022) step for step, so its numbers are reproduced, not approximated (all 120
pairs of ``eval_reference`` to its printed 4 decimals):

- d0 = 1.24·∛(L − 15) − 1.8 with L the reference length (0.5 for L ≤ 15, floor 0.5); the
  search distance d0_search = d0 clamped to [4.5, 8] Å.
- Seeds: fragments of L_ali, L_ali/2, L_ali/4, … common residues (at most six lengths, the
  shortest 4), each slid along the chain one residue at a time; the fragment is superposed and
  scored, then the residues closer than d0_search − 1 Å are kept (the distance grows by 0.5 Å
  while fewer than 3 are kept).
- Each seed is refined up to 20 times: superpose on the kept residues, score, keep those closer
  than d0_search + 1 Å, until the kept set stops changing.
- TM-score: the largest TM over every superposition of that search, normalised by L. RMSD: the
  global superposition of all common residues.
- GDT (counts of residues closer than 0.5, 1, 2, 4, 8 Å, each maximised on its own): the
  program takes them from the seeds of that search and from every superposition of its first
  pass, the same search run with TM-align's search distance (d0 of min(L_pred, L_ref) + 0.8,
  0.968 below 20 residues, clamped to [4.5, 8]). Both passes share their seeds. (The older
  Fortran ``TMscore.f`` took GDT from every superposition of the one search, with ≤; it
  differs from the current program on 1 of the 120 reference pairs, by 0.0044.)

The batched search keeps the program's result exactly while skipping work it would repeat: a
refinement step depends only on the kept set, so identical kept sets (across seeds, and across
steps, where the earlier one has at least as many iterations left) are refined once. Kept sets
are compared by two exact integer hashes. Superpositions come from :func:`ptk.geometry.kabsch`
(its vectorised ``qcp`` method, fed with each set's cross-covariance, computed from summed
per-residue moments by matrix products), and distances of all residues under all superpositions
from one matrix product per group of pairs (on CPU, per block of pairs that stays in cache).

On CPU the same search runs by default in a compiled kernel (``_tmsearch.c``, built with the
package, called through ctypes), one pair at a time with the pair's residues in cache, pairs
spread over ``torch.get_num_threads()`` threads: the same superpositions and the same maxima, many
times faster than tensor operations on a CPU. The torch path serves GPUs, and CPUs where the
kernel was not built (``backend=`` chooses; ``PTK_TMSEARCH=torch`` sets the default).
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import logging
import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ptk import geometry as G
from ptk.errors import PtkError, StructureError
from ptk.structure import structure_name

log = logging.getLogger(__name__)

__all__ = [
    "GDT_CUTOFFS",
    "METRIC_COLUMNS",
    "STRUCTURE_COLUMNS",
    "sse_fractions",
    "long_range_contact_agreement",
    "CaTrace",
    "tm_d0",
    "seed_lengths",
    "superposition_search",
    "search_backend",
    "native_search_available",
    "score_batch",
    "tm_score",
    "gdt_ts",
    "gdt_ha",
    "rmsd",
    "lddt",
    "contact_metrics",
    "tm_align",
    "structure_name",
    "read_ca",
    "PairedResidues",
    "pair_residues",
    "pair_files",
    "evaluate_pairs",
    "summarize",
    "summarize_by",
]

#: GDT distance cutoffs in Å; GDT-TS uses the last four, GDT-HA the first four.
GDT_CUTOFFS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
#: Columns of :func:`evaluate_pairs` that hold metrics (summarised by :func:`summarize`).
METRIC_COLUMNS: tuple[str, ...] = ("rmsd", "tm", "gdt_ts", "gdt_ha", "lddt", "tm_align")
#: ``ptk eval --structure-stats``: helix / strand / coil fractions of each side (biotite's
#: Cα-based P-SEA) and the prediction's long-range (|i − j| ≥ 24) Cα-contact precision / recall.
STRUCTURE_COLUMNS: tuple[str, ...] = (
    "ref_helix", "ref_strand", "ref_coil", "pred_helix", "pred_strand", "pred_coil",
    "lr_contact_precision", "lr_contact_recall",
)  # fmt: skip

_N_ITER = 20  # TMscore.f n_it
_N_INIT_MAX = 6  # TMscore.f n_init_max
_L_INI_MIN = 4  # TMscore.f L_ini_min
_STATS = 17  # per-residue moment features (see _features)
_HASH_MAX = 2.0**52  # hash sums stay exact integers in float64 below this
_FAR = 1e30  # squared distance given to padding residues
_CPU_BLOCK = 2**20  # residues × states scored at once on CPU (8 MB of float64 distances)


# ---------------------------------------------------------------------------------------------
# TM-score parameters


def tm_d0(length: Tensor | float) -> Tensor | float:
    """TM-score distance scale d0 = 1.24·∛(L − 15) − 1.8 for reference length L (0.5 for
    L ≤ 15, never below 0.5), as the TM-score program computes it."""
    if isinstance(length, Tensor):
        length = length.to(torch.float64)
        d0 = 1.24 * torch.clamp(length - 15.0, min=0.0).pow(1.0 / 3.0) - 1.8
        return torch.where(length > 15, d0, torch.full_like(d0, 0.5)).clamp(min=0.5)
    if length <= 15:
        return 0.5
    return max(1.24 * (length - 15.0) ** (1.0 / 3.0) - 1.8, 0.5)


def seed_lengths(n_common: int) -> list[int]:
    """Fragment lengths of the TM-score program's seeds for ``n_common`` common residues:
    L, L/2, L/4, … (integer division), at most six, the last one 4 (or L when L < 4)."""
    minimum = min(_L_INI_MIN, n_common)
    lengths = []
    for i in range(_N_INIT_MAX - 1):
        length = n_common // 2**i
        if length <= minimum:
            lengths.append(minimum)
            return lengths
        lengths.append(length)
    lengths.append(minimum)
    return lengths


# ---------------------------------------------------------------------------------------------
# the batched TM-score / GDT search


def _features(x: Tensor, y: Tensor, valid: Tensor, hash_weights: Tensor) -> Tensor:
    """Per-residue features ``[B, N, 19]`` (zero on padding). Summed over a residue set they are
    the set's moments (Σ y xᵀ, Σ x, Σ y, ·, count) and its two hashes; dotted with the
    coefficients of :func:`_coefficients` they give each residue's squared distance
    |R x + t − y|² under a superposition (R, t)."""
    outer = (y[..., :, None] * x[..., None, :]).flatten(-2)  # y_j x_k at j*3+k
    norms = (x * x).sum(-1, keepdim=True) + (y * y).sum(-1, keepdim=True)
    ones = torch.ones_like(norms)
    hashes = hash_weights[: x.shape[1]].expand(x.shape[0], -1, -1)
    f = torch.cat([outer, x, y, norms, ones, hashes], dim=-1) * valid[..., None]
    f[..., 15] = torch.where(valid, f[..., 15], _FAR)
    return f


def _superpose_from_moments(stats: Tensor) -> tuple[Tensor, Tensor]:
    """Least-squares superposition (R, t) of each residue set from its summed moments
    ``[S, 19]``, through :func:`ptk.geometry.kabsch`.

    The rotation depends on the set only through its centred cross-covariance
    C = Σ (y − ȳ)(x − x̄)ᵀ. Six proxy points with that covariance and zero centroids
    (mobile ±eₖ, target ±cₖ/2 for the columns cₖ of C) hand exactly C to the one Kabsch
    implementation; the translation is then t = ȳ − R x̄."""
    count = stats[:, 16].clamp(min=1.0)
    sum_yx = stats[:, :9].unflatten(-1, (3, 3))
    sum_x, sum_y = stats[:, 9:12], stats[:, 12:15]
    cov = sum_yx - sum_y[:, :, None] * sum_x[:, None, :] / count[:, None, None]
    eye = torch.eye(3, dtype=stats.dtype, device=stats.device)
    mobile = torch.cat([eye, -eye]).expand(stats.shape[0], 6, 3)
    half = cov.transpose(-1, -2) / 2  # row k = column k of C, halved
    rot, _ = G.kabsch(mobile, torch.cat([half, -half], dim=-2), method="qcp")
    x_mean, y_mean = sum_x / count[:, None], sum_y / count[:, None]
    trans = y_mean - (rot @ x_mean[..., None])[..., 0]
    return rot, trans


def _coefficients(rot: Tensor, trans: Tensor) -> Tensor:
    """``[S, 17]`` such that features·coefficients = |R x + t − y|² (R orthogonal):
    |x|² + |y|² + |t|² + 2 (Rᵀt)·x − 2 t·y − 2 yᵀ R x."""
    rt_t = (rot.transpose(-1, -2) @ trans[..., None])[..., 0]
    tt = (trans * trans).sum(-1, keepdim=True)
    return torch.cat([-2 * rot.flatten(-2), 2 * rt_t, -2 * trans, torch.ones_like(tt), tt], dim=-1)


def _state_keys(tag: Tensor, hashes: Tensor) -> Tensor:
    """One int64 key per (pair and stage, kept set) from the tag and the set's two exact hashes
    (wrapping integer mixing)."""
    h = hashes.to(torch.int64)
    return (tag * 0x2545F491 + h[:, 0]) * 0x5851F42D4C957F2D + h[:, 1] * 0x14057B7EF767814F


@dataclass
class _Chunk:
    """Tensors of one group of pairs searched together."""

    f: Tensor  # [B, N, 19] features
    valid: Tensor  # [B, N] residue is a common residue
    n: Tensor  # [B] number of common residues
    inv_d0sq: Tensor  # [B] 1/d0²
    norm: Tensor  # [B] reference length
    cut: Tensor  # [B, 2, 2] kept-set distance: [pair, stage (GDT, TM), seed / refinement]
    best_tm: Tensor  # [B]
    best_counts: Tensor  # [B, 5]

    def __post_init__(self) -> None:
        # Contiguous copies for the two batched products (2× faster than strided operands).
        self.f_coef = self.f[..., :_STATS].contiguous()  # [B, N, 17]
        self.f_t = self.f.transpose(1, 2).contiguous()  # [B, 19, N]


def _score_states(
    chunk: _Chunk, pair: Tensor, stats: Tensor, cuts: Tensor, tm_on: Tensor, gdt_on: Tensor
) -> Tensor:
    """Superpose every state (a residue set of a pair, given by its moments) and score it.

    Records the TM-score (where ``tm_on``) and the GDT counts (where ``gdt_on``) of each
    superposition into the chunk's running maxima and returns, for each of the K distances of
    ``cuts`` [S, K], the moments ``[S, K, 19]`` of the residues closer than it (the distance
    grown by 0.5 Å while fewer than 3 of more than 3 residues are kept, as the program does).
    """
    order = torch.argsort(pair, stable=True)
    pair, stats, cuts, tm_on, gdt_on = pair[order], stats[order], cuts[order], tm_on[order], gdt_on[order]
    rot, trans = _superpose_from_moments(stats)
    coef = _coefficients(rot, trans)
    n_pairs = chunk.f.shape[0]
    counts = torch.bincount(pair, minlength=n_pairs)
    offsets = torch.cumsum(counts, 0) - counts
    position = torch.arange(pair.shape[0], device=pair.device) - offsets[pair]
    # Group pairs by state count (powers of two) so one batched product serves each group.
    bucket = torch.where(counts > 0, torch.ceil(torch.log2(counts.clamp(min=1).double())), -1)
    n_cuts = cuts.shape[1]
    out = stats.new_empty(stats.shape[0], n_cuts, stats.shape[1])
    cutoffs_sq = torch.tensor(GDT_CUTOFFS, dtype=stats.dtype, device=stats.device) ** 2
    want_tm, want_gdt = bool(tm_on.any()), bool(gdt_on.any())
    for value in torch.unique(bucket).tolist():
        if value < 0:
            continue
        pairs_all = torch.nonzero(bucket == value)[:, 0]
        # On CPU, blocks of pairs whose [P, N, width] distances stay in cache (memory-bound
        # passes otherwise); on a GPU the whole group at once.
        per_pair = int(2**value) * int(chunk.n[pairs_all].max())
        block = pairs_all.shape[0] if stats.device.type != "cpu" else max(1, _CPU_BLOCK // per_pair)
        for pairs in pairs_all.split(block):
            rank = torch.full((n_pairs,), -1, dtype=torch.long, device=pair.device)
            rank[pairs] = torch.arange(pairs.shape[0], device=pair.device)
            sel = torch.nonzero(rank[pair] >= 0)[:, 0]
            r, p = rank[pair[sel]], position[sel]
            width = int(counts[pairs].max())
            length = int(chunk.n[pairs].max())
            coef_pad = stats.new_zeros(pairs.shape[0], _STATS, width)  # transposed: a faster bmm
            coef_pad[r, :, p] = coef[sel]
            cut_pad = stats.new_zeros(pairs.shape[0], n_cuts, width)
            cut_pad[r, :, p] = cuts[sel]
            real = torch.zeros(pairs.shape[0], width, dtype=torch.bool, device=pair.device)
            real[r, p] = True
            f_t = chunk.f_t[pairs, :, :length]  # [P, 19, N]
            # Squared distances of every residue under every superposition; padding rows carry a
            # huge |x|² feature, so they are never within a cutoff and add nothing to TM.
            dist_sq = torch.bmm(chunk.f_coef[pairs, :length], coef_pad)  # [P, N, width]
            if want_tm:
                tm = torch.mul(dist_sq, chunk.inv_d0sq[pairs, None, None]).add_(1.0).reciprocal_().sum(1)
                tm = tm[r, p] / chunk.norm[pair[sel]]
                chunk.best_tm.scatter_reduce_(0, pair[sel], torch.where(tm_on[sel], tm, -1.0), "amax")
            if want_gdt:
                # GDT: residues strictly below each cutoff, per state.
                # (float indicators: their sums over residues are faster than bool ones, and exact)
                hit = torch.empty_like(dist_sq)
                below = [torch.lt(dist_sq, c, out=hit).sum(1) for c in cutoffs_sq.tolist()]
                gdt = torch.stack(below, -1)[r, p].to(torch.int64)  # [states, 5]
                gdt = torch.where(gdt_on[sel, None], gdt, -1)
                chunk.best_counts.scatter_reduce_(0, pair[sel, None].expand_as(gdt), gdt, "amax")
            for k in range(n_cuts):
                threshold = cut_pad[:, k]  # [P, width]
                kept = torch.lt(dist_sq, (threshold * threshold)[:, None, :], out=torch.empty_like(dist_sq))
                moments = torch.bmm(f_t, kept).transpose(1, 2)  # [P, width, 19]
                # While fewer than 3 residues are kept (of more than 3), grow the distance by 0.5 Å.
                few = (moments[..., 16] < 3) & (chunk.n[pairs] > 3)[:, None] & real
                if bool(few.any()):
                    p_idx, s_idx = torch.nonzero(few, as_tuple=True)
                    column_sq = dist_sq[p_idx, :, s_idx]  # [F, N]
                    third = column_sq.kthvalue(3, dim=1).values.clamp(min=0.0).sqrt()
                    base = threshold[p_idx, s_idx]
                    grown = base + 0.5 * (torch.floor((third - base) / 0.5) + 1)
                    grown_kept = (column_sq < (grown * grown)[:, None]).to(f_t.dtype)
                    moments[p_idx, s_idx] = torch.bmm(f_t[p_idx], grown_kept[:, :, None])[..., 0]
                out[sel, k] = moments[r, p]
    result = torch.empty_like(out)
    result[order] = out
    return result


def _seeds(n: list[int], device: torch.device, step: int = 1) -> tuple[Tensor, Tensor, Tensor]:
    """(pair, start, length) of every seed fragment of every pair, pair-major. With ``step`` > 1
    the starts are 0, step, 2·step, … and always the last one (TM-align's ``simplify_step``)."""
    pairs, starts, lengths = [], [], []
    for b, n_b in enumerate(n):
        if n_b == 0:
            continue
        for length in seed_lengths(n_b):
            last = n_b - length
            first = np.arange(0, last + 1, step)
            if first[-1] != last:
                first = np.append(first, last)
            pairs.append(np.full(first.shape[0], b))
            starts.append(first)
            lengths.append(np.full(first.shape[0], length))
    as_tensor = lambda parts: torch.from_numpy(np.concatenate(parts)).to(device)  # noqa: E731
    return as_tensor(pairs), as_tensor(starts), as_tensor(lengths)


def _search_chunk(chunk: _Chunk, n_list: list[int], seed_step: int = 1) -> None:
    """The TM-score program's two searches for one chunk of pairs (results in ``chunk.best_*``).

    Stage 0 ("GDT") runs with the search distance of the program's first, TM-align-style pass
    and records GDT counts of every superposition; stage 1 ("TM") runs with the final
    distance and records the TM-score of every superposition and the GDT counts of its seeds.
    Both share their seed superpositions; a pair whose two distances coincide runs one search
    that records both.
    """
    device = chunk.f.device
    pair, start, length = _seeds(n_list, device, seed_step)
    prefix = torch.cat([chunk.f.new_zeros(chunk.f.shape[0], 1, chunk.f.shape[2]), chunk.f.cumsum(1)], 1)
    stats = prefix[pair, start + length] - prefix[pair, start]
    same = chunk.cut[:, 0, 0] == chunk.cut[:, 1, 0]  # [B]
    on = torch.ones_like(pair, dtype=torch.bool)
    # Seeds: superpose on the fragment, score, keep residues within each stage's seed distance.
    kept = _score_states(chunk, pair, stats, chunk.cut[pair, :, 0], on, on)  # [S, 2, 19]
    with_gdt = ~same[pair]
    stage = torch.cat([torch.zeros_like(pair[with_gdt]), torch.ones_like(pair)])
    pair = torch.cat([pair[with_gdt], pair])
    stats = torch.cat([kept[with_gdt, 0], kept[:, 1]])
    visited = torch.empty(0, dtype=torch.int64, device=device)
    for iteration in range(1, _N_ITER + 1):
        keys = _state_keys(pair * 2 + stage, stats[:, _STATS:])
        unique, inverse = torch.unique(keys, return_inverse=True)
        first = torch.full((unique.shape[0],), keys.shape[0], dtype=torch.long, device=device)
        first.scatter_reduce_(0, inverse, torch.arange(keys.shape[0], device=device), "amin")
        if visited.numel():  # visited is kept sorted: a binary search instead of isin
            pos = torch.searchsorted(visited, unique).clamp(max=visited.shape[0] - 1)
            first = first[visited[pos] != unique]
        if first.numel() == 0:
            break
        visited = torch.sort(torch.cat([visited, keys[first]])).values
        pair, stats, stage = pair[first], stats[first], stage[first]
        # Refine: superpose on the kept set, score, keep residues within the refinement distance.
        # The stages are scored apart: stage 0 needs only GDT counts, stage 1 mostly TM.
        new = torch.empty_like(stats)
        for value in (0, 1):
            part = torch.nonzero(stage == value)[:, 0]
            if part.numel() == 0:
                continue
            p_pair = pair[part]
            tm_on = torch.full_like(p_pair, value == 1, dtype=torch.bool)
            gdt_on = torch.ones_like(tm_on) if value == 0 else same[p_pair]
            cut = chunk.cut[p_pair, value, 1][:, None]
            new[part] = _score_states(chunk, p_pair, stats[part], cut, tm_on, gdt_on)[:, 0]
        if iteration == _N_ITER:
            break
        changed = (new[:, _STATS:] != stats[:, _STATS:]).any(-1)
        pair, stats, stage = pair[changed], new[changed], stage[changed]


def _torch_search(
    pred: Tensor,
    ref: Tensor,
    mask: Tensor,
    d0: Tensor,
    norm: Tensor,
    cuts: Tensor,
    seed_step: int,
    max_elements: int,
) -> tuple[Tensor, Tensor]:
    """The search in batched tensor operations (any device), pairs grouped by similar length
    (little padding) so that residues × seeds stays under ``max_elements``. Takes the centred
    inputs of :func:`superposition_search`; returns (best TM [b], best GDT counts [b, 5])."""
    device, b = pred.device, pred.shape[0]
    n_common = mask.sum(1)
    best_tm = torch.zeros(b, dtype=torch.float64, device=device)
    best_counts = torch.zeros(b, len(GDT_CUTOFFS), dtype=torch.int64, device=device)
    n_list = n_common.tolist()
    order = sorted(range(b), key=lambda i: n_list[i])
    groups: list[list[int]] = []
    size = 0
    for i in order:
        if n_list[i] == 0:
            continue
        cost = n_list[i] * n_list[i] * _N_INIT_MAX
        if groups and size + cost <= max_elements and n_list[i] <= 1.25 * n_list[groups[-1][0]] + 8:
            groups[-1].append(i)
            size += cost
        else:
            groups.append([i])
            size = cost
    n_hash = max(n_list) if n_list else 0
    generator = torch.Generator().manual_seed(0)
    high = max(int(_HASH_MAX // max(n_hash, 1)), 2)
    hash_weights = torch.randint(1, high, (max(n_hash, 1), 2), generator=generator)
    hash_weights = hash_weights.to(device=device, dtype=torch.float64)
    for group in groups:
        idx = torch.tensor(group, device=device)
        x, y, valid = _compact(mask[idx], pred[idx], ref[idx])
        chunk = _Chunk(
            f=_features(x, y, valid, hash_weights),
            valid=valid,
            n=n_common[idx],
            inv_d0sq=1.0 / d0[idx] ** 2,
            norm=norm[idx],
            cut=cuts[idx],
            best_tm=torch.full((len(group),), -1.0, dtype=torch.float64, device=device),
            best_counts=torch.full((len(group), len(GDT_CUTOFFS)), -1, dtype=torch.int64, device=device),
        )
        _search_chunk(chunk, [n_list[i] for i in group], seed_step)
        best_tm[idx] = chunk.best_tm
        best_counts[idx] = chunk.best_counts
    return best_tm, best_counts


@functools.cache
def _native_kernel():
    """The compiled search (``ptk_tm_search`` of ``_tmsearch.c``), or None where it was not built."""
    spec = importlib.util.find_spec("ptk._tmsearch")
    if spec is None or spec.origin is None:
        log.info("ptk._tmsearch was not built (no C compiler at install?): searching with torch on CPU")
        return None
    try:
        library = ctypes.CDLL(spec.origin)
    except OSError as exc:
        log.warning("ptk._tmsearch could not be loaded (%s): searching with torch on CPU", exc)
        return None
    kernel = library.ptk_tm_search
    kernel.restype = ctypes.c_int
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    kernel.argtypes = [i64, p, p, i64, p, p, p, p, i64, p, p, p]
    return kernel


def native_search_available() -> bool:
    """Whether the compiled CPU search kernel is there (see the module doc)."""
    return _native_kernel() is not None


def search_backend(device: torch.device | str) -> str:
    """The search :func:`superposition_search` runs by default on ``device``: ``"native"`` on
    CPU where the kernel was built (unless ``PTK_TMSEARCH=torch``), ``"torch"`` otherwise."""
    if torch.device(device).type != "cpu" or os.environ.get("PTK_TMSEARCH", "") == "torch":
        return "torch"
    return "native" if native_search_available() else "torch"


def _native_search(
    x: Tensor, y: Tensor, n: Tensor, inv_d0sq: Tensor, norm: Tensor, cut: Tensor, seed_step: int
) -> tuple[Tensor, Tensor]:
    """The search of :func:`_search_chunk` in the compiled kernel: ``x``, ``y`` ``[b, m, 3]``
    centred common residues first (:func:`_compact`), ``n`` [b] their counts, ``cut`` [b, 2, 2].
    Groups of pairs run on ``torch.get_num_threads()`` threads (the kernel releases the GIL).
    Returns (best TM [b], best GDT counts [b, 5])."""
    kernel = _native_kernel()
    b, stride = x.shape[0], x.shape[1]
    x, y = x.to(torch.float64).contiguous(), y.to(torch.float64).contiguous()
    n = n.to(torch.int64).contiguous()
    inv_d0sq, norm = inv_d0sq.to(torch.float64).contiguous(), norm.to(torch.float64).contiguous()
    cut = cut.to(torch.float64).contiguous()
    best_tm = torch.zeros(b, dtype=torch.float64)
    best_counts = torch.zeros(b, len(GDT_CUTOFFS), dtype=torch.int64)
    states = torch.zeros(b, dtype=torch.int64)

    def run(start: int, stop: int) -> int:
        address = lambda t: t[start:stop].data_ptr()  # noqa: E731
        return kernel(
            stop - start, address(x), address(y), stride, address(n), address(inv_d0sq), address(norm),
            address(cut), seed_step, address(best_tm), address(best_counts), address(states),
        )  # fmt: skip

    threads = max(1, min(torch.get_num_threads(), b))
    if threads == 1:
        codes = [run(0, b)]
    else:
        # Small groups, handed out as threads free up: pairs of different lengths even out.
        step = max(1, b // (8 * threads))
        with ThreadPoolExecutor(threads) as pool:
            codes = list(pool.map(lambda start: run(start, min(b, start + step)), range(0, b, step)))
    if any(codes):
        raise MemoryError("ptk._tmsearch: out of memory")
    return best_tm, best_counts


def _compact(mask: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
    """Move the masked residues of each pair to the front, in order; returns the moved tensors
    and the new mask, trimmed to the longest pair."""
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
    n_max = int(mask.sum(1).max()) if mask.numel() else 0
    order = order[:, :n_max]
    moved = [torch.gather(t, 1, order[..., None].expand(-1, -1, t.shape[-1])) for t in tensors]
    return (*moved, torch.gather(mask, 1, order))


def search_distances(ref_length: Tensor, pred_length: Tensor) -> Tensor:
    """``[b, 2]`` search distances of the TM-score program: column 0 that of its first pass
    (TM-align's search parameters on min(L_pred, L_ref): d0 + 0.8, with d0 = 0.168 for
    L ≤ 19), column 1 that of its final TM-score search (d0 of the reference length); each
    clamped to [4.5, 8] Å."""
    shorter = torch.minimum(ref_length, pred_length).to(torch.float64)
    d0_first = 1.24 * torch.clamp(shorter - 15.0, min=0.0).pow(1.0 / 3.0) - 1.8
    d0_first = torch.where(shorter > 19, d0_first, torch.full_like(d0_first, 0.168)) + 0.8
    d0_final = tm_d0(ref_length.to(torch.float64))
    return torch.stack([d0_first, d0_final], dim=-1).clamp(4.5, 8.0)


def superposition_search(
    pred: Float[Tensor, "b n 3"],
    ref: Float[Tensor, "b n 3"],
    mask: Bool[Tensor, "b n"],
    ref_length: Tensor | Sequence[int] | None = None,
    pred_length: Tensor | Sequence[int] | None = None,
    *,
    seed_step: int = 1,
    max_elements: int = 2**23,
    backend: str | None = None,
) -> dict[str, Tensor]:
    """The TM-score program's superposition searches over every pair of a batch.

    Args:
        pred, ref: Cα coordinates, residue i of ``pred`` paired with residue i of ``ref``.
        mask: common residues (present in both); non-finite coordinates are excluded too. The
            seeds slide along the common residues in array order.
        ref_length: L, the number of reference residues, which normalises the scores; default
            the number of common residues.
        pred_length: number of predicted residues (sets the first pass's search distance with
            ``ref_length``); default the number of common residues.
        seed_step: slide the seed fragments by this many residues (1, the program's search,
            exact); larger steps (TM-align's ``simplify_step``, e.g. 8) try fewer seeds:
            faster, and the maxima can come out slightly lower.
        max_elements: bound on residues × superpositions held at once (memory); pairs are
            searched in groups of about this size (torch path).
        backend: ``"native"`` (the compiled kernel; CPU tensors only), ``"torch"`` (batched
            tensor operations; any device), or ``None``: native on CPU where it was built, else
            torch (the environment variable ``PTK_TMSEARCH=torch`` makes torch the default).
            Both give the same superpositions and maxima.

    Returns:
        ``tm`` [b], ``gdt_counts`` [b, 5] (residues closer than 0.5, 1, 2, 4, 8 Å, each
        maximised), ``gdt_ts`` [b], ``gdt_ha`` [b], ``d0`` [b], ``n_common`` [b]; scores are 0
        for a pair with no common residue. float64 on the input's device.
    """
    device = pred.device
    backend = search_backend(device) if backend is None else backend
    if backend not in ("native", "torch"):
        raise ValueError(f"superposition_search: unknown backend {backend!r} (native, torch)")
    if backend == "native" and (device.type != "cpu" or not native_search_available()):
        raise ValueError(
            "superposition_search: the native backend needs CPU tensors and the compiled ptk._tmsearch"
        )
    mask = mask.bool() & torch.isfinite(pred).all(-1) & torch.isfinite(ref).all(-1)
    b = mask.shape[0]
    n_common = mask.sum(1)

    def length(value: Tensor | Sequence[int] | None) -> Tensor:
        if value is None:
            return n_common.to(torch.float64).clamp(min=1.0)
        return torch.as_tensor(value, dtype=torch.float64, device=device).reshape(b).clamp(min=1.0)

    norm = length(ref_length)
    d0 = tm_d0(norm)
    cuts = search_distances(norm, length(pred_length))  # [b, 2]
    cuts = torch.stack([cuts - 1.0, cuts + 1.0], dim=-1)  # [b, stage, seed / refinement]
    with torch.no_grad():
        pred = torch.where(mask[..., None], pred, 0).to(torch.float64)
        ref = torch.where(mask[..., None], ref, 0).to(torch.float64)
        # Centre each structure on its common residues (better conditioned moments).
        count = n_common.clamp(min=1).to(torch.float64)[:, None]
        pred = pred - ((pred * mask[..., None]).sum(1) / count)[:, None, :]
        ref = ref - ((ref * mask[..., None]).sum(1) / count)[:, None, :]
        if backend == "native":
            x, y, _ = _compact(mask, pred, ref)
            best_tm, best_counts = _native_search(x, y, n_common, 1.0 / d0**2, norm, cuts, seed_step)
        else:
            best_tm, best_counts = _torch_search(pred, ref, mask, d0, norm, cuts, seed_step, max_elements)
    fraction = best_counts.to(torch.float64) / (4.0 * norm[:, None])
    return {
        "tm": best_tm,
        "gdt_counts": best_counts,
        "gdt_ts": fraction[:, 1:].sum(-1),
        "gdt_ha": fraction[:, :4].sum(-1),
        "d0": d0,
        "n_common": n_common,
    }


# ---------------------------------------------------------------------------------------------
# tensor-level metrics


def rmsd(
    pred: Float[Tensor, "*b n 3"], ref: Float[Tensor, "*b n 3"], mask: Bool[Tensor, "*b n"] | None = None
) -> Float[Tensor, "*b"]:
    """RMSD of the masked residues after their optimal (global) superposition — the TM-score
    program's "RMSD of the common residues". Computed in float64 (:func:`ptk.geometry.rmsd`)."""
    return G.rmsd(pred.to(torch.float64), ref.to(torch.float64), mask)


def lddt(
    pred: Float[Tensor, "*b n 3"],
    ref: Float[Tensor, "*b n 3"],
    mask: Bool[Tensor, "*b n"] | None = None,
    ref_mask: Bool[Tensor, "*b n"] | None = None,
    *,
    inclusion_radius: float = 15.0,
    thresholds: Sequence[float] = (0.5, 1.0, 2.0, 4.0),
) -> Float[Tensor, "*b"]:
    """Global Cα lDDT, as ``biotite.structure.lddt(reference, subject)`` computes it.

    Contacts are the pairs of different reference residues (``ref_mask``, default ``mask``)
    within ``inclusion_radius`` Å in the reference; each scores the fraction of ``thresholds``
    its distance deviation stays within; a contact with a residue absent from the prediction
    (``mask`` false or non-finite) scores 0. The score is the mean over all contacts (NaN when
    there is none). No superposition is involved.
    """
    pred_ok = torch.isfinite(pred).all(-1)
    ref_ok = torch.isfinite(ref).all(-1)
    if mask is not None:
        pred_ok = pred_ok & mask.bool()
    if ref_mask is not None:
        ref_ok = ref_ok & ref_mask.bool()
    elif mask is not None:
        ref_ok = ref_ok & mask.bool()
    # Absent residues sit far apart on a line (1e9 Å steps): an absent reference residue is in no
    # contact, and a contact with an absent predicted residue deviates by ~1e9 Å, so scores 0.
    n = ref.shape[-2]
    far = torch.zeros(n, 3, dtype=torch.float64, device=ref.device)
    far[:, 0] = torch.arange(1, n + 1, dtype=torch.float64, device=ref.device) * 1e9
    pred = torch.where(pred_ok[..., None], pred.to(torch.float64), far)
    ref = torch.where(ref_ok[..., None], ref.to(torch.float64), far)
    # A metric, no gradient: cdist's direct (not matrix-product) distances, one fused pass each.
    with torch.no_grad():
        d_ref = torch.cdist(ref, ref, compute_mode="donot_use_mm_for_euclid_dist")
        d_pred = torch.cdist(pred, pred, compute_mode="donot_use_mm_for_euclid_dist")
    # Each unordered pair once (distances are symmetric bit for bit, so the mean over ordered
    # pairs, biotite's, is the same).
    upper = torch.ones(n, n, dtype=torch.bool, device=ref.device).triu_(1)
    contacts = (d_ref <= inclusion_radius) & upper
    total = contacts.sum((-1, -2))
    # Deviations of the contacts only (a fraction of all pairs), summed per structure.
    batch = contacts.shape[:-2]
    where = contacts.reshape(-1, n, n).nonzero(as_tuple=True)
    deviation = (d_pred.reshape(-1, n, n)[where] - d_ref.reshape(-1, n, n)[where]).abs_()
    held = sum((deviation <= threshold).to(torch.float64) for threshold in thresholds)
    score = torch.zeros(math.prod(batch), dtype=torch.float64, device=ref.device)
    score = score.index_add_(0, where[0], held).reshape(batch) / len(thresholds)
    value = score / total.clamp(min=1)
    return torch.where(total > 0, value, torch.full_like(value, math.nan))


def score_batch(
    pred_ca: Float[Tensor, "b n 3"],
    ref_ca: Float[Tensor, "b n 3"],
    mask: Bool[Tensor, "b n"],
    ref_mask: Bool[Tensor, "b n"] | None = None,
    pred_mask: Bool[Tensor, "b n"] | None = None,
) -> dict[str, Tensor]:
    """Every metric of every pair of a batch: ``tm``, ``rmsd``, ``gdt_ts``, ``gdt_ha``,
    ``lddt``, ``n_common`` (all ``[b]``, float64 but ``n_common``; NaN for a pair without a
    common residue).

    Args:
        pred_ca, ref_ca: Cα coordinates, paired by index (model samples against the chain they
            were generated for).
        mask: residues present in both.
        ref_mask: residues present in the reference (default ``mask``): its count is the length
            L that normalises TM and GDT, and lDDT's contacts come from it.
        pred_mask: residues present in the prediction (default ``mask``); only its count is
            used (the TM-score program's first search pass depends on it).

    Runs where the inputs are (CPU or CUDA); no gradient.
    """
    with torch.no_grad():
        mask = mask.bool() & torch.isfinite(pred_ca).all(-1) & torch.isfinite(ref_ca).all(-1)
        full = mask if ref_mask is None else ref_mask.bool() & torch.isfinite(ref_ca).all(-1)
        n_pred = (
            mask.sum(-1)
            if pred_mask is None
            else (pred_mask.bool() & torch.isfinite(pred_ca).all(-1)).sum(-1)
        )
        search = superposition_search(pred_ca, ref_ca, mask, full.sum(-1), n_pred)
        out = {
            "tm": search["tm"],
            "rmsd": rmsd(pred_ca, ref_ca, mask),
            "gdt_ts": search["gdt_ts"],
            "gdt_ha": search["gdt_ha"],
            "lddt": _chunked_lddt(pred_ca, ref_ca, mask, full),
            "n_common": search["n_common"],
        }
        empty = search["n_common"] == 0
        for key in ("tm", "rmsd", "gdt_ts", "gdt_ha", "lddt"):
            out[key] = torch.where(empty, torch.full_like(out[key], math.nan), out[key])
        return out


def _chunked_lddt(
    pred: Tensor, ref: Tensor, mask: Tensor, ref_mask: Tensor, budget: int | None = None
) -> Tensor:
    # On CPU small chunks (8 MB per [n, n] float64 intermediate) stay in cache: 3× faster.
    budget = budget if budget is not None else 2**20 if pred.device.type == "cpu" else 2**24
    n = max(pred.shape[-2], 1)
    step = max(1, budget // (n * n))
    return torch.cat([
        lddt(pred[i : i + step], ref[i : i + step], mask[i : i + step], ref_mask[i : i + step])
        for i in range(0, pred.shape[0], step)
    ]) if pred.shape[0] else pred.new_zeros(0, dtype=torch.float64)  # fmt: skip


def tm_score(
    pred: Float[Tensor, "b n 3"],
    ref: Float[Tensor, "b n 3"],
    mask: Bool[Tensor, "b n"],
    ref_length: Tensor | Sequence[int] | None = None,
) -> Tensor:
    """TM-score of each pair as the TM-score program computes it (:func:`superposition_search`),
    normalised by ``ref_length`` (default: the number of masked residues)."""
    return superposition_search(pred, ref, mask, ref_length)["tm"]


def gdt_ts(
    pred: Float[Tensor, "b n 3"],
    ref: Float[Tensor, "b n 3"],
    mask: Bool[Tensor, "b n"],
    ref_length: Tensor | Sequence[int] | None = None,
) -> Tensor:
    """GDT-TS (cutoffs 1, 2, 4, 8 Å) as a fraction in [0, 1], as the TM-score program reports it."""
    return superposition_search(pred, ref, mask, ref_length)["gdt_ts"]


def gdt_ha(
    pred: Float[Tensor, "b n 3"],
    ref: Float[Tensor, "b n 3"],
    mask: Bool[Tensor, "b n"],
    ref_length: Tensor | Sequence[int] | None = None,
) -> Tensor:
    """GDT-HA (cutoffs 0.5, 1, 2, 4 Å) as a fraction in [0, 1], as the TM-score program reports it."""
    return superposition_search(pred, ref, mask, ref_length)["gdt_ha"]


# ---------------------------------------------------------------------------------------------
# contacts


def contact_metrics(
    prob: Float[Tensor, "*b n n"],
    true_ca: Float[Tensor, "*b n 3"],
    mask: Bool[Tensor, "*b n"] | None = None,
    *,
    threshold: float = 0.5,
    cutoff: float = 8.0,
    min_separation: int = 6,
    long_range: int = 24,
) -> dict[str, Tensor]:
    """Precision and recall of a predicted contact map, and top-L long-range accuracy.

    The truth is :func:`ptk.geometry.contact_map` of ``true_ca`` (Cα–Cα < ``cutoff`` Å).
    Precision and recall count the pairs i < j with |i − j| ≥ ``min_separation`` (6: the
    trivial chain neighbours left out) and both residues in ``mask``; a contact is predicted
    where ``prob ≥ threshold``. Top-L long-range accuracy: of the L most probable pairs with
    |i − j| ≥ ``long_range`` (L = residues in ``mask``), the fraction in true contact.

    Top-L/5 the same over the L // 5 most probable pairs. A chain with fewer true long-range
    contacts than L caps the top-L accuracy below 1: ``top_l_ceiling`` is that cap.

    Returns:
        ``precision``, ``recall``, ``top_l_long``, ``top_l5_long``, ``top_l_ceiling``,
        ``n_true``, ``n_predicted``, ``n_correct``, each ``[*b]`` (precision NaN with nothing
        predicted, recall NaN with no true contact; pool chains with the three counts).
    """
    ca = true_ca.to(torch.float64)
    valid = torch.isfinite(ca).all(-1)
    if mask is not None:
        valid = valid & mask.bool()
    truth = G.contact_map(ca, valid, cutoff=cutoff)
    n = ca.shape[-2]
    index = torch.arange(n, device=ca.device)
    separation = index[None, :] - index[:, None]  # j − i
    pairs = valid[..., :, None] & valid[..., None, :]
    considered = pairs & (separation >= min_separation)
    predicted = (prob >= threshold) & considered
    true = truth & considered
    hits = (predicted & true).sum((-1, -2)).to(torch.float64)
    n_pred = predicted.sum((-1, -2)).to(torch.float64)
    n_true = true.sum((-1, -2)).to(torch.float64)
    nan = torch.full_like(hits, math.nan)
    precision = torch.where(n_pred > 0, hits / n_pred.clamp(min=1), nan)
    recall = torch.where(n_true > 0, hits / n_true.clamp(min=1), nan)
    # top-L (and top-L/5) long range
    long_pairs = pairs & (separation >= long_range)
    scores = torch.where(
        long_pairs, prob.to(torch.float64), torch.full_like(prob, -math.inf, dtype=torch.float64)
    )
    flat_scores = scores.flatten(-2)
    flat_truth = (truth & long_pairs).flatten(-2)
    order = torch.argsort(flat_scores, dim=-1, descending=True, stable=True)
    ranked_truth = torch.gather(flat_truth, -1, order)
    ranked_ok = torch.gather(long_pairs.flatten(-2), -1, order)
    length = valid.sum(-1)
    rank = torch.arange(flat_scores.shape[-1], device=ca.device)
    n_true_long = flat_truth.sum(-1).to(torch.float64)

    def top(count: Tensor) -> tuple[Tensor, Tensor]:
        """(precision of the ``count`` best-ranked long-range pairs, its ceiling: the precision
        if every true long-range contact were ranked first)."""
        chosen = (rank < count[..., None]) & ranked_ok
        n_top = chosen.sum(-1).to(torch.float64)
        hits = (ranked_truth & chosen).sum(-1)
        ok = n_top > 0
        return (
            torch.where(ok, hits / n_top.clamp(min=1), nan),
            torch.where(ok, torch.minimum(n_true_long, n_top) / n_top.clamp(min=1), nan),
        )

    top_l, top_l_ceiling = top(length)
    top_l5, _ = top(torch.div(length, 5, rounding_mode="floor").clamp(min=1))
    return {
        "precision": precision,
        "recall": recall,
        "top_l_long": top_l,
        "top_l5_long": top_l5,
        "top_l_ceiling": top_l_ceiling,
        "n_true": n_true,
        "n_predicted": n_pred,
        "n_correct": hits,
    }


# ---------------------------------------------------------------------------------------------
# TM-align (sequence independent)


def tm_align(
    pred_ca: np.ndarray | Tensor,
    ref_ca: np.ndarray | Tensor,
    pred_seq: str | None = None,
    ref_seq: str | None = None,
) -> dict[str, float]:
    """Sequence-independent structural alignment with TM-align (``tmtools.tm_align``).

    For samples whose residues do not correspond to the reference's. Residues with non-finite
    coordinates are dropped; sequences default to poly-alanine (TM-align's score does not use
    them).

    Returns:
        ``tm_align`` (TM-score normalised by the reference), ``tm_align_pred`` (normalised by the
        prediction), ``rmsd_align`` and ``n_aligned`` (residue pairs in the alignment).
    """
    from tmtools import tm_align as _tm_align

    def prepare(ca: np.ndarray | Tensor, seq: str | None) -> tuple[np.ndarray, str]:
        arr = ca.detach().cpu().numpy() if isinstance(ca, Tensor) else np.asarray(ca)
        arr = np.asarray(arr, dtype=np.float64)
        keep = np.isfinite(arr).all(-1)
        seq = seq if seq is not None else "A" * arr.shape[0]
        if len(seq) != arr.shape[0]:
            raise PtkError(f"sequence of length {len(seq)} for {arr.shape[0]} residues")
        seq = "".join(c for c, k in zip(seq, keep, strict=True) if k)
        return np.ascontiguousarray(arr[keep]), seq

    x, sx = prepare(pred_ca, pred_seq)
    y, sy = prepare(ref_ca, ref_seq)
    if x.shape[0] < 3 or y.shape[0] < 3:
        raise PtkError("TM-align needs at least 3 residues in each structure")
    result = _tm_align(x, y, sx, sy)
    n_aligned = sum(a != "-" and b != "-" for a, b in zip(result.seqxA, result.seqyA, strict=True))
    return {
        "tm_align": float(result.tm_norm_chain2),
        "tm_align_pred": float(result.tm_norm_chain1),
        "rmsd_align": float(result.rmsd),
        "n_aligned": int(n_aligned),
    }


# ---------------------------------------------------------------------------------------------
# files → pairs → table


@dataclass(frozen=True)
class CaTrace:
    """The Cα trace of the first protein chain of a file, residues that have a Cα."""

    coords: np.ndarray  # [n, 3] float64
    resnum: np.ndarray  # [n] int
    icode: np.ndarray  # [n] str
    sequence: str

    def __len__(self) -> int:
        return int(self.coords.shape[0])


def read_ca(path: str | os.PathLike[str], atom_records_only: bool = False) -> CaTrace:
    """Cα trace of the first protein chain of ``path`` (any format :func:`ptk.structure.read_chains`
    reads, ``.gz`` included); residues without a Cα are left out.

    Modified residues (MSE, SME, …) count as their parent residue, HETATM records included;
    ``atom_records_only`` leaves out residues written as HETATM, as the TM-score program, which
    reads ATOM records only, does.

    Raises:
        StructureError: unreadable file, no protein chain, or no Cα atom.
    """
    from ptk.structure import read_chains

    chain = read_chains(path).chains[0]
    has_ca = chain.mask[:, 1] & np.isfinite(chain.positions[:, 1]).all(-1)
    if atom_records_only and chain.hetero is not None:
        has_ca &= ~chain.hetero
    if not has_ca.any():
        where = " in ATOM records" if atom_records_only else ""
        raise StructureError(path, f"no Cα atom{where} in the first protein chain")
    sequence = "".join(c for c, k in zip(chain.sequence, has_ca, strict=True) if k)
    return CaTrace(
        coords=chain.positions[has_ca, 1].astype(np.float64),
        resnum=chain.resnum[has_ca].astype(np.int64),
        icode=chain.icode[has_ca],
        sequence=sequence,
    )


@dataclass(frozen=True)
class PairedResidues:
    """A prediction and a reference on common rows: first the reference's residues in file
    order (with the matched prediction residue's coordinates), then the prediction residues
    that matched none. Coordinates are NaN where a side has no residue."""

    pred_xyz: np.ndarray  # [m, 3]
    ref_xyz: np.ndarray  # [m, 3]
    mask: np.ndarray  # [m] residue in both
    ref_mask: np.ndarray  # [m] residue of the reference
    pred_mask: np.ndarray  # [m] residue of the prediction


def pair_residues(pred: CaTrace, ref: CaTrace) -> PairedResidues:
    """Residues of ``pred`` and ``ref`` matched by residue number + insertion code; each
    reference residue takes the first prediction residue with its number. Rows follow the
    reference's order, as the TM-score program orders the common residues for its search."""
    first: dict[tuple[int, str], int] = {}
    for i, key in enumerate(zip(pred.resnum.tolist(), pred.icode.tolist(), strict=True)):
        first.setdefault(key, i)
    partner = np.array(
        [first.get(key, -1) for key in zip(ref.resnum.tolist(), ref.icode.tolist(), strict=True)],
        dtype=np.int64,
    )
    matched = partner >= 0
    used = np.zeros(len(pred), dtype=bool)
    used[partner[matched]] = True
    rest = np.nonzero(~used)[0]
    n_ref, m = len(ref), len(ref) + rest.shape[0]
    pred_xyz = np.full((m, 3), np.nan)
    ref_xyz = np.full((m, 3), np.nan)
    ref_xyz[:n_ref] = ref.coords
    pred_xyz[:n_ref][matched] = pred.coords[partner[matched]]
    pred_xyz[n_ref:] = pred.coords[rest]
    extra = np.ones(rest.shape[0], dtype=bool)
    return PairedResidues(
        pred_xyz=pred_xyz,
        ref_xyz=ref_xyz,
        mask=np.concatenate([matched, ~extra]),
        ref_mask=np.concatenate([np.ones(n_ref, dtype=bool), ~extra]),
        pred_mask=np.concatenate([matched, extra]),
    )


def _structure_files(folder: Path) -> dict[str, list[Path]]:
    if not folder.is_dir():
        raise PtkError(f"{folder}: not a directory")
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        found.setdefault(structure_name(path), []).append(path)
    return found


def pair_files(
    pred_dir: str | os.PathLike[str], ref_dir: str | os.PathLike[str]
) -> list[tuple[str, Path | None, Path | None, str | None]]:
    """Pair the files of two folders by :func:`structure_name`.

    Returns:
        ``(name, pred_path, ref_path, problem)`` for every name in either folder, sorted by name;
        ``problem`` says why a name cannot be evaluated (missing partner, several files of that
        name) and is None otherwise.
    """
    pred_dir, ref_dir = Path(pred_dir), Path(ref_dir)
    preds, refs = _structure_files(pred_dir), _structure_files(ref_dir)
    rows = []
    for name in sorted(set(preds) | set(refs)):
        p, r = preds.get(name, []), refs.get(name, [])
        problem = None
        if len(p) > 1 or len(r) > 1:
            several = p if len(p) > 1 else r
            problem = "several files of this name: " + ", ".join(x.name for x in several)
        elif not p:
            problem = f"no prediction named {name} in {pred_dir}"
        elif not r:
            problem = f"no reference named {name} in {ref_dir}"
        rows.append((name, p[0] if len(p) == 1 else None, r[0] if len(r) == 1 else None, problem))
    return rows


def sse_fractions(trace: CaTrace) -> dict[str, float]:
    """Helix, strand and coil fractions of a Cα trace by biotite's P-SEA
    (:func:`biotite.structure.annotate_sse`, which needs Cα atoms only), over the residues it
    assigns (NaN for a trace it assigns none of)."""
    import biotite.structure as struc

    atoms = struc.AtomArray(len(trace))
    atoms.coord = trace.coords.astype(np.float32)
    atoms.res_id = trace.resnum.astype(int)
    atoms.ins_code = trace.icode.astype(str)
    atoms.atom_name[:] = "CA"
    atoms.element[:] = "C"
    atoms.res_name[:] = "ALA"
    atoms.chain_id[:] = "A"
    labels = struc.annotate_sse(atoms)
    assigned = np.isin(labels, ["a", "b", "c"])
    n = int(assigned.sum())
    if n == 0:
        return {"helix": math.nan, "strand": math.nan, "coil": math.nan}
    return {
        name: float((labels == code).sum()) / n
        for name, code in (("helix", "a"), ("strand", "b"), ("coil", "c"))
    }


def long_range_contact_agreement(
    paired: PairedResidues, cutoff: float = 8.0, min_separation: int = 24
) -> dict[str, float]:
    """Precision and recall of the prediction's long-range Cα contacts (d < ``cutoff`` Å,
    |i − j| ≥ ``min_separation`` in the reference's numbering order) against the reference's,
    over the residues both hold (NaN: no predicted / no true long-range contact)."""
    rows = np.flatnonzero(paired.mask)
    index = np.arange(paired.mask.shape[0])[rows]  # reference rows come first, in file order
    far = np.abs(index[:, None] - index[None, :]) >= min_separation
    upper = np.triu(far, 1)

    def contacts(xyz: np.ndarray) -> np.ndarray:
        xyz = xyz[rows]
        return (np.linalg.norm(xyz[:, None] - xyz[None], axis=-1) < cutoff) & upper

    true, pred = contacts(paired.ref_xyz), contacts(paired.pred_xyz)
    hits = float((true & pred).sum())
    return {
        "lr_contact_precision": hits / pred.sum() if pred.any() else math.nan,
        "lr_contact_recall": hits / true.sum() if true.any() else math.nan,
    }


def evaluate_pairs(
    pred_paths: Sequence[str | os.PathLike[str] | None],
    ref_paths: Sequence[str | os.PathLike[str] | None],
    device: str | torch.device = "cpu",
    *,
    align: bool = False,
    structure_stats: bool = False,
    names: Sequence[str] | None = None,
    problems: Sequence[str | None] | None = None,
    atom_records_only: bool = False,
):
    """Score prediction files against reference files, pair by pair.

    Residues are matched by residue number + insertion code (:func:`pair_residues`); TM and GDT
    are normalised by the reference's length. Modified residues count as their parent, unless
    ``atom_records_only`` (the TM-score program's reading: HETATM residues left out of both
    files, :func:`read_ca`). A pair that cannot be evaluated (a missing path,
    an unreadable file, no common residue) becomes a row with the reason in ``error`` and NaN
    metrics; it never raises.

    Returns:
        pandas DataFrame, one row per pair in input order: ``name``, ``n_common``, ``ref_length``,
        ``rmsd``, ``tm``, ``gdt_ts``, ``gdt_ha``, ``lddt`` (+ ``tm_align`` with ``align``, +
        :data:`STRUCTURE_COLUMNS` with ``structure_stats``), ``error``.
    """
    import pandas as pd

    if len(pred_paths) != len(ref_paths):
        raise PtkError(f"{len(pred_paths)} predictions but {len(ref_paths)} references")
    count = len(pred_paths)
    names = list(names) if names is not None else [
        structure_name(p if p is not None else r) for p, r in zip(pred_paths, ref_paths, strict=True)  # type: ignore[arg-type]
    ]  # fmt: skip
    problems = list(problems) if problems is not None else [None] * count
    rows: list[dict] = []
    batch: list[tuple[int, PairedResidues]] = []
    traces: dict[int, tuple[CaTrace, CaTrace]] = {}
    for i, (p, r) in enumerate(zip(pred_paths, ref_paths, strict=True)):
        row = {"name": names[i], "n_common": 0, "ref_length": 0}
        row.update({k: math.nan for k in METRIC_COLUMNS if k != "tm_align" or align})
        row["error"] = problems[i]
        rows.append(row)
        if row["error"] is not None:
            continue
        if p is None or r is None:
            row["error"] = "no prediction file" if p is None else "no reference file"
            continue
        try:
            pred, ref = read_ca(p, atom_records_only), read_ca(r, atom_records_only)
        except PtkError as exc:
            row["error"] = str(exc)
            continue
        except Exception as exc:  # a reader bug must not take the whole table down
            row["error"] = f"{type(exc).__name__}: {exc}"
            continue
        paired = pair_residues(pred, ref)
        row["ref_length"] = len(ref)
        row["n_common"] = int(paired.mask.sum())
        if not paired.mask.any():
            row["error"] = "no common residues (no residue number + insertion code in both files)"
            continue
        batch.append((i, paired))
        traces[i] = (pred, ref)
        if structure_stats:
            for side, trace in (("ref", ref), ("pred", pred)):
                row.update({f"{side}_{k}": v for k, v in sse_fractions(trace).items()})
            row.update(long_range_contact_agreement(paired))
    if batch:
        m = max(item.mask.shape[0] for _, item in batch)
        pred_t = torch.full((len(batch), m, 3), math.nan, dtype=torch.float64)
        ref_t = torch.full((len(batch), m, 3), math.nan, dtype=torch.float64)
        masks = torch.zeros(3, len(batch), m, dtype=torch.bool)  # common, reference, prediction
        for k, (_, item) in enumerate(batch):
            rows_k = item.mask.shape[0]
            pred_t[k, :rows_k] = torch.from_numpy(item.pred_xyz)
            ref_t[k, :rows_k] = torch.from_numpy(item.ref_xyz)
            for j, values in enumerate((item.mask, item.ref_mask, item.pred_mask)):
                masks[j, k, :rows_k] = torch.from_numpy(values)
        device = torch.device(device)
        masks = masks.to(device)
        scores = score_batch(pred_t.to(device), ref_t.to(device), masks[0], masks[1], masks[2])
        scores = {k: v.cpu().tolist() for k, v in scores.items()}
        for k, (i, _) in enumerate(batch):
            for key in ("rmsd", "tm", "gdt_ts", "gdt_ha", "lddt"):
                rows[i][key] = scores[key][k]
    if align:
        for i, (pred, ref) in traces.items():
            try:
                rows[i]["tm_align"] = tm_align(pred.coords, ref.coords, pred.sequence, ref.sequence)[
                    "tm_align"
                ]
            except Exception as exc:  # keep the metric table even if TM-align refuses one pair
                rows[i]["error"] = f"TM-align: {exc}"
    columns = ["name", "n_common", "ref_length", "rmsd", "tm", "gdt_ts", "gdt_ha", "lddt"]
    columns += ["tm_align"] if align else []
    columns += list(STRUCTURE_COLUMNS) if structure_stats else []
    columns += ["error"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["error"] = frame["error"].astype(object)
    return frame


def summarize_by(frame, column: str) -> dict[object, dict[str, dict[str, float]]]:
    """:func:`summarize` of each group of rows sharing a value of ``column`` (rows without a
    value form the group ``None``), groups in sorted order, ``None`` last."""
    return {
        None if _missing(key) else key: summarize(part)
        for key, part in frame.groupby(column, dropna=False, sort=True)
    }


def _missing(value: object) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))


def summarize(frame) -> dict[str, dict[str, float]]:
    """Mean and median of each metric column over the rows without an error."""
    ok = frame[frame["error"].isna()] if "error" in frame else frame
    out = {}
    for column in (*METRIC_COLUMNS, *STRUCTURE_COLUMNS):
        if column in ok:
            values = ok[column].astype(float)
            out[column] = {
                "mean": float(values.mean()),
                "median": float(values.median()),
                "n": int(values.notna().sum()),
            }
    return out
