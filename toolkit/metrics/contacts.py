"""Contact-map metrics: precision, recall and top-L long-range accuracy of a predicted
contact probability map against the Cα contacts of the true structure."""

from __future__ import annotations

import math

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ptk import geometry as G

__all__ = ["contact_metrics"]


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
