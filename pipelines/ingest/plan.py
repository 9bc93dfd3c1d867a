"""Task planning: the inputs → units (files, or byte ranges of a large .jsonl) → tasks.

Tasks are formed from the inputs and ``--shard-rows`` alone, never from the workers, so every
cluster and every resume forms the same ones.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ptk.pipelines.ingest.discovery import _sha256
from ptk.pipelines.ingest.task import Unit

__all__ = ["JSONL_CHUNK_BYTES", "TASK_BYTES", "TASK_UNITS"]

#: Uncompressed .jsonl files larger than this are split into tasks of about this many bytes
#: (~100-200 chain_set.jsonl entries).
JSONL_CHUNK_BYTES = 4 << 20


def _units(index: int, rec: dict[str, Any]) -> list[Unit]:
    """The tasks of one input: the whole file, or byte ranges of a large .jsonl."""
    path = Path(rec["path"])
    try:
        size = path.stat().st_size
    except OSError:
        size = 0
    if not path.name.lower().endswith(".jsonl") or size <= JSONL_CHUNK_BYTES:
        return [Unit(index, rec["path"])]
    if rec["sha256"] is None:  # every chunk's task needs the whole file's checksum
        rec["sha256"] = _sha256(path)
    starts = [0]
    with path.open("rb") as fh:
        while True:
            fh.seek(starts[-1] + JSONL_CHUNK_BYTES)
            fh.readline()  # to the start of the next line
            pos = fh.tell()
            if pos >= size:
                break
            starts.append(pos)
    ranges = list(zip(starts, [*starts[1:], size], strict=True))
    return [
        Unit(index, rec["path"], k, len(ranges), byte_range=r, sha256=rec["sha256"])
        for k, r in enumerate(ranges)
    ]


#: Most units (files or .jsonl chunks) in one Dask task, and most input bytes in one task.
TASK_UNITS = 32
TASK_BYTES = 16 << 20


def _unit_bytes(unit: Unit) -> int:
    if unit.byte_range is not None:
        return unit.byte_range[1] - unit.byte_range[0]
    try:
        return os.stat(unit.path).st_size
    except OSError:
        return 0


def _batches(todo: list[Unit], shard_rows: int) -> Iterator[list[Unit]]:
    """Consecutive units grouped into tasks of at most ``TASK_UNITS`` units (and no more units
    than a part has rows) or ``TASK_BYTES`` of input. Tasks depend on the inputs and
    ``--shard-rows`` only, never on the workers: a task's rows are its own parts
    (:func:`~ptk.pipelines.ingest.task.part_layout`), so every cluster, and a resume, writes the
    same dataset. Tasks are cut greedily, so the tasks after any task boundary are the same
    wherever the cut started."""
    size = max(1, min(TASK_UNITS, shard_rows))
    batch: list[Unit] = []
    nbytes = 0
    for unit in todo:
        unit_bytes = _unit_bytes(unit)
        if batch and (len(batch) >= size or nbytes + unit_bytes > TASK_BYTES):
            yield batch
            batch, nbytes = [], 0
        batch.append(unit)
        nbytes += unit_bytes
    if batch:
        yield batch
