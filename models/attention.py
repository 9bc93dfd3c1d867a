"""Gated multi-head attention: over a sequence with pair bias, and row/column (axial) attention
over a pair representation.

- :class:`SelfAttentionWithPairBias`: s_i attends over s_j with a per-head bias Linear(LN z_ij)
  and a sigmoid gate (AF2 Alg. 7 applied to a single sequence; the AF3 "AttentionPairBias").
- :class:`AxialAttention` (and :class:`RowAttention`, :class:`ColumnAttention`): z_ij attends
  along j within row i (or along i within column j). With ``pair_bias=True`` a per-head bias
  Linear(LN z_jk) is added, which is the triangle attention of AF2 Alg. 13/14; the default is plain
  axial attention (Mini-Fold v13's "row + column axial attention").

Logits and softmax are computed in fp32; masked keys get a large finite negative logit, so a fully
masked row is finite and its output is zeroed by the query mask.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor, nn

from ptk.errors import unknown_choice
from ptk.models.linear import Linear, LinearNoBias
from ptk.models.precision import fp32_island, upcast

__all__ = ["attention", "MultiHeadAttention", "SelfAttentionWithPairBias", "AxialAttention",
           "RowAttention", "ColumnAttention"]  # fmt: skip

MASK_LOGIT: float = -1e9


def attention(
    q: Float[Tensor, "*b h i c"],
    k: Float[Tensor, "*b h j c"],
    v: Float[Tensor, "*b h j c"],
    bias: Float[Tensor, "*b h i j"] | None = None,
    key_mask: Bool[Tensor, "*b j"] | None = None,
) -> Float[Tensor, "*b h i c"]:
    """softmax(q kᵀ/√c + bias) v in fp32; masked keys excluded (a large finite negative logit).

    Runs through :func:`torch.nn.functional.scaled_dot_product_attention` with the leading
    dims flattened into one batch dim, which lets torch pick its fused kernel: axial attention
    over a pair representation has ``b·n`` rows of ``n × n`` logits, and materialising them
    (scale, mask, softmax, each with its backward) was most of a small model's training step.
    """
    out_dtype = v.dtype
    q, k, v = upcast(q), upcast(k), upcast(v)
    with fp32_island(q):
        lead = q.shape[:-3]
        add = None if bias is None else upcast(bias)
        if key_mask is not None:
            masked = ~key_mask[..., None, None, :]
            if add is None:
                add = torch.zeros(masked.shape, dtype=q.dtype, device=q.device)
            add = add.masked_fill(masked, MASK_LOGIT)
        if add is not None:
            add = add.expand(*lead, *add.shape[-3:]).reshape(-1, *add.shape[-3:])

        def flat(t: Tensor) -> Tensor:
            return t.reshape(-1, *t.shape[-3:])

        out = F.scaled_dot_product_attention(flat(q), flat(k), flat(v), attn_mask=add)
        out = out.reshape(*lead, *out.shape[-3:])
    return out.to(out_dtype)


class MultiHeadAttention(nn.Module):
    """Gated multi-head attention of ``x`` over itself along its second-to-last axis, with an
    optional precomputed bias ``[*b, h, i, j]`` (AF2 Alg. 7 without the pair projection).

    Args:
        c_in: input channels; c_head: per-head channels; n_heads; gating: sigmoid output gate.
    """

    def __init__(self, c_in: int, c_head: int, n_heads: int, gating: bool = True):
        super().__init__()
        self.c_head, self.n_heads = c_head, n_heads
        self.linear_q = LinearNoBias(c_in, c_head * n_heads, init="glorot")
        self.linear_k = LinearNoBias(c_in, c_head * n_heads, init="glorot")
        self.linear_v = LinearNoBias(c_in, c_head * n_heads, init="glorot")
        self.linear_g = Linear(c_in, c_head * n_heads, init="gating") if gating else None
        self.linear_out = Linear(c_head * n_heads, c_in, init="final")

    def forward(
        self,
        x: Float[Tensor, "*b n c_in"],
        bias: Float[Tensor, "*b h n n"] | None = None,
        mask: Bool[Tensor, "*b n"] | None = None,
    ) -> Float[Tensor, "*b n c_in"]:
        h, c = self.n_heads, self.c_head

        def heads(t: Tensor) -> Tensor:  # [*b, n, h*c] -> [*b, h, n, c]
            return t.unflatten(-1, (h, c)).transpose(-2, -3)

        o = attention(heads(self.linear_q(x)), heads(self.linear_k(x)), heads(self.linear_v(x)), bias, mask)
        o = o.transpose(-2, -3).flatten(-2)
        if self.linear_g is not None:
            o = torch.sigmoid(self.linear_g(x)) * o
        out = self.linear_out(o)
        return out if mask is None else out * mask[..., None].to(out.dtype)


class SelfAttentionWithPairBias(nn.Module):
    """Sequence self-attention with pair bias: ``Δs = Attn(LN s; bias = LinearNoBias(LN z))``.

    Args:
        c_s: single channels; c_z: pair channels (``None``: no pair bias); c_head; n_heads; gating.
    """

    def __init__(self, c_s: int, c_z: int | None, c_head: int = 32, n_heads: int = 8, gating: bool = True):
        super().__init__()
        self.norm_s = nn.LayerNorm(c_s)
        self.norm_z = nn.LayerNorm(c_z) if c_z is not None else None
        self.linear_bias = LinearNoBias(c_z, n_heads) if c_z is not None else None
        self.mha = MultiHeadAttention(c_s, c_head, n_heads, gating)

    def forward(
        self,
        s: Float[Tensor, "b n c_s"],
        z: Float[Tensor, "b n n c_z"] | None = None,
        mask: Bool[Tensor, "b n"] | None = None,
    ) -> Float[Tensor, "b n c_s"]:
        """The update Δs (zero at masked residues)."""
        bias = None
        if self.linear_bias is not None:
            if z is None:
                raise ValueError("this SelfAttentionWithPairBias was built with c_z; pass the pair tensor z")
            bias = self.linear_bias(self.norm_z(z)).permute(0, 3, 1, 2)
        return self.mha(self.norm_s(s), bias, mask)


AXES: tuple[str, ...] = ("row", "column")


class AxialAttention(nn.Module):
    """Gated attention along one axis of a pair representation (returns the update Δz).

    ``axis="row"``: z_ij attends over z_ik (k along the row i); ``axis="column"``: z_ij attends
    over z_kj, computed as row attention on the transpose. With ``pair_bias`` the bias for query j
    and key k is LinearNoBias(LN z_jk) (AF2 Alg. 13/14, "triangle attention").

    Args:
        c_z: pair channels; c_head; n_heads; axis; pair_bias; gating.
    """

    def __init__(
        self,
        c_z: int,
        c_head: int = 32,
        n_heads: int = 4,
        axis: Literal["row", "column"] = "row",
        pair_bias: bool = False,
        gating: bool = True,
    ):
        super().__init__()
        if axis not in AXES:
            raise unknown_choice("attention axis", axis, AXES)
        self.axis = axis
        self.norm = nn.LayerNorm(c_z)
        self.linear_bias = LinearNoBias(c_z, n_heads) if pair_bias else None
        self.mha = MultiHeadAttention(c_z, c_head, n_heads, gating)

    def forward(
        self, z: Float[Tensor, "b n n c_z"], mask: Bool[Tensor, "b n n"] | None = None
    ) -> Float[Tensor, "b n n c_z"]:
        """The update Δz; ``mask`` is the pair mask, masked pairs neither attend nor are attended."""
        if self.axis == "column":
            z = z.transpose(1, 2)
            mask = None if mask is None else mask.transpose(1, 2)
        x = self.norm(z)
        bias = None
        if self.linear_bias is not None:
            bias = self.linear_bias(x).permute(0, 3, 1, 2)[:, None]  # [b, 1, h, j, k]
        out = self.mha(x, bias, mask)
        if self.axis == "column":
            out = out.transpose(1, 2)
        return out


class RowAttention(AxialAttention):
    """:class:`AxialAttention` along rows (z_ij over z_ik)."""

    def __init__(
        self, c_z: int, c_head: int = 32, n_heads: int = 4, pair_bias: bool = False, gating: bool = True
    ):
        super().__init__(c_z, c_head, n_heads, "row", pair_bias, gating)


class ColumnAttention(AxialAttention):
    """:class:`AxialAttention` along columns (z_ij over z_kj)."""

    def __init__(
        self, c_z: int, c_head: int = 32, n_heads: int = 4, pair_bias: bool = False, gating: bool = True
    ):
        super().__init__(c_z, c_head, n_heads, "column", pair_bias, gating)
