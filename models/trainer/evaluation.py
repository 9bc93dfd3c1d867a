"""What the loop measures besides the training loss: on the EMA weights after each epoch, the
validation losses (and the family's extra columns) and, every ``sample_every`` epochs, DDIM
samples scored against their references; on the training weights every ``grad_cosine_every``
steps, the agreement of the loss terms' gradients. Each runs on noise streams of its own, so
epochs are comparable and the training RNG is untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ptk import runs
from ptk.models.optim import TrainConfig, gradient_cosines
from ptk.models.trainer.loaders import to_device
from ptk.models.trainer.metrics_log import MetricsLog
from ptk.models.trainer.parallel import DistInfo, RunningMean

__all__ = ["Evaluation", "gradient_agreement"]

log = logging.getLogger("ptk.train")


def _fork_rng(device: torch.device) -> AbstractContextManager:
    """Global RNG state restored on exit (CPU, and ``device`` when it is a GPU)."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


def gradient_agreement(
    task: Any,
    model: nn.Module,
    batch: dict[str, Any],
    epoch: int,
    seed: int,
    step: int,
    device: torch.device,
    autocast: Callable[[], AbstractContextManager],
) -> tuple[list[str], Tensor, Tensor] | None:
    """The cosine similarity of every pair of ``task``'s weighted loss terms' gradients on
    ``batch`` (:func:`~ptk.models.optim.gradient_cosines`: names, cosine [k, k], norm [k]), on a
    noise stream seeded by (``seed``, ``step``) so the run trains exactly as without it; None for
    a task without ``loss_terms`` or with fewer than two terms."""
    if not hasattr(task, "loss_terms"):
        return None
    gen = torch.Generator(device=device).manual_seed(seed * 104729 + step)
    with _fork_rng(device), autocast():
        terms = task.loss_terms(model, batch, epoch=epoch, generator=gen)
        if len(terms) < 2:
            return None
        params = [p for p in model.parameters() if p.requires_grad]
        return gradient_cosines(terms, params)


class Evaluation:
    """Validation and the DDIM hook of one run.

    Args:
        task: the family adapter (:class:`ptk.models.tasks.Task`).
        val_loader: this rank's share of ``val_set`` (None: no validation).
        autocast: the loop's autocast context, entered around each forward.
        metrics: the run's log, whose header fixes the loss terms reduced.
    """

    def __init__(
        self,
        task: Any,
        cfg: TrainConfig,
        run_dir: Path,
        val_set: Dataset | None,
        val_loader: DataLoader | None,
        info: DistInfo,
        device: torch.device,
        autocast: Callable[[], AbstractContextManager],
        metrics: MetricsLog,
    ) -> None:
        self.task, self.cfg, self.run_dir = task, cfg, run_dir
        self.val_set, self.val_loader = val_set, val_loader
        self.info, self.device, self.autocast, self.metrics = info, device, autocast, metrics

    def _generator(self, salt: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(self.cfg.seed * 1_000_003 + salt)

    @torch.no_grad()
    def validate(self, model: nn.Module, epoch: int, step: int) -> dict[str, Any] | None:
        """Validation losses (and family extras) of ``model`` (the EMA weights), with a fixed
        noise stream; None without a validation set."""
        if self.val_loader is None:
            return None
        model.eval()
        terms, extras = RunningMean(), RunningMean()
        with _fork_rng(self.device):
            torch.manual_seed(self.cfg.seed + 12345)
            gen = self._generator(1)
            for batch in self.val_loader:
                batch = to_device(batch, self.device)
                with self.autocast():
                    loss, parts = self.task.loss(
                        model, batch, epoch=epoch, step=step, training=False, generator=gen
                    )
                    more = self.task.extras(model, batch) if hasattr(self.task, "extras") else {}
                size = float(batch["length"].shape[0]) if "length" in batch else 1.0
                if torch.isfinite(loss):
                    terms.add("loss", float(loss), size)
                    for name, value in parts.items():
                        terms.add(name, float(value), size)
                for name, (total, count) in more.items():
                    extras.add(name, float(total) / max(float(count), 1e-12), float(count))
        means = terms.reduce(self.info, self.device, self.metrics.term_names(terms))
        extra_names = list(getattr(self.task, "extra_columns", ()))
        extra_means = extras.reduce(self.info, self.device, extra_names) if extra_names else {}
        return {"loss": means.pop("loss"), "terms": means, "extras": extra_means}

    @torch.no_grad()
    def maybe_sample(self, model: nn.Module, epoch: int) -> dict[str, float] | None:
        """DDIM samples of ``model`` (the EMA weights) into ``samples/epoch_NNN/`` and their
        summary, on rank 0 every ``sample_every`` epochs for families that can sample; None
        otherwise, or when sampling fails with a :class:`~ptk.errors.PtkError` (logged)."""
        cfg = self.cfg
        if not (
            getattr(self.task, "can_sample", False) and cfg.sample_every and epoch % cfg.sample_every == 0
        ):
            return None
        if self.val_set is None or len(self.val_set) == 0 or not self.info.main:
            return None
        from ptk.errors import PtkError

        out_dir = runs.epoch_samples_dir(self.run_dir, epoch)
        with _fork_rng(self.device):
            torch.manual_seed(cfg.seed + 54321)
            try:
                summary = self._sample(model, out_dir)
            except PtkError as exc:  # e.g. a diverged sample that no PDB file can hold
                log.warning("epoch %d DDIM skipped: %s", epoch, exc)
                return None
        log.info("epoch %d DDIM: %s", epoch, ", ".join(f"{k} {v:.3f}" for k, v in summary.items()))
        return summary

    def _sample(self, model: nn.Module, out_dir: Path) -> dict[str, float]:
        cfg = self.cfg
        return self.task.sample_and_evaluate(
            model,
            self.val_set,
            out_dir,
            n=cfg.sample_n,
            steps=cfg.sample_steps,
            eta=cfg.sample_eta,
            guidance=cfg.sample_guidance,
            x0_t=cfg.x0_t,
            device=self.device,
            generator=self._generator(2),
            batch_size=cfg.batch_size,
        )
