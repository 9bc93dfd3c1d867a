"""Mini-Fold's losses (``../shared/seeds/minifold_report_page.txt``, "Loss Functions"): FAPE
with the model's own frames, frame rotation, pair-distance MSE, the Cα-trace bond, angle and
chirality terms with the annealed bond weight, the radius of gyration, the auxiliary distance
cross-entropy and the clash penalty. Each returns one value per example (the batch dims
``[...]``); the caller takes ``.mean()``. The v14 all-atom backbone terms are in
:mod:`ptk.models.losses.backbone`."""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ptk.geometry import EPS, pairwise_distances, safe_norm
from ptk.models.losses.conventions import (
    all_finite,
    cross_entropy,
    fp32,
    masked_mean,
    valid_mask,
    zero_invalid,
)

__all__ = [
    "fape_loss",
    "frame_rotation_loss",
    "distance_mse_loss",
    "ca_bond_loss",
    "bond_weight",
    "chirality_loss",
    "bond_angle_loss",
    "cos_angle",
    "radius_of_gyration",
    "log_rg_loss",
    "distance_to_bins",
    "aux_distance_ce_loss",
    "clash_loss",
]


def _fape(rot_p, trans_p, x_p, rot_t, trans_t, x_t, fm, pm, clamp_distance, length_scale, eps):
    # Local coordinates R_fᵀ (x_j − o_f): [..., F, P, 3]
    local_p = torch.einsum("...fki,...fpk->...fpi", rot_p, x_p[..., None, :, :] - trans_p[..., :, None, :])
    local_t = torch.einsum("...fki,...fpk->...fpi", rot_t, x_t[..., None, :, :] - trans_t[..., :, None, :])
    d = torch.sqrt(((local_p - local_t) ** 2).sum(-1) + eps)
    if clamp_distance is not None:
        d = torch.clamp(d, max=clamp_distance)
    pair = fm[..., :, None] & pm[..., None, :]
    return masked_mean(d, pair, 2) / length_scale


@fp32
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
    fm = valid_mask(frame_mask, rot_true.shape[:-2], rot_true.device)
    fm = fm & all_finite(trans_true) & all_finite(rot_true.flatten(-2))
    pm = valid_mask(point_mask, x_true.shape[:-1], x_true.device) & all_finite(x_true)
    x_true, trans_true = zero_invalid(x_true, pm), zero_invalid(trans_true, fm)
    eye = torch.eye(3, dtype=rot_true.dtype, device=rot_true.device).expand_as(rot_true)
    rot_true = torch.where(fm[..., None, None], rot_true, eye)
    return _fape(rot_pred, trans_pred, x_pred, rot_true, trans_true, x_true, fm, pm,
                 clamp_distance, length_scale, eps)  # fmt: skip


@fp32
def frame_rotation_loss(
    rot_pred: Float[Tensor, "*b n 3 3"], rot_true: Float[Tensor, "*b n 3 3"], mask: Tensor | None = None
) -> Float[Tensor, "*b"]:
    """``1 − cos θ`` with θ the rotation angle of ``R_predᵀ R_true``: cos θ = (tr(R_predᵀ R_true) − 1)/2,
    averaged over valid frames (0 = identical, 1 ≈ 90°, 2 = 180°). No arccos, so the gradient is
    finite everywhere."""
    m = valid_mask(mask, rot_true.shape[:-2], rot_true.device) & all_finite(rot_true.flatten(-2))
    rot_true = torch.where(m[..., None, None], rot_true, torch.zeros_like(rot_true))
    trace = (rot_pred * rot_true).sum((-1, -2))
    return masked_mean(1.0 - (trace - 1.0) / 2.0, m, 1)


@fp32
def distance_mse_loss(
    x_pred: Float[Tensor, "*b n 3"], x_true: Float[Tensor, "*b n 3"], mask: Tensor | None = None
) -> Float[Tensor, "*b"]:
    """Mean over valid pairs i ≠ j of ``(‖x̂_i − x̂_j‖ − ‖x_i − x_j‖)²``."""
    m = valid_mask(mask, x_true.shape[:-1], x_true.device) & all_finite(x_true)
    d_pred = pairwise_distances(zero_invalid(x_pred, m))
    d_true = pairwise_distances(zero_invalid(x_true, m))
    n = x_true.shape[-2]
    pair = m[..., :, None] & m[..., None, :] & ~torch.eye(n, dtype=torch.bool, device=m.device)
    return masked_mean((d_pred - d_true) ** 2, pair, 2)


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
    m = valid_mask(mask, x.shape[:-1], x.device) & all_finite(x)
    if x.shape[-2] < span:
        return zero_invalid(x, m), m[..., :0]
    return zero_invalid(x, m), _window_mask(m, residue_index, span)


@fp32
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
    return masked_mean((d - ideal) ** 2, w, 1)


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


