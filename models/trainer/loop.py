"""The training loop: epochs of gradient-accumulated micro-batches, each group applied by one
:class:`~ptk.models.trainer.step.OptimizerStep` and followed by an EMA update; after each epoch
the EMA weights are evaluated, a ``metrics.csv`` row is appended and the checkpoints are saved.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from ptk import runs
from ptk.models.optim import (
    EMA,
    TrainConfig,
    build_optimizer,
    build_scheduler,
    check_modules,
)
from ptk.models.trainer.checkpoint import (
    find_resume_checkpoint,
    restore_state,
    save_checkpoints,
    seed_rngs,
    training_state,
)
from ptk.models.trainer.evaluation import Evaluation, gradient_agreement
from ptk.models.trainer.loaders import to_device, train_loader, val_loader
from ptk.models.trainer.metrics_log import MetricsLog, epoch_row
from ptk.models.trainer.parallel import DistInfo, RunningMean, all_true, broadcast_weights, sum_over_ranks
from ptk.models.trainer.step import OptimizerStep, amp_dtype, autocast, build_scaler
from ptk.models.trainer.tripwire import Tripwire

__all__ = ["Trainer"]

log = logging.getLogger("ptk.train")


def _progress_bar(batches: Iterator[dict[str, Any]], total: int, epoch: int, show: bool) -> Any:
    """A tqdm bar over ``batches`` when ``show`` and on an interactive terminal (in logs and CI
    it would be noise)."""
    from tqdm.auto import tqdm

    disable = not (show and sys.stderr.isatty())
    return tqdm(
        batches,
        total=total,
        desc=f"epoch {epoch}",
        leave=False,
        disable=disable,
        dynamic_ncols=True,
        mininterval=0.5,
    )


class Trainer:
    """One training run in ``run_dir``.

    Args:
        task: the family adapter (:class:`ptk.models.tasks.Task`).
        model: the freshly built model (weights are replaced from the checkpoint on resume).
        cfg: the resolved training recipe.
        run_dir: the run folder (created by the pipeline; ``config.json`` already written).
        train_set, val_set: map-style datasets of single examples (``task.collate`` batches them).
        device: where to train.
        resume: continue from ``run_dir/checkpoints/last.pt``.
        config: the resolved run config, stored in every checkpoint.
    """

    def __init__(
        self,
        task: Any,
        model: nn.Module,
        cfg: TrainConfig,
        run_dir: str | os.PathLike[str],
        train_set: Dataset,
        val_set: Dataset | None,
        device: torch.device,
        *,
        dist_info: DistInfo | None = None,
        resume: bool = False,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.task, self.cfg, self.device = task, cfg, device
        self.info = info = dist_info or DistInfo()
        self.run_dir = Path(run_dir)
        self.ckpt_dir = runs.checkpoints_dir(self.run_dir)
        self.config = dict(config or {})
        if info.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = MetricsLog(self.run_dir, info)
        self.train_set, self.val_set = train_set, val_set

        self.model = model.to(device)
        check_modules(self.model, [k for k in cfg.clip if k != "*"], "clip")
        if cfg.tripwire_module:
            check_modules(self.model, [cfg.tripwire_module], "tripwire_module")
        self.optimizer = build_optimizer(self.model, cfg)
        self.train_sampler, self.train_loader = train_loader(train_set, task.collate, cfg, info)
        self.val_loader = val_loader(val_set, task.collate, cfg, info)
        self.steps_per_epoch = max(1, math.ceil(len(self.train_loader) / cfg.grad_accum))
        self.scheduler = build_scheduler(self.optimizer, cfg, self.steps_per_epoch)
        self.ema = EMA(self.model, cfg.ema_decay, cfg.ema_warmup)
        self.amp_dtype = amp_dtype(cfg, device)
        self.scaler = build_scaler(cfg, device)
        self.tripwire = Tripwire(cfg, device)
        self.optimizer_step = OptimizerStep(
            self.model, self.optimizer, self.scheduler, self.scaler, self.tripwire, cfg, info, device
        )
        self.evaluation = Evaluation(
            task, cfg, self.run_dir, val_set, self.val_loader, info, device, self._autocast, self.metrics
        )

        # progress state (all of it goes into the checkpoint)
        self.epoch = 0  # last finished epoch
        self.global_step = 0
        self.best_val = float("inf")
        self.best_epoch = 0
        self.patience_count = 0
        self.halted: str | None = None
        if resume:
            restore_state(self, *find_resume_checkpoint(self.ckpt_dir, device))
        else:
            seed_rngs(cfg.seed, info.rank)
            self.metrics.discard()  # rows of a run that stopped before its first checkpoint
            if info.world_size > 1:  # every rank starts from rank 0's weights
                broadcast_weights(info, self.model)
                self.ema = EMA(self.model, cfg.ema_decay, cfg.ema_warmup)

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint's contents (:func:`~ptk.models.trainer.checkpoint.training_state`)."""
        return training_state(self)

    def save(self, best: bool) -> None:
        """Write ``last.pt`` (and ``best.pt`` when ``best``)."""
        save_checkpoints(self, self.ckpt_dir, self.info, best)

    # ------------------------------------------------------------------ loop

    def fit(self) -> dict[str, Any]:
        """Train from the epoch after the last finished one to ``cfg.epochs`` (or early stop,
        tripwire halt, ``halt_after``). Returns a summary of the run."""
        cfg = self.cfg
        ran = 0
        while self.epoch < cfg.epochs and self.halted is None:
            epoch = self.epoch + 1
            start = time.perf_counter()
            train = self._train_epoch(epoch)
            if not math.isfinite(train["loss"]) and self.halted is None:  # nothing was learned
                self.halted = (
                    f"diverged: every batch of epoch {epoch} was skipped (non-finite loss or gradient)"
                )
            val = self.evaluation.validate(self.ema.module, epoch, self.global_step)
            sampled = self.evaluation.maybe_sample(self.ema.module, epoch)
            val_loss = val.get("loss", float("nan")) if val else train["loss"]
            status, best = self._judge(epoch, val_loss)
            self.epoch = epoch
            row = epoch_row(
                epoch,
                train,
                val,
                sampled,
                status=status,
                wall=time.perf_counter() - start,
                lr=self.optimizer.param_groups[0]["lr"],
                clip=list(cfg.clip),
                grad_norms=self.optimizer_step.grad_norms,
                extra_columns=getattr(self.task, "extra_columns", ()),
            )
            self.metrics.append(row)
            self.save(best)
            log.info(
                "epoch %d: train_loss %.4f val_loss %.4f lr %.3g skipped %d %s",
                epoch,
                train["loss"],
                val_loss,
                row["lr"],
                train["skipped"],
                status,
            )
            ran += 1
            if cfg.halt_after and ran >= cfg.halt_after and self.epoch < cfg.epochs:
                log.info(
                    "halt_after=%d reached: stopping at epoch %d (resume to continue)", cfg.halt_after, epoch
                )
                break
        return {
            "epochs": self.epoch,
            "best_epoch": self.best_epoch,
            "best_val": self.best_val,
            "halted": self.halted,
            "steps": self.global_step,
        }

    def _judge(self, epoch: int, val_loss: float) -> tuple[str, bool]:
        """The epoch's ``status`` column and whether it is a new best (updating the best and
        patience counters, and ``halted`` on early stop)."""
        if math.isfinite(val_loss) and val_loss < self.best_val:
            self.best_val, self.best_epoch, self.patience_count = val_loss, epoch, 0
            status, best = "NEW BEST", True
        else:
            self.patience_count += 1
            status, best = f"pat {self.patience_count}", False
        if self.cfg.patience and self.patience_count >= self.cfg.patience:
            status = "EARLY STOP"
            self.halted = "early stop"
        if self.halted and status != "EARLY STOP":
            status = f"HALT ({self.halted})"
        return status, best

    def _autocast(self) -> AbstractContextManager:
        return autocast(self.device, self.amp_dtype)

    def _batches(self, epoch: int) -> Iterator[dict[str, Any]]:
        self.train_sampler.set_epoch(epoch)
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch)
        for batch in self.train_loader:
            yield to_device(batch, self.device)

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        cfg = self.cfg
        self.model.train()
        self.optimizer_step.grad_norms = {}
        params = [p for p in self.model.parameters() if p.requires_grad]
        acc: list[Tensor] | None = None
        n_good = n_micro = skipped = 0
        terms = RunningMean()
        total = len(self.train_loader)
        bar = _progress_bar(self._batches(epoch), total, epoch, self.info.main and cfg.progress)
        for i, batch in enumerate(bar):
            n_micro += 1
            grads = self._backward(batch, epoch, params, terms)
            if grads is not None:
                if acc is None:
                    # the gradients themselves become the accumulator: zero_grad(set_to_none)
                    # below only drops the parameters' references to them (no copy)
                    acc = [g.detach() if g.dtype == torch.float32 else g.detach().float() for g in grads]
                else:
                    torch._foreach_add_(acc, [g.float() for g in grads])
                n_good += 1
            else:
                skipped += 1
                log.warning("epoch %d batch %d: non-finite loss or gradient, batch skipped", epoch, i)
            self.model.zero_grad(set_to_none=True)
            if n_micro == cfg.grad_accum or i == total - 1:
                dropped, stepped = self.optimizer_step(params, acc, n_good, self.global_step)
                skipped += dropped
                acc, n_good, n_micro = None, 0, 0
                if stepped:
                    self.ema.update(self.model)
                    self.global_step += 1
                    every = cfg.grad_cosine_every
                    if every and self.global_step % every == 0:
                        self._log_gradient_cosines(epoch, batch)
                if self.tripwire.halted:
                    self.halted = self.tripwire.halted
                    break
            if self.info.main and cfg.progress and terms.counts.get("loss"):
                bar.set_postfix(loss=f"{terms.sums['loss'] / terms.counts['loss']:.4f}", refresh=False)
        bar.close()
        means = terms.reduce(self.info, self.device, self.metrics.term_names(terms))
        skipped_t = sum_over_ranks(self.info, torch.tensor([skipped], device=self.device))
        return {"loss": means.pop("loss"), "terms": means, "skipped": int(skipped_t.item())}

    def _backward(
        self, batch: dict[str, Any], epoch: int, params: list[nn.Parameter], terms: RunningMean
    ) -> list[Tensor] | None:
        """One micro-batch's loss and gradients (every parameter's, zeros where unused), its
        loss terms added to ``terms``; None when the loss or a gradient is not finite on any rank."""
        with self._autocast():
            loss, parts = self.task.loss(self.model, batch, epoch=epoch, step=self.global_step, training=True)
        if not all_true(self.info, self.device, bool(torch.isfinite(loss).item())):
            return None
        self.scaler.scale(loss.float()).backward()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        # a finite loss can still give inf/NaN gradients (bf16 overflow): check them too;
        # under fp16 the loss scaler checks the accumulated step instead (and backs off)
        if not self.scaler.is_enabled():
            finite = bool(torch.isfinite(torch.stack(torch._foreach_norm(grads)).sum()))
            if not all_true(self.info, self.device, finite):
                return None
        size = float(batch["length"].shape[0]) if "length" in batch else 1.0
        # one device sync for the loss and all its terms
        values = torch.stack(
            [loss.detach().float()]
            + [torch.as_tensor(v, device=loss.device).detach().float().reshape(()) for v in parts.values()]
        )
        for name, value in zip(["loss", *parts], values.tolist(), strict=True):
            terms.add(name, value, size)
        return grads

    def _log_gradient_cosines(self, epoch: int, batch: dict[str, Any]) -> None:
        """Rank 0: the gradient agreement of this batch's loss terms into ``grad_cosine.csv``."""
        if not self.info.main:
            return
        agreement = gradient_agreement(
            self.task, self.model, batch, epoch, self.cfg.seed, self.global_step, self.device, self._autocast
        )
        if agreement is not None:
            self.metrics.append_cosines(epoch, self.global_step, *agreement)
