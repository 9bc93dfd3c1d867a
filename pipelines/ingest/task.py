"""The Dask task of ``ptk ingest``: one batch of input units → rows, rejects and the task's parts.

The worker side of the pipeline: :func:`process_batch` runs the per-file core function on each
unit, and (given ``--out``) writes the task's rows as its own parts (:func:`part_layout`,
:func:`write_parts`) under temporary names for the driver to rename into place.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptk.pipelines.ingest.discovery import _sha256

__all__ = [
    "DEFAULT_SHARD_ROWS",
    "Batch",
    "Packed",
    "PartFile",
    "Unit",
    "part_layout",
    "process_batch",
    "write_parts",
]

DEFAULT_SHARD_ROWS = 1000


@dataclass(frozen=True)
class Unit:
    """One task's share of an input: the whole file, or one byte range of a large .jsonl."""

    index: int  # input number
    path: str
    chunk: int = 0
    n_chunks: int = 1
    byte_range: tuple[int, int] | None = None
    sha256: str | None = None


@dataclass
class Packed:
    """One unit's outcome as it travels back from a worker (its rows are in the batch table)."""

    unit: Unit
    n_rows: int
    rejects: list[dict[str, Any]]
    n_atoms: int
    sha256: str | None = None  # of the bytes the worker read (the run's checksum of the input)


@dataclass(frozen=True)
class PartFile:
    """A part a task wrote: a whole, fsynced Parquet file under a temporary name in ``--out``,
    made ``part-NNNNN.parquet`` by the driver when every earlier part is in place."""

    tmp: str  # file name in the output folder (hidden, ``.tmp``: a run's start sweeps leftovers)
    rows: int
    inputs: tuple[int, int]  # [first, end): the inputs whose units this part covers
    complete_through: int  # inputs complete once this part and every earlier one are in place
    boundary: bool  # the task's last part and the task ends at a file's end: a resume may cut here


@dataclass
class Batch:
    """A task's outcome: every unit's account, the rows' ids in unit order, and the rows
    themselves, either as the parts the task wrote (``parts``) or as one Arrow table (``table``)
    for the driver to write (when the workers cannot write into ``--out``)."""

    packed: list[Packed]
    ids: list[str]
    table: Any = None  # pyarrow.Table of the kind's schema, or None
    parts: list[PartFile] = field(default_factory=list)


@dataclass(frozen=True)
class _Cut:
    """One part of a task's rows: ``rows[start:stop]``, and what it covers (see PartFile)."""

    start: int
    stop: int
    inputs: tuple[int, int]
    complete_through: int
    boundary: bool


def part_layout(packed: Sequence[Packed], shard_rows: int) -> list[_Cut]:
    """How a task's rows (its units' rows, in unit order) are cut into parts of at most
    ``shard_rows`` rows. A part never spans tasks, so the layout follows from the tasks (which
    depend on the inputs and ``--shard-rows`` only, not on the workers). Within a task, a new
    file whose rows do not fit starts a new part; a unit with more rows than fit (a large
    file, a .jsonl chunk) fills parts exactly."""
    if shard_rows < 1:
        raise ValueError(f"shard_rows must be at least 1, not {shard_rows}")
    cuts: list[_Cut] = []
    if not packed:
        return cuts
    first = packed[0].unit.index  # the first part also covers the task's rejects before its rows
    start = row = 0

    def close(stop: int, complete: int, end: int, boundary: bool = False) -> None:
        nonlocal start, first
        cuts.append(_Cut(start, stop, (first, end), complete, boundary))
        start, first = stop, complete

    for p in packed:
        unit, n = p.unit, p.n_rows
        if n and row > start and row - start + n > shard_rows and unit.chunk == 0:
            close(row, unit.index, unit.index)
        while n > shard_rows - (row - start):
            head = shard_rows - (row - start)
            row, n = row + head, n - head
            close(row, unit.index, unit.index + 1)
        row += n
    last = packed[-1].unit
    whole = last.chunk == last.n_chunks - 1
    if row > start:  # always, once any unit gave rows: the last part covers the task's end
        close(row, last.index + whole, last.index + 1, whole)
    return cuts


