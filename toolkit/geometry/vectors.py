"""Vector primitives every geometric formula is built on: the safe norm (finite gradient at
zero), normalisation, the finiteness test of point sets, and degrees for display."""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor

#: Squared-length floor below which a vector counts as zero (1e-6 Å, squared).
EPS: float = 1e-12


def safe_norm(
    x: Float[Tensor, "*b d"], dim: int = -1, keepdim: bool = False, eps: float = EPS
) -> Float[Tensor, "*b"]:
    """Euclidean norm with a finite gradient at zero (``sqrt(max(|x|², eps))``)."""
    return torch.sqrt(torch.clamp((x * x).sum(dim=dim, keepdim=keepdim), min=eps))


def normalize(x: Float[Tensor, "*b d"], eps: float = EPS) -> Float[Tensor, "*b d"]:
    """``x / |x|`` with the safe norm (a zero vector stays finite)."""
    return x / safe_norm(x, keepdim=True, eps=eps)


def _finite(*xs: Tensor) -> Tensor:
    ok = torch.ones((), dtype=torch.bool, device=xs[0].device)
    for x in xs:
        ok = ok & torch.isfinite(x).all(dim=-1)
    return ok


def deg(x: Tensor) -> Tensor:
    """Radians → degrees (for display; every API takes radians)."""
    return x * (180.0 / math.pi)
