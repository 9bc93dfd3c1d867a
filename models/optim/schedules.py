"""LR schedules: the multiplier of a parameter group's peak LR at each optimizer step.

The report page's (``../shared/seeds/minifold_report_page.txt``): cosine decay (v11b/v12), cosine
with warm restarts (v10, T0 = 15), warmup → constant → cosine (v13: 3 epochs 0.01x → 1x, 20 epochs
flat, cosine to 1e-6); and qFitLatent's cosine to lr/100 (``qfitlatent_readme.txt``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ptk.models.optim.recipe import TrainConfig

__all__ = ["build_scheduler", "lr_factor"]


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int, group_lr: float | None = None) -> float:
    """Multiplier of a group's peak LR (``group_lr``; default ``cfg.lr``) at optimizer step
    ``step`` (0-based). The cosine ends at ``min_lr`` for every group (``lr_floor = absolute``)
    or at ``min_lr / lr`` of each group's peak (``relative``).
    """
    spe = max(1, steps_per_epoch)
    total = max(1, cfg.epochs * spe)
    peak = cfg.lr if group_lr is None or cfg.lr_floor == "relative" else group_lr
    floor = min(1.0, cfg.min_lr / peak) if peak > 0 else 1.0
    warm = int(round(cfg.warmup_epochs * spe)) if cfg.schedule.startswith("warmup") else 0
    const = int(round(cfg.constant_epochs * spe)) if cfg.schedule == "warmup_constant_cosine" else 0

    def cosine(pos: int, length: int) -> float:
        frac = min(1.0, max(0.0, pos / max(1, length)))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * frac))

    if cfg.schedule == "constant":
        return 1.0
    if step < warm:
        # linear warmup start_factor → 1 over `warm` steps (report page: 0.01x → 1x)
        return cfg.warmup_start_factor + (1.0 - cfg.warmup_start_factor) * step / max(1, warm)
    if cfg.schedule == "cosine_restarts":
        period = max(1, int(round(cfg.restart_epochs * spe)))
        return cosine(step % period, period)
    if step < warm + const:
        return 1.0
    return cosine(step - warm - const, total - warm - const)


class _Factor:
    """Picklable LR lambda (LambdaLR stores callable objects' state in its state_dict)."""

    def __init__(self, cfg: TrainConfig, steps_per_epoch: int, group_lr: float | None = None) -> None:
        self.cfg_dict = cfg.to_dict()
        self.steps_per_epoch = steps_per_epoch
        self.group_lr = group_lr
        self._cfg = cfg

    def __call__(self, step: int) -> float:
        return lr_factor(self._cfg, step, self.steps_per_epoch, self.group_lr)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-optimizer-step LambdaLR following ``cfg.schedule``, one factor per parameter
    group (each group's floor depends on its peak LR under ``lr_floor = absolute``)."""
    factors = [_Factor(cfg, steps_per_epoch, group["lr"]) for group in optimizer.param_groups]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, [_lambda(f) for f in factors])


def _lambda(factor: _Factor) -> Callable[[int], float]:
    """A plain function around ``factor``: LambdaLR leaves functions out of its state_dict, so a
    checkpoint holds no object that would need unpickling."""
    return lambda step: factor(step)
