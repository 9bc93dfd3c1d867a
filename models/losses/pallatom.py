"""Pallatom's losses (``../shared/seeds/pallatom_losses_api.txt``): the Kabsch-aligned atom
MSE, the residue and local atom distograms, the MED loss over decoder blocks and AF3's smooth
lDDT. Each returns what the seed API documents."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ptk.geometry import apply_transform, kabsch, pairwise_distances
from ptk.models.losses.conventions import (
    all_finite,
    cross_entropy,
    fp32,
    masked_mean,
    valid_mask,
    zero_invalid,
)

__all__ = [
    "atom_loss",
    "distogram_loss_residue",
    "distogram_loss_atom",
    "med_loss_per_block",
    "med_loss",
    "smooth_lddt_loss",
]


@fp32
def atom_loss(
    r_denoised: Float[Tensor, "*b n 3"], r_gt: Float[Tensor, "*b n 3"], mask: Tensor | None = None
) -> Float[Tensor, "*b"]:
    """Kabsch-aligned MSE ``||r_denoised − r_aligned||² / (3L)``, L = number of valid points.

    The ground truth is moved onto the (detached) prediction by the weighted Kabsch fit, so the
    gradient flows through ``r_denoised`` only. NaN ground-truth points count as masked.
    """
    m = valid_mask(mask, r_gt.shape[:-1], r_gt.device) & all_finite(r_gt)
    gt = zero_invalid(r_gt.detach(), m)
    rot, trans = kabsch(gt, r_denoised.detach(), m)
    aligned = apply_transform(rot, trans, gt).detach()
    sq = ((r_denoised - aligned) ** 2).sum(-1)
    count = m.sum(-1).clamp(min=1).to(sq.dtype)
    return torch.where(m, sq, torch.zeros_like(sq)).sum(-1) / (3.0 * count)


@fp32
def distogram_loss_residue(
    p: Float[Tensor, "*b n n nb"], y: Tensor, mask: Tensor | None = None
) -> Float[Tensor, "*b"]:
    """Residue distogram cross-entropy ``−1/N² Σ_ij Σ_b y^b_ij log softmax(p)^b_ij``.

    ``y``: one-hot (or soft) ``[..., n, n, nb]`` or integer bins ``[..., n, n]``. With a residue
    ``mask``, the mean runs over the pairs of valid residues (N² without a mask).
    """
    res = valid_mask(mask, p.shape[:-2], p.device)
    pair = res[..., :, None] & res[..., None, :]
    nll, pair = cross_entropy(p, y, pair)
    return masked_mean(nll, pair, 2)


@fp32
def distogram_loss_atom(
    q: Float[Tensor, "*b na k nb"], y: Tensor, local_mask: Tensor | None = None
) -> Float[Tensor, "*b"]:
    """Local atom distogram cross-entropy over the sparse ``[..., N_atom, K]`` window pairs.

    ``y``: one-hot ``[..., N_atom, K, nb]`` or integer bins ``[..., N_atom, K]``. The mean runs over
    the slots where ``local_mask`` is True (= 1/(N_atom·K) Σ when every slot is valid; padding slots
    of :func:`ptk.models.pallatom.atom_transformer.build_sparse_pairs` must be masked).
    """
    m = valid_mask(local_mask, q.shape[:-1], q.device)
    nll, m = cross_entropy(q, y, m)
    return masked_mean(nll, m, 2)


def _sequence_ce(logits: Tensor, aa: Tensor, mask: Tensor) -> Tensor:
    nll, m = cross_entropy(logits, aa, mask)
    return masked_mean(nll, m, 1)


@fp32
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
    m = valid_mask(mask, aa_gt.shape, aa_gt.device)
    return lam * atom_loss(r_denoised_k, r_gt, m) + alpha_0 * _sequence_ce(logits_aa_k, aa_gt, m)


@fp32
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


@fp32
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
    m = valid_mask(mask, r_true.shape[:-1], r_true.device) & all_finite(r_true)
    d_true = pairwise_distances(zero_invalid(r_true, m))
    d_pred = pairwise_distances(zero_invalid(r_pred, m))
    delta = (d_true - d_pred).abs()
    eps = sum(torch.sigmoid(sharpness * (t - delta)) for t in thresholds) / len(thresholds)
    n = r_true.shape[-2]
    off_diag = ~torch.eye(n, dtype=torch.bool, device=r_true.device)
    c = (d_true < cutoff) & off_diag & m[..., :, None] & m[..., None, :]
    lddt = masked_mean(eps, c, 2)
    return (1.0 - lddt).mean()