@fp32
def chirality_loss(
    x_pred: Float[Tensor, "*b n 3"],
    x_true: Float[Tensor, "*b n 3"],
    mask: Tensor | None = None,
    residue_index: Tensor | None = None,
) -> Float[Tensor, "*b"]:
    """MSE of the normalised signed volumes of Cα quartets (i..i+3), v_k = x_{i+k} − x_{i+k−1}:
    ``v1·(v2×v3) / (|v1||v2||v3|)`` of prediction vs truth (a mirror image flips the sign)."""
    m = valid_mask(mask, x_true.shape[:-1], x_true.device) & all_finite(x_true)
    xp, w = _consecutive(x_pred, m, residue_index, 4)
    xt = zero_invalid(x_true, m)
    if x_true.shape[-2] < 4:
        return xp.sum((-1, -2)) * 0.0
    return masked_mean((_signed_volumes(xp) - _signed_volumes(xt)) ** 2, w, 1)


def cos_angle(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """cos of the angle a–b–c at b (safe norms: finite, 0 for coincident points)."""
    u, v = a - b, c - b
    return (u * v).sum(-1) / (safe_norm(u) * safe_norm(v))


@fp32
def bond_angle_loss(
    x_pred: Float[Tensor, "*b n 3"],
    x_true: Float[Tensor, "*b n 3"],
    mask: Tensor | None = None,
    residue_index: Tensor | None = None,
    target_cos: float | None = None,
) -> Float[Tensor, "*b"]:
    """MSE in cosine space of the Cα–Cα–Cα angles: mean over valid triples of
    ``(cos θ̂_i − cos θ_i)²``; with ``target_cos`` (e.g. −0.5 for 120°) compare to that constant."""
    m = valid_mask(mask, x_true.shape[:-1], x_true.device) & all_finite(x_true)
    xp, w = _consecutive(x_pred, m, residue_index, 3)
    if x_true.shape[-2] < 3:
        return xp.sum((-1, -2)) * 0.0
    cos_p = cos_angle(xp[..., :-2, :], xp[..., 1:-1, :], xp[..., 2:, :])
    if target_cos is None:
        xt = zero_invalid(x_true, m)
        target = cos_angle(xt[..., :-2, :], xt[..., 1:-1, :], xt[..., 2:, :])
    else:
        target = torch.full_like(cos_p, target_cos)
    return masked_mean((cos_p - target) ** 2, w, 1)


@fp32
def radius_of_gyration(x: Float[Tensor, "*b n 3"], mask: Tensor | None = None) -> Float[Tensor, "*b"]:
    """√(mean over valid points of ‖x − centroid‖²), safe at 0."""
    m = valid_mask(mask, x.shape[:-1], x.device) & all_finite(x)
    x = zero_invalid(x, m)
    count = m.sum(-1, keepdim=True).clamp(min=1).to(x.dtype)
    centroid = x.sum(-2) / count
    sq = zero_invalid(x - centroid[..., None, :], m).pow(2).sum((-1, -2)) / count[..., 0]
    return torch.sqrt(torch.clamp(sq, min=EPS))


@fp32
def log_rg_loss(
    rg_pred: Float[Tensor, "*b"],
    rg_true: Float[Tensor, "*b"],
    mask: Tensor | None = None,
    min_rg: float = 1e-3,
) -> Float[Tensor, "*b"]:
    """``(log R̂_g − log R_g)²`` per example (0 where ``mask`` is False); both clamped at ``min_rg``.
    ``rg_true`` typically from :func:`radius_of_gyration` of the ground truth."""
    m = valid_mask(mask, rg_true.shape, rg_true.device) & torch.isfinite(rg_true)
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


@fp32
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
    m = valid_mask(mask, x_true.shape[:-1], x_true.device) & all_finite(x_true)
    d = pairwise_distances(zero_invalid(x_true, m).detach())
    n = x_true.shape[-2]
    pair = m[..., :, None] & m[..., None, :] & ~torch.eye(n, dtype=torch.bool, device=m.device)
    nll, pair = cross_entropy(logits, distance_to_bins(d, n_bins, d_min, d_max), pair)
    return masked_mean(nll, pair, 2)


@fp32
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
    m = valid_mask(mask, x_pred.shape[:-1], x_pred.device) & all_finite(x_pred)
    n = x_pred.shape[-2]
    pos = residue_index if residue_index is not None else torch.arange(n, device=x_pred.device)
    sep = (pos[..., :, None] - pos[..., None, :]).abs()
    pair = m[..., :, None] & m[..., None, :] & (sep >= min_separation)
    d = pairwise_distances(zero_invalid(x_pred, m))
    weight = 1.0 if contact is None else 1.0 + 2.0 * contact.to(d.dtype)
    return masked_mean((weight * torch.relu(threshold - d)) ** 2, pair, 2)
