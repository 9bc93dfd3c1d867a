"""Invariant Point Attention (Jumper et al. 2021, supplementary Alg. 22) and the structure-module
pieces around it: :class:`IPABlock` (Alg. 20 lines 6–9) and :class:`BackboneUpdate` (Alg. 23).

Shape letters: ``b`` batch, ``n``/``i``/``j`` residues, ``h`` heads, ``c`` head channels,
``p`` points, ``c_s``/``c_z`` single/pair channels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor, nn

from ptk.geometry import safe_norm
from ptk.models.linear import Linear, LinearNoBias
from ptk.models.precision import fp32_island, upcast
from ptk.models.rigid import Rigid
from ptk.models.transition import StructureModuleTransition

__all__ = ["InvariantPointAttention", "IPABlock", "BackboneUpdate"]

#: Logit added for masked keys; finite so fully masked rows stay finite (uniform weights).
MASK_LOGIT: float = -1e9


class InvariantPointAttention(nn.Module):
    """AF2 Alg. 22 with pair bias, query/key points and value points.

    a_ij^h = softmax_j( w_L [ q_i·k_j/√c + b_ij^h − γ^h w_C/2 Σ_p |T_i q_ip − T_j k_jp|² ] ),
    with w_L = √(1/3), w_C = √(2/(9 N_qk)), γ^h = softplus(learned) (starts at 1). The output
    concatenates Σ_j a v_j, T_i⁻¹ Σ_j a T_j v_jp (and their norms) and Σ_j a z_ij, projected to
    ``c_s`` by a zero-initialised linear layer. Every term is invariant to a global rigid motion
    applied to all frames.

    The logits, softmax and all point arithmetic run in fp32 with autocast off: squared
    distances between far-apart points overflow ``exp`` in fp16 (Mini-Fold report, "NaN
    debugging story"). The output norm uses a safe norm, so coincident points have finite
    gradients.

    Args:
        c_s: single channels; c_z: pair channels; c_hidden: scalar head channels (AF2: 16);
        n_heads (AF2: 12); n_qk_points (AF2: 4); n_v_points (AF2: 8).
    """

    def __init__(
        self,
        c_s: int,
        c_z: int,
        c_hidden: int = 16,
        n_heads: int = 12,
        n_qk_points: int = 4,
        n_v_points: int = 8,
    ):
        super().__init__()
        self.c_hidden, self.n_heads = c_hidden, n_heads
        self.n_qk_points, self.n_v_points = n_qk_points, n_v_points
        h = n_heads
        self.linear_q = LinearNoBias(c_s, h * c_hidden)
        self.linear_k = LinearNoBias(c_s, h * c_hidden)
        self.linear_v = LinearNoBias(c_s, h * c_hidden)
        self.linear_q_points = LinearNoBias(c_s, h * n_qk_points * 3)
        self.linear_k_points = LinearNoBias(c_s, h * n_qk_points * 3)
        self.linear_v_points = LinearNoBias(c_s, h * n_v_points * 3)
        self.linear_b = LinearNoBias(c_z, h)
        # softplus(log(e − 1)) = 1: γ^h starts at 1.
        self.head_weights = nn.Parameter(torch.full((h,), math.log(math.e - 1)))
        self.linear_out = Linear(h * (c_z + c_hidden + 4 * n_v_points), c_s, init="final")

    def forward(
        self,
        s: Float[Tensor, "b n c_s"],
        z: Float[Tensor, "b n n c_z"],
        rigid: Rigid,
        mask: Bool[Tensor, "b n"] | None = None,
    ) -> Float[Tensor, "b n c_s"]:
        """Single-representation update (add it to ``s``); zero at masked residues.

        ``rigid`` has batch shape ``[b, n]``; masked residues take no part as keys.
        """
        b, n, _ = s.shape
        h, c, pq, pv = self.n_heads, self.c_hidden, self.n_qk_points, self.n_v_points
        if mask is None:
            mask = torch.ones(b, n, dtype=torch.bool, device=s.device)
        q = self.linear_q(s).view(b, n, h, c)
        k = self.linear_k(s).view(b, n, h, c)
        v = self.linear_v(s).view(b, n, h, c)
        q_pts = self.linear_q_points(s).view(b, n, h, pq, 3)
        k_pts = self.linear_k_points(s).view(b, n, h, pq, 3)
        v_pts = self.linear_v_points(s).view(b, n, h, pv, 3)
        bias = self.linear_b(z)  # [b, i, j, h]

        q, k, v, z32, bias = upcast(q), upcast(k), upcast(v), upcast(z), upcast(bias)
        with fp32_island(q):
            frames = rigid[:, :, None, None]
            q_pts, k_pts, v_pts = frames.apply(q_pts), frames.apply(k_pts), frames.apply(v_pts)
            w_c = math.sqrt(2.0 / (9.0 * pq))
            w_l = math.sqrt(1.0 / 3.0)
            gamma = F.softplus(self.head_weights.float()).to(q.dtype)
            logits = torch.einsum("bihc,bjhc->bhij", q, k) / math.sqrt(c)
            logits = logits + bias.permute(0, 3, 1, 2)
            diff = q_pts[:, :, None] - k_pts[:, None, :]  # [b, i, j, h, p, 3]
            dist_sq = (diff * diff).sum(dim=(-1, -2)).permute(0, 3, 1, 2)  # [b, h, i, j]
            logits = logits - 0.5 * w_c * gamma[None, :, None, None] * dist_sq
            logits = w_l * logits
            key_ok = mask[:, None, None, :]
            logits = logits.masked_fill(~key_ok, MASK_LOGIT)
            attn = torch.softmax(logits, dim=-1)

            o = torch.einsum("bhij,bjhc->bihc", attn, v)
            o_pts = torch.einsum("bhij,bjhpx->bihpx", attn, v_pts)
            o_pts = rigid[:, :, None, None].invert_apply(o_pts)  # back to the local frame
            o_pts_norm = safe_norm(o_pts)  # [b, i, h, p]
            o_pair = torch.einsum("bhij,bijc->bihc", attn, z32)
            feats = torch.cat(
                [o.flatten(-2), o_pts.flatten(-3), o_pts_norm.flatten(-2), o_pair.flatten(-2)], dim=-1
            )
        out = self.linear_out(feats.to(s.dtype))
        return out * mask[..., None].to(out.dtype)


class BackboneUpdate(nn.Module):
    """AF2 Alg. 23: per-residue (b, c, d, t) from the single representation, composed on the right
    of the current frames (quaternion (1, b, c, d), normalised).

    ``c_hidden=None`` is AF2's single linear layer; an int gives a two-layer ReLU MLP (Mini-Fold's
    "2-layer FrameUpdate MLP"). The last layer starts at zero, so frames start unchanged.
    """

    def __init__(self, c_s: int, c_hidden: int | None = None):
        super().__init__()
        if c_hidden is None:
            self.net: nn.Module = Linear(c_s, 6, init="final")
        else:
            self.net = nn.Sequential(
                Linear(c_s, c_hidden, init="relu"), nn.ReLU(), Linear(c_hidden, 6, init="final")
            )

    def forward(
        self, s: Float[Tensor, "*b c_s"], rigid: Rigid, mask: Bool[Tensor, "*b"] | None = None
    ) -> Rigid:
        """New frames ``rigid ∘ update``; masked residues keep their frame."""
        update = self.net(s)
        if mask is not None:
            update = update * mask[..., None].to(update.dtype)
        return rigid.compose_quaternion_update(update)


class IPABlock(nn.Module):
    """One structure-module layer without the frame update (AF2 Alg. 20 lines 6–9):
    ``s ← LN(Dropout(s + IPA(s, z, T))); s ← LN(Dropout(s + MLP(s)))``.

    Frames are inputs, not outputs: pair it with :class:`BackboneUpdate` for a folding trunk,
    or keep the frames fixed for an invariant encoder (qFitLatent).
    """

    def __init__(
        self,
        c_s: int,
        c_z: int,
        c_hidden: int = 16,
        n_heads: int = 12,
        n_qk_points: int = 4,
        n_v_points: int = 8,
        dropout: float = 0.1,
        n_transition_layers: int = 3,
    ):
        super().__init__()
        self.ipa = InvariantPointAttention(c_s, c_z, c_hidden, n_heads, n_qk_points, n_v_points)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(c_s)
        self.transition = StructureModuleTransition(c_s, n_transition_layers, dropout)

    def forward(
        self,
        s: Float[Tensor, "b n c_s"],
        z: Float[Tensor, "b n n c_z"],
        rigid: Rigid,
        mask: Bool[Tensor, "b n"] | None = None,
    ) -> Float[Tensor, "b n c_s"]:
        s = self.norm(self.dropout(s + self.ipa(s, z, rigid, mask)))
        s = self.transition(s)
        return s if mask is None else s * mask[..., None].to(s.dtype)
