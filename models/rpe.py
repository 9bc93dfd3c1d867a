"""Relative encodings of residue pairs → pair features ``[b, n, n, c_z]``: sequence offsets
(below) and distances (:func:`distance_rbf`, the Gaussian radial basis every model uses).

The signed offset is ``d_ij = r_j − r_i`` (``r`` = residue index; j downstream of i is positive).

- :class:`LinearClippedRPE`: one-hot of clip(d, −k, k) (2k + 1 bins) → Linear (AF2 Alg. 4
  ``relpos``; Mini-Fold v10–v12 with k = ``max_rel_pos`` = 32).
- :class:`LogScaledRPE`: Mini-Fold v13 (``../shared/seeds/minifold_report_page.txt``, "Log-Scaled
  Relative Position Encoding"): 128 bins over separations 0–512, linear (1-residue) below 8 and
  log-spaced from 8 to 512, sign-aware (separate embeddings for upstream and downstream), plus
  32 sinusoidal continuous features (sin/cos) projected to ``c_z``.

The page does not spell out the bin edges; this module's reading, written once in
:func:`log_scaled_bin`: for s = |d|, bin = s if s < 8, else
8 + ⌊ln(s/8) / ln(512/8) · 120⌋, capped at 127 (so s ≥ 512 shares the last bin). The sign picks
one of two 128-entry tables (d ≥ 0 downstream, d < 0 upstream). The sinusoidal features are
sin(d ω_f), cos(d ω_f) with ω_f = 512^(−f/15), f = 0..15: periods from 2π to 2π·512 residues.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from ptk.models.linear import Linear

__all__ = ["distance_rbf", "relative_offsets", "clipped_onehot", "log_scaled_bin", "sinusoidal_features",
           "LinearClippedRPE", "LogScaledRPE"]  # fmt: skip


def relative_offsets(residue_index: Int[Tensor, "b n"]) -> Int[Tensor, "b n n"]:
    """d_ij = r_j − r_i."""
    r = residue_index.long()
    return r[..., None, :] - r[..., :, None]


def clipped_onehot(offset: Int[Tensor, "*b"], max_rel: int) -> Float[Tensor, "*b k"]:
    """One-hot of clip(d, −k, k) over 2k + 1 bins (bin k is d = 0)."""
    idx = offset.clamp(-max_rel, max_rel) + max_rel
    return torch.nn.functional.one_hot(idx, 2 * max_rel + 1).float()


def log_scaled_bin(
    offset: Int[Tensor, "*b"], n_bins: int = 128, max_sep: int = 512, n_linear: int = 8
) -> Int[Tensor, "*b"]:
    """Magnitude bin of |d| in [0, n_bins): identity below ``n_linear``, log-spaced up to
    ``max_sep`` above (see the module docstring)."""
    s = offset.abs()
    n_log = n_bins - n_linear
    sf = s.clamp(min=n_linear).double()
    log_bin = n_linear + torch.floor(torch.log(sf / n_linear) / math.log(max_sep / n_linear) * n_log).long()
    return torch.where(s < n_linear, s, log_bin).clamp(max=n_bins - 1)


def sinusoidal_features(
    offset: Int[Tensor, "*b"], n_features: int = 32, max_sep: int = 512
) -> Float[Tensor, "*b f"]:
    """[sin(d ω_f), cos(d ω_f)] with ω_f = max_sep^(−f/(F−1)), F = n_features/2 frequencies."""
    n_freq = n_features // 2
    f = torch.arange(n_freq, dtype=torch.float32, device=offset.device)
    omega = max_sep ** (-f / max(1, n_freq - 1))
    angle = offset.float()[..., None] * omega
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)


class LinearClippedRPE(nn.Module):
    """Linear(one-hot(clip(r_j − r_i, ±max_rel))) → ``[b, n, n, c_z]`` (AF2 Alg. 4)."""

    def __init__(self, c_z: int, max_rel: int = 32):
        super().__init__()
        self.max_rel = max_rel
        self.linear = Linear(2 * max_rel + 1, c_z)

    def forward(
        self, residue_index: Int[Tensor, "b n"], mask: Bool[Tensor, "b n"] | None = None
    ) -> Float[Tensor, "b n n c_z"]:
        onehot = clipped_onehot(relative_offsets(residue_index), self.max_rel)
        out = self.linear(onehot.to(self.linear.weight.dtype))
        return out if mask is None else out * (mask[:, :, None] & mask[:, None, :])[..., None].to(out.dtype)


class LogScaledRPE(nn.Module):
    """Mini-Fold v13 relative positions: sign-aware log-scaled bins + sinusoidal features.

    Args:
        c_z: output channels; n_bins: magnitude bins per sign (128); max_sep: separation of the
        last bin (512); n_linear: 1-residue bins before the log spacing (8); n_sinusoidal:
        continuous sin/cos features (32, 0 to disable).
    """

    def __init__(
        self, c_z: int, n_bins: int = 128, max_sep: int = 512, n_linear: int = 8, n_sinusoidal: int = 32
    ):
        super().__init__()
        self.n_bins, self.max_sep, self.n_linear, self.n_sinusoidal = n_bins, max_sep, n_linear, n_sinusoidal
        self.embedding = nn.Embedding(2 * n_bins, c_z)  # [downstream | upstream]
        self.linear_sin = Linear(n_sinusoidal, c_z) if n_sinusoidal > 0 else None

    def forward(
        self, residue_index: Int[Tensor, "b n"], mask: Bool[Tensor, "b n"] | None = None
    ) -> Float[Tensor, "b n n c_z"]:
        d = relative_offsets(residue_index)
        idx = log_scaled_bin(d, self.n_bins, self.max_sep, self.n_linear) + self.n_bins * (d < 0).long()
        out = self.embedding(idx)
        if self.linear_sin is not None:
            feats = sinusoidal_features(d, self.n_sinusoidal, self.max_sep)
            out = out + self.linear_sin(feats.to(self.linear_sin.weight.dtype))
        return out if mask is None else out * (mask[:, :, None] & mask[:, None, :])[..., None].to(out.dtype)


def distance_rbf(d: Float[Tensor, "*b"], n_rbf: int, d_min: float, d_max: float) -> Float[Tensor, "*b r"]:
    """Gaussian radial basis of distances: ``exp(−((d − μ_k)/σ)²)`` with ``n_rbf`` centres μ_k
    evenly spaced on [d_min, d_max] (Å) and σ their spacing."""
    centres = torch.linspace(d_min, d_max, n_rbf, device=d.device, dtype=d.dtype)
    width = (d_max - d_min) / max(1, n_rbf - 1)
    return torch.exp(-(((d[..., None] - centres) / width) ** 2))
