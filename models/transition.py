"""Position-wise transitions and the outer product mean.

- :class:`Transition`: LayerNorm → Linear(c → n·c) → ReLU or SwiGLU → Linear(n·c → c), the MSA
  and pair transitions of AF2 (Alg. 9, Alg. 15); returns the update (add it yourself).
- :class:`StructureModuleTransition`: the residual ReLU MLP + dropout + LayerNorm of the AF2
  structure module (Alg. 20 lines 8–9); returns the new single representation.
- :class:`OuterProductMean`: AF2 Alg. 10, single representation → pair update.

Masks are ``True`` for real positions; masked outputs are zero.
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

__all__ = ["Transition", "StructureModuleTransition", "OuterProductMean"]

ACTIVATIONS: tuple[str, ...] = ("relu", "swiglu")


class Transition(nn.Module):
    """Pre-norm two-layer MLP update (AF2 Alg. 9/15): ``Linear(act(Linear(LN(x))))``.

    Args:
        c: channels of the representation.
        expansion: hidden width is ``expansion * c`` (AF2: 4).
        activation: ``"relu"`` (AF2) or ``"swiglu"`` (SiLU(a) ⊙ b, two bias-free projections).
    """

    def __init__(self, c: int, expansion: int = 4, activation: Literal["relu", "swiglu"] = "relu"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise unknown_choice("activation", activation, ACTIVATIONS)
        self.activation = activation
        hidden = expansion * c
        self.norm = nn.LayerNorm(c)
        if activation == "relu":
            self.linear_in = Linear(c, hidden, init="relu")
        else:
            self.linear_in = LinearNoBias(c, 2 * hidden)
        self.linear_out = Linear(hidden, c, init="final")

    def forward(
        self, x: Float[Tensor, "*b c"], mask: Bool[Tensor, "*b"] | None = None
    ) -> Float[Tensor, "*b c"]:
        h = self.linear_in(self.norm(x))
        if self.activation == "relu":
            h = F.relu(h)
        else:
            a, b = h.chunk(2, dim=-1)
            h = F.silu(a) * b
        out = self.linear_out(h)
        return out if mask is None else out * mask[..., None].to(out.dtype)


class StructureModuleTransition(nn.Module):
    """AF2 Alg. 20 lines 8–9: ``s ← LN(Dropout(s + MLP(s)))`` with an ``n_layers`` ReLU MLP
    (AF2: 3 layers of width ``c``, the last initialised to zero)."""

    def __init__(self, c: int, n_layers: int = 3, dropout: float = 0.1):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(n_layers):
            last = i == n_layers - 1
            layers.append(Linear(c, c, init="final" if last else "relu"))
            if not last:
                layers.append(nn.ReLU())
        self.mlp = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(c)

    def forward(self, s: Float[Tensor, "*b c"]) -> Float[Tensor, "*b c"]:
        return self.norm(self.dropout(s + self.mlp(s)))


class OuterProductMean(nn.Module):
    """AF2 Alg. 10: z_ij += Linear(flatten(mean_s a_si ⊗ b_sj)), a, b = Linear(LN(m)).

    Accepts an MSA-like ``[*b, s, n, c_m]`` or a single representation ``[*b, n, c_m]`` (one row).
    The mean divides by the number of rows where both positions are present (+ ``eps``); the
    products are accumulated in fp32.

    Args:
        c_m: input channels; c_z: pair channels; c_hidden: projection width (AF2: 32).
    """

    def __init__(self, c_m: int, c_z: int, c_hidden: int = 32, eps: float = 1e-3):
        super().__init__()
        self.eps = eps
        self.c_hidden = c_hidden
        self.norm = nn.LayerNorm(c_m)
        self.linear_a = Linear(c_m, c_hidden)
        self.linear_b = Linear(c_m, c_hidden)
        self.linear_out = Linear(c_hidden * c_hidden, c_z, init="final")

    def forward(
        self,
        m: Float[Tensor, "*b s n c_m"] | Float[Tensor, "b n c_m"],
        mask: Bool[Tensor, "*b s n"] | None = None,
    ) -> Float[Tensor, "*b n n c_z"]:
        single = m.dim() == 3
        if single:
            m = m[:, None]
            mask = None if mask is None else mask[:, None]
        if mask is None:
            mask = torch.ones(m.shape[:-1], dtype=torch.bool, device=m.device)
        x = self.norm(m)
        mf = mask[..., None].to(x.dtype)
        a = self.linear_a(x) * mf
        b = self.linear_b(x) * mf
        a, b, mf = upcast(a), upcast(b), upcast(mf)
        with fp32_island(a):
            outer = torch.einsum("...sic,...sjd->...ijcd", a, b)
            norm = torch.einsum("...si,...sj->...ij", mf[..., 0], mf[..., 0])
        out = self.linear_out(outer.flatten(-2).to(m.dtype))
        return out / (norm[..., None] + self.eps).to(out.dtype)
