"""The TM-score program's superposition search, batched over many pairs in torch (CPU or GPU).

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

Where the compiled kernel is built, CPU searches run in it instead (:mod:`ptk.metrics.kernel`):
the same superpositions and the same maxima.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ptk import geometry as G
from ptk.metrics.kernel import native_search, native_search_available, search_backend
from ptk.metrics.parameters import GDT_CUTOFFS, N_INIT_MAX, search_distances, seed_lengths, tm_d0

__all__ = ["superposition_search"]

_N_ITER = 20  # TMscore.f n_it
_STATS = 17  # per-residue moment features (see _features)
_HASH_MAX = 2.0**52  # hash sums stay exact integers in float64 below this
_FAR = 1e30  # squared distance given to padding residues
_CPU_BLOCK = 2**20  # residues × states scored at once on CPU (8 MB of float64 distances)


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
        cost = n_list[i] * n_list[i] * N_INIT_MAX
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


def _compact(mask: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
    """Move the masked residues of each pair to the front, in order; returns the moved tensors
    and the new mask, trimmed to the longest pair."""
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
    n_max = int(mask.sum(1).max()) if mask.numel() else 0
    order = order[:, :n_max]
    moved = [torch.gather(t, 1, order[..., None].expand(-1, -1, t.shape[-1])) for t in tensors]
    return (*moved, torch.gather(mask, 1, order))


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
            best_tm, best_counts = native_search(x, y, n_common, 1.0 / d0**2, norm, cuts, seed_step)
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
