"""Triangle multiplicative updates (Jumper et al. 2021, supplementary Alg. 11 outgoing, Alg. 12
incoming).

    a, b = mask · sigmoid(Linear(LN z)) ⊙ Linear(LN z)           (c_hidden channels)
    outgoing: u_ij = Σ_k a_ik ⊙ b_jk      incoming: u_ij = Σ_k a_ki ⊙ b_kj
    Δz_ij = sigmoid(Linear(LN z_ij)) ⊙ Linear(LN u_ij)

The sum over k runs in fp32 with autocast off and is clamped to ±1e4 before its LayerNorm: with
L terms it overflows fp16 (Mini-Fold report, v13 "Triangle einsum overflow"). The module returns
the update Δz (a residual delta, as v13 does), zero on masked pairs; padded residues (mask False)
contribute nothing to the sum, so padding never changes the real part.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor, nn

from ptk.models.linear import Linear
from ptk.models.precision import fp32_island, upcast

__all__ = ["TriangleMultiplication", "TriangleMultiplicationOutgoing", "TriangleMultiplicationIncoming"]

#: Clamp applied to the accumulated triangle product before its LayerNorm (Mini-Fold v13).
CLAMP: float = 1e4


class TriangleMultiplication(nn.Module):
    """Triangle multiplicative update, outgoing (Alg. 11) or incoming (Alg. 12) edges.

    Args:
        c_z: pair channels; c_hidden: width of a and b (AF2: 128; Mini-Fold v13 tri_mul_dim 64);
        outgoing: True for Alg. 11 (``"bikc,bjkc->bijc"``), False for Alg. 12 (``"bkic,bkjc->bijc"``).
    """

    def __init__(self, c_z: int, c_hidden: int = 128, outgoing: bool = True):
        super().__init__()
        self.outgoing = outgoing
        self.norm_in = nn.LayerNorm(c_z)
        self.linear_a_gate = Linear(c_z, c_hidden, init="gating")
        self.linear_a = Linear(c_z, c_hidden)
        self.linear_b_gate = Linear(c_z, c_hidden, init="gating")
        self.linear_b = Linear(c_z, c_hidden)
        self.norm_out = nn.LayerNorm(c_hidden)
        self.linear_gate = Linear(c_z, c_z, init="gating")
        self.linear_out = Linear(c_hidden, c_z, init="final")

    def forward(
        self, z: Float[Tensor, "b n n c_z"], mask: Bool[Tensor, "b n n"] | None = None
    ) -> Float[Tensor, "b n n c_z"]:
        """The update Δz (add it to ``z``). ``mask`` is the pair mask (``m_i & m_j``)."""
        if mask is None:
            mask = torch.ones(z.shape[:-1], dtype=torch.bool, device=z.device)
        x = self.norm_in(z)
        m = mask[..., None].to(x.dtype)
        a = m * torch.sigmoid(self.linear_a_gate(x)) * self.linear_a(x)
        b = m * torch.sigmoid(self.linear_b_gate(x)) * self.linear_b(x)
        a, b = upcast(a), upcast(b)
        with fp32_island(a):
            if self.outgoing:
                u = torch.einsum("bikc,bjkc->bijc", a, b)
            else:
                u = torch.einsum("bkic,bkjc->bijc", a, b)
            u = u.clamp(-CLAMP, CLAMP)
        # back to the input dtype only after the clamp: ±1e4 fits fp16.
        u = self.norm_out(u.to(z.dtype))
        out = torch.sigmoid(self.linear_gate(x)) * self.linear_out(u)
        return out * m


class TriangleMultiplicationOutgoing(TriangleMultiplication):
    """AF2 Alg. 11 (edges i→k, j→k)."""

    def __init__(self, c_z: int, c_hidden: int = 128):
        super().__init__(c_z, c_hidden, outgoing=True)


class TriangleMultiplicationIncoming(TriangleMultiplication):
    """AF2 Alg. 12 (edges k→i, k→j)."""

    def __init__(self, c_z: int, c_hidden: int = 128):
        super().__init__(c_z, c_hidden, outgoing=False)
