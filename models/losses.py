"""Every training loss of ptk: Pallatom's (``../shared/seeds/pallatom_losses_api.txt``) and Mini-Fold's
(``../shared/seeds/minifold_report_page.txt``, "Loss Functions" and the v14 section).

Conventions:

- Each loss runs in fp32: half-precision inputs are cast up and autocast is off inside (float64
  stays float64), as the Mini-Fold report found necessary ("fp16 epsilon underflow").
- Distances come from :func:`ptk.geometry.pairwise_distances` / :func:`ptk.geometry.safe_norm`, so
  gradients stay finite at coincident points (never ``torch.cdist``'s backward).
- Masks are bool (or 0/1); ``None`` means all valid. Means run over valid elements only; an empty
  mask gives 0 with a zero (finite) gradient.
- Rotations have the frame axes as *columns* (global = ``R @ local + t``), as
  :func:`ptk.geometry.backbone_frames` and :mod:`ptk.models.rigid`.
- Pallatom losses return what the seed API documents; Mini-Fold losses return one value per
  example (the batch dims ``[...]``), and the caller takes ``.mean()``.
- Physical constants are arguments with Å defaults; in Mini-Fold's ÷10 space pass scaled values.
- ``residue_index`` (optional ``[..., n]`` int, e.g. ``batch["resnum"]``): terms between
  consecutive residues (bonds, angles, quartets, ω) count only where it steps by exactly +1.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import TypeVar

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from ptk.geometry import EPS, apply_transform, kabsch, pairwise_distances, safe_norm
from ptk.models.precision import fp32_island, upcast

__all__ = [
    # Pallatom
    "atom_loss",
    "distogram_loss_residue",
    "distogram_loss_atom",
    "med_loss_per_block",
    "med_loss",
    "smooth_lddt_loss",
    # Mini-Fold
    "fape_loss",
    "frame_rotation_loss",
    "distance_mse_loss",
    "ca_bond_loss",
    "bond_weight",
    "chirality_loss",
    "bond_angle_loss",
    "radius_of_gyration",
    "log_rg_loss",
    "distance_to_bins",
    "aux_distance_ce_loss",
    "clash_loss",
    "backbone_fape_loss",
    "backbone_bond_loss",
    "backbone_angle_loss",
    "omega_loss",
    "IDEAL_BACKBONE_BONDS",
    "IDEAL_BACKBONE_ANGLES_DEG",
]

#: N–Cα, Cα–C, C–N(next), C=O in Å: the Mini-Fold page's values (Engh & Huber 1991 give 1.525
#: for Cα–C; the page's 1.523 is the documented default).
IDEAL_BACKBONE_BONDS: tuple[float, float, float, float] = (1.458, 1.523, 1.329, 1.231)
#: N–Cα–C, Cα–C–N(next), C–N(next)–Cα(next) in degrees (Engh & Huber 1991).
IDEAL_BACKBONE_ANGLES_DEG: tuple[float, float, float] = (111.2, 116.2, 121.7)

_F = TypeVar("_F", bound=Callable[..., Tensor])


def _up(x: object) -> object:
    if isinstance(x, Tensor):
        return upcast(x)
    if isinstance(x, list | tuple) and any(isinstance(v, Tensor) for v in x):
        return type(x)(upcast(v) if isinstance(v, Tensor) else v for v in x)
    return x


def _first_tensor(values: Sequence[object]) -> Tensor | None:
    for v in values:
        if isinstance(v, Tensor):
            return v
        if isinstance(v, list | tuple):
            found = _first_tensor(v)
            if found is not None:
                return found
    return None


def _fp32(fn: _F) -> _F:
    """Run ``fn`` with half-precision tensor arguments cast to fp32 and autocast disabled."""

    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> Tensor:
        args = tuple(_up(a) for a in args)
        kwargs = {k: _up(v) for k, v in kwargs.items()}
        ref = _first_tensor(list(args) + list(kwargs.values()))
        if ref is None:
            return fn(*args, **kwargs)
        with fp32_island(ref):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _mask(mask: Tensor | None, shape: torch.Size, device: torch.device) -> Tensor:
    """A bool mask of ``shape`` (``None`` → all True; float masks: nonzero = valid)."""
    if mask is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    return (mask != 0).expand(shape) if mask.dtype != torch.bool else mask.expand(shape)


def _finite(x: Tensor) -> Tensor:
    return torch.isfinite(x).all(-1)


def _masked_mean(x: Tensor, mask: Tensor, dims: int) -> Tensor:
    """Mean of ``x`` over its last ``dims`` dims where ``mask``; 0 where nothing is valid."""
    axes = tuple(range(-dims, 0))
    x = torch.where(mask, x, torch.zeros_like(x))
    return x.sum(axes) / mask.sum(axes).clamp(min=1).to(x.dtype)


def _zero_invalid(x: Tensor, mask: Tensor) -> Tensor:
    """Points with a False mask (or NaN coordinates) replaced by 0, so they cannot poison sums."""
    return torch.where(mask[..., None], x, torch.zeros_like(x))


def _cross_entropy(logits: Tensor, y: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Per-element −Σ_b y_b log softmax(logits)_b with one-hot/soft ``y`` ``[..., nb]`` or integer
    ``y`` ``[...]`` (out-of-range indices, e.g. −1, count as masked)."""
    n_bins = logits.shape[-1]
    logp = F.log_softmax(logits, dim=-1)
    if y.dim() == logits.dim():
        if y.shape[-1] != n_bins:
            raise ValueError(f"one-hot targets have {y.shape[-1]} bins, logits {n_bins}")
        nll = -(y.to(logp.dtype) * logp).sum(-1)
    elif y.dim() == logits.dim() - 1:
        if y.is_floating_point():
            raise TypeError("index targets must be integers (one-hot targets carry the bin axis)")
        in_range = (y >= 0) & (y < n_bins)
        mask = mask & in_range
        nll = -logp.gather(-1, y.long().clamp(0, n_bins - 1)[..., None])[..., 0]
    else:
        raise ValueError(
            f"targets of shape {tuple(y.shape)} fit neither logits {tuple(logits.shape)} "
            "(one-hot) nor their leading dims (indices)"
        )
    return nll, mask


