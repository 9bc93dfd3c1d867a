"""The gradient tripwire of one watched module (``tripwire_module``): a step whose gradient norm
there is not finite or above ``tripwire_max_norm`` is skipped; a norm below ``tripwire_min_norm``
for ``tripwire_min_steps`` steps in a row gets N(0, ``tripwire_noise``²) gradient noise; below
``halt_min_norm`` on ``halt_steps`` steps in all, the run halts.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from torch import nn

from ptk.models.optim import TrainConfig, module_grad_norm, module_matches

__all__ = ["Tripwire"]

log = logging.getLogger("ptk.train")


class Tripwire:
    """The tripwire's counters (checkpointed) and its verdict on each step's gradients.

    Attributes:
        low_streak: steps in a row with the watched norm below ``tripwire_min_norm``.
        halt_total: steps in all with it below ``halt_min_norm``.
        halted: why the run must stop, once it must.
    """

    def __init__(self, cfg: TrainConfig, device: torch.device) -> None:
        self.cfg, self.device = cfg, device
        self.low_streak = 0
        self.halt_total = 0
        self.halted: str | None = None

    def state_dict(self) -> dict[str, int]:
        return {"low_streak": self.low_streak, "halt_total": self.halt_total}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.low_streak = int(state["low_streak"])
        self.halt_total = int(state["halt_total"])

    def trips(self, model: nn.Module, step: int) -> bool:
        """Whether the averaged gradients of optimizer step ``step`` must be dropped (always
        False without a watched module); counts, injects noise and decides a halt otherwise."""
        cfg = self.cfg
        if not cfg.tripwire_module:
            return False
        norm = module_grad_norm(model, cfg.tripwire_module)
        if not math.isfinite(norm) or norm > cfg.tripwire_max_norm:
            log.warning(
                "tripwire: %s grad norm %.3g > %.3g at step %d, step skipped",
                cfg.tripwire_module,
                norm,
                cfg.tripwire_max_norm,
                step,
            )
            return True
        self.low_streak = self.low_streak + 1 if norm < cfg.tripwire_min_norm else 0
        if self.low_streak >= cfg.tripwire_min_steps:
            log.warning(
                "tripwire: %s grad norm < %.3g for %d steps, injecting N(0, %.3g^2) gradient noise",
                cfg.tripwire_module,
                cfg.tripwire_min_norm,
                self.low_streak,
                cfg.tripwire_noise,
            )
            self._inject_noise(model, step)
            self.low_streak = 0
        if norm < cfg.halt_min_norm:
            self.halt_total += 1
            if self.halt_total >= cfg.halt_steps:
                self.halted = (
                    f"{cfg.tripwire_module} grad norm < {cfg.halt_min_norm} for {cfg.halt_steps} steps"
                )
                log.error("hard halt: %s", self.halted)
        return False

    def _inject_noise(self, model: nn.Module, step: int) -> None:
        """Gaussian noise on the watched module's gradients, from a stream seeded by (seed, step)
        so the training RNG is untouched."""
        module, scale = self.cfg.tripwire_module, self.cfg.tripwire_noise
        gen = torch.Generator(device=self.device).manual_seed(self.cfg.seed * 7919 + step)
        for name, p in model.named_parameters():
            if p.grad is not None and module_matches(name, module):
                p.grad.add_(torch.randn(p.shape, generator=gen, device=p.device, dtype=p.dtype) * scale)
