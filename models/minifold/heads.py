"""Small Mini-Fold modules: the timestep embedding, distance RBF features, the radius-of-gyration
predictor and v14's backbone atom head."""

from __future__ import annotations

import math

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from ptk.geometry import pairwise_distances
from ptk.models.linear import Linear
from ptk.models.precision import fp32_island, upcast
from ptk.models.rigid import Rigid
from ptk.models.rpe import distance_rbf

__all__ = [
    "IDEAL_BOND_LENGTHS",
    "ideal_backbone_local",
    "TimestepEmbedding",
    "rbf",
    "RgPredictor",
    "BackboneAtomHead",
]

#: Ideal backbone bond lengths in Å (minifold_report_page.txt, v14 "Ideal Bond Lengths"):
#: N–Cα, Cα–C, C–N(next), C=O.
IDEAL_BOND_LENGTHS: tuple[float, float, float, float] = (1.458, 1.523, 1.329, 1.231)
#: Ideal N–Cα–C and Cα–C=O angles (degrees; Engh & Huber 1991 as tabulated in AF2's
#: residue_constants, rigid-group positions of N, C and O).
_ANGLE_N_CA_C_DEG: float = 111.2
_ANGLE_CA_C_O_DEG: float = 120.5


def ideal_backbone_local() -> Float[Tensor, "4 3"]:
    """N, Cα, C, O in the residue frame of :func:`ptk.geometry.backbone_frames` (Å): Cα at the
    origin, C on +x, N in the xy-plane with y > 0, O in the same plane on N's side (its place at
    ψ = 180°, where N_{i+1} is trans to N_i; the learned offsets move it)."""
    n_ca, ca_c, _, c_o = IDEAL_BOND_LENGTHS
    a = math.radians(_ANGLE_N_CA_C_DEG)
    b = math.radians(_ANGLE_CA_C_O_DEG)
    n = (n_ca * math.cos(a), n_ca * math.sin(a), 0.0)
    c = (ca_c, 0.0, 0.0)
    # C→O makes angle b with C→Cα = (−1, 0, 0).
    o = (ca_c - c_o * math.cos(b), c_o * math.sin(b), 0.0)
    return torch.tensor([n, (0.0, 0.0, 0.0), c, o], dtype=torch.float32)


class TimestepEmbedding(nn.Module):
    """Sinusoidal features of the integer timestep → MLP → ``[b, c_out]``."""

    def __init__(self, d_time: int, c_out: int):
        super().__init__()
        self.d_time = d_time
        self.mlp = nn.Sequential(Linear(d_time, c_out, init="relu"), nn.SiLU(), Linear(c_out, c_out))

    def forward(self, t: Int[Tensor, " b"]) -> Float[Tensor, "b c"]:
        half = self.d_time // 2
        freq = torch.exp(
            -math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / max(1, half)
        )
        angle = t.float()[:, None] * freq
        feats = torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)
        if feats.shape[-1] < self.d_time:
            feats = torch.cat([feats, feats.new_zeros(feats.shape[0], self.d_time - feats.shape[-1])], -1)
        return self.mlp(feats)


def rbf(x: Float[Tensor, "b n 3"], n_rbf: int, d_max: float) -> Float[Tensor, "b n n r"]:
    """Gaussian radial basis of all pairwise distances (safe norm: finite gradient at 0), fp32."""
    x = upcast(x)
    with fp32_island(x):
        return distance_rbf(pairwise_distances(x), n_rbf, 0.0, d_max)


class RgPredictor(nn.Module):
    """log R_g (Å) from the mask-pooled encoder embedding and log length (page: "A separate MLP
    predicts absolute R_g from sequence embeddings"). Starts at the empirical 2.2·L^0.38 Å."""

    def __init__(self, c_single: int, hidden: int):
        super().__init__()
        self.mlp = nn.Sequential(
            Linear(c_single + 1, hidden, init="relu"), nn.ReLU(), Linear(hidden, 1, init="final")
        )

    def forward(self, single: Float[Tensor, "b n c"], mask: Bool[Tensor, "b n"]) -> Float[Tensor, " b"]:
        w = mask[..., None].to(single.dtype)
        length = mask.sum(-1).clamp(min=1).float()
        pooled = (single * w).sum(1) / length[:, None].to(single.dtype)
        feats = torch.cat([pooled, torch.log(length)[:, None].to(single.dtype)], -1)
        prior = math.log(2.2) + 0.38 * torch.log(length)
        return prior + self.mlp(feats)[..., 0].float()


class BackboneAtomHead(nn.Module):
    """v14: N, Cα, C, O from each frame: ``T_i (ideal_local + Δ_i)`` with the ideal positions of
    :func:`ideal_backbone_local` divided by the model's coordinate scale (the v14 restart's bug:
    ideal offsets in Å in a ÷10 model) and learned offsets Δ = Linear(s) of N, C and O starting at
    zero; Cα stays at the frame origin, so the backbone's Cα is the denoised trace."""

    def __init__(self, c_s: int, coord_scale: float):
        super().__init__()
        self.register_buffer("ideal", ideal_backbone_local() / coord_scale, persistent=False)
        self.offsets = Linear(c_s, 9, init="final")

    def forward(self, s: Float[Tensor, "b n c"], frames: Rigid) -> Float[Tensor, "b n 4 3"]:
        delta = self.offsets(s).unflatten(-1, (3, 3)).float()
        # Cα is the frame origin (the denoised trace): only N, C and O move.
        delta = torch.cat([delta[..., :1, :], torch.zeros_like(delta[..., :1, :]), delta[..., 1:, :]], dim=-2)
        return frames[..., None].apply(self.ideal + delta)
