"""Metrics of Cα trace pairs as tensors, batched, CPU or GPU: :func:`score_batch` (RMSD,
TM-score, GDT-TS, GDT-HA and lDDT of ``[b, n, 3]`` pairs in one call, the one the training loop
calls on DDIM samples), its single-metric views :func:`tm_score`, :func:`gdt_ts`, :func:`gdt_ha`
and :func:`rmsd`, and :func:`lddt` (Cα lDDT as ``biotite.structure.lddt`` computes it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ptk import geometry as G
from ptk.metrics.search import superposition_search

__all__ = ["score_batch", "tm_score", "gdt_ts", "gdt_ha", "rmsd", "lddt"]


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
    """TM-score of each pair as the TM-score program computes it
    (:func:`~ptk.metrics.search.superposition_search`), normalised by ``ref_length`` (default:
    the number of masked residues)."""
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
