"""The data loaders of a run: every rank reads its shard of the training set through a
``DistributedSampler`` (reshuffled per epoch from ``seed``), and its share of the validation set
once per example; batches are moved to the device by :func:`to_device`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ptk.models.optim import TrainConfig
from ptk.models.trainer.parallel import DistInfo

__all__ = ["to_device", "train_loader", "val_loader"]


def to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors of a collated batch moved to ``device``; everything else (ids) kept."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}


def train_loader(
    train_set: Dataset, collate: Callable, cfg: TrainConfig, info: DistInfo
) -> tuple[DistributedSampler, DataLoader]:
    """This rank's sampler (``set_epoch`` reshuffles it) and loader over ``train_set``."""
    sampler = DistributedSampler(
        train_set, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=cfg.seed
    )
    loader = DataLoader(
        train_set,
        batch_size=cfg.batch_size,
        sampler=sampler,
        collate_fn=collate,
        num_workers=cfg.num_workers,
        persistent_workers=False,
    )
    return sampler, loader


def val_loader(
    val_set: Dataset | None, collate: Callable, cfg: TrainConfig, info: DistInfo
) -> DataLoader | None:
    """This rank's loader over ``val_set`` (None without examples)."""
    if val_set is None or len(val_set) == 0:
        return None
    # every validation example exactly once over the ranks (DistributedSampler would pad with
    # repeats); the means are all-reduced as (sum, count) pairs
    sampler = list(range(info.rank, len(val_set), info.world_size))
    return DataLoader(
        val_set,
        batch_size=cfg.batch_size,
        sampler=sampler,
        collate_fn=collate,
        num_workers=cfg.num_workers,
    )
