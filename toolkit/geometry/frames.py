"""Backbone frames: a rotation and an origin per residue from its N, Cα and C."""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ptk.geometry.vectors import EPS, _finite, normalize


def backbone_frames(
    n: Float[Tensor, "*b 3"], ca: Float[Tensor, "*b 3"], c: Float[Tensor, "*b 3"]
) -> tuple[Float[Tensor, "*b 3 3"], Float[Tensor, "*b 3"], Bool[Tensor, "*b"]]:
    """Backbone frames in the qFitLatent convention (``../shared/seeds/qfitlatent_readme.txt``).

    x̂ = (C−Cα)/|C−Cα|, ẑ = x̂×(N−Cα)/|x̂×(N−Cα)|, ŷ = ẑ×x̂; the rotation's *columns* are
    (x̂, ŷ, ẑ) and the origin is Cα, so a global point is ``R @ local + t`` and the local
    coordinates of a point p are ``Rᵀ (p − t)``: Cα at the origin, C on +x, N in the xy-plane
    with y > 0.

    Returns:
        (rot, trans, valid): identity rotation where N, Cα, C are missing or collinear.
    """
    finite = _finite(n, ca, c)
    zero = torch.zeros_like(ca)
    n, ca, c = (torch.where(finite[..., None], p, zero) for p in (n, ca, c))
    e0 = c - ca
    v = n - ca
    cross = torch.cross(e0, v, dim=-1)
    len0 = (e0 * e0).sum(-1)
    valid = finite & (len0 > EPS) & ((cross * cross).sum(-1) > 1e-6 * len0 * (v * v).sum(-1))
    x_hat = normalize(e0)
    z_hat = normalize(torch.cross(x_hat, v, dim=-1))
    y_hat = torch.cross(z_hat, x_hat, dim=-1)
    rot = torch.stack([x_hat, y_hat, z_hat], dim=-1)
    eye = torch.eye(3, dtype=rot.dtype, device=rot.device).expand_as(rot)
    rot = torch.where(valid[..., None, None], rot, eye)
    return rot, ca, valid
