"""Gaussian diffusion on coordinates: the T = 1000 noise schedule, forward noising, DDIM sampling
with stochasticity ``eta``, classifier-free guidance and the self-conditioning hook.

Conventions (Ho et al. 2020; Song et al. 2021, DDIM):

- ``t`` is an integer index 0 … T−1; ``alpha_bar[t]`` is the signal fraction *after* step t, so
  t = 0 is the least noise and t = T−1 the most. "t = −1" means clean data (ᾱ = 1).
- ``x_t = √ᾱ_t x_0 + √(1−ᾱ_t) ε`` (:meth:`NoiseSchedule.q_sample`); ``SNR(t) = ᾱ_t / (1−ᾱ_t)``.
- Mini-Fold denoisers predict x_0 (the page's "x0-prediction"); ε is derived from it when the
  sampler needs it (guidance, the DDIM update). Both parametrisations are exposed.
- Coordinates are masked point clouds ``[*b, n, 3]``: padding stays exactly zero, and the noise is
  centred over the real residues (zero centre of mass), so a centred x_0 stays centred.

Classifier-free guidance mixes in ε space: ``ε = ε_uncond + w (ε_cond − ε_uncond)`` (Ho & Salimans
2022); w = 1 is the conditional model and skips the unconditional pass.

The schedule is kept in float64 and cast on use: ᾱ near 1 loses digits in float32, and the
fixed-point property the tests check (a perfect ε oracle returns x_0 exactly) needs them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ptk.errors import ConfigError, unknown_choice

__all__ = [
    "SCHEDULES",
    "NoiseSchedule",
    "center",
    "center_of_mass",
    "centered_noise",
    "randn",
    "cfg_combine",
    "ddim_timesteps",
    "ddim_sample",
    "PredictX0",
]

SCHEDULES = ("cosine", "linear", "shifted_cosine")


def _masked(x: Tensor, mask: Tensor | None) -> Tensor:
    return x if mask is None else x * mask[..., None].to(x.dtype)


def center_of_mass(
    x: Float[Tensor, "*b n 3"], mask: Bool[Tensor, "*b n"] | None = None
) -> Float[Tensor, "*b 1 3"]:
    """The (unweighted) centre of the masked points, ``[*b, 1, 3]``; 0 with no point."""
    if mask is None:
        return x.mean(-2, keepdim=True)
    w = mask[..., None].to(x.dtype)
    return (x * w).sum(-2, keepdim=True) / w.sum(-2, keepdim=True).clamp(min=1)


def center(x: Float[Tensor, "*b n 3"], mask: Bool[Tensor, "*b n"] | None = None) -> Float[Tensor, "*b n 3"]:
    """``x`` minus its centre of mass over the masked points; padding set to 0."""
    com = center_of_mass(x, mask)
    return _masked(x - com, mask)


def centered_noise(
    shape: tuple[int, ...] | torch.Size,
    mask: Bool[Tensor, "*b n"] | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Float[Tensor, "*b n 3"]:
    """Standard normal noise of ``shape`` (``[*b, n, 3]``), zero on padding, zero centre of mass."""
    if mask is not None:
        device = mask.device
    eps = randn(tuple(shape), generator, device, dtype)
    return center(eps, mask)


def randn(
    shape: tuple[int, ...],
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """``torch.randn`` drawn on the generator's device (a CPU generator can feed CUDA tensors),
    then moved to ``device``."""
    if generator is None:
        return torch.randn(shape, device=device, dtype=dtype)
    return torch.randn(shape, generator=generator, device=generator.device, dtype=dtype).to(device)


@dataclass(frozen=True)
class _Spec:
    T: int
    kind: str
    cosine_s: float
    beta_start: float
    beta_end: float
    snr_shift: float


class NoiseSchedule:
    """The discrete variance schedule.

    Args:
        T: number of diffusion steps (1000 for every Mini-Fold version).
        kind: ``"cosine"`` (Nichol & Dhariwal 2021, offset s = 0.008, β clipped at 0.999),
            ``"shifted_cosine"`` (the cosine schedule with every SNR multiplied by ``snr_shift``,
            Hoogeboom et al. 2023's shifted schedule: ᾱ' = kᾱ / (1 + (k − 1)ᾱ)) or ``"linear"``
            (Ho et al. 2020, β from ``beta_start`` to ``beta_end``).
        snr_shift: k of ``"shifted_cosine"``.

    Where SNR = ᾱ/(1 − ᾱ) crosses the Mini-Fold frame gate (T = 1000):

    ==================  =========  ===========  =======================================
    schedule            SNR = 1    SNR = 0.2    share of t with gate conf(t) > 0.5
    ==================  =========  ===========  =======================================
    cosine              t = 496    t = 730      57.7% (the page's "57.7% conf > 0.5")
    shifted_cosine, 4   t = 702    t = 858      76.2% (the page's "SNR < 1, roughly t > 700")
    linear              t = 259    t = 419      30.8%
    ==================  =========  ===========  =======================================

    The page's two statements disagree; its measured frame-confidence share pins the cosine
    schedule to the tenth of a percent, so cosine is the Mini-Fold default
    (``ptk.models.minifold.page.PAGE_DEVIATIONS`` lists it, with the reason).
    """

    def __init__(
        self,
        T: int = 1000,
        kind: str = "cosine",
        cosine_s: float = 0.008,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        snr_shift: float = 4.0,
    ) -> None:
        if kind not in SCHEDULES:
            raise unknown_choice("noise schedule", kind, SCHEDULES)
        if T < 1:
            raise ConfigError(f"diffusion T must be >= 1, got {T}")
        if not snr_shift > 0:
            raise ConfigError(f"diffusion snr_shift must be > 0, got {snr_shift}")
        self.spec = _Spec(T, kind, cosine_s, beta_start, beta_end, snr_shift)
        self.T = T
        if kind in ("cosine", "shifted_cosine"):
            steps = torch.arange(T + 1, dtype=torch.float64) / T
            f = torch.cos((steps + cosine_s) / (1 + cosine_s) * math.pi / 2) ** 2
            alpha_bar = f / f[0]
            if kind == "shifted_cosine":  # SNR' = k·SNR  ⇔  ᾱ' = kᾱ / (1 + (k − 1)ᾱ)
                alpha_bar = snr_shift * alpha_bar / (1 + (snr_shift - 1) * alpha_bar)
            betas = (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)
        else:
            betas = torch.linspace(beta_start, beta_end, T, dtype=torch.float64)
        #: float64 [T] tensors on the CPU; moved/cast on use.
        self.betas = betas
        self.alpha_bar = torch.cumprod(1 - betas, dim=0)

    def __repr__(self) -> str:
        return f"NoiseSchedule(T={self.T}, kind={self.spec.kind!r})"

    # --- lookups --------------------------------------------------------------------------
    def alpha_bar_at(self, t: Int[Tensor, "*b"] | int, like: Tensor) -> Float[Tensor, "*b"]:
        """ᾱ_t as ``like``'s dtype/device; t = −1 gives 1 (clean)."""
        t = torch.as_tensor(t, device=self.alpha_bar.device).long()
        ab = torch.where(t < 0, torch.ones((), dtype=torch.float64), self.alpha_bar[t.clamp(min=0)])
        return ab.to(device=like.device, dtype=like.dtype)

    def snr(self, t: Int[Tensor, "*b"] | int) -> Float[Tensor, "*b"]:
        """Signal-to-noise ratio ᾱ_t / (1 − ᾱ_t), float32 (inf at t = −1)."""
        t = torch.as_tensor(t).long()
        ab = self.alpha_bar[t.clamp(min=0).cpu()]
        out = ab / (1 - ab)
        return torch.where(t.cpu() < 0, torch.full_like(out, float("inf")), out).float().to(t.device)

    # --- forward process -------------------------------------------------------------------
    def q_sample(
        self,
        x0: Float[Tensor, "*b n 3"],
        t: Int[Tensor, "*b"],
        noise: Float[Tensor, "*b n 3"],
    ) -> Float[Tensor, "*b n 3"]:
        """Forward noising q(x_t | x_0): ``√ᾱ_t x_0 + √(1−ᾱ_t) ε``."""
        ab = self.alpha_bar_at(t, x0)[..., None, None]
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def eps_from_x0(self, x_t: Tensor, t: Int[Tensor, "*b"], x0: Tensor) -> Tensor:
        """ε implied by an x_0 prediction: ``(x_t − √ᾱ_t x_0) / √(1−ᾱ_t)``."""
        ab = self.alpha_bar_at(t, x_t)[..., None, None]
        return (x_t - ab.sqrt() * x0) / (1 - ab).clamp(min=1e-12).sqrt()

    def x0_from_eps(self, x_t: Tensor, t: Int[Tensor, "*b"], eps: Tensor) -> Tensor:
        """x_0 implied by an ε prediction: ``(x_t − √(1−ᾱ_t) ε) / √ᾱ_t``."""
        ab = self.alpha_bar_at(t, x_t)[..., None, None]
        return (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()

    def sample_t(
        self, batch: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> Int[Tensor, " b"]:
        """Uniform training timesteps in 0 … T−1."""
        gen_device = generator.device if generator is not None else "cpu"
        t = torch.randint(0, self.T, (batch,), generator=generator, device=gen_device)
        return t.to(device) if device is not None else t

    # --- reverse process -------------------------------------------------------------------
    def ddim_step(
        self,
        x_t: Float[Tensor, "*b n 3"],
        t: int,
        t_prev: int,
        x0: Float[Tensor, "*b n 3"],
        eps: Float[Tensor, "*b n 3"],
        eta: float,
        mask: Bool[Tensor, "*b n"] | None = None,
        generator: torch.Generator | None = None,
    ) -> Float[Tensor, "*b n 3"]:
        """One DDIM update t → t_prev (Song et al. 2021, eq. 12) given the x_0 and ε estimates.

        ``σ = η √((1−ᾱ_prev)/(1−ᾱ_t)) √(1 − ᾱ_t/ᾱ_prev)``;
        ``x_prev = √ᾱ_prev x_0 + √(1−ᾱ_prev−σ²) ε + σ z``. η = 0 is deterministic.
        """
        ab_t = float(self.alpha_bar[t]) if t >= 0 else 1.0
        ab_prev = float(self.alpha_bar[t_prev]) if t_prev >= 0 else 1.0
        sigma = 0.0
        if eta > 0 and t_prev >= 0:
            sigma = eta * math.sqrt((1 - ab_prev) / (1 - ab_t)) * math.sqrt(max(0.0, 1 - ab_t / ab_prev))
        dir_coef = math.sqrt(max(0.0, 1 - ab_prev - sigma**2))
        x_prev = math.sqrt(ab_prev) * x0 + dir_coef * eps
        if sigma > 0:
            x_prev = x_prev + sigma * centered_noise(x_t.shape, mask, generator, x_t.device, x_t.dtype)
        return _masked(x_prev, mask)


def cfg_combine(eps_uncond: Tensor, eps_cond: Tensor, w: float) -> Tensor:
    """Classifier-free guidance ``ε = ε_uncond + w (ε_cond − ε_uncond)``; w = 1 returns ``eps_cond``."""
    if w == 1.0:
        return eps_cond
    return eps_uncond + w * (eps_cond - eps_uncond)


def ddim_timesteps(T: int, steps: int) -> list[int]:
    """Descending, evenly spaced timesteps for a ``steps``-step DDIM run: ``T−1 … 0`` (distinct)."""
    if not 1 <= steps <= T:
        raise ConfigError(f"DDIM steps must be in 1..{T}, got {steps}")
    grid = torch.linspace(T - 1, 0, steps, dtype=torch.float64).round().long().tolist()
    return list(dict.fromkeys(grid))


#: ``predict_x0(x_t, t, x0_self_cond, conditional) -> x0``: t is a ``[b]`` long tensor,
#: ``x0_self_cond`` the previous step's x_0 estimate (None on the first step or when self-
#: conditioning is off), ``conditional`` False for the guidance's unconditional pass.
PredictX0 = Callable[[Tensor, Tensor, Tensor | None, bool], Tensor]


@torch.no_grad()
def ddim_sample(
    schedule: NoiseSchedule,
    predict_x0: PredictX0,
    x_T: Float[Tensor, "b n 3"],
    mask: Bool[Tensor, "b n"] | None = None,
    steps: int = 50,
    eta: float = 0.0,
    guidance: float = 1.0,
    generator: torch.Generator | None = None,
    self_condition: bool = True,
    return_traj: bool = False,
) -> tuple[Float[Tensor, "b n 3"], list[Tensor] | None]:
    """DDIM from pure noise ``x_T`` to x_0 with optional guidance and self-conditioning.

    At each step the model's x_0 estimate(s) are turned into ε and guided (``cfg_combine``); the
    guided x_0 is the x_0 that the guided ε implies, so guidance acts on both terms of the update.
    With self-conditioning the guided x_0 of step k is the self-conditioning input of step k+1.

    Returns:
        (x_0, trajectory): the trajectory lists the guided x_0 estimate of every step.
    """
    x = _masked(x_T, mask)
    b = x.shape[0]
    grid = ddim_timesteps(schedule.T, steps)
    traj: list[Tensor] = []
    x0_prev: Tensor | None = None
    for i, t in enumerate(grid):
        t_prev = grid[i + 1] if i + 1 < len(grid) else -1
        t_vec = torch.full((b,), t, dtype=torch.long, device=x.device)
        sc = x0_prev if self_condition else None
        x0_c = predict_x0(x, t_vec, sc, True)
        eps = schedule.eps_from_x0(x, t_vec, x0_c)
        if guidance != 1.0:
            x0_u = predict_x0(x, t_vec, sc, False)
            eps = cfg_combine(schedule.eps_from_x0(x, t_vec, x0_u), eps, guidance)
            # ε is affine in x_0 at fixed (x_t, t), so the guided x_0 is the same mix of the two
            # x_0 estimates; mixing x_0 directly avoids dividing by √ᾱ ≈ 5e-5 at t = T−1.
            x0_c = cfg_combine(x0_u, x0_c, guidance)
        x0 = _masked(x0_c, mask)
        eps = _masked(eps, mask)
        x0_prev = x0
        if return_traj:
            traj.append(x0)
        x = schedule.ddim_step(x, t, t_prev, x0, eps, eta, mask, generator)
    return x, (traj if return_traj else None)
