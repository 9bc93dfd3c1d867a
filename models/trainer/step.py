"""One optimizer step of the loop and the precision it runs in: the accumulated gradients
averaged (over ranks too), the fp16 loss-scale check, the tripwire, per-module clipping, then
AdamW and the LR schedule.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager

import torch
from torch import Tensor, nn

from ptk.models.optim import TrainConfig, clip_by_module
from ptk.models.trainer.parallel import DistInfo, all_true, average_over_ranks, sum_over_ranks
from ptk.models.trainer.tripwire import Tripwire

__all__ = ["OptimizerStep", "amp_dtype", "autocast", "build_scaler"]

log = logging.getLogger("ptk.train")


def amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``cfg.amp`` (``auto``: bf16 on CUDA), None for fp32."""
    use_bf16 = cfg.amp == "bf16" or (cfg.amp == "auto" and device.type == "cuda")
    return torch.float16 if cfg.amp == "fp16" else torch.bfloat16 if use_bf16 else None


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager:
    """Autocast to ``dtype`` on ``device``'s type; explicitly off for None."""
    if dtype is None:
        return torch.autocast(device_type=device.type, enabled=False)
    return torch.autocast(device_type=device.type, dtype=dtype)


def build_scaler(cfg: TrainConfig, device: torch.device) -> torch.amp.GradScaler:
    """fp16's dynamic loss scale (disabled otherwise: scale() and its checks are no-ops)."""
    return torch.amp.GradScaler(device.type, init_scale=cfg.fp16_init_scale, enabled=cfg.amp == "fp16")


class OptimizerStep:
    """Applies the accumulated gradients of a group of micro-batches to ``model``.

    Attributes:
        grad_norms: clip entry -> [sum, count] of its pre-clip gradient norm over the steps
            since the loop last reset it (an epoch).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        scaler: torch.amp.GradScaler,
        tripwire: Tripwire,
        cfg: TrainConfig,
        info: DistInfo,
        device: torch.device,
    ) -> None:
        self.model, self.optimizer, self.scheduler, self.scaler = model, optimizer, scheduler, scaler
        self.tripwire, self.cfg, self.info, self.device = tripwire, cfg, info, device
        self.grad_norms: dict[str, list[float]] = {}

    def __call__(
        self, params: list[nn.Parameter], acc: list[Tensor] | None, n_good: int, step: int
    ) -> tuple[int, bool]:
        """Average ``acc`` (the summed float32 gradients of this rank's ``n_good`` good
        micro-batches) over every good micro-batch of the job, run the tripwire, clip per module,
        step. ``step`` is the global step, for logs and noise seeds.

        Returns:
            ``(dropped, stepped)``: how many good micro-batches the tripwire or the fp16 loss
            scale dropped, and whether the optimizer stepped.
        """
        count = sum_over_ranks(self.info, torch.tensor([float(n_good)], device=self.device))
        n_total = float(count.item())
        if n_total == 0 or acc is None and self.info.world_size == 1:
            return 0, False
        if acc is None:  # this rank had only bad batches; others did not
            acc = [torch.zeros_like(p, dtype=torch.float32) for p in params]
        acc = average_over_ranks(self.info, acc, n_total)
        for p, g in zip(params, acc, strict=True):
            p.grad = g if g.dtype == p.dtype else g.to(p.dtype)
        if self.scaler.is_enabled() and self._overflowed():
            scale = self.scaler.get_scale()
            log.info("fp16 loss scale overflow at step %d: step skipped, scale %g", step, scale)
            return n_good, False
        if self.tripwire.trips(self.model, step):
            self.model.zero_grad(set_to_none=True)
            if self.scaler.is_enabled():
                self.scaler.update()
            return n_good, False
        for key, norm in clip_by_module(self.model, self.cfg.clip).items():
            total = self.grad_norms.setdefault(key, [0.0, 0])
            total[0] += norm
            total[1] += 1
        self.scaler.step(self.optimizer)  # optimizer.step() (GradScaler disabled: a plain call)
        self.scaler.update()
        self.scheduler.step()
        self.model.zero_grad(set_to_none=True)
        return 0, True

    def _overflowed(self) -> bool:
        """fp16: unscale the step's gradients; on inf/NaN skip the step and halve the scale
        (GradScaler's own step/update, which see the overflow unscale_ recorded)."""
        self.scaler.unscale_(self.optimizer)
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        finite = all_true(
            self.info, self.device, bool(torch.isfinite(torch.stack(torch._foreach_norm(grads)).sum()))
        )
        if finite:
            return False
        self.scaler.step(self.optimizer)  # skipped: unscale_ recorded the overflow
        self.scaler.update()
        self.model.zero_grad(set_to_none=True)
        return True