# ---------------------------------------------------------------------------------------- Pallatom


@_fp32
def atom_loss(
    r_denoised: Float[Tensor, "*b n 3"], r_gt: Float[Tensor, "*b n 3"], mask: Tensor | None = None
) -> Float[Tensor, "*b"]:
    """Kabsch-aligned MSE ``||r_denoised − r_aligned||² / (3L)``, L = number of valid points.

    The ground truth is moved onto the (detached) prediction by the weighted Kabsch fit, so the
    gradient flows through ``r_denoised`` only. NaN ground-truth points count as masked.
    """
    m = _mask(mask, r_gt.shape[:-1], r_gt.device) & _finite(r_gt)
    gt = _zero_invalid(r_gt.detach(), m)
    rot, trans = kabsch(gt, r_denoised.detach(), m)
    aligned = apply_transform(rot, trans, gt).detach()
    sq = ((r_denoised - aligned) ** 2).sum(-1)
    count = m.sum(-1).clamp(min=1).to(sq.dtype)
    return torch.where(m, sq, torch.zeros_like(sq)).sum(-1) / (3.0 * count)


@_fp32
def distogram_loss_residue(
    p: Float[Tensor, "*b n n nb"], y: Tensor, mask: Tensor | None = None
) -> Float[Tensor, "*b"]:
    """Residue distogram cross-entropy ``−1/N² Σ_ij Σ_b y^b_ij log softmax(p)^b_ij``.

    ``y``: one-hot (or soft) ``[..., n, n, nb]`` or integer bins ``[..., n, n]``. With a residue
    ``mask``, the mean runs over the pairs of valid residues (N² without a mask).
    """
    res = _mask(mask, p.shape[:-2], p.device)
    pair = res[..., :, None] & res[..., None, :]
    nll, pair = _cross_entropy(p, y, pair)
    return _masked_mean(nll, pair, 2)


