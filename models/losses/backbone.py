"""Mini-Fold v14's backbone losses (``../shared/seeds/minifold_report_page.txt``, the v14
section) over all four backbone atoms N, Cα, C, O of ``[..., n, 4, 3]``: FAPE, bond lengths and
angles against ideal values, and peptide planarity (ω). Each returns one value per example."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from ptk.geometry import safe_norm
from ptk.models.losses.conventions import all_finite, fp32, masked_mean, valid_mask, zero_invalid
from ptk.models.losses.minifold import cos_angle, fape_loss

__all__ = [
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


@fp32
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
    pm = valid_mask(atom_mask, bb_true.shape[:-1], bb_true.device).flatten(-2, -1)
    return fape_loss(
        rot_pred, trans_pred, bb_pred.flatten(-3, -2), rot_true, trans_true, bb_true.flatten(-3, -2),
        frame_mask, pm, clamp_distance, length_scale, eps,
    )  # fmt: skip


def _backbone(bb: Tensor, atom_mask: Tensor | None) -> tuple[Tensor, Tensor]:
    am = valid_mask(atom_mask, bb.shape[:-1], bb.device) & all_finite(bb)
    return zero_invalid(bb, am), am


def _next_ok(am: Tensor, residue_index: Tensor | None) -> Tensor:
    """[..., n − 1]: residue i+1 follows residue i (or no residue_index given)."""
    ok = torch.ones_like(am[..., 1:, 0])
    if residue_index is not None:
        ok = residue_index[..., 1:] - residue_index[..., :-1] == 1
    return ok


@fp32
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


@fp32
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
        sq = (cos_angle(a, b, cc) - math.cos(math.radians(target))) ** 2
        total = total + torch.where(ok, sq, torch.zeros_like(sq)).sum(-1)
        count = count + ok.sum(-1)
    return total / count.clamp(min=1)


@fp32
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
    return masked_mean(1.0 + cos_omega, ok, 1)
