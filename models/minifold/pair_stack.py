"""Mini-Fold pair stacks: the main stack conditioning the denoiser, and the auxiliary stack with
its distance head (minifold_report_page.txt, v12/v13 sections and "Auxiliary Distance CE").

- :class:`PairBlock`: row + column axial attention + FFN (v10–v12); with ``triangle=True`` the
  v13 EnhancedPairBlock, which first applies the triangle multiplicative updates (outgoing,
  incoming). Every sub-block returns a residual delta.
- :class:`PairStack`: pair input from the frozen encoder (its pair, an outer sum of its single
  embedding) plus a relative position encoding (linear-clipped, max_rel_pos 32, or v13's
  log-scaled), then ``n_blocks`` PairBlocks.
- :class:`AuxPairStack`: the independent lightweight (64-dim) stack of v11+ feeding a 32-bin
  distance head, or (v10) just the head on the main stack's *detached* pair representation.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from ptk.models.attention import AxialAttention
from ptk.models.linear import Linear, LinearNoBias
from ptk.models.minifold.config import AuxPairConfig, PairStackConfig
from ptk.models.rpe import LinearClippedRPE, LogScaledRPE
from ptk.models.transition import Transition
from ptk.models.triangle import TriangleMultiplication

__all__ = ["PairBlock", "PairStack", "AuxPairStack"]


def pair_mask_of(mask: Bool[Tensor, "b n"]) -> Bool[Tensor, "b n n"]:
    return mask[:, :, None] & mask[:, None, :]


class PairBlock(nn.Module):
    """(triangle out, triangle in,) row attention, column attention, transition — each residual."""

    def __init__(
        self, d_pair: int, n_heads: int, head_dim: int, ffn_expansion: int, triangle: bool, tri_mul_dim: int
    ):
        super().__init__()
        self.tri_out = TriangleMultiplication(d_pair, tri_mul_dim, outgoing=True) if triangle else None
        self.tri_in = TriangleMultiplication(d_pair, tri_mul_dim, outgoing=False) if triangle else None
        self.row = AxialAttention(d_pair, head_dim, n_heads, axis="row")
        self.column = AxialAttention(d_pair, head_dim, n_heads, axis="column")
        self.transition = Transition(d_pair, ffn_expansion)

    def forward(
        self, z: Float[Tensor, "b n n d"], pair_mask: Bool[Tensor, "b n n"]
    ) -> Float[Tensor, "b n n d"]:
        if self.tri_out is not None:
            z = z + self.tri_out(z, pair_mask)
            z = z + self.tri_in(z, pair_mask)
        z = z + self.row(z, pair_mask)
        z = z + self.column(z, pair_mask)
        return z + self.transition(z, pair_mask)


def _rpe(cfg: PairStackConfig, d_pair: int) -> nn.Module:
    if cfg.rpe == "log":
        return LogScaledRPE(d_pair, cfg.rpe_bins, cfg.rpe_max_sep, cfg.rpe_linear_bins, cfg.rpe_sinusoidal)
    return LinearClippedRPE(d_pair, cfg.max_rel_pos)


class PairStack(nn.Module):
    """The main pair stack. Input: the frozen encoder's single ``[b, n, c_s]`` and pair
    ``[b, n, n, c_e]`` embeddings; output ``[b, n, n, d_pair]`` (zero on padded pairs)."""

    def __init__(self, cfg: PairStackConfig, c_single: int, c_encoder_pair: int):
        super().__init__()
        d = cfg.d_pair
        self.linear_pair = Linear(c_encoder_pair, d)
        self.linear_left = LinearNoBias(c_single, d)
        self.linear_right = LinearNoBias(c_single, d)
        self.rpe = _rpe(cfg, d)
        self.blocks = nn.ModuleList(
            PairBlock(d, cfg.n_heads, cfg.head_dim, cfg.ffn_expansion, cfg.triangle, cfg.tri_mul_dim)
            for _ in range(cfg.n_blocks)
        )
        self.norm = nn.LayerNorm(d)

    def forward(
        self,
        single: Float[Tensor, "b n c_s"],
        pair: Float[Tensor, "b n n c_e"],
        residue_index: Int[Tensor, "b n"],
        mask: Bool[Tensor, "b n"],
    ) -> Float[Tensor, "b n n d"]:
        pm = pair_mask_of(mask)
        z = (
            self.linear_pair(pair)
            + self.linear_left(single)[:, :, None]
            + self.linear_right(single)[:, None, :]
        )
        z = (z + self.rpe(residue_index, mask)) * pm[..., None].to(z.dtype)
        for block in self.blocks:
            z = block(z, pm)
        return self.norm(z) * pm[..., None].to(z.dtype)


class AuxPairStack(nn.Module):
    """Auxiliary distance logits ``[b, n, n, n_bins]`` (2–40 Å bins).

    ``source="independent"`` (v11+): its own 64-dim stack from the (frozen, detached) encoder
    single embedding + linear-clipped RPE, so its gradients never reach the main pair stack.
    ``source="main_detached"`` (v10): the head reads the main pair through ``detach()``.
    """

    def __init__(self, cfg: AuxPairConfig, c_single: int, c_main_pair: int):
        super().__init__()
        self.source = cfg.source
        if cfg.source == "independent":
            d = cfg.d_pair
            self.linear_left = LinearNoBias(c_single, d)
            self.linear_right = LinearNoBias(c_single, d)
            self.rpe = LinearClippedRPE(d, 32)
            self.blocks = nn.ModuleList(
                PairBlock(d, cfg.n_heads, cfg.head_dim, cfg.ffn_expansion, True, d)
                for _ in range(cfg.n_blocks)
            )
        else:
            d = c_main_pair
            self.blocks = nn.ModuleList()
        self.norm = nn.LayerNorm(d)
        self.head = Linear(d, cfg.n_bins, init="final")

    def forward(
        self,
        single: Float[Tensor, "b n c_s"],
        main_pair: Float[Tensor, "b n n c_z"],
        residue_index: Int[Tensor, "b n"],
        mask: Bool[Tensor, "b n"],
    ) -> Float[Tensor, "b n n n_bins"]:
        pm = pair_mask_of(mask)
        if self.source == "independent":
            single = single.detach()
            z = self.linear_left(single)[:, :, None] + self.linear_right(single)[:, None, :]
            z = (z + self.rpe(residue_index, mask)) * pm[..., None].to(z.dtype)
            for block in self.blocks:
                z = block(z, pm)
        else:
            z = main_pair.detach()
        logits = self.head(self.norm(z))
        return 0.5 * (logits + logits.transpose(1, 2))


def residue_index_of(mask: Bool[Tensor, "b n"]) -> Int[Tensor, "b n"]:
    """0 … n−1 per row (the model's residue index; crops are contiguous)."""
    b, n = mask.shape
    return torch.arange(n, device=mask.device).expand(b, n)
