"""A training run as the library sees it: the device a run trains on, the train/validation
split of its shards, and the trained model read back from its folder (``docs/run-folder.md``;
the folder's names and formats are :mod:`ptk.runs`'s).

``ptk train``, ``ptk sample``, ``ptk report`` and the benchmarks call these; the commands no longer
import each other for them.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ptk import runs
from ptk.errors import ConfigError, PtkError

__all__ = ["build_datasets", "load_run_model", "resolve_device", "split_indices"]

log = logging.getLogger("ptk.runs")


def resolve_device(name: str):
    """``auto`` → ``cuda`` when available (this process's local rank under torchrun), else ``cpu``."""
    import torch

    if name not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"unknown device {name!r}; allowed: auto, cpu, cuda")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise PtkError("--device cuda asked for, but torch sees no CUDA device")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(local)
    return torch.device("cuda", local)


def split_indices(ids: Sequence[str], val_fraction: float) -> tuple[list[int], list[int]]:
    """Deterministic train/validation split by a hash of each id (stable across machines,
    orderings and added data). At least one example goes to each side when there are two."""
    keyed = [(int(hashlib.sha256(i.encode()).hexdigest()[:12], 16) / 16**12, n) for n, i in enumerate(ids)]
    val = [n for h, n in keyed if h < val_fraction]
    if not val and len(ids) >= 2:
        val = [min(keyed)[1]]
    if len(val) == len(ids) and len(ids) >= 2:
        val = val[:-1]
    val_set = set(val)
    return [n for n in range(len(ids)) if n not in val_set], sorted(val_set)


def _shard_column(path: Path, column: str) -> list[Any] | None:
    """One column of a shard dataset in the datasets' row order, or None if the kind lacks it."""
    from ptk import shards

    kind = shards.read_manifest(path)["kind"]
    if column not in shards.schema_for(kind).names:
        return None
    return shards.read_table(path, columns=[column]).column(column).to_pylist()


class _Subset:
    """``torch.utils.data.Subset`` that forwards ``set_epoch`` to the dataset (random crops)."""

    def __init__(self, dataset: Any, indices: Sequence[int]) -> None:
        self.dataset, self.indices = dataset, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.dataset[self.indices[i]]

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)


def build_datasets(task: Any, data: Path, val_data: Path | None) -> tuple[Any, Any, str]:
    """(train set, validation set, how they were split)."""
    cfg = task.train
    common = {"max_length": cfg.max_length, "seed": cfg.seed}
    if val_data is not None:
        train = task.dataset(data, crop=cfg.crop, **common)
        val = task.dataset(val_data, crop="first", **common)
        return train, val, "val-data"
    splits = _shard_column(data, "split")
    if splits is not None and "train" in splits and "validation" in splits:
        train = task.dataset(data, crop=cfg.crop, split="train", **common)
        val = task.dataset(data, crop="first", split="validation", **common)
        return train, val, "split-column"
    ids = _shard_column(data, "id") or []
    train_idx, val_idx = split_indices([str(i) for i in ids], cfg.val_fraction)
    full_train = task.dataset(data, crop=cfg.crop, **common)
    full_val = task.dataset(data, crop="first", **common)
    if len(full_train) != len(ids):
        raise PtkError(f"{data}: dataset has {len(full_train)} rows but the id column {len(ids)}")
    return _Subset(full_train, train_idx), _Subset(full_val, val_idx), "hash"


def _checkpoint_path(run_dir: Path, checkpoint: str) -> Path:
    if checkpoint in ("best", "last"):
        return runs.checkpoint_path(run_dir, checkpoint)
    return Path(checkpoint)


def load_run_model(run_dir: str | os.PathLike[str], checkpoint: str = "best", device: Any = "cpu"):
    """(task, EMA model in eval mode, config dict) of a run folder written by ``ptk train``."""
    import torch

    from ptk.models.optim import load_checkpoint
    from ptk.models.tasks import get_task

    run_dir = Path(run_dir)
    config = runs.read_config(run_dir)
    task = get_task(config["version"], config["size"], config.get("overrides", {}))
    path = _checkpoint_path(run_dir, checkpoint)
    if checkpoint == "best" and not path.is_file():
        path = _checkpoint_path(run_dir, "last")
    state = load_checkpoint(path, map_location=device)
    torch.manual_seed(0)
    model = task.build_model()
    model.load_state_dict(state["ema"]["module"] if "ema" in state else state["model"])
    model.to(device).eval()
    log.info("loaded EMA weights of %s (epoch %s) from %s", config["version"], state.get("epoch"), path)
    return task, model, config
