"""Residue frames from Cα traces and the SNR-gated frame initialisation of the IPA denoisers
(minifold_report_page.txt, "SNR-Gated Frame Initialization", "Frame-Aware Self-Conditioning").

Gram-Schmidt on consecutive Cα triplets is :func:`ptk.geometry.backbone_frames` with
(Cα_{i−1}, Cα_i, Cα_{i+1}) in the roles of (N, Cα, C): x̂ along Cα_{i+1} − Cα_i, Cα_{i−1} in the
xy-plane. Chain ends and padding (no neighbour) are ``valid = False`` and borrow the rotation of
the nearest valid residue (equivariant, unlike a fixed identity).

At high noise the noised triplets are near-isotropic and their frames meaningless, so the initial
rotation is ``slerp(I, R_GS, conf)`` with ``conf(t) = clamp((SNR(t) − 0.2)/(1.0 − 0.2), 0, 1)``:
the identity at SNR ≤ 0.2 (t ≳ 730 with the cosine schedule), pure Gram-Schmidt at SNR ≥ 1.
That is the page's ``frame_init="snr_gated"``; in ÷10 Å coordinates the Gram-Schmidt rotations
of a noised trace are no better than random ones up to SNR ≈ 5 (median error > 95° against 126°
at random), so ptk's default starts from the identity instead (``page.PAGE_DEVIATIONS``).
Everything here runs in fp32 with autocast off (the page's fp16 underflow in Gram-Schmidt and
slerp); :class:`ptk.models.rigid.Rigid` does the casting.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ptk.geometry import shift_residues
from ptk.models.precision import fp32_island, upcast
from ptk.models.rigid import Rigid, slerp

__all__ = ["ca_frames", "backbone_residue_frames", "snr_confidence", "gated_frames"]


def ca_frames(
    ca: Float[Tensor, "*b n 3"], mask: Bool[Tensor, "*b n"] | None = None
) -> tuple[Rigid, Bool[Tensor, "*b n"]]:
    """Gram-Schmidt frames of Cα triplets (i−1, i, i+1), origin Cα_i.

    Returns:
        (frames, valid): where a neighbour is missing (chain ends, padding, masked residues) or
        the triplet is collinear, ``valid`` is False and the rotation is the nearest valid
        residue's (identity when the row has none), so the frames stay equivariant.
    """
    ca = upcast(ca)
    with fp32_island(ca):
        if mask is not None:
            ca_nan = torch.where(mask[..., None], ca, torch.full_like(ca, float("nan")))
        else:
            ca_nan = ca
        frames, valid = Rigid.from_backbone(shift_residues(ca_nan, -1), ca_nan, shift_residues(ca_nan, 1))
        if mask is not None:
            valid = valid & mask
        # backbone_frames puts the origin at the (NaN-guarded) centre atom; keep the input Cα.
        frames = Rigid(_fill_from_nearest_valid(frames.rot, valid), ca)
    return frames, valid


def backbone_residue_frames(
    backbone: Float[Tensor, "*b n 4 3"], mask: Bool[Tensor, "*b n"]
) -> tuple[Rigid, Bool[Tensor, "*b n"]]:
    """N–Cα–C frames of a backbone (v14's convention: the page builds its frames from the
    N–Cα–C planes, and v14's frame targets are those), origin Cα.

    Returns:
        (frames, valid), invalid rows (padding, degenerate atoms) borrowing the nearest valid
        residue's rotation as in :func:`ca_frames`.
    """
    bb = upcast(backbone)
    with fp32_island(bb):
        frames, valid = Rigid.from_backbone(bb[..., 0, :], bb[..., 1, :], bb[..., 2, :])
        valid = valid & mask
        frames = Rigid(_fill_from_nearest_valid(frames.rot, valid), bb[..., 1, :])
    return frames, valid


def _fill_from_nearest_valid(rot: Tensor, valid: Tensor) -> Tensor:
    """Rotations of invalid residues copied from the nearest valid one before them (else after).

    A fixed identity at the chain ends would break equivariance (it does not turn with the
    structure); a neighbour's Gram-Schmidt rotation does. Rows with no valid frame keep ``rot``.
    """
    n = valid.shape[-1]
    idx = torch.arange(n, device=valid.device).expand_as(valid)
    prev = torch.where(valid, idx, torch.full_like(idx, -1)).cummax(-1).values
    nxt = torch.where(valid, idx, torch.full_like(idx, n)).flip(-1).cummin(-1).values.flip(-1)
    source = torch.where(prev >= 0, prev, nxt).clamp(max=n - 1)
    source = torch.where(valid.any(-1, keepdim=True), source, idx)
    gathered = torch.gather(rot, -3, source[..., None, None].expand_as(rot))
    return gathered


def snr_confidence(snr: Float[Tensor, "*b"], low: float = 0.2, high: float = 1.0) -> Float[Tensor, "*b"]:
    """``clamp((SNR − low)/(high − low), 0, 1)``: 0 at high noise, 1 at low noise."""
    return ((upcast(snr) - low) / (high - low)).clamp(0.0, 1.0)


def gated_frames(
    x: Float[Tensor, "b n 3"],
    conf: Float[Tensor, " b"],
    mask: Bool[Tensor, "b n"] | None = None,
) -> Rigid:
    """Initial frames at noised Cα positions ``x``: rotation ``slerp(I, R_GS(x), conf)`` per
    example, translation ``x``. ``conf = 1`` gives the Gram-Schmidt frames, ``conf = 0`` the
    identity."""
    frames, _ = ca_frames(x, mask)
    eye = torch.eye(3, dtype=frames.rot.dtype, device=frames.rot.device).expand_as(frames.rot)
    weight = upcast(conf).to(frames.rot.dtype)[:, None].expand(frames.shape)
    rot = slerp(eye, frames.rot, weight)
    return Rigid(rot, frames.trans)
