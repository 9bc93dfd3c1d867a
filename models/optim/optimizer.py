"""The optimizer of a run: AdamW with per-module LR groups (the report page's v12b on:
pair_stack 3x, aux_pair 2x) and no weight decay on biases and norm weights."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ptk.models.optim.modules import check_modules, group_of
from ptk.models.optim.recipe import TrainConfig

__all__ = ["build_optimizer"]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with one parameter group per ``lr_groups`` entry (LR = lr × multiplier) plus the
    rest; within each, biases and norm weights (1-D tensors) get no weight decay."""
    check_modules(model, cfg.lr_groups, "lr_groups")
    buckets: dict[tuple[str, bool], list[Tensor]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        group = group_of(name, cfg.lr_groups)
        buckets.setdefault((group, param.ndim <= 1), []).append(param)
    groups = []
    for (group, no_decay), params in sorted(buckets.items(), key=lambda kv: (kv[0][0] != "*", kv[0])):
        mult = 1.0 if group == "*" else float(cfg.lr_groups[group])
        groups.append(
            {
                "params": params,
                "lr": cfg.lr * mult,
                "weight_decay": 0.0 if no_decay else cfg.weight_decay,
                "name": f"{group}{'/no_decay' if no_decay else ''}",
            }
        )
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