def write_parts(
    out: str | os.PathLike[str], table: Any, packed: Sequence[Packed], shard_rows: int
) -> list[PartFile]:
    """Write a task's rows as its parts (:func:`part_layout`): each a whole Parquet file, fsynced,
    under a hidden temporary name in ``out`` that the driver renames into place in order."""
    import uuid

    from ptk.shards import store

    token = uuid.uuid4().hex
    parts = []
    for k, cut in enumerate(part_layout(packed, shard_rows)):
        name = store.temporary_name(f"task-{token}-{k:03d}.parquet")
        with store.PartWriter(Path(out) / name, table.schema) as part:
            part.write(table.slice(cut.start, cut.stop - cut.start))
            part.commit()
        parts.append(PartFile(name, cut.stop - cut.start, cut.inputs, cut.complete_through, cut.boundary))
    return parts


def process_batch(
    kind: str,
    batch: Sequence[Unit],
    labels: Any = None,
    max_length: int | None = None,
    out: str | None = None,
    shard_rows: int = DEFAULT_SHARD_ROWS,
) -> Batch:
    """Run the per-file core function on each unit of ``batch``; with ``out``, write the rows as
    the task's parts there (:func:`write_parts`), else return them as one table.

    This is the Dask task. What it writes is hidden and temporary until the driver renames it,
    so a retried or duplicated task is harmless (its files are swept at the run's end).
    """
    import numpy as np
    import pyarrow as pa
    import torch

    from ptk import features, shards

    # One core per task: parallelism is the cluster's job. Restored afterwards: the synchronous
    # scheduler runs tasks in the caller's process (ptk demo, notebooks), which trains next.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # Inference mode: no autograd bookkeeping on the many small geometry ops (same values).
        with torch.inference_mode():
            if kind == "cath":  # the chains of all the task's files get their geometry together
                files = [(unit.path, unit.byte_range, unit.sha256) for unit in batch]
                results = list(zip(batch, features.cath_files_rows(files, labels, max_length), strict=True))
            else:
                results = [(unit, features.qfit_file_rows(unit.path)) for unit in batch]
    finally:
        torch.set_num_threads(threads)
    rows = [row for _, result in results for row in result.rows]
    try:
        tables = [shards.rows_to_table(kind, rows)] if rows else []
        bad: dict[int, BaseException] = {}
    except Exception:  # noqa: BLE001 - find the file whose rows do not fit, keep the others
        tables, bad = [], {}
        for k, (_, result) in enumerate(results):
            if result.rows:
                try:
                    tables.append(shards.rows_to_table(kind, result.rows))
                except Exception as exc:  # noqa: BLE001
                    bad[k] = exc
    packed = []
    for k, (unit, result) in enumerate(results):
        rejects = [vars(r) for r in result.rejects]
        # The input's checksum, taken here (in parallel) rather than by the driver before the
        # run: from the bytes that were parsed, or hashed now for a file that could not be.
        sha = unit.sha256 or result.sha256 or _sha256(Path(unit.path))
        if k in bad:
            rejects.append(_reject_dict(unit, "write", bad[k]))
            packed.append(Packed(unit, 0, rejects, 0, sha))
            continue
        n_atoms = 0
        for row in result.rows:
            mask = row.get("atom_mask")
            if mask is None:
                mask = np.isfinite(np.asarray(row["backbone"])).all(-1)
            n_atoms += int(np.count_nonzero(mask))
        packed.append(Packed(unit, len(result.rows), rejects, n_atoms, sha))
    table = pa.concat_tables(tables) if tables else None
    ids = table.column("id").to_pylist() if table is not None else []
    if out is None or table is None:
        return Batch(packed, ids, table)
    return Batch(packed, ids, None, write_parts(out, table, packed, shard_rows))


def _reject_dict(unit: Unit, stage: str, exc: BaseException) -> dict[str, Any]:
    item = None if unit.byte_range is None else f"bytes {unit.byte_range[0]}-{unit.byte_range[1]}"
    return dict(
        input=unit.path, item=item, stage=stage, error_class=type(exc).__name__, message=str(exc) or repr(exc)
    )
