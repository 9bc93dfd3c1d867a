"""The run's CSV tables (``docs/run-folder.md``): ``metrics.csv`` (one row per finished epoch),
``grad_cosine.csv`` (the gradient agreement of the loss terms) and the scores of a sampling
(``eval.csv``, ``summary/samples.csv``). Python ``csv`` defaults (comma, CRLF line ends).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ptk.errors import PtkError
from ptk.files import atomic_writer
from ptk.runs.config import read_config
from ptk.runs.layout import (
    EVAL_COLUMNS,
    METRICS_NAME,
    PathLike,
    config_path,
    grad_cosine_path,
    metrics_path,
)

__all__ = [
    "COSINE_HEADER",
    "METRIC_TAIL",
    "append_cosines",
    "append_metrics",
    "discard_tables",
    "loss_terms",
    "metrics_row",
    "read_grad_cosines",
    "read_metrics",
    "truncate_cosines",
    "truncate_metrics",
    "write_eval_csv",
]

#: Columns after the loss terms, fixed for every family.
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

#: The columns of ``grad_cosine.csv``, one row per pair of loss terms.
COSINE_HEADER: tuple[str, ...] = ("epoch", "step", "term_a", "term_b", "cosine", "norm_a", "norm_b")


def _csv_num(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.7g}"


def _csv_cell(value: Any) -> Any:
    return value if isinstance(value, str | int) else _csv_num(value)


def metrics_row(
    epoch: int,
    train: Mapping[str, Any],
    val: Mapping[str, Any] | None,
    sampled: Mapping[str, float] | None,
    *,
    status: str,
    wall: float,
    lr: float,
    clip: Sequence[str],
    grad_norms: Mapping[str, Sequence[float]],
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


def loss_terms(header: Sequence[str]) -> list[str]:
    """The loss terms of a ``metrics.csv`` header: its ``train_<term>`` columns but
    ``train_loss``, in order."""
    return [c[len("train_") :] for c in header if c.startswith("train_") and c != "train_loss"]


def _append_rows(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Append ``rows`` to the CSV at ``path``, ``header`` first when the file is new or empty,
    flushed and fsynced."""
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(list(header))
        writer.writerows(rows)
        handle.flush()
        os.fsync(handle.fileno())


def append_metrics(run: PathLike, header: Sequence[str], row: Mapping[str, Any]) -> list[str]:
    """Append ``row`` to ``RUN/metrics.csv`` under ``header`` (written first into a new or empty
    file); columns the header lacks are empty. Returns the keys of ``row`` the header lacks
    (dropped: the caller says so)."""
    _append_rows(metrics_path(run), header, [[_csv_cell(row.get(col)) for col in header]])
    return [k for k in row if k not in header]


def append_cosines(
    run: PathLike, epoch: int, step: int, pairs: Iterable[tuple[str, str, float, float, float]]
) -> None:
    """Append ``(term_a, term_b, cosine, norm_a, norm_b)`` rows of optimizer step ``step`` to
    ``RUN/grad_cosine.csv`` (:data:`COSINE_HEADER`)."""
    rows = ([epoch, step, a, b, *map(_csv_num, values)] for a, b, *values in pairs)
    _append_rows(grad_cosine_path(run), COSINE_HEADER, rows)


def _drop_rows_after(path: Path, column: int, limit: int) -> None:
    """Rewrite the CSV at ``path`` (header kept, temporary file and rename) without the rows
    whose integer ``column`` is above ``limit``; nothing to do without the file or such rows."""
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


def truncate_metrics(run: PathLike, last_epoch: int) -> None:
    """Drop the ``metrics.csv`` rows of epochs after ``last_epoch`` (resume: a run killed between
    the row and the checkpoint would otherwise log that epoch twice)."""
    _drop_rows_after(metrics_path(run), 0, last_epoch)


def truncate_cosines(run: PathLike, last_step: int) -> None:
    """Drop the ``grad_cosine.csv`` rows of optimizer steps after ``last_step``."""
    _drop_rows_after(grad_cosine_path(run), 1, last_step)


def discard_tables(run: PathLike) -> None:
    """Delete ``metrics.csv`` and ``grad_cosine.csv`` (a fresh run: rows of a run that stopped
    before its first checkpoint are not its own)."""
    metrics_path(run).unlink(missing_ok=True)
    grad_cosine_path(run).unlink(missing_ok=True)


def _read_csv(path: Path):
    import pandas as pd

    return pd.read_csv(path)


def read_metrics(run: PathLike):
    """``metrics.csv`` of a run folder (or the CSV itself) as a DataFrame, with its label
    (``frame.attrs["label"]``): the ``version`` of the run's ``config.json`` when present, else
    the folder name.

    Raises:
        PtkError: no such file.
    """
    path = Path(run)
    table = metrics_path(path) if path.is_dir() else path
    if not table.is_file():
        raise PtkError(f"{path}: no {METRICS_NAME}")
    frame = _read_csv(table)
    label = table.parent.name
    if config_path(table.parent).is_file():
        try:
            label = str(read_config(table.parent).get("version") or label)
        except PtkError:
            pass
    frame.attrs["label"] = label
    return frame


def read_grad_cosines(run: PathLike):
    """``RUN/grad_cosine.csv`` as a DataFrame, or None when the run has none."""
    path = grad_cosine_path(run)
    return _read_csv(path) if path.is_file() else None


def write_eval_csv(path: PathLike, rows: Sequence[Mapping[str, Any]]) -> None:
    """The scores CSV of a sampling (:data:`EVAL_COLUMNS`, floats ``%.6g``), rewritten in place
    (not atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = list(EVAL_COLUMNS)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=cols)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k]) for k in cols})