@_fp32
def distogram_loss_atom(
    q: Float[Tensor, "*b na k nb"], y: Tensor, local_mask: Tensor | None = None
) -> Float[Tensor, "*b"]:
    """Local atom distogram cross-entropy over the sparse ``[..., N_atom, K]`` window pairs.

    ``y``: one-hot ``[..., N_atom, K, nb]`` or integer bins ``[..., N_atom, K]``. The mean runs over
    the slots where ``local_mask`` is True (= 1/(N_atom·K) Σ when every slot is valid; padding slots
    of :func:`ptk.models.pallatom.atom_transformer.build_sparse_pairs` must be masked).
    """
    m = _mask(local_mask, q.shape[:-1], q.device)
    nll, m = _cross_entropy(q, y, m)
    return _masked_mean(nll, m, 2)


def _sequence_ce(logits: Tensor, aa: Tensor, mask: Tensor) -> Tensor:
    nll, m = _cross_entropy(logits, aa, mask)
    return _masked_mean(nll, m, 1)


@_fp32
def med_loss_per_block(
    r_denoised_k: Float[Tensor, "*b n 3"],
    r_gt: Float[Tensor, "*b n 3"],
    logits_aa_k: Float[Tensor, "*b n n_amino"],
    aa_gt: Int[Tensor, "*b n"],
    lam: float | Tensor,
    alpha_0: float,
    mask: Tensor | None = None,
) -> Float[Tensor, "*b"]:
    """``L^k_med = λ(t) · atom_loss + α₀ · CE(â_k, a⁰)`` (CE averaged over valid residues;
    out-of-range amino-acid indices count as masked). ``lam`` may be a per-example tensor."""
    m = _mask(mask, aa_gt.shape, aa_gt.device)
    return lam * atom_loss(r_denoised_k, r_gt, m) + alpha_0 * _sequence_ce(logits_aa_k, aa_gt, m)


@_fp32
def med_loss(
    r_denoised_blocks: Sequence[Tensor],
    r_gt: Float[Tensor, "*b n 3"],
    logits_aa_blocks: Sequence[Tensor],
    aa_gt: Int[Tensor, "*b n"],
    lam: float | Tensor,
    alpha_0: float,
    gamma: float = 0.99,
    mask: Tensor | None = None,
) -> Float[Tensor, ""]:
    """``L_med = (1/K) Σ_k γ^(K−k) L^k_med`` (the last block has weight 1), mean over the batch.

    Raises:
        ValueError: the two block lists differ in length, or are empty.
    """
    k_blocks = len(r_denoised_blocks)
    if k_blocks != len(logits_aa_blocks):
        raise ValueError(f"{k_blocks} coordinate blocks but {len(logits_aa_blocks)} sequence-logit blocks")
    if k_blocks == 0:
        raise ValueError("med_loss needs at least one decoder block")
    total = 0.0
    for k, (r_k, logits_k) in enumerate(zip(r_denoised_blocks, logits_aa_blocks, strict=True), start=1):
        weight = gamma ** (k_blocks - k)
        total = total + weight * med_loss_per_block(r_k, r_gt, logits_k, aa_gt, lam, alpha_0, mask)
    return (total / k_blocks).mean()


@_fp32
def smooth_lddt_loss(
    r_pred: Float[Tensor, "*b na 3"],
    r_true: Float[Tensor, "*b na 3"],
    mask: Tensor | None = None,
    cutoff: float = 15.0,
    *,
    thresholds: Sequence[float] = (0.5, 1.0, 2.0, 4.0),
    sharpness: float = 1.0,
) -> Float[Tensor, ""]:
    """Smooth lDDT loss, AF3 Algorithm 8 as written (Pallatom's all-atom version):

    δ_lm = |‖r^GT_l − r^GT_m‖ − ‖r_l − r_m‖|, ε_lm = ¼ Σ_t σ(t − δ_lm) for t ∈ {½, 1, 2, 4},
    c_lm = 1(‖r^GT_l − r^GT_m‖ < cutoff) for l ≠ m and both atoms valid,
    lddt = Σ c·ε / Σ c; returns the batch mean of 1 − lddt.

    ``sharpness`` (keyword-only, default 1 = the algorithm) multiplies the sigmoid arguments;
    as it grows the score tends to the hard lDDT. Dense O(N²) over atoms.
    """
    m = _mask(mask, r_true.shape[:-1], r_true.device) & _finite(r_true)
    d_true = pairwise_distances(_zero_invalid(r_true, m))
    d_pred = pairwise_distances(_zero_invalid(r_pred, m))
    delta = (d_true - d_pred).abs()
    eps = sum(torch.sigmoid(sharpness * (t - delta)) for t in thresholds) / len(thresholds)
    n = r_true.shape[-2]
    off_diag = ~torch.eye(n, dtype=torch.bool, device=r_true.device)
    c = (d_true < cutoff) & off_diag & m[..., :, None] & m[..., None, :]
    lddt = _masked_mean(eps, c, 2)
    return (1.0 - lddt).mean()


