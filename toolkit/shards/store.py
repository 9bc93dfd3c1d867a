"""The shard dataset folder, written and read here (its contract: ``docs/shard-folder.md``).

```
DIR/part-00000.parquet …   rows, at most --shard-rows each (a part is listed in the manifest
                           only once it is whole: written to a temporary name, then renamed)
DIR/_manifest.json         kind, schema version, ptk version, command line, options, every input
                           with its sha256 and outcome, every part with its row count
DIR/rejects.parquet        input, item, stage, error_class, message: one row per input file (or
                           chain/entry of a file) that did not become a row
```

Part names and the Parquet encoding of every part, the atomic part writer, and the readers of
the manifest, the parts and the rejects.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq

from ptk.errors import ShardError
from ptk.files import commit_temporary, temporary_beside
from ptk.shards.schema import KINDS, REJECTS_SCHEMA, SCHEMA_VERSION, schema_for

__all__ = [
    "MANIFEST_NAME",
    "REJECTS_NAME",
    "ROW_GROUP_ROWS",
    "part_name",
    "parquet_writer",
    "PartWriter",
    "write_parquet_atomic",
    "cath_classes",
    "read_manifest",
    "part_paths",
    "read_table",
    "read_rejects",
]

MANIFEST_NAME: Final[str] = "_manifest.json"
REJECTS_NAME: Final[str] = "rejects.parquet"
#: Rows per Parquet row group: a Dataset decodes one row group per cache miss, so keep it small.
ROW_GROUP_ROWS: Final[int] = 32


def part_name(index: int) -> str:
    """``part-00007.parquet`` for part 7."""
    return f"part-{index:05d}.parquet"


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
