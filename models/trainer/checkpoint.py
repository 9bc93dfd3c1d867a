"""``checkpoints/last.pt`` (after every epoch) and ``checkpoints/best.pt`` (at a new best
validation loss) of a run: the one place that writes their keys and reads them back on resume
(``docs/run-folder.md``; their names are :mod:`ptk.runs`'s). Files are written with
:func:`ptk.models.optim.atomic_save` and read with :func:`ptk.models.optim.load_checkpoint`
(``weights_only=True``: tensors and plain values, never code).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ptk.models.optim import atomic_save, capture_rng, load_checkpoint, restore_rng
from ptk.models.trainer.parallel import DistInfo, barrier, gather_from_ranks
from ptk.runs import BEST_NAME, LAST_NAME

if TYPE_CHECKING:
    from ptk.models.trainer.loop import Trainer

__all__ = ["find_resume_checkpoint", "restore_state", "save_checkpoints", "seed_rngs", "training_state"]

log = logging.getLogger("ptk.train")


def seed_rngs(seed: int, rank: int) -> None:
    """Seed torch, numpy and python for ``rank`` of a run seeded ``seed``."""
    import random

    import numpy as np

    seed = seed + 1000 * rank
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def training_state(trainer: Trainer) -> dict[str, Any]:
    """Everything a resume needs, at an epoch boundary: weights, EMA, optimizer, schedule,
    progress, tripwire counters, loss scale, RNG, the run config and the metrics header."""
    return {
        "model": trainer.model.state_dict(),
        "ema": trainer.ema.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict(),
        "epoch": trainer.epoch,
        "global_step": trainer.global_step,
        "best_val": trainer.best_val,
        "best_epoch": trainer.best_epoch,
        "patience_count": trainer.patience_count,
        "tripwire": trainer.tripwire.state_dict(),
        "loss_scaler": trainer.scaler.state_dict(),  # {} unless amp = fp16
        # RNG at the epoch boundary; the sampler reseeds from (seed, epoch) so it needs no state.
        "rng": capture_rng(),
        "sampler": {"seed": trainer.cfg.seed, "epoch": trainer.epoch + 1},
        "config": trainer.config,
        "metrics_header": trainer.metrics.header,
        "world_size": trainer.info.world_size,
    }


def restore_state(trainer: Trainer, path: Path, state: dict[str, Any]) -> None:
    """Undo :func:`training_state` (read from ``path``) into ``trainer``; RNG streams are
    reseeded instead when the world size changed. Metrics rows after the checkpoint are dropped."""
    trainer.model.load_state_dict(state["model"])
    trainer.ema.load_state_dict(state["ema"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.scheduler.load_state_dict(state["scheduler"])
    trainer.epoch = int(state["epoch"])
    trainer.global_step = int(state["global_step"])
    trainer.best_val = float(state["best_val"])
    trainer.best_epoch = int(state.get("best_epoch", 0))
    trainer.patience_count = int(state["patience_count"])
    trainer.tripwire.load_state_dict(state["tripwire"])
    trainer.metrics.header = state.get("metrics_header")
    if trainer.scaler.is_enabled() and state.get("loss_scaler"):
        trainer.scaler.load_state_dict(state["loss_scaler"])
    info = trainer.info
    if int(state.get("world_size", 1)) == info.world_size:
        restore_rng(state.get("rng_by_rank", [state["rng"]] * info.world_size)[info.rank])
    else:
        log.warning("resuming with a different world size: RNG streams are reseeded")
        seed_rngs(trainer.cfg.seed, info.rank)
    trainer.metrics.truncate(trainer.epoch, trainer.global_step)
    log.info("resumed from %s at epoch %d (step %d)", path, trainer.epoch, trainer.global_step)


def find_resume_checkpoint(folder: Path, device: torch.device) -> tuple[Path, dict[str, Any]]:
    """``last.pt`` of ``folder``, or ``best.pt`` when ``last.pt`` is missing or unreadable
    (atomic saves make that a damaged disk, not a killed process; the run then resumes from the
    best epoch and its later metrics rows are dropped)."""
    from ptk.errors import PtkError

    last, best = folder / LAST_NAME, folder / BEST_NAME
    try:
        return last, load_checkpoint(last, map_location=device)
    except PtkError as exc:
        if not best.is_file():
            raise
        log.warning("%s; resuming from %s instead", exc, best)
        return best, load_checkpoint(best, map_location=device)


def save_checkpoints(trainer: Trainer, folder: Path, info: DistInfo, best: bool) -> None:
    """``last.pt`` (and ``best.pt`` when ``best``) of :func:`training_state`, by rank 0, with
    every rank's RNG streams so a resumed job continues each of them."""
    rng = capture_rng()
    if info.world_size > 1:
        gathered = gather_from_ranks(info, rng)
    if info.main:
        state = training_state(trainer)
        if info.world_size > 1:
            state["rng_by_rank"] = gathered
        atomic_save(state, folder / LAST_NAME)
        if best:
            atomic_save(state, folder / BEST_NAME)
    barrier(info)  # no rank runs ahead of a checkpoint (e.g. into a resume)