# --------------------------------------------------------------------------------------- Mini-Fold


def _fape(rot_p, trans_p, x_p, rot_t, trans_t, x_t, fm, pm, clamp_distance, length_scale, eps):
    # Local coordinates R_fᵀ (x_j − o_f): [..., F, P, 3]
    local_p = torch.einsum("...fki,...fpk->...fpi", rot_p, x_p[..., None, :, :] - trans_p[..., :, None, :])
    local_t = torch.einsum("...fki,...fpk->...fpi", rot_t, x_t[..., None, :, :] - trans_t[..., :, None, :])
    d = torch.sqrt(((local_p - local_t) ** 2).sum(-1) + eps)
    if clamp_distance is not None:
        d = torch.clamp(d, max=clamp_distance)
    pair = fm[..., :, None] & pm[..., None, :]
    return _masked_mean(d, pair, 2) / length_scale


@_fp32
def fape_loss(
    rot_pred: Float[Tensor, "*b f 3 3"],
    trans_pred: Float[Tensor, "*b f 3"],
    x_pred: Float[Tensor, "*b p 3"],
    rot_true: Float[Tensor, "*b f 3 3"],
    trans_true: Float[Tensor, "*b f 3"],
    x_true: Float[Tensor, "*b p 3"],
    frame_mask: Tensor | None = None,
    point_mask: Tensor | None = None,
    clamp_distance: float | None = 10.0,
    length_scale: float = 10.0,
    eps: float = 1e-4,
) -> Float[Tensor, "*b"]:
    """FAPE (AF2 Alg. 28) with the model's own (learned) frames:
    mean over valid (f, j) of min(√(‖R_fᵀ(x̂_j − o_f) − R*_fᵀ(x_j − o*_f)‖² + ε), d_clamp) / Z.

    Defaults: d_clamp = 10 Å, Z = 10 Å, ε = 1e-4 Å²; ``clamp_distance=None`` disables the clamp.
    NaN ground-truth points and frames count as masked."""
    fm = _mask(frame_mask, rot_true.shape[:-2], rot_true.device)
    fm = fm & _finite(trans_true) & _finite(rot_true.flatten(-2))
    pm = _mask(point_mask, x_true.shape[:-1], x_true.device) & _finite(x_true)
    x_true, trans_true = _zero_invalid(x_true, pm), _zero_invalid(trans_true, fm)
    eye = torch.eye(3, dtype=rot_true.dtype, device=rot_true.device).expand_as(rot_true)
    rot_true = torch.where(fm[..., None, None], rot_true, eye)
    return _fape(rot_pred, trans_pred, x_pred, rot_true, trans_true, x_true, fm, pm,
                 clamp_distance, length_scale, eps)  # fmt: skip


@_fp32
def frame_rotation_loss(
    rot_pred: Float[Tensor, "*b n 3 3"], rot_true: Float[Tensor, "*b n 3 3"], mask: Tensor | None = None
) -> Float[Tensor, "*b"]:
    """``1 − cos θ`` with θ the rotation angle of ``R_predᵀ R_true``: cos θ = (tr(R_predᵀ R_true) − 1)/2,
    averaged over valid frames (0 = identical, 1 ≈ 90°, 2 = 180°). No arccos, so the gradient is
    finite everywhere."""
    m = _mask(mask, rot_true.shape[:-2], rot_true.device) & _finite(rot_true.flatten(-2))
    rot_true = torch.where(m[..., None, None], rot_true, torch.zeros_like(rot_true))
    trace = (rot_pred * rot_true).sum((-1, -2))
    return _masked_mean(1.0 - (trace - 1.0) / 2.0, m, 1)


