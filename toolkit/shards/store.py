"""The shard dataset folder, written and read here (its contract: ``docs/shard-folder.md``).

```
DIR/part-00000.parquet …   rows, at most --shard-rows each (a part is listed in the manifest
                           only once it is whole: written to a temporary name, then renamed)
DIR/_manifest.json         kind, schema version, ptk version, command line, options, every input
                           with its sha256 and outcome, every part with its row count
DIR/rejects.parquet        input, item, stage, error_class, message: one row per input file (or
                           chain/entry of a file) that did not become a row
```

Every file name of the folder and every byte written there go through this module: part names
and the Parquet encoding of every part, the atomic part writer, the part placement (temporary
name → ``part-NNNNN.parquet``), the manifest's keys and its writer, the rejects writer, the lock
file and the sweep of temporary files; and the readers of the manifest, the parts and the
rejects. ``ptk ingest`` (:mod:`ptk.pipelines.ingest`) decides what to write and what a resume
redoes, and calls these functions to write it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from os import PathLike
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq

from ptk import __version__
from ptk.errors import ConfigError, ShardError
from ptk.files import atomic_write, commit_temporary, temporary_beside
from ptk.shards.encoding import rejects_to_table
from ptk.shards.schema import KINDS, REJECTS_SCHEMA, SCHEMA_VERSION, schema_for

__all__ = [
    "MANIFEST_NAME",
    "REJECTS_NAME",
    "LOCK_NAME",
    "ROW_GROUP_ROWS",
    "part_name",
    "temporary_name",
    "parquet_writer",
    "PartWriter",
    "write_parquet_atomic",
    "lock",
    "sweep_temporary",
    "place_part",
    "remove_unlisted_parts",
    "timestamp",
    "part_entry",
    "totals",
    "manifest",
    "write_manifest",
    "write_rejects",
    "read_part",
    "cath_classes",
    "read_manifest",
    "part_paths",
    "read_table",
    "read_rejects",
]

MANIFEST_NAME: Final[str] = "_manifest.json"
REJECTS_NAME: Final[str] = "rejects.parquet"
#: Empty; ``flock``ed by an ingest for the length of its run (:func:`lock`).
LOCK_NAME: Final[str] = ".lock"
#: Glob of every temporary file in the folder: the names :func:`temporary_name` gives, and the
#: ``.NAME.*.tmp`` of a :mod:`ptk.files` write that was cut off.
_TEMPORARY_GLOB: Final[str] = ".*.tmp"
_PART_GLOB: Final[str] = "part-*.parquet"
#: Rows per Parquet row group: a Dataset decodes one row group per cache miss, so keep it small.
ROW_GROUP_ROWS: Final[int] = 32


def part_name(index: int) -> str:
    """``part-00007.parquet`` for part 7."""
    return f"part-{index:05d}.parquet"


def temporary_name(name: str) -> str:
    """``.NAME.tmp``: a hidden temporary file in the folder (a task's part before it is placed, a
    write-access probe). Never read as part of the dataset; :func:`sweep_temporary` deletes it."""
    return f".{name}.tmp"


def _string_column_paths(schema: pa.Schema) -> list[str]:
    """Parquet paths of the string leaves of ``schema`` (``id``, ``icode.list.element``, …)."""
    paths = []
    for f in schema:
        path, t = f.name, f.type
        while pa.types.is_list(t) or pa.types.is_fixed_size_list(t):
            path, t = f"{path}.list.element", t.value_type
        if pa.types.is_string(t):
            paths.append(path)
    return paths


def _scalar_columns(schema: pa.Schema) -> list[str]:
    """Names of the columns that are not lists (``id``, ``length``, ``split``, CATH numbers, …)."""
    nested = (pa.types.is_list, pa.types.is_fixed_size_list)
    return [f.name for f in schema if not any(test(f.type) for test in nested)]


def parquet_writer(where: str | PathLike[str] | pa.NativeFile, schema: pa.Schema) -> pq.ParquetWriter:
    """The Parquet writer of every part: zstd; dictionary encoding on string columns only;
    min/max statistics on the scalar columns only (a reader can skip row groups by ``length``
    or ``split``; a min/max over every coordinate of a row group selects nothing)."""
    return pq.ParquetWriter(
        where,
        schema,
        compression="zstd",
        use_dictionary=_string_column_paths(schema),
        write_statistics=_scalar_columns(schema),
    )


class PartWriter:
    """One Parquet part written row group by row group, made visible only when whole.

    Rows go to a temporary file beside ``path`` as they arrive (``write``), in row groups of
    ``row_group_size`` rows: the same file :func:`write_parquet_atomic` writes from the whole
    table at once. ``commit`` closes, fsyncs and renames it to ``path``; ``abort`` (or any
    exception in a ``with`` block) removes it, so a reader never sees half a part.

    Dictionary encoding is used for string columns only: on coordinates, angles and masks it
    made files larger and took half the write time (the values hardly repeat).
    """

    def __init__(
        self, path: str | PathLike[str], schema: pa.Schema, row_group_size: int = ROW_GROUP_ROWS
    ) -> None:
        self.path = Path(path)
        self.row_group_size = row_group_size
        self._tmp = temporary_beside(self.path)
        self._writer: pq.ParquetWriter | None = parquet_writer(self._tmp, schema)
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.num_rows = 0

    def write(self, table: pa.Table) -> None:
        """Add rows; every full row group among the rows so far is encoded and written now."""
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self.num_rows += table.num_rows
        if self._pending_rows >= self.row_group_size:
            rows = pa.concat_tables(self._pending)
            full = rows.num_rows - rows.num_rows % self.row_group_size
            self._writer.write_table(rows.slice(0, full), row_group_size=self.row_group_size)
            rest = rows.slice(full)
            self._pending, self._pending_rows = ([rest] if rest.num_rows else []), rest.num_rows

    def commit(self) -> None:
        """Write the last rows, then make the part visible at ``path`` (fsync + rename)."""
        try:
            if self._pending_rows:
                self._writer.write_table(pa.concat_tables(self._pending), row_group_size=self.row_group_size)
            self._writer.close()
            self._writer = None
            commit_temporary(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop the temporary file (nothing becomes visible)."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        Path(self._tmp).unlink(missing_ok=True)

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:
            self.abort()


def write_parquet_atomic(
    table: pa.Table, path: str | PathLike[str], row_group_size: int = ROW_GROUP_ROWS
) -> None:
    """Write ``table`` as Parquet at ``path`` atomically (:class:`PartWriter`: temporary file,
    fsync, rename)."""
    with PartWriter(path, table.schema, row_group_size) as part:
        part.write(table)
        part.commit()


# --------------------------------------------------------------------------------------------
# The folder as a writer keeps it: lock, temporary files, parts put in place


@contextlib.contextmanager
def lock(folder: str | PathLike[str]) -> Iterator[None]:
    """Hold the folder's lock file (:data:`LOCK_NAME`, exclusive ``flock``) for the block;
    ConfigError when another ingest holds it."""
    import fcntl

    folder = Path(folder)
    fh = open(folder / LOCK_NAME, "w")  # noqa: SIM115 - held for the whole block
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise ConfigError(f"{folder} is being written by another ptk ingest (lock held)") from exc
        yield
    finally:
        fh.close()


def sweep_temporary(folder: str | PathLike[str]) -> None:
    """Delete every temporary file in ``folder``: parts of retried or duplicated tasks, probes,
    half-written manifests and rejects (call it under :func:`lock`)."""
    for tmp in Path(folder).glob(_TEMPORARY_GLOB):
        tmp.unlink(missing_ok=True)


def place_part(folder: str | PathLike[str], tmp: str, index: int) -> str:
    """Rename the whole part written under the temporary name ``tmp`` in ``folder`` to part
    ``index``'s name (:func:`part_name`, overwriting an unlisted one); returns that name. The part
    belongs to the dataset once a manifest lists it (:func:`part_entry`)."""
    name = part_name(index)
    os.replace(Path(folder) / tmp, Path(folder) / name)
    return name


def remove_unlisted_parts(folder: str | PathLike[str], listed: Collection[str]) -> None:
    """Delete the part files whose names are not in ``listed`` (an interrupted run's leftovers)."""
    for stale in Path(folder).glob(_PART_GLOB):
        if stale.name not in listed:
            stale.unlink()


# --------------------------------------------------------------------------------------------
# The manifest and the rejects


def timestamp() -> str:
    """Now, as the manifest's ``created`` and ``updated`` hold it: UTC ISO-8601, seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def part_entry(
    file: str, rows: int, inputs: tuple[int, int], complete_through: int, boundary: bool
) -> dict[str, Any]:
    """The manifest's record of a placed part (``parts[]`` in ``docs/shard-folder.md``)."""
    return {
        "file": file,
        "rows": rows,
        "inputs": list(inputs),
        "complete_through": complete_through,
        "boundary": boundary,
    }


def totals(
    parts: Sequence[Mapping[str, Any]], inputs: Sequence[Mapping[str, Any]], cursor: int, rejects: int
) -> dict[str, int]:
    """The manifest's ``totals``: rows of the listed parts, inputs before ``cursor`` that gave
    rows, ``rejects`` rows, number of inputs."""
    return {
        "rows": sum(p["rows"] for p in parts),
        "files_with_rows": sum(1 for r in inputs[:cursor] if r.get("rows")),
        "rejects": rejects,
        "inputs": len(inputs),
    }


def manifest(
    *,
    kind: str,
    command: str,
    options: Mapping[str, Any],
    created: str,
    complete: bool,
    cursor: int,
    cursor_ends_task: bool,
    parts: Sequence[Mapping[str, Any]],
    inputs: Sequence[Mapping[str, Any]],
    rejects: int,
    skipped: Sequence[str],
) -> dict[str, Any]:
    """The ``_manifest.json`` of a dataset in this state, its keys in their order (each one's
    meaning: ``docs/shard-folder.md``); ``schema_version``, ``ptk_version`` and ``updated`` are
    this ptk's and now. ``rejects``: the rows of ``rejects.parquet``."""
    return {
        "kind": kind,
        "schema_version": SCHEMA_VERSION,
        "ptk_version": __version__,
        "command": command,
        "options": options,
        "created": created,
        "updated": timestamp(),
        "complete": complete,
        "cursor": cursor,
        "cursor_ends_task": cursor_ends_task,  # a resume may start a task there
        "totals": totals(parts, inputs, cursor, rejects),
        "parts": parts,
        "inputs": inputs,
        "skipped": skipped,
    }


def write_manifest(folder: str | PathLike[str], manifest: Mapping[str, Any]) -> None:
    """Write ``manifest`` (:func:`manifest`) as the folder's ``_manifest.json``, atomically: JSON,
    indent 1, a final newline."""
    atomic_write(Path(folder) / MANIFEST_NAME, (json.dumps(manifest, indent=1) + "\n").encode())


def write_rejects(folder: str | PathLike[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """Write ``rows`` (dicts of the ``REJECTS_SCHEMA`` columns) as the folder's ``rejects.parquet``,
    atomically, with ``pyarrow.parquet.write_table`` defaults (not the part encoding)."""
    sink = pa.BufferOutputStream()
    pq.write_table(rejects_to_table(rows), sink)
    atomic_write(Path(folder) / REJECTS_NAME, sink.getvalue().to_pybytes())


# --------------------------------------------------------------------------------------------
# Reading whole tables (tests, notebooks, analysis)


def cath_classes(path: str | PathLike[str]) -> dict[str, int]:
    """id → CATH class of the rows of the cath shard dataset at ``path`` that have one;
    ShardError for another kind (qfit rows have no CATH class)."""
    kind = read_manifest(path)["kind"]
    if kind != "cath":
        raise ShardError(f"{path}: {kind} shards have no CATH class; give a cath shard dataset")
    table = read_table(path, columns=["id", "cath_class"]).to_pydict()
    return {i: int(c) for i, c in zip(table["id"], table["cath_class"], strict=True) if c is not None}


def read_manifest(path: str | PathLike[str]) -> dict[str, Any]:
    """The ``_manifest.json`` of a shard dataset; ShardError if absent, unreadable or of a
    schema version this ptk does not read."""
    path = Path(path)
    file = path / MANIFEST_NAME
    try:
        manifest = json.loads(file.read_text())
    except FileNotFoundError as exc:
        raise ShardError(f"{path}: not a shard dataset (no {MANIFEST_NAME})") from exc
    except (OSError, ValueError) as exc:
        raise ShardError(f"{file}: unreadable manifest ({exc})") from exc
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ShardError(
            f"{path}: schema version {version}, this ptk reads version {SCHEMA_VERSION}; "
            "ingest the structures again into a new folder"
        )
    if manifest.get("kind") not in KINDS:
        raise ShardError(f"{path}: unknown shard kind {manifest.get('kind')!r}; allowed: {', '.join(KINDS)}")
    return manifest


def part_paths(path: str | PathLike[str]) -> list[Path]:
    """The parts the manifest lists (a part file the manifest does not list is not part of the
    dataset: an interrupted run may leave one behind, to be rewritten on resume)."""
    path = Path(path)
    return [path / part["file"] for part in read_manifest(path)["parts"]]


def read_part(folder: str | PathLike[str], name: str, columns: Sequence[str] | None = None) -> pa.Table:
    """The rows of one part file ``name`` in ``folder`` (a listed part, or a task's temporary one)."""
    return pq.read_table(Path(folder) / name, columns=columns)


def read_table(path: str | PathLike[str], columns: Sequence[str] | None = None) -> pa.Table:
    """Every row of a shard dataset as one Arrow table (small datasets, tests, analysis)."""
    manifest = read_manifest(path)
    schema = schema_for(manifest["kind"])
    if columns is not None:
        schema = pa.schema([schema.field(c) for c in columns], metadata=schema.metadata)
    tables = [pq.read_table(p, columns=columns) for p in part_paths(path)]
    return pa.concat_tables(tables) if tables else schema.empty_table()


def read_rejects(path: str | PathLike[str]) -> pa.Table:
    """The ``rejects.parquet`` table of a shard dataset (empty table when nothing was rejected)."""
    file = Path(path) / REJECTS_NAME
    if not file.exists():
        return REJECTS_SCHEMA.empty_table()
    return pq.read_table(file)
