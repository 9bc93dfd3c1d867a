"""The run's tables: ``metrics.csv`` (one row per finished epoch) and ``grad_cosine.csv`` (the
gradient agreement of the loss terms every ``grad_cosine_every`` steps). This module writes them
and cuts them back on resume; their columns are the contract of ``docs/run-folder.md``.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from ptk.files import atomic_writer
from ptk.models.trainer.parallel import DistInfo, RunningMean, rank0_object

__all__ = ["GRAD_COSINE_NAME", "METRIC_TAIL", "METRICS_NAME", "MetricsLog", "epoch_row"]

log = logging.getLogger("ptk.train")

#: The per-epoch table (``docs/run-folder.md``).
METRICS_NAME = "metrics.csv"

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

_COSINE_HEADER = ("epoch", "step", "term_a", "term_b", "cosine", "norm_a", "norm_b")


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


def epoch_row(
    epoch: int,
    train: dict[str, Any],
    val: dict[str, Any] | None,
    sampled: dict[str, float] | None,
    *,
    status: str,
    wall: float,
    lr: float,
    clip: Sequence[str],
    grad_norms: dict[str, list[float]],
    extra_columns: Iterable[str],
) -> dict[str, Any]:
    """The ``metrics.csv`` row of an epoch, column name -> value: the loss terms (train, then
    val), :data:`METRIC_TAIL`, each clip entry's mean pre-clip gradient norm, the family extras.

    ``train`` and ``val`` are the loop's and the validation's summaries (``loss``, ``terms``,
    validation's ``extras``), ``sampled`` the DDIM hook's, ``grad_norms`` the optimizer step's
    clip entry -> [sum, count].
    """
    row: dict[str, Any] = {"epoch": epoch}
    for name, value in train["terms"].items():
        row[f"train_{name}"] = value
    for name in train["terms"]:
        row[f"val_{name}"] = val["terms"].get(name) if val else None
    row["train_loss"] = train["loss"]
    row["val_loss"] = val["loss"] if val else None
    row["lr"] = lr
    row["skipped_batches"] = train["skipped"]
    row["wall_time_s"] = wall
    row["status"] = status
    sampled = sampled or {}
    row["ddim_tm"] = sampled.get("tm")
    row["ddim_tm_se"] = sampled.get("tm_se")
    row["ddim_rmsd"] = sampled.get("rmsd")
    row["ddim_gdt_ts"] = sampled.get("gdt_ts")
    # the epoch's mean pre-clip gradient norm of each clip entry (the page's per-module norms)
    for key in clip:
        name = key if key != "*" else ("rest" if len(clip) > 1 else "all")
        total, count = grad_norms.get(key, (0.0, 0))
        row[f"grad_norm_{name}"] = total / count if count else None
    extras = (val or {}).get("extras", {})
    for name in extra_columns:
        row[name] = extras.get(name)
    return row


class MetricsLog:
    """``metrics.csv`` and ``grad_cosine.csv`` of the run folder ``run_dir``.

    The header is fixed by the first row a run writes (on every rank: it also fixes the loss
    terms each rank reduces) and travels in the checkpoint, so a resumed run keeps its columns.
    Only rank 0 touches the files.
    """

    def __init__(self, run_dir: Path, info: DistInfo) -> None:
        self.path = run_dir / METRICS_NAME
        self.cosine_path = run_dir / GRAD_COSINE_NAME
        self.info = info
        self.header: list[str] | None = None

    def discard(self) -> None:
        """Delete both tables: rows of a run that stopped before its first checkpoint are not
        the new run's."""
        if self.info.main:
            self.path.unlink(missing_ok=True)
            self.cosine_path.unlink(missing_ok=True)

    def truncate(self, last_epoch: int, last_step: int) -> None:
        """Drop rows of epochs after the checkpoint (a run killed between the metrics row and
        the checkpoint would otherwise write that epoch twice), and gradient-agreement rows of
        steps after it."""
        if self.info.main:
            _drop_rows_after(self.path, 0, last_epoch)
            _drop_rows_after(self.cosine_path, 1, last_step)

    def term_names(self, terms: RunningMean) -> list[str]:
        """The loss terms to reduce, ``loss`` first: the header's once it is fixed, else rank 0's
        order of ``terms`` (every rank must reduce the same list)."""
        if self.header is not None:
            known = [c[len("train_") :] for c in self.header if c.startswith("train_") and c != "train_loss"]
            return ["loss"] + known
        names = terms.order if terms.order else ["loss"]
        return rank0_object(self.info, names)

    def append(self, row: dict[str, Any]) -> None:
        """Append ``row`` under the header (written first into an empty file), fsynced; columns
        the header lacks are dropped with a warning."""
        if self.header is None:
            self.header = list(row)
        if not self.info.main:
            return
        new = not self.path.exists() or self.path.stat().st_size == 0
        dropped = [k for k in row if k not in self.header]
        if dropped:
            log.warning("metrics columns not in the header (dropped): %s", ", ".join(dropped))
        with open(self.path, "a", newline="") as handle:
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

    def append_cosines(self, epoch: int, step: int, names: list[str], cosine: Tensor, norms: Tensor) -> None:
        """Append one ``grad_cosine.csv`` row per pair of loss terms: the cosine of their
        gradients (``cosine[a, b]``) and each gradient's norm."""
        new = not self.cosine_path.exists() or self.cosine_path.stat().st_size == 0
        with open(self.cosine_path, "a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(list(_COSINE_HEADER))
            for a in range(len(names)):
                for b in range(a + 1, len(names)):
                    values = (float(cosine[a, b]), float(norms[a]), float(norms[b]))
                    writer.writerow([epoch, step, names[a], names[b], *map(_csv_num, values)])