@_fp32
def distance_mse_loss(
    x_pred: Float[Tensor, "*b n 3"], x_true: Float[Tensor, "*b n 3"], mask: Tensor | None = None
) -> Float[Tensor, "*b"]:
    """Mean over valid pairs i ≠ j of ``(‖x̂_i − x̂_j‖ − ‖x_i − x_j‖)²``."""
    m = _mask(mask, x_true.shape[:-1], x_true.device) & _finite(x_true)
    d_pred = pairwise_distances(_zero_invalid(x_pred, m))
    d_true = pairwise_distances(_zero_invalid(x_true, m))
    n = x_true.shape[-2]
    pair = m[..., :, None] & m[..., None, :] & ~torch.eye(n, dtype=torch.bool, device=m.device)
    return _masked_mean((d_pred - d_true) ** 2, pair, 2)


def _window_mask(mask: Tensor, residue_index: Tensor | None, span: int) -> Tensor:
    """``[..., n − span + 1]``: residues i..i+span−1 all valid and (if given) consecutive."""
    n = mask.shape[-1]
    w = n - span + 1
    out = mask[..., :w].clone()
    for s in range(1, span):
        out = out & mask[..., s : s + w]
        if residue_index is not None:
            out = out & (residue_index[..., s : s + w] - residue_index[..., :w] == s)
    return out


def _consecutive(x: Tensor, mask: Tensor | None, residue_index: Tensor | None, span: int):
    """(points, window mask) for windows of ``span`` consecutive residues; x is [..., n, 3]."""
    m = _mask(mask, x.shape[:-1], x.device) & _finite(x)
    if x.shape[-2] < span:
        return _zero_invalid(x, m), m[..., :0]
    return _zero_invalid(x, m), _window_mask(m, residue_index, span)


@_fp32
def ca_bond_loss(
    x_pred: Float[Tensor, "*b n 3"],
    mask: Tensor | None = None,
    residue_index: Tensor | None = None,
    ideal: float = 3.8,
) -> Float[Tensor, "*b"]:
    """Mean over consecutive valid pairs of ``(‖x̂_i − x̂_{i+1}‖ − ideal)²`` (Cα–Cα 3.8 Å). Weight it
    with :func:`bond_weight`."""
    x, w = _consecutive(x_pred, mask, residue_index, 2)
    d = safe_norm(x[..., 1:, :] - x[..., :-1, :])
    return _masked_mean((d - ideal) ** 2, w, 1)


def bond_weight(epoch: float, start: float = 1.0, end: float = 3.0, anneal_epochs: float = 10.0) -> float:
    """The annealed bond weight β(e) = min(end, start + (end − start) · min(e / anneal_epochs, 1)):
    v11+ ``min(3.0, 1.0 + 2.0 · min(e/10, 1))`` by default; v10 was (1, 5, 15)."""
    frac = min(max(epoch, 0.0) / anneal_epochs, 1.0) if anneal_epochs > 0 else 1.0
    value = start + (end - start) * frac
    return min(end, value) if end >= start else max(end, value)


def _signed_volumes(x: Tensor) -> Tensor:
    """v1·(v2×v3)/(|v1||v2||v3|) of consecutive bond vectors over quartets: [..., n − 3]."""
    v = x[..., 1:, :] - x[..., :-1, :]
    v1, v2, v3 = v[..., :-2, :], v[..., 1:-1, :], v[..., 2:, :]
    triple = (v1 * torch.cross(v2, v3, dim=-1)).sum(-1)
    return triple / (safe_norm(v1) * safe_norm(v2) * safe_norm(v3))


@_fp32
def chirality_loss(
    x_pred: Float[Tensor, "*b n 3"],
    x_true: Float[Tensor, "*b n 3"],
    mask: Tensor | None = None,
    residue_index: Tensor | None = None,
) -> Float[Tensor, "*b"]:
    """MSE of the normalised signed volumes of Cα quartets (i..i+3), v_k = x_{i+k} − x_{i+k−1}:
    ``v1·(v2×v3) / (|v1||v2||v3|)`` of prediction vs truth (a mirror image flips the sign)."""
    m = _mask(mask, x_true.shape[:-1], x_true.device) & _finite(x_true)
    xp, w = _consecutive(x_pred, m, residue_index, 4)
    xt = _zero_invalid(x_true, m)
    if x_true.shape[-2] < 4:
        return xp.sum((-1, -2)) * 0.0
    return _masked_mean((_signed_volumes(xp) - _signed_volumes(xt)) ** 2, w, 1)


