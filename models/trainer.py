"""The model-agnostic training engine: epochs of gradient-accumulated AdamW steps with EMA,
validation on the EMA weights, periodic DDIM sampling, ``metrics.csv`` rows and atomic
checkpoints that ``resume`` continues exactly.

What a model family must provide is a :class:`ptk.models.tasks.Task` (loss, optional extras,
optional sampler); this module never looks inside a model. The run-folder layout it writes is
the contract in ``docs/run-folder.md`` (config.json is written by the pipeline, the rest here).

Data parallelism: under ``torchrun`` (``WORLD_SIZE > 1``) every rank reads its shard of the data
through a ``DistributedSampler`` and the accumulated gradients are averaged with one bucketed
``all_reduce`` per optimizer step. This is what ``DistributedDataParallel`` computes, done by hand
because (1) the model families call sub-modules directly inside their loss functions
(self-conditioning passes, CFG's unconditional branch, the frozen encoder), so the forward does not
go through a wrapper's ``__call__``; (2) those branches leave parameters unused on some steps,
which DDP's reducer rejects without ``find_unused_parameters``; and (3) a NaN micro-batch must be
dropped on every rank without a hung collective. Only rank 0 writes files.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ptk.files import atomic_writer
from ptk.models.optim import (
    EMA,
    TrainConfig,
    atomic_save,
    build_optimizer,
    build_scheduler,
    capture_rng,
    check_modules,
    clip_by_module,
    gradient_cosines,
    load_checkpoint,
    module_grad_norm,
    restore_rng,
)

__all__ = ["DistInfo", "Trainer", "setup_distributed", "to_device", "METRIC_TAIL"]

log = logging.getLogger("ptk.train")

#: The gradient-agreement table of ``grad_cosine_every`` (``docs/run-folder.md``).
GRAD_COSINE_NAME = "grad_cosine.csv"

#: Columns after the loss terms, fixed for every family (``docs/run-folder.md``).
METRIC_TAIL: tuple[str, ...] = (
    "train_loss",
    "val_loss",
    "lr",
    "skipped_batches",
    "wall_time_s",
    "status",
    "ddim_tm",
    "ddim_tm_se",
    "ddim_rmsd",
    "ddim_gdt_ts",
)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a ``torchrun`` job (rank 0 of 1 without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: torch.device) -> DistInfo:
    """Join the ``torchrun`` process group when ``WORLD_SIZE > 1`` (NCCL on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors of a collated batch moved to ``device``; everything else (ids) kept."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in batch.items()}


def _drop_rows_after(path: Path, column: int, limit: int) -> None:
    """Rewrite the CSV at ``path`` (header kept) without the rows whose integer ``column`` is
    above ``limit``; nothing to do without the file or such rows."""
    if not path.exists():
        return
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return
    keep = [rows[0]] + [r for r in rows[1:] if r and int(r[column]) <= limit]
    if len(keep) != len(rows):
        with atomic_writer(path, "w", newline="") as handle:
            csv.writer(handle).writerows(keep)


def _csv_num(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.7g}"


@dataclass
class _Mean:
    """Example-weighted running means of named scalars."""

    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, float] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)

    def add(self, name: str, value: float, weight: float = 1.0) -> None:
        if name not in self.sums:
            self.sums[name], self.counts[name] = 0.0, 0.0
            self.order.append(name)
        self.sums[name] += float(value) * weight
        self.counts[name] += weight

    def reduce(
        self, info: DistInfo, device: torch.device, names: list[str] | None = None
    ) -> dict[str, float]:
        """Means over every rank (names fixed by ``names`` or this rank's order)."""
        names = list(names if names is not None else self.order)
        if info.world_size > 1:
            packed = torch.tensor(
                [[self.sums.get(n, 0.0), self.counts.get(n, 0.0)] for n in names],
                dtype=torch.float64,
                device=device,
            )
            dist.all_reduce(packed)
            return {
                n: (s / c if c > 0 else float("nan"))
                for n, (s, c) in zip(names, packed.tolist(), strict=True)
            }
        return {n: (self.sums[n] / self.counts[n] if self.counts.get(n) else float("nan")) for n in names}


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
        self.info = dist_info or DistInfo()
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.metrics_path = self.run_dir / "metrics.csv"
        self.config = dict(config or {})
        if self.info.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.train_set, self.val_set = train_set, val_set

        self.model = model.to(device)
        check_modules(self.model, [k for k in cfg.clip if k != "*"], "clip")
        if cfg.tripwire_module:
            check_modules(self.model, [cfg.tripwire_module], "tripwire_module")
        self.optimizer = build_optimizer(self.model, cfg)
        self.train_sampler = DistributedSampler(
            train_set, num_replicas=self.info.world_size, rank=self.info.rank, shuffle=True, seed=cfg.seed
        )
        self.train_loader = DataLoader(
            train_set,
            batch_size=cfg.batch_size,
            sampler=self.train_sampler,
            collate_fn=task.collate,
            num_workers=cfg.num_workers,
            persistent_workers=False,
        )
        self.val_loader = None
        if val_set is not None and len(val_set) > 0:
            # every validation example exactly once over the ranks (DistributedSampler would pad
            # with repeats); the means are all-reduced as (sum, count) pairs
            val_sampler = list(range(self.info.rank, len(val_set), self.info.world_size))
            self.val_loader = DataLoader(
                val_set,
                batch_size=cfg.batch_size,
                sampler=val_sampler,
                collate_fn=task.collate,
                num_workers=cfg.num_workers,
            )
        self.steps_per_epoch = max(1, math.ceil(len(self.train_loader) / cfg.grad_accum))
        self.scheduler = build_scheduler(self.optimizer, cfg, self.steps_per_epoch)
        self.ema = EMA(self.model, cfg.ema_decay, cfg.ema_warmup)
        use_bf16 = cfg.amp == "bf16" or (cfg.amp == "auto" and device.type == "cuda")
        self.amp_dtype = torch.float16 if cfg.amp == "fp16" else torch.bfloat16 if use_bf16 else None
        # fp16's dynamic loss scale (disabled: scale() and the checks below are no-ops)
        self.scaler = torch.amp.GradScaler(
            device.type, init_scale=cfg.fp16_init_scale, enabled=cfg.amp == "fp16"
        )

        # progress state (all of it goes into the checkpoint)
        self.epoch = 0  # last finished epoch
        self.global_step = 0
        self.best_val = float("inf")
        self.best_epoch = 0
        self.patience_count = 0
        self.low_grad_streak = 0
        self.halt_low_total = 0
        #: clip entry -> [sum, count] of its pre-clip gradient norm over this epoch's steps
        self.grad_norms: dict[str, list[float]] = {}
        self.halted: str | None = None
        self.header: list[str] | None = None
        if resume:
            self._load(*self._resume_checkpoint())
        else:
            self._seed()
            if self.info.main:  # rows of a run that stopped before its first checkpoint: not ours
                self.metrics_path.unlink(missing_ok=True)
                (self.run_dir / GRAD_COSINE_NAME).unlink(missing_ok=True)
            if self.info.world_size > 1:  # every rank starts from rank 0's weights
                for tensor in list(self.model.parameters()) + list(self.model.buffers()):
                    dist.broadcast(tensor.data, src=0)
                self.ema = EMA(self.model, cfg.ema_decay, cfg.ema_warmup)

    # ------------------------------------------------------------------ state

    def _seed(self) -> None:
        import random

        import numpy as np

        seed = self.cfg.seed + 1000 * self.info.rank
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "global_step": self.global_step,
            "best_val": self.best_val,
            "best_epoch": self.best_epoch,
            "patience_count": self.patience_count,
            "tripwire": {"low_streak": self.low_grad_streak, "halt_total": self.halt_low_total},
            "loss_scaler": self.scaler.state_dict(),  # {} unless amp = fp16
            # RNG at the epoch boundary; the sampler reseeds from (seed, epoch) so it needs no state.
            "rng": capture_rng(),
            "sampler": {"seed": self.cfg.seed, "epoch": self.epoch + 1},
            "config": self.config,
            "metrics_header": self.header,
            "world_size": self.info.world_size,
        }

    def _resume_checkpoint(self) -> tuple[Path, dict[str, Any]]:
        """``last.pt``, or ``best.pt`` when ``last.pt`` is missing or unreadable (atomic saves
        make that a damaged disk, not a killed process; the run then resumes from the best epoch
        and its later metrics rows are dropped)."""
        from ptk.errors import PtkError

        last, best = self.ckpt_dir / "last.pt", self.ckpt_dir / "best.pt"
        try:
            return last, load_checkpoint(last, map_location=self.device)
        except PtkError as exc:
            if not best.is_file():
                raise
            log.warning("%s; resuming from %s instead", exc, best)
            return best, load_checkpoint(best, map_location=self.device)

    def _load(self, path: Path, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.best_val = float(state["best_val"])
        self.best_epoch = int(state.get("best_epoch", 0))
        self.patience_count = int(state["patience_count"])
        self.low_grad_streak = int(state["tripwire"]["low_streak"])
        self.halt_low_total = int(state["tripwire"]["halt_total"])
        self.header = state.get("metrics_header")
        if self.scaler.is_enabled() and state.get("loss_scaler"):
            self.scaler.load_state_dict(state["loss_scaler"])
        if int(state.get("world_size", 1)) == self.info.world_size:
            restore_rng(state.get("rng_by_rank", [state["rng"]] * self.info.world_size)[self.info.rank])
        else:
            log.warning("resuming with a different world size: RNG streams are reseeded")
            self._seed()
        if self.info.main:
            self._truncate_metrics(self.epoch)
        log.info("resumed from %s at epoch %d (step %d)", path, self.epoch, self.global_step)

    def _truncate_metrics(self, last_epoch: int) -> None:
        """Drop rows of epochs after the checkpoint (a run killed between the metrics row and
        the checkpoint would otherwise write that epoch twice), and gradient-agreement rows of
        steps after it."""
        _drop_rows_after(self.metrics_path, 0, last_epoch)
        _drop_rows_after(self.run_dir / GRAD_COSINE_NAME, 1, self.global_step)

    def save(self, best: bool) -> None:
        rng = capture_rng()
        if self.info.world_size > 1:  # every rank's streams, so a resumed job continues each of them
            gathered: list[Any] = [None] * self.info.world_size
            dist.all_gather_object(gathered, rng)
        if self.info.main:
            state = self.state_dict()
            if self.info.world_size > 1:
                state["rng_by_rank"] = gathered
            atomic_save(state, self.ckpt_dir / "last.pt")
            if best:
                atomic_save(state, self.ckpt_dir / "best.pt")
        if self.info.world_size > 1:  # no rank runs ahead of a checkpoint (e.g. into a resume)
            dist.barrier()

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
            val = self._validate(epoch)
            sampled = self._maybe_sample(epoch)
            val_loss = val.get("loss", float("nan")) if val else train["loss"]
            if math.isfinite(val_loss) and val_loss < self.best_val:
                self.best_val, self.best_epoch, self.patience_count = val_loss, epoch, 0
                status, best = "NEW BEST", True
            else:
                self.patience_count += 1
                status, best = f"pat {self.patience_count}", False
            if cfg.patience and self.patience_count >= cfg.patience:
                status = "EARLY STOP"
                self.halted = "early stop"
            if self.halted and status != "EARLY STOP":
                status = f"HALT ({self.halted})"
            self.epoch = epoch
            row = self._row(epoch, train, val, sampled, status, time.perf_counter() - start)
            self._append_row(row)
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

    def _autocast(self):
        if self.amp_dtype is None:
            return torch.autocast(device_type=self.device.type, enabled=False)
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _all_true(self, flag: bool) -> bool:
        if self.info.world_size == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return bool(t.item() > 0)

    def _batches(self, epoch: int) -> Iterator[dict[str, Any]]:
        self.train_sampler.set_epoch(epoch)
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch)
        for batch in self.train_loader:
            yield to_device(batch, self.device)

    def _train_epoch(self, epoch: int) -> dict[str, Any]:
        from tqdm.auto import tqdm

        cfg = self.cfg
        self.model.train()
        self.grad_norms = {}
        params = [p for p in self.model.parameters() if p.requires_grad]
        acc: list[Tensor] | None = None
        n_good = 0
        n_micro = 0
        skipped = 0
        terms = _Mean()
        total = len(self.train_loader)
        bar = tqdm(
            self._batches(epoch),
            total=total,
            desc=f"epoch {epoch}",
            leave=False,
            # a bar only on an interactive terminal: in logs and CI it would be noise
            disable=not (self.info.main and cfg.progress and sys.stderr.isatty()),
            dynamic_ncols=True,
            mininterval=0.5,
        )
        for i, batch in enumerate(bar):
            n_micro += 1
            with self._autocast():
                loss, parts = self.task.loss(
                    self.model, batch, epoch=epoch, step=self.global_step, training=True
                )
            ok = self._all_true(bool(torch.isfinite(loss).item()))
            if ok:
                self.scaler.scale(loss.float()).backward()
                grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
                # a finite loss can still give inf/NaN gradients (bf16 overflow): check them too;
                # under fp16 the loss scaler checks the accumulated step instead (and backs off)
                if not self.scaler.is_enabled():
                    finite = bool(torch.isfinite(torch.stack(torch._foreach_norm(grads)).sum()))
                    ok = self._all_true(finite)
            if ok:
                if acc is None:
                    # the gradients themselves become the accumulator: zero_grad(set_to_none)
                    # below only drops the parameters' references to them (no copy)
                    acc = [g.detach() if g.dtype == torch.float32 else g.detach().float() for g in grads]
                else:
                    torch._foreach_add_(acc, [g.float() for g in grads])
                n_good += 1
                size = float(batch["length"].shape[0]) if "length" in batch else 1.0
                # one device sync for the loss and all its terms
                values = torch.stack(
                    [loss.detach().float()]
                    + [
                        torch.as_tensor(v, device=loss.device).detach().float().reshape(())
                        for v in parts.values()
                    ]
                )
                for name, value in zip(["loss", *parts], values.tolist(), strict=True):
                    terms.add(name, value, size)
            else:
                skipped += 1
                log.warning("epoch %d batch %d: non-finite loss or gradient, batch skipped", epoch, i)
            self.model.zero_grad(set_to_none=True)
            if n_micro == cfg.grad_accum or i == total - 1:
                before = self.global_step
                skipped += self._optimizer_step(params, acc, n_good)
                acc, n_good, n_micro = None, 0, 0
                every = cfg.grad_cosine_every
                if every and self.global_step != before and self.global_step % every == 0:
                    self._log_gradient_cosines(epoch, batch)
                if self.halted:
                    break
            if self.info.main and cfg.progress and terms.counts.get("loss"):
                bar.set_postfix(loss=f"{terms.sums['loss'] / terms.counts['loss']:.4f}", refresh=False)
        bar.close()
        means = terms.reduce(self.info, self.device, self._train_names(terms))
        skipped_t = torch.tensor([skipped], device=self.device)
        if self.info.world_size > 1:
            dist.all_reduce(skipped_t)
        return {"loss": means.pop("loss"), "terms": means, "skipped": int(skipped_t.item())}

    def _train_names(self, terms: _Mean) -> list[str]:
        if self.header is not None:
            known = [c[len("train_") :] for c in self.header if c.startswith("train_") and c != "train_loss"]
            return ["loss"] + known
        names = terms.order if terms.order else ["loss"]
        if self.info.world_size > 1:  # every rank must reduce the same list: take rank 0's
            box = [names]
            dist.broadcast_object_list(box, src=0)
            names = box[0]
        return names

    def _optimizer_step(self, params: list[nn.Parameter], acc: list[Tensor] | None, n_good: int) -> int:
        """Average the accumulated gradients (over ranks too), run the tripwire, clip per module,
        step. Returns how many good micro-batches were dropped by the tripwire."""
        cfg = self.cfg
        count = torch.tensor([float(n_good)], device=self.device)
        if self.info.world_size > 1:
            dist.all_reduce(count)
        n_total = float(count.item())
        if n_total == 0 or acc is None and self.info.world_size == 1:
            return 0
        if acc is None:  # this rank had only bad batches; others did not
            acc = [torch.zeros_like(p, dtype=torch.float32) for p in params]
        if self.info.world_size > 1:
            flat = torch._utils._flatten_dense_tensors(acc)
            dist.all_reduce(flat)
            acc = list(torch._utils._unflatten_dense_tensors(flat, acc))
        torch._foreach_div_(acc, n_total)
        for p, g in zip(params, acc, strict=True):
            p.grad = g if g.dtype == p.dtype else g.to(p.dtype)
        if self.scaler.is_enabled() and self._overflowed():
            log.info("fp16 loss scale overflow at step %d: step skipped, scale %g", self.global_step,
                     self.scaler.get_scale())  # fmt: skip
            return n_good

        if cfg.tripwire_module:
            norm = module_grad_norm(self.model, cfg.tripwire_module)
            if not math.isfinite(norm) or norm > cfg.tripwire_max_norm:
                log.warning(
                    "tripwire: %s grad norm %.3g > %.3g at step %d, step skipped",
                    cfg.tripwire_module,
                    norm,
                    cfg.tripwire_max_norm,
                    self.global_step,
                )
                self.model.zero_grad(set_to_none=True)
                if self.scaler.is_enabled():
                    self.scaler.update()
                return n_good
            self.low_grad_streak = self.low_grad_streak + 1 if norm < cfg.tripwire_min_norm else 0
            if self.low_grad_streak >= cfg.tripwire_min_steps:
                log.warning(
                    "tripwire: %s grad norm < %.3g for %d steps, injecting N(0, %.3g^2) gradient noise",
                    cfg.tripwire_module,
                    cfg.tripwire_min_norm,
                    self.low_grad_streak,
                    cfg.tripwire_noise,
                )
                self._inject_noise(cfg.tripwire_module, cfg.tripwire_noise)
                self.low_grad_streak = 0
            if norm < cfg.halt_min_norm:
                self.halt_low_total += 1
                if self.halt_low_total >= cfg.halt_steps:
                    self.halted = (
                        f"{cfg.tripwire_module} grad norm < {cfg.halt_min_norm} for {cfg.halt_steps} steps"
                    )
                    log.error("hard halt: %s", self.halted)
        for key, norm in clip_by_module(self.model, cfg.clip).items():
            total = self.grad_norms.setdefault(key, [0.0, 0])
            total[0] += norm
            total[1] += 1
        self.scaler.step(self.optimizer)  # optimizer.step() (GradScaler disabled: a plain call)
        self.scaler.update()
        self.scheduler.step()
        self.model.zero_grad(set_to_none=True)
        self.ema.update(self.model)
        self.global_step += 1
        return 0

    def _log_gradient_cosines(self, epoch: int, batch: dict[str, Any]) -> None:
        """Append the cosine similarity of every pair of weighted loss terms' gradients on this
        batch to ``grad_cosine.csv`` (``grad_cosine_every``), on an RNG stream of its own so the
        run trains exactly as without it."""
        if not self.info.main or not hasattr(self.task, "loss_terms"):
            return
        gen = torch.Generator(device=self.device).manual_seed(self.cfg.seed * 104729 + self.global_step)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), self._autocast():
            terms = self.task.loss_terms(self.model, batch, epoch=epoch, generator=gen)
            if len(terms) < 2:
                return
            params = [p for p in self.model.parameters() if p.requires_grad]
            names, cosine, norms = gradient_cosines(terms, params)
        path = self.run_dir / GRAD_COSINE_NAME
        new = not path.exists() or path.stat().st_size == 0
        with open(path, "a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(["epoch", "step", "term_a", "term_b", "cosine", "norm_a", "norm_b"])
            for a in range(len(names)):
                for b in range(a + 1, len(names)):
                    values = (float(cosine[a, b]), float(norms[a]), float(norms[b]))
                    writer.writerow([epoch, self.global_step, names[a], names[b], *map(_csv_num, values)])

    def _overflowed(self) -> bool:
        """fp16: unscale the step's gradients; on inf/NaN skip the step and halve the scale
        (GradScaler's own step/update, which see the overflow unscale_ recorded)."""
        self.scaler.unscale_(self.optimizer)
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        finite = self._all_true(bool(torch.isfinite(torch.stack(torch._foreach_norm(grads)).sum())))
        if finite:
            return False
        self.scaler.step(self.optimizer)  # skipped: unscale_ recorded the overflow
        self.scaler.update()
        self.model.zero_grad(set_to_none=True)
        return True

    def _inject_noise(self, module: str, scale: float) -> None:
        from ptk.models.optim import module_matches

        gen = torch.Generator(device=self.device).manual_seed(self.cfg.seed * 7919 + self.global_step)
        for name, p in self.model.named_parameters():
            if p.grad is not None and module_matches(name, module):
                p.grad.add_(torch.randn(p.shape, generator=gen, device=p.device, dtype=p.dtype) * scale)

    # ------------------------------------------------------------------ evaluation

    def _eval_generator(self, salt: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(self.cfg.seed * 1_000_003 + salt)

    @torch.no_grad()
    def _validate(self, epoch: int) -> dict[str, Any] | None:
        """Validation losses (and family extras) of the EMA weights, with a fixed noise stream so
        epochs are comparable and training RNG is untouched."""
        if self.val_loader is None:
            return None
        model = self.ema.module
        model.eval()
        terms, extras = _Mean(), _Mean()
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.cfg.seed + 12345)
            gen = self._eval_generator(1)
            for batch in self.val_loader:
                batch = to_device(batch, self.device)
                with self._autocast():
                    loss, parts = self.task.loss(
                        model, batch, epoch=epoch, step=self.global_step, training=False, generator=gen
                    )
                    more = self.task.extras(model, batch) if hasattr(self.task, "extras") else {}
                size = float(batch["length"].shape[0]) if "length" in batch else 1.0
                if torch.isfinite(loss):
                    terms.add("loss", float(loss), size)
                    for name, value in parts.items():
                        terms.add(name, float(value), size)
                for name, (total, count) in more.items():
                    extras.add(name, float(total) / max(float(count), 1e-12), float(count))
        names = self._train_names(terms)
        means = terms.reduce(self.info, self.device, names)
        extra_names = list(getattr(self.task, "extra_columns", ()))
        extra_means = extras.reduce(self.info, self.device, extra_names) if extra_names else {}
        return {"loss": means.pop("loss"), "terms": means, "extras": extra_means}

    @torch.no_grad()
    def _maybe_sample(self, epoch: int) -> dict[str, float] | None:
        cfg = self.cfg
        if not (
            getattr(self.task, "can_sample", False) and cfg.sample_every and epoch % cfg.sample_every == 0
        ):
            return None
        if self.val_set is None or len(self.val_set) == 0 or not self.info.main:
            return None
        from ptk.errors import PtkError

        out_dir = self.run_dir / "samples" / f"epoch_{epoch:03d}"
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(cfg.seed + 54321)
            try:
                summary = self._sample_epoch(out_dir)
            except PtkError as exc:  # e.g. a diverged sample that no PDB file can hold
                log.warning("epoch %d DDIM skipped: %s", epoch, exc)
                return None
        log.info("epoch %d DDIM: %s", epoch, ", ".join(f"{k} {v:.3f}" for k, v in summary.items()))
        return summary

    def _sample_epoch(self, out_dir: Path) -> dict[str, float]:
        cfg = self.cfg
        return self.task.sample_and_evaluate(
            self.ema.module,
            self.val_set,
            out_dir,
            n=cfg.sample_n,
            steps=cfg.sample_steps,
            eta=cfg.sample_eta,
            guidance=cfg.sample_guidance,
            x0_t=cfg.x0_t,
            device=self.device,
            generator=self._eval_generator(2),
            batch_size=cfg.batch_size,
        )

    # ------------------------------------------------------------------ metrics.csv

    def _row(
        self,
        epoch: int,
        train: dict[str, Any],
        val: dict[str, Any] | None,
        sampled: dict[str, float] | None,
        status: str,
        wall: float,
    ) -> dict[str, Any]:
        row: dict[str, Any] = {"epoch": epoch}
        for name, value in train["terms"].items():
            row[f"train_{name}"] = value
        for name in train["terms"]:
            row[f"val_{name}"] = val["terms"].get(name) if val else None
        row["train_loss"] = train["loss"]
        row["val_loss"] = val["loss"] if val else None
        row["lr"] = self.optimizer.param_groups[0]["lr"]
        row["skipped_batches"] = train["skipped"]
        row["wall_time_s"] = wall
        row["status"] = status
        sampled = sampled or {}
        row["ddim_tm"] = sampled.get("tm")
        row["ddim_tm_se"] = sampled.get("tm_se")
        row["ddim_rmsd"] = sampled.get("rmsd")
        row["ddim_gdt_ts"] = sampled.get("gdt_ts")
        # the epoch's mean pre-clip gradient norm of each clip entry (the page's per-module norms)
        for key in self.cfg.clip:
            name = key if key != "*" else ("rest" if len(self.cfg.clip) > 1 else "all")
            total, count = self.grad_norms.get(key, (0.0, 0))
            row[f"grad_norm_{name}"] = total / count if count else None
        extras = (val or {}).get("extras", {})
        for name in getattr(self.task, "extra_columns", ()):
            row[name] = extras.get(name)
        return row

    def _append_row(self, row: dict[str, Any]) -> None:
        if self.header is None:
            self.header = list(row)
        if not self.info.main:
            return
        new = not self.metrics_path.exists() or self.metrics_path.stat().st_size == 0
        dropped = [k for k in row if k not in self.header]
        if dropped:
            log.warning("metrics columns not in the header (dropped): %s", ", ".join(dropped))
        with open(self.metrics_path, "a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(self.header)
            cells = []
            for col in self.header:
                value = row.get(col)
                cells.append(value if isinstance(value, str | int) else _csv_num(value))
            writer.writerow(cells)
            handle.flush()
            os.fsync(handle.fileno())
