"""The run's tables as the trainer keeps them: ``metrics.csv`` (one row per finished epoch) and
``grad_cosine.csv`` (the gradient agreement of the loss terms every ``grad_cosine_every`` steps).
Their format (columns, cells, truncation on resume) is :mod:`ptk.runs`'s; this module adds what
a distributed run needs: the header fixed on every rank, and rank 0 alone writing.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import Tensor

from ptk import runs
from ptk.models.trainer.parallel import DistInfo, RunningMean, rank0_object
from ptk.runs import GRAD_COSINE_NAME, METRIC_TAIL, METRICS_NAME
from ptk.runs import metrics_row as epoch_row

__all__ = ["GRAD_COSINE_NAME", "METRIC_TAIL", "METRICS_NAME", "MetricsLog", "epoch_row"]

log = logging.getLogger("ptk.train")


class MetricsLog:
    """``metrics.csv`` and ``grad_cosine.csv`` of the run folder ``run_dir``.

    The header is fixed by the first row a run writes (on every rank: it also fixes the loss
    terms each rank reduces) and travels in the checkpoint, so a resumed run keeps its columns.
    Only rank 0 touches the files.
    """

    def __init__(self, run_dir: Path, info: DistInfo) -> None:
        self.run_dir = run_dir
        self.path = runs.metrics_path(run_dir)
        self.cosine_path = runs.grad_cosine_path(run_dir)
        self.info = info
        self.header: list[str] | None = None

    def discard(self) -> None:
        """Delete both tables: rows of a run that stopped before its first checkpoint are not
        the new run's."""
        if self.info.main:
            runs.discard_tables(self.run_dir)

    def truncate(self, last_epoch: int, last_step: int) -> None:
        """Drop rows of epochs after the checkpoint (a run killed between the metrics row and
        the checkpoint would otherwise write that epoch twice), and gradient-agreement rows of
        steps after it."""
        if self.info.main:
            runs.truncate_metrics(self.run_dir, last_epoch)
            runs.truncate_cosines(self.run_dir, last_step)

    def term_names(self, terms: RunningMean) -> list[str]:
        """The loss terms to reduce, ``loss`` first: the header's once it is fixed, else rank 0's
        order of ``terms`` (every rank must reduce the same list)."""
        if self.header is not None:
            return ["loss"] + runs.loss_terms(self.header)
        names = terms.order if terms.order else ["loss"]
        return rank0_object(self.info, names)

    def append(self, row: dict[str, Any]) -> None:
        """Append ``row`` under the header (written first into an empty file), fsynced; columns
        the header lacks are dropped with a warning."""
        if self.header is None:
            self.header = list(row)
        if not self.info.main:
            return
        dropped = runs.append_metrics(self.run_dir, self.header, row)
        if dropped:
            log.warning("metrics columns not in the header (dropped): %s", ", ".join(dropped))

    def append_cosines(self, epoch: int, step: int, names: list[str], cosine: Tensor, norms: Tensor) -> None:
        """Append one ``grad_cosine.csv`` row per pair of loss terms: the cosine of their
        gradients (``cosine[a, b]``) and each gradient's norm."""
        pairs = [
            (names[a], names[b], float(cosine[a, b]), float(norms[a]), float(norms[b]))
            for a in range(len(names))
            for b in range(a + 1, len(names))
        ]
        runs.append_cosines(self.run_dir, epoch, step, pairs)