def _cos_angle(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """cos of the angle a–b–c at b (safe norms: finite, 0 for coincident points)."""
    u, v = a - b, c - b
    return (u * v).sum(-1) / (safe_norm(u) * safe_norm(v))


@_fp32
def bond_angle_loss(
    x_pred: Float[Tensor, "*b n 3"],
    x_true: Float[Tensor, "*b n 3"],
    mask: Tensor | None = None,
    residue_index: Tensor | None = None,
    target_cos: float | None = None,
) -> Float[Tensor, "*b"]:
    """MSE in cosine space of the Cα–Cα–Cα angles: mean over valid triples of
    ``(cos θ̂_i − cos θ_i)²``; with ``target_cos`` (e.g. −0.5 for 120°) compare to that constant."""
    m = _mask(mask, x_true.shape[:-1], x_true.device) & _finite(x_true)
    xp, w = _consecutive(x_pred, m, residue_index, 3)
    if x_true.shape[-2] < 3:
        return xp.sum((-1, -2)) * 0.0
    cos_p = _cos_angle(xp[..., :-2, :], xp[..., 1:-1, :], xp[..., 2:, :])
    if target_cos is None:
        xt = _zero_invalid(x_true, m)
        target = _cos_angle(xt[..., :-2, :], xt[..., 1:-1, :], xt[..., 2:, :])
    else:
        target = torch.full_like(cos_p, target_cos)
    return _masked_mean((cos_p - target) ** 2, w, 1)


@_fp32
def radius_of_gyration(x: Float[Tensor, "*b n 3"], mask: Tensor | None = None) -> Float[Tensor, "*b"]:
    """√(mean over valid points of ‖x − centroid‖²), safe at 0."""
    m = _mask(mask, x.shape[:-1], x.device) & _finite(x)
    x = _zero_invalid(x, m)
    count = m.sum(-1, keepdim=True).clamp(min=1).to(x.dtype)
    centroid = x.sum(-2) / count
    sq = _zero_invalid(x - centroid[..., None, :], m).pow(2).sum((-1, -2)) / count[..., 0]
    return torch.sqrt(torch.clamp(sq, min=EPS))


@_fp32
def log_rg_loss(
    rg_pred: Float[Tensor, "*b"],
    rg_true: Float[Tensor, "*b"],
    mask: Tensor | None = None,
    min_rg: float = 1e-3,
) -> Float[Tensor, "*b"]:
    """``(log R̂_g − log R_g)²`` per example (0 where ``mask`` is False); both clamped at ``min_rg``.
    ``rg_true`` typically from :func:`radius_of_gyration` of the ground truth."""
    m = _mask(mask, rg_true.shape, rg_true.device) & torch.isfinite(rg_true)
    rg_true = torch.where(m, rg_true, torch.ones_like(rg_true))
    diff = torch.log(rg_pred.clamp(min=min_rg)) - torch.log(rg_true.clamp(min=min_rg))
    sq = diff**2
    return torch.where(m, sq, torch.zeros_like(sq))


def distance_to_bins(
    d: Tensor, n_bins: int = 32, d_min: float = 2.0, d_max: float = 40.0
) -> Int[Tensor, "..."]:
    """Uniform bins of width (d_max − d_min)/n_bins over [d_min, d_max]; below → bin 0, above →
    the last bin."""
    width = (d_max - d_min) / n_bins
    return torch.floor((d - d_min) / width).long().clamp(0, n_bins - 1)


@_fp32
def aux_distance_ce_loss(
    logits: Float[Tensor, "*b n n nb"],
    x_true: Float[Tensor, "*b n 3"],
    mask: Tensor | None = None,
    n_bins: int = 32,
    d_min: float = 2.0,
    d_max: float = 40.0,
) -> Float[Tensor, "*b"]:
    """Auxiliary distance cross-entropy −log p_ij[bin(d_ij)] averaged over valid pairs i ≠ j
    (32 bins over 2–40 Å, :func:`distance_to_bins`)."""
    if logits.shape[-1] != n_bins:
        raise ValueError(f"logits have {logits.shape[-1]} bins, n_bins={n_bins}")
    m = _mask(mask, x_true.shape[:-1], x_true.device) & _finite(x_true)
    d = pairwise_distances(_zero_invalid(x_true, m).detach())
    n = x_true.shape[-2]
    pair = m[..., :, None] & m[..., None, :] & ~torch.eye(n, dtype=torch.bool, device=m.device)
    nll, pair = _cross_entropy(logits, distance_to_bins(d, n_bins, d_min, d_max), pair)
    return _masked_mean(nll, pair, 2)


@_fp32
def clash_loss(
    x_pred: Float[Tensor, "*b n 3"],
    mask: Tensor | None = None,
    threshold: float = 3.0,
    contact: Tensor | None = None,
    min_separation: int = 3,
    residue_index: Tensor | None = None,
) -> Float[Tensor, "*b"]:
    """``1/|N| Σ_{(i,j)∈N} [(1 + 2 c_ij) · ReLU(threshold − d_ij)]²`` over the non-bonded set N:
    valid pairs with sequence separation ≥ ``min_separation`` (from ``residue_index`` if given).
    ``contact`` c_ij ``[..., n, n]`` (bool or float, default 0) up-weights chosen pairs. The
    threshold is in the coordinates' units (3.0 Å; 0.3 in ÷10 space)."""
    m = _mask(mask, x_pred.shape[:-1], x_pred.device) & _finite(x_pred)
    n = x_pred.shape[-2]
    pos = residue_index if residue_index is not None else torch.arange(n, device=x_pred.device)
    sep = (pos[..., :, None] - pos[..., None, :]).abs()
    pair = m[..., :, None] & m[..., None, :] & (sep >= min_separation)
    d = pairwise_distances(_zero_invalid(x_pred, m))
    weight = 1.0 if contact is None else 1.0 + 2.0 * contact.to(d.dtype)
    return _masked_mean((weight * torch.relu(threshold - d)) ** 2, pair, 2)


@_fp32
def backbone_fape_loss(
    rot_pred: Float[Tensor, "*b n 3 3"],
    trans_pred: Float[Tensor, "*b n 3"],
    bb_pred: Float[Tensor, "*b n 4 3"],
    rot_true: Float[Tensor, "*b n 3 3"],
    trans_true: Float[Tensor, "*b n 3"],
    bb_true: Float[Tensor, "*b n 4 3"],
    frame_mask: Tensor | None = None,
    atom_mask: Tensor | None = None,
    clamp_distance: float | None = 10.0,
    length_scale: float = 10.0,
    eps: float = 1e-4,
) -> Float[Tensor, "*b"]:
    """v14 FAPE over all four backbone atoms (N, Cα, C, O) of every residue, in every frame."""
    pm = _mask(atom_mask, bb_true.shape[:-1], bb_true.device).flatten(-2, -1)
    return fape_loss(
        rot_pred, trans_pred, bb_pred.flatten(-3, -2), rot_true, trans_true, bb_true.flatten(-3, -2),
        frame_mask, pm, clamp_distance, length_scale, eps,
    )  # fmt: skip


def _backbone(bb: Tensor, atom_mask: Tensor | None) -> tuple[Tensor, Tensor]:
    am = _mask(atom_mask, bb.shape[:-1], bb.device) & _finite(bb)
    return _zero_invalid(bb, am), am


def _next_ok(am: Tensor, residue_index: Tensor | None) -> Tensor:
    """[..., n − 1]: residue i+1 follows residue i (or no residue_index given)."""
    ok = torch.ones_like(am[..., 1:, 0])
    if residue_index is not None:
        ok = residue_index[..., 1:] - residue_index[..., :-1] == 1
    return ok


@_fp32
def backbone_bond_loss(
    bb_pred: Float[Tensor, "*b n 4 3"],
    atom_mask: Tensor | None = None,
    residue_index: Tensor | None = None,
    ideal: Sequence[float] = IDEAL_BACKBONE_BONDS,
) -> Float[Tensor, "*b"]:
    """v14 bond MSE: mean over every valid N–Cα, Cα–C, C–N(next) and C=O bond of
    ``(length − ideal)²`` (ideal = (N–Cα, Cα–C, C–N, C=O), Å)."""
    x, am = _backbone(bb_pred, atom_mask)
    nxt = _next_ok(am, residue_index)
    terms = [
        (x[..., 0, :], x[..., 1, :], am[..., 0] & am[..., 1], ideal[0]),
        (x[..., 1, :], x[..., 2, :], am[..., 1] & am[..., 2], ideal[1]),
        (x[..., :-1, 2, :], x[..., 1:, 0, :], am[..., :-1, 2] & am[..., 1:, 0] & nxt, ideal[2]),
        (x[..., 2, :], x[..., 3, :], am[..., 2] & am[..., 3], ideal[3]),
    ]
    total = x.new_zeros(x.shape[:-3])
    count = x.new_zeros(x.shape[:-3])
    for a, b, ok, target in terms:
        sq = (safe_norm(a - b) - target) ** 2
        total = total + torch.where(ok, sq, torch.zeros_like(sq)).sum(-1)
        count = count + ok.sum(-1)
    return total / count.clamp(min=1)


@_fp32
def backbone_angle_loss(
    bb_pred: Float[Tensor, "*b n 4 3"],
    atom_mask: Tensor | None = None,
    residue_index: Tensor | None = None,
    ideal_deg: Sequence[float] = IDEAL_BACKBONE_ANGLES_DEG,
) -> Float[Tensor, "*b"]:
    """v14 angle loss in cosine space: mean over every valid N–Cα–C, Cα–C–N(next) and
    C–N(next)–Cα(next) angle of ``(cos θ − cos θ_ideal)²`` (cosines: no arccos, finite gradients)."""
    x, am = _backbone(bb_pred, atom_mask)
    nxt = _next_ok(am, residue_index)
    n_, ca, c = x[..., 0, :], x[..., 1, :], x[..., 2, :]
    ca_c_n = am[..., :-1, 1] & am[..., :-1, 2] & am[..., 1:, 0] & nxt
    c_n_ca = am[..., :-1, 2] & am[..., 1:, 0] & am[..., 1:, 1] & nxt
    terms = [
        (n_, ca, c, am[..., 0] & am[..., 1] & am[..., 2], ideal_deg[0]),
        (ca[..., :-1, :], c[..., :-1, :], n_[..., 1:, :], ca_c_n, ideal_deg[1]),
        (c[..., :-1, :], n_[..., 1:, :], ca[..., 1:, :], c_n_ca, ideal_deg[2]),
    ]
    total = x.new_zeros(x.shape[:-3])
    count = x.new_zeros(x.shape[:-3])
    for a, b, cc, ok, target in terms:
        sq = (_cos_angle(a, b, cc) - math.cos(math.radians(target))) ** 2
        total = total + torch.where(ok, sq, torch.zeros_like(sq)).sum(-1)
        count = count + ok.sum(-1)
    return total / count.clamp(min=1)


@_fp32
def omega_loss(
    bb_pred: Float[Tensor, "*b n 4 3"],
    atom_mask: Tensor | None = None,
    residue_index: Tensor | None = None,
) -> Float[Tensor, "*b"]:
    """Peptide planarity: mean over valid peptide bonds of ``1 + cos ω``, ω = dihedral(Cα_i, C_i,
    N_{i+1}, Cα_{i+1}) (0 for trans ω = 180°, 2 for cis). cos ω = n1·n2/(|n1||n2|) from the plane
    normals with safe norms (finite for collinear atoms)."""
    x, am = _backbone(bb_pred, atom_mask)
    ok = am[..., :-1, 1] & am[..., :-1, 2] & am[..., 1:, 0] & am[..., 1:, 1] & _next_ok(am, residue_index)
    p0, p1, p2, p3 = x[..., :-1, 1, :], x[..., :-1, 2, :], x[..., 1:, 0, :], x[..., 1:, 1, :]
    b1, b2, b3 = p1 - p0, p2 - p1, p3 - p2
    n1, n2 = torch.cross(b1, b2, dim=-1), torch.cross(b2, b3, dim=-1)
    cos_omega = (n1 * n2).sum(-1) / (safe_norm(n1) * safe_norm(n2))
    return _masked_mean(1.0 + cos_omega, ok, 1)
