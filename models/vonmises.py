"""Von Mises mixtures over χ angles: density, sampling, modes (qFitLatent output head).

A residue's distribution over D χ angles is a K-component mixture whose components are products
of independent von Mises densities ``exp(κ cos(χ − μ)) / (2π I₀(κ))`` over the *defined* χ
(``../shared/seeds/qfitlatent_readme.txt``, "Loss"). ``log I₀(κ)`` is evaluated as
``log i0e(κ) + κ`` so that large κ stays finite.

Residuals are taken on the circle; for the π-periodic χ (ASP χ2, GLU χ3, PHE χ2, TYR χ2) they are
folded to (−π/2, π/2] by ½·atan2(sin 2Δ, cos 2Δ), exactly as the README writes it. (A folded
component, read as a density over the full circle, integrates to ``∫exp(κ cos(fold Δ))`` /
(2π I₀(κ)) ≠ 1 — it is the README's likelihood for symmetric χ, where χ and χ + π are the same
conformer; the unfolded density integrates to 1.)

Shape letters: ``*b`` batch (e.g. ``b n`` or ``b n a``), ``k`` components, ``d`` χ index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

__all__ = [
    "LOG_2PI",
    "log_i0",
    "circular_residual",
    "von_mises_log_prob",
    "mixture_log_prob",
    "VonMisesMixture",
]

LOG_2PI: float = math.log(2 * math.pi)


def log_i0(kappa: Float[Tensor, "*b"]) -> Float[Tensor, "*b"]:
    """log I₀(κ) = log i0e(κ) + κ (``torch.special.i0e``; finite for any κ ≥ 0)."""
    return torch.log(torch.special.i0e(kappa)) + kappa


def circular_residual(
    delta: Float[Tensor, "*b"], symmetric: Bool[Tensor, "*b"] | None = None
) -> Float[Tensor, "*b"]:
    """Δ wrapped to (−π, π], or folded to (−π/2, π/2] where ``symmetric``."""
    wrapped = torch.atan2(torch.sin(delta), torch.cos(delta))
    if symmetric is None:
        return wrapped
    folded = 0.5 * torch.atan2(torch.sin(2 * delta), torch.cos(2 * delta))
    return torch.where(symmetric, folded, wrapped)


def von_mises_log_prob(
    x: Float[Tensor, "*b"],
    mu: Float[Tensor, "*b"],
    kappa: Float[Tensor, "*b"],
    symmetric: Bool[Tensor, "*b"] | None = None,
) -> Float[Tensor, "*b"]:
    """log [exp(κ cos Δ) / (2π I₀(κ))] with Δ = x − μ on the circle (folded where symmetric)."""
    delta = circular_residual(x - mu, symmetric)
    return kappa * torch.cos(delta) - LOG_2PI - log_i0(kappa)


def mixture_log_prob(
    log_pi: Float[Tensor, "*b k"],
    mu: Float[Tensor, "*b k d"],
    kappa: Float[Tensor, "*b k d"],
    chi: Float[Tensor, "*b d"],
    chi_mask: Bool[Tensor, "*b d"] | None = None,
    symmetric: Bool[Tensor, "*b d"] | None = None,
) -> Float[Tensor, "*b"]:
    """log Σ_k π_k Π_{d defined} VM(χ_d; μ_kd, κ_kd). With no defined χ the product is empty and
    the result is log Σ π = 0. Undefined χ may hold any value, NaN included."""
    if chi_mask is None:
        chi_mask = torch.ones(chi.shape, dtype=torch.bool, device=chi.device)
    chi = torch.where(chi_mask, chi, torch.zeros_like(chi))
    sym = None if symmetric is None else symmetric[..., None, :]
    per_chi = von_mises_log_prob(chi[..., None, :], mu, kappa, sym)  # [*b, k, d]
    per_chi = torch.where(chi_mask[..., None, :], per_chi, torch.zeros_like(per_chi))
    return torch.logsumexp(log_pi + per_chi.sum(-1), dim=-1)


@dataclass(frozen=True)
class VonMisesMixture:
    """Per-residue mixtures: ``log_pi [*b, k]`` (log-softmax weights), ``mu [*b, k, d]`` in
    (−π, π], ``kappa [*b, k, d]`` > 0."""

    log_pi: Float[Tensor, "*b k"]
    mu: Float[Tensor, "*b k d"]
    kappa: Float[Tensor, "*b k d"]

    @property
    def batch_shape(self) -> torch.Size:
        return self.log_pi.shape[:-1]

    @property
    def pi(self) -> Float[Tensor, "*b k"]:
        return self.log_pi.exp()

    def _expanded(self, extra: int) -> tuple[Tensor, Tensor, Tensor]:
        """Parameters with ``extra`` singleton dims after the batch dims (e.g. an altloc axis)."""
        nb = len(self.batch_shape)
        idx = (slice(None),) * nb + (None,) * extra
        return self.log_pi[idx], self.mu[idx], self.kappa[idx]

    def log_prob(
        self,
        chi: Float[Tensor, "*b *e d"],
        chi_mask: Bool[Tensor, "*b *e d"] | None = None,
        symmetric: Bool[Tensor, "*b d"] | None = None,
    ) -> Float[Tensor, "*b *e"]:
        """Mixture log-density of ``chi`` over its defined angles. ``chi`` may carry extra dims
        ``*e`` after the batch dims (altlocs, samples); ``symmetric`` is per residue."""
        extra = chi.dim() - 1 - len(self.batch_shape)
        log_pi, mu, kappa = self._expanded(extra)
        if symmetric is not None:
            symmetric = symmetric[(slice(None),) * len(self.batch_shape) + (None,) * extra]
            symmetric = symmetric.expand(chi.shape)
        return mixture_log_prob(log_pi, mu, kappa, chi, chi_mask, symmetric)

    def modes(self) -> Float[Tensor, "*b d"]:
        """The μ of the highest-weight component, per residue."""
        top = self.top_component()
        d = self.mu.shape[-1]
        return torch.gather(self.mu, -2, top[..., None, None].expand(*top.shape, 1, d))[..., 0, :]

    def top_component(self) -> Int[Tensor, "*b"]:
        return self.log_pi.argmax(-1)

    def sample(
        self, sample_shape: tuple[int, ...] = (), symmetric: Bool[Tensor, "*b d"] | None = None
    ) -> Float[Tensor, "*s *b d"]:
        """Draws ``[*sample_shape, *b, d]`` in (−π, π] (torch's global RNG). A component is picked
        by π, then each χ from its von Mises; where ``symmetric``, a half-turn is added with
        probability ½ (the folded likelihood cannot tell χ from χ + π)."""
        with torch.no_grad():
            comp = torch.distributions.Categorical(logits=self.log_pi).sample(sample_shape)  # [*s, *b]
            d = self.mu.shape[-1]
            mu = self.mu.expand(*sample_shape, *self.mu.shape)
            kappa = self.kappa.expand(*sample_shape, *self.kappa.shape)
            idx = comp[..., None, None].expand(*comp.shape, 1, d)
            mu_c = torch.gather(mu, -2, idx)[..., 0, :]
            kappa_c = torch.gather(kappa, -2, idx)[..., 0, :]
            x = torch.distributions.VonMises(mu_c.double(), kappa_c.double()).sample().to(self.mu.dtype)
            if symmetric is not None:
                flip = (torch.rand(x.shape, device=x.device) < 0.5) & symmetric.expand(x.shape)
                x = x + math.pi * flip
            return circular_residual(x)
