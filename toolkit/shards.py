"""Shard datasets: the versioned Arrow schemas of both kinds, writing them, and reading them back.

A shard dataset is a folder (``../shared/DESIGN.md`` "Shards"):

```
DIR/part-00000.parquet …   rows, at most --shard-rows each (a part is listed in the manifest
                           only once it is whole: written to a temporary name, then renamed)
DIR/_manifest.json         kind, schema version, ptk version, command line, options, every input
                           with its sha256 and outcome, every part with its row count
DIR/rejects.parquet        input, item, stage, error_class, message: one row per input file (or
                           chain/entry of a file) that did not become a row
```

Column names are the public ones of DESIGN.md "Shard columns", plus ``aatype`` (residue index,
0..20) and quality fields. Per-residue columns are Arrow lists over residues; per-altloc qfit
columns are lists over residues of lists over that residue's conformers (``n_obs`` long).
Coordinates are fixed-size lists of float32 (NaN where missing); codes are int8/int16.

Readers (:class:`CathDataset`, :class:`QfitDataset`) are torch Datasets that decode one Parquet
row group at a time straight from Arrow buffers (no pandas), crop to ``max_length`` and return
one chain's tensors; :func:`collate_cath` / :func:`collate_qfit` pad a batch and add masks
(the batch layout is :func:`collate_cath`'s). The folder's contract: ``docs/shard-folder.md``.
"""

from __future__ import annotations

import contextlib
import json
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ptk.errors import ShardError, unknown_choice
from ptk.files import commit_temporary, temporary_beside

__all__ = [
    "SCHEMA_VERSION",
    "KINDS",
    "MANIFEST_NAME",
    "REJECTS_NAME",
    "CATH_SCHEMA",
    "QFIT_SCHEMA",
    "REJECTS_SCHEMA",
    "schema_for",
    "rows_to_table",
    "rejects_to_table",
    "part_name",
    "write_parquet_atomic",
    "PartWriter",
    "parquet_writer",
    "cath_classes",
    "read_manifest",
    "part_paths",
    "read_table",
    "read_rejects",
    "CathDataset",
    "QfitDataset",
    "open_dataset",
    "collate_cath",
    "collate_qfit",
]

#: Bump when a column is added, removed or changes type or meaning; readers refuse other versions.
SCHEMA_VERSION: Final[int] = 2
KINDS: Final[tuple[str, ...]] = ("cath", "qfit")
MANIFEST_NAME: Final[str] = "_manifest.json"
REJECTS_NAME: Final[str] = "rejects.parquet"
#: Rows per Parquet row group: a Dataset decodes one row group per cache miss, so keep it small.
ROW_GROUP_ROWS: Final[int] = 32


@dataclass(frozen=True)
class Column:
    """One shard column: name, Arrow type and what a row's value looks like.

    ``layout``: ``"row"`` a scalar per row; ``"res"`` ``[n, *shape]`` per residue;
    ``"conf"`` ``[n, A, *shape]`` per residue per conformer (stored ragged, ``n_obs`` each);
    ``"pairs"`` ``[m, 2]`` (contact pairs).
    """

    name: str
    type: pa.DataType
    layout: Literal["row", "res", "conf", "pairs"]
    doc: str
    nullable_row: bool = False  # a whole "res" value may be null (backbone-only JSON entries)


def _fsl(t: pa.DataType, k: int) -> pa.DataType:
    return pa.list_(pa.field("item", t, nullable=False), k)


_F32, _BOOL, _I8, _I16, _I32, _STR = pa.float32(), pa.bool_(), pa.int8(), pa.int16(), pa.int32(), pa.string()

_COMMON_HEAD: tuple[Column, ...] = (
    Column("id", _STR, "row", "domain or chain id (1c0pA01, 1g8a.A)"),
    Column("chain_id", _STR, "row", "pdbid.chain (author chain id)"),
    Column("source", _STR, "row", "input path as given"),
    Column("source_sha256", _STR, "row", "sha256 of the input file"),
    Column("sequence", _STR, "row", "one-letter sequence, X unknown"),
    Column("length", _I32, "row", "residue count"),
)
_COMMON_RES: tuple[Column, ...] = (
    Column("resnum", _I32, "res", "author residue number"),
    Column("icode", _STR, "res", "insertion code ('' where none)"),
    Column("aatype", _I8, "res", "residue index 0..20 (ptk.residues.RESTYPES_3; 20 = UNK)"),
    Column("backbone", _fsl(_F32, 12), "res", "N, CA, C, O xyz (NaN where missing)"),
    Column("frame_rot", _fsl(_F32, 9), "res", "backbone frame R, row-major (columns x̂ ŷ ẑ)"),
    Column("frame_trans", _fsl(_F32, 3), "res", "frame origin t = CA"),
    Column("frame_mask", _BOOL, "res", "frame defined (N, CA, C present, not collinear)"),
)
_QUALITY: tuple[Column, ...] = (
    Column("chain_break", _BOOL, "res", "no peptide bond from this residue to the next (C-N > 2 Å)"),
    Column("n_chain_breaks", _I32, "row", "number of chain_break residues"),
    Column("n_missing_residues", _I32, "row", "residues missing by author numbering gaps"),
    Column("n_incomplete_backbone", _I32, "row", "residues missing any of N, CA, C, O"),
    Column("n_unknown", _I32, "row", "residues of unknown type (UNK)"),
)

CATH_COLUMNS: Final[tuple[Column, ...]] = (
    *_COMMON_HEAD,
    Column("split", _STR, "row", "train / validation / test; null when no split file names it"),
    Column("cath_class", _I16, "row", "CATH class (C); null unknown"),
    Column("cath_architecture", _I16, "row", "CATH architecture number (A); null unknown"),
    Column("cath_topology", _I16, "row", "CATH topology number (T); null unknown"),
    Column("cath_homology", _I32, "row", "CATH homologous superfamily number (H); null unknown"),
    *_COMMON_RES,
    Column(
        "atoms",
        _fsl(_F32, 111),
        "res",
        "atom37 heavy atoms xyz (NaN missing); null: backbone-only",
        nullable_row=True,
    ),
    Column(
        "atom_mask", _fsl(_BOOL, 37), "res", "atom37 atom present; null: backbone-only", nullable_row=True
    ),
    Column("phi", _F32, "res", "φ (radians; 0 where undefined)"),
    Column("psi", _F32, "res", "ψ"),
    Column("omega", _F32, "res", "ω"),
    Column("phi_mask", _BOOL, "res", "φ defined (atoms present, no chain break)"),
    Column("psi_mask", _BOOL, "res", "ψ defined"),
    Column("omega_mask", _BOOL, "res", "ω defined"),
    Column(
        "chi",
        _fsl(_F32, 4),
        "res",
        "χ1–χ4 (radians; 0 where undefined); null: backbone-only",
        nullable_row=True,
    ),
    Column("chi_mask", _fsl(_BOOL, 4), "res", "χ defined; null: backbone-only", nullable_row=True),
    Column("contacts", _fsl(_I32, 2), "pairs", "residue index pairs (i < j) with CA-CA < 8 Å"),
    *_QUALITY,
)

QFIT_COLUMNS: Final[tuple[Column, ...]] = (
    *_COMMON_HEAD,
    *_COMMON_RES,
    Column("frame_altloc", _STR, "res", "altloc the frame came from ('' = blank altloc)"),
    Column("altlocs", _STR, "conf", "altloc label per conformer ('' = the residue has none)"),
    Column("occupancy", _F32, "conf", "conformer occupancy, normalised to sum 1 per residue"),
    Column("occupancy_raw", _F32, "conf", "median atom occupancy of the altloc, before normalising"),
    Column(
        "occupancy_flag",
        _I8,
        "res",
        "bits: 1 renormalised, 2 all-zero (equal weights), 4 atoms of one altloc disagree, "
        "8 microheterogeneity (another residue type under other altlocs; the dominant kept)",
    ),
    Column("chi", _fsl(_F32, 4), "conf", "χ1–χ4 per conformer (radians; 0 where undefined)"),
    Column("chi_mask", _fsl(_BOOL, 4), "conf", "χ defined per conformer"),
    Column("chi_symmetric", _fsl(_BOOL, 4), "res", "χ is π-periodic (ASP χ2, GLU χ3, PHE χ2, TYR χ2)"),
    Column("n_obs", _I8, "res", "observed conformers (named altlocs; 1 when none)"),
    Column("d_eff", _I8, "res", "χ angles defined in at least one conformer"),
    *_QUALITY,
    Column("n_occupancy_renormalised", _I32, "row", "residues with occupancy_flag bit 1"),
    Column("n_occupancy_zero", _I32, "row", "residues with occupancy_flag bit 2"),
    Column("n_occupancy_inconsistent", _I32, "row", "residues with occupancy_flag bit 4"),
    Column("n_microheterogeneous", _I32, "row", "residues with occupancy_flag bit 8"),
)

_COLUMNS: Final = {"cath": CATH_COLUMNS, "qfit": QFIT_COLUMNS}


def _schema(kind: str, columns: Sequence[Column]) -> pa.Schema:
    fields = []
    for col in columns:
        if col.layout == "row":
            t = col.type
        elif col.layout in ("res", "pairs"):
            t = pa.list_(pa.field("item", col.type, nullable=col.type in (_STR,)))
        else:
            t = pa.list_(pa.field("item", pa.list_(pa.field("item", col.type)), nullable=False))
        fields.append(pa.field(col.name, t, metadata={"doc": col.doc}))
    return pa.schema(fields, metadata={"ptk.kind": kind, "ptk.schema_version": str(SCHEMA_VERSION)})


CATH_SCHEMA: Final[pa.Schema] = _schema("cath", CATH_COLUMNS)
QFIT_SCHEMA: Final[pa.Schema] = _schema("qfit", QFIT_COLUMNS)
REJECTS_SCHEMA: Final[pa.Schema] = pa.schema(
    [
        pa.field("input", _STR, nullable=False, metadata={"doc": "input path as given"}),
        pa.field("item", _STR, metadata={"doc": "chain or entry within the input; null = the whole file"}),
        pa.field(
            "stage",
            _STR,
            nullable=False,
            metadata={"doc": "read | parse | features | filter | dedupe | write | worker"},
        ),
        pa.field("error_class", _STR, nullable=False),
        pa.field("message", _STR, nullable=False),
    ],
    metadata={"ptk.kind": "rejects", "ptk.schema_version": str(SCHEMA_VERSION)},
)


def schema_for(kind: str) -> pa.Schema:
    """The Arrow schema of a shard kind (``cath`` or ``qfit``)."""
    if kind not in _COLUMNS:
        raise unknown_choice("shard kind", kind, KINDS)
    return {"cath": CATH_SCHEMA, "qfit": QFIT_SCHEMA}[kind]


# --------------------------------------------------------------------------------------------
# Writing


def _offsets(lengths: Iterable[int]) -> pa.Array:
    return pa.array(np.concatenate([[0], np.cumsum(np.fromiter(lengths, dtype=np.int64))]).astype(np.int32))


def _leaf(values: np.ndarray, t: pa.DataType) -> pa.Array:
    """``[m, *shape]`` numpy → Arrow array of ``t`` (a primitive or a fixed-size list of one)."""
    if pa.types.is_fixed_size_list(t):
        inner = t.value_type
        flat = np.ascontiguousarray(values, dtype=inner.to_pandas_dtype()).reshape(-1)
        return pa.FixedSizeListArray.from_arrays(pa.array(flat, type=inner), type=t)
    if pa.types.is_string(t):
        return pa.array(np.asarray(values, dtype=object).reshape(-1).tolist(), type=t)
    return pa.array(np.ascontiguousarray(values, dtype=t.to_pandas_dtype()).reshape(-1), type=t)


def _shape_of(t: pa.DataType) -> tuple[int, ...]:
    return (t.list_size,) if pa.types.is_fixed_size_list(t) else ()


def _column_array(col: Column, rows: Sequence[dict], target: pa.DataType) -> pa.Array:
    """One column of ``rows`` built directly as the schema's type ``target`` (no cast)."""
    if col.layout == "row":
        return pa.array([row.get(col.name) for row in rows], type=col.type)
    shape = _shape_of(col.type)
    if col.layout in ("res", "pairs"):
        values = [row.get(col.name) for row in rows]
        nulls = [v is None for v in values]
        if any(nulls) and not col.nullable_row:
            missing = rows[nulls.index(True)].get("id")
            raise ValueError(f"column {col.name} is None for row {missing}")
        arrays = [np.asarray(v).reshape(-1, *shape) if v is not None else None for v in values]
        if col.layout == "res":
            for row, arr in zip(rows, arrays, strict=True):
                if arr is not None and arr.shape[0] != row["length"]:
                    raise ValueError(
                        f"column {col.name} has {arr.shape[0]} residues, row "
                        f"{row.get('id')} has {row['length']}"
                    )
        lengths = [0 if a is None else a.shape[0] for a in arrays]
        present = [a for a in arrays if a is not None]
        flat = np.concatenate(present) if present else np.zeros((0, *shape))
        child = _leaf(flat, col.type)
        mask = pa.array(nulls, type=pa.bool_()) if any(nulls) else None
        return pa.ListArray.from_arrays(_offsets(lengths), child, type=target, mask=mask)
    # conf: [n, A, *shape] padded, made ragged by each row's altloc_mask
    outer_lengths, inner_lengths, flats = [], [], []
    for row in rows:
        arr = np.asarray(row[col.name])
        present = np.asarray(row["altloc_mask"], dtype=bool)
        outer_lengths.append(present.shape[0])
        inner_lengths.append(present.sum(-1))
        flats.append(arr[present].reshape(-1, *shape))
    inner = np.concatenate(inner_lengths) if inner_lengths else np.zeros(0, np.int64)
    flat = np.concatenate(flats) if flats else np.zeros((0, *shape))
    inner_arr = pa.ListArray.from_arrays(_offsets(inner), _leaf(flat, col.type), type=target.value_type)
    return pa.ListArray.from_arrays(_offsets(outer_lengths), inner_arr, type=target)


def rows_to_table(kind: str, rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Rows (dicts of column → numpy value, as :mod:`ptk.features` returns them) → Arrow table
    of the kind's schema. Extra keys in a row are ignored; a missing column is an error."""
    schema = schema_for(kind)
    arrays = [_column_array(col, rows, schema.field(col.name).type) for col in _COLUMNS[kind]]
    return pa.Table.from_arrays(arrays, schema=schema)


def rejects_to_table(rejects: Sequence[Any]) -> pa.Table:
    """Reject records (objects or dicts with input, item, stage, error_class, message) → table."""

    def get(r: Any, k: str) -> Any:
        return r[k] if isinstance(r, dict) else getattr(r, k)

    data = {f.name: [get(r, f.name) for r in rejects] for f in REJECTS_SCHEMA}
    return pa.Table.from_pydict(data, schema=REJECTS_SCHEMA)


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


# --------------------------------------------------------------------------------------------
# Decoding Arrow row groups into per-row numpy


def _np(arr: pa.Array, dtype: Any = None) -> np.ndarray:
    out = arr.to_numpy(zero_copy_only=False)
    return out if dtype is None else out.astype(dtype, copy=False)


class _Decoded:
    """One row group decoded column by column into flat numpy + offsets."""

    def __init__(self, table: pa.Table, kind: str) -> None:
        self.n_rows = table.num_rows
        self.scalars: dict[str, list] = {}
        self.res: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}
        self.conf: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for col in _COLUMNS[kind]:
            if col.name not in table.column_names:
                continue
            data = table.column(col.name).combine_chunks()
            if col.layout == "row":
                self.scalars[col.name] = data.to_pylist()
                continue
            shape = _shape_of(col.type)
            if col.layout in ("res", "pairs"):
                offsets = _np(data.offsets)
                leaf = data.values
                nulls = _np(data.is_null()) if data.null_count else None
                values = _np(leaf.flatten() if shape else leaf)
                if shape:
                    values = values.reshape(-1, *shape)
                self.res[col.name] = (offsets, values, nulls)
            else:
                outer = _np(data.offsets)
                inner_arr = data.values
                inner = _np(inner_arr.offsets)
                leaf = inner_arr.values
                values = _np(leaf.flatten() if shape else leaf)
                if shape:
                    values = values.reshape(-1, *shape)
                self.conf[col.name] = (outer, inner, values)

    def row(self, i: int) -> dict[str, Any]:
        out: dict[str, Any] = {k: v[i] for k, v in self.scalars.items()}
        for name, (offsets, values, nulls) in self.res.items():
            out[name] = None if nulls is not None and nulls[i] else values[offsets[i] : offsets[i + 1]]
        for name, (outer, inner, values) in self.conf.items():
            lo, hi = outer[i], outer[i + 1]
            starts = inner[lo:hi]
            counts = inner[lo + 1 : hi + 1] - starts
            width = max(1, int(counts.max())) if len(counts) else 1
            present = np.arange(width)[None, :] < counts[:, None]
            padded = np.zeros((hi - lo, width, *values.shape[1:]), dtype=values.dtype)
            if values.dtype == object:
                padded[...] = ""
            padded[present] = values[starts[0] : inner[hi]] if len(counts) else values[:0]
            out[name] = padded
            out["altloc_mask"] = present
        return out


# --------------------------------------------------------------------------------------------
# torch Datasets


class _ShardDataset:
    """Common machinery: the row index over (part, row group, row), a small row-group cache,
    and length cropping. Picklable for DataLoader workers (open files are not carried)."""

    kind: str = ""

    def __init__(
        self,
        path: str | PathLike[str],
        max_length: int | None = None,
        crop: str = "random",
        seed: int = 0,
        split: str | None = None,
        cache_row_groups: int = 4,
    ) -> None:
        if crop not in ("random", "first", "center"):
            raise unknown_choice("crop", crop, ("random", "first", "center"))
        if max_length is not None and max_length < 1:
            raise ShardError(f"max_length must be a positive number of residues, not {max_length}")
        self.path = Path(path)
        manifest = read_manifest(self.path)
        if manifest["kind"] != self.kind:
            raise ShardError(
                f"{self.path} holds {manifest['kind']} shards, not {self.kind}; "
                f"use {'CathDataset' if manifest['kind'] == 'cath' else 'QfitDataset'} "
                "or open_dataset()"
            )
        self.manifest = manifest
        self.max_length = max_length
        self.crop = crop
        self.seed = seed
        self.epoch = 0
        self.split = split
        self._parts = part_paths(self.path)
        index: list[tuple[int, int, int]] = []
        for p, part in enumerate(self._parts):
            meta = pq.ParquetFile(part).metadata
            keep = None
            if split is not None:
                if self.kind != "cath":
                    raise ShardError("split= applies to cath shards only (qfit rows have no split column)")
                keep = pq.read_table(part, columns=["split"]).column("split").to_pylist()
            row = 0
            for g in range(meta.num_row_groups):
                for r in range(meta.row_group(g).num_rows):
                    if keep is None or keep[row] == split:
                        index.append((p, g, r))
                    row += 1
        self._index = index
        self._cache_size = cache_row_groups
        self._cache: OrderedDict[tuple[int, int], _Decoded] = OrderedDict()
        self._files: dict[int, pq.ParquetFile] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()
        state["_files"] = {}
        return state

    def __len__(self) -> int:
        return len(self._index)

    def set_epoch(self, epoch: int) -> None:
        """Vary random crops by epoch (the crop of item i is a function of seed, epoch, i)."""
        self.epoch = int(epoch)

    def _row(self, i: int) -> dict[str, Any]:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} rows")
        p, g, r = self._index[i]
        key = (p, g)
        decoded = self._cache.get(key)
        if decoded is None:
            file = self._files.get(p)
            if file is None:
                file = self._files[p] = pq.ParquetFile(self._parts[p])
            decoded = _Decoded(file.read_row_group(g), self.kind)
            self._cache[key] = decoded
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return decoded.row(r)

    def _window(self, i: int, n: int) -> slice:
        if self.max_length is None or n <= self.max_length:
            return slice(0, n)
        span = self.max_length
        if self.crop == "first":
            start = 0
        elif self.crop == "center":
            start = (n - span) // 2
        else:
            rng = np.random.default_rng((self.seed, self.epoch, i))
            start = int(rng.integers(0, n - span + 1))
        return slice(start, start + span)

    def _common(self, row: dict[str, Any], window: slice) -> dict[str, Any]:
        import torch

        backbone = row["backbone"][window].reshape(-1, 4, 3)
        bb_mask = np.isfinite(backbone).all(-1)
        return {
            "id": row["id"],
            "length": torch.tensor(backbone.shape[0], dtype=torch.int64),
            "aatype": torch.from_numpy(row["aatype"][window].astype(np.int64)),
            "resnum": torch.from_numpy(row["resnum"][window].astype(np.int64)),
            "backbone": torch.from_numpy(np.where(bb_mask[..., None], backbone, 0).astype(np.float32)),
            "backbone_mask": torch.from_numpy(bb_mask),
            "frame_rot": torch.from_numpy(row["frame_rot"][window].reshape(-1, 3, 3).astype(np.float32)),
            "frame_trans": torch.from_numpy(row["frame_trans"][window].astype(np.float32)),
            "frame_mask": torch.from_numpy(row["frame_mask"][window].astype(bool)),
        }


def _code_or_unknown(value: Any) -> int:
    return -1 if value is None else int(value)


class CathDataset(_ShardDataset):
    """``cath`` shards as a torch Dataset: ``ds[i]`` is one chain's tensors, unpadded.

    Args:
        path: shard dataset folder.
        max_length: crop chains longer than this many residues (None: whole chains).
        crop: ``random`` (seeded by ``seed``, the epoch of :meth:`set_epoch` and the index),
            ``first`` or ``center``.
        split: keep only rows of this split (``train``/``validation``/``test``).
        seed: crop seed.

    Item keys: ``id``, ``sequence``, ``split``, ``length``, ``aatype``, ``resnum``,
    ``backbone`` [n,4,3] (0 where missing), ``backbone_mask`` [n,4], ``atoms`` [n,37,3],
    ``atom_mask`` [n,37], ``frame_rot`` [n,3,3], ``frame_trans`` [n,3], ``frame_mask``,
    ``phi``/``psi``/``omega`` [n] + ``_mask``, ``chi``/``chi_mask`` [n,4], ``contacts`` [n,n]
    bool, ``cath_class``/``cath_architecture``/``cath_topology``/``cath_homology`` (-1 unknown).
    Backbone-only rows (JSON inputs) have atoms only in the N/CA/C/O slots and no χ.
    """

    kind = "cath"

    def __init__(
        self,
        path: str | PathLike[str],
        max_length: int | None = None,
        crop: str = "random",
        split: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(path, max_length=max_length, crop=crop, seed=seed, split=split)

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        from ptk.residues import BACKBONE_INDICES, NUM_ATOMS

        row = self._row(i)
        n = int(row["length"])
        w = self._window(i, n)
        item = self._common(row, w)
        m = item["backbone"].shape[0]
        if row["atoms"] is not None:
            atoms = row["atoms"][w].reshape(-1, NUM_ATOMS, 3)
            atom_mask = row["atom_mask"][w].astype(bool) & np.isfinite(atoms).all(-1)
            atoms = np.where(atom_mask[..., None], atoms, 0).astype(np.float32)
        else:  # backbone-only entry: the backbone is all we know of the atoms
            atoms = np.zeros((m, NUM_ATOMS, 3), dtype=np.float32)
            atom_mask = np.zeros((m, NUM_ATOMS), dtype=bool)
            atoms[:, list(BACKBONE_INDICES)] = item["backbone"].numpy()
            atom_mask[:, list(BACKBONE_INDICES)] = item["backbone_mask"].numpy()
        if row["chi"] is not None:
            chi = row["chi"][w].astype(np.float32)
            chi_mask = row["chi_mask"][w].astype(bool)
        else:
            chi = np.zeros((m, 4), dtype=np.float32)
            chi_mask = np.zeros((m, 4), dtype=bool)
        pairs = row["contacts"].astype(np.int64)
        dense = np.zeros((n, n), dtype=bool)
        dense[pairs[:, 0], pairs[:, 1]] = True
        dense[pairs[:, 1], pairs[:, 0]] = True
        full_ca = np.isfinite(row["backbone"].reshape(-1, 4, 3)[:, 1]).all(-1)
        dense[np.arange(n), np.arange(n)] = full_ca
        contacts = dense[w, w]
        item.update(
            sequence=row["sequence"][w],
            split=row["split"],
            atoms=torch.from_numpy(atoms),
            atom_mask=torch.from_numpy(atom_mask),
            chi=torch.from_numpy(chi),
            chi_mask=torch.from_numpy(chi_mask),
            contacts=torch.from_numpy(np.ascontiguousarray(contacts)),
            cath_class=torch.tensor(_code_or_unknown(row["cath_class"])),
            cath_architecture=torch.tensor(_code_or_unknown(row["cath_architecture"])),
            cath_topology=torch.tensor(_code_or_unknown(row["cath_topology"])),
            cath_homology=torch.tensor(_code_or_unknown(row["cath_homology"])),
        )
        for name in ("phi", "psi", "omega"):
            item[name] = torch.from_numpy(row[name][w].astype(np.float32))
            item[f"{name}_mask"] = torch.from_numpy(row[f"{name}_mask"][w].astype(bool))
        return item


class QfitDataset(_ShardDataset):
    """``qfit`` shards as a torch Dataset: ``ds[i]`` is one chain's tensors, unpadded.

    Item keys: ``id``, ``sequence``, ``length``, ``aatype``, ``resnum``, ``backbone``,
    ``backbone_mask``, ``frame_rot``/``frame_trans``/``frame_mask`` (primary altloc), and per
    residue per conformer (A = the chain's largest altloc count) ``chi`` [n,A,4],
    ``chi_mask`` [n,A,4], ``altloc_mask`` [n,A], ``occupancy`` [n,A] (sums to 1 over real
    conformers, 0 on padding); ``chi_symmetric`` [n,4], ``n_obs``, ``d_eff`` and ``valid``
    (n_obs ≥ 2 and d_eff ≥ 1, the qFitLatent training residues).
    """

    kind = "qfit"

    def __init__(
        self, path: str | PathLike[str], max_length: int | None = None, crop: str = "random", seed: int = 0
    ) -> None:
        super().__init__(path, max_length=max_length, crop=crop, seed=seed)

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        row = self._row(i)
        n = int(row["length"])
        w = self._window(i, n)
        item = self._common(row, w)
        present = row["altloc_mask"][w]
        width = max(1, int(present.sum(-1).max())) if present.shape[0] else 1
        present = present[:, :width]
        n_obs = row["n_obs"][w].astype(np.int64)
        d_eff = row["d_eff"][w].astype(np.int64)
        item.update(
            sequence=row["sequence"][w],
            chi=torch.from_numpy(row["chi"][w][:, :width].astype(np.float32)),
            chi_mask=torch.from_numpy(row["chi_mask"][w][:, :width].astype(bool) & present[..., None]),
            altloc_mask=torch.from_numpy(np.ascontiguousarray(present)),
            occupancy=torch.from_numpy(
                np.where(present, row["occupancy"][w][:, :width], 0).astype(np.float32)
            ),
            chi_symmetric=torch.from_numpy(row["chi_symmetric"][w].astype(bool)),
            n_obs=torch.from_numpy(n_obs),
            d_eff=torch.from_numpy(d_eff),
            valid=torch.from_numpy((n_obs >= 2) & (d_eff >= 1)),
        )
        return item


def open_dataset(path: str | PathLike[str], **kwargs: Any) -> CathDataset | QfitDataset:
    """The Dataset class matching the dataset's kind (from its manifest), built with ``kwargs``."""
    kind = read_manifest(path)["kind"]
    return (CathDataset if kind == "cath" else QfitDataset)(path, **kwargs)


# --------------------------------------------------------------------------------------------
# Collate


def _pad(tensors: Sequence[Any], shape: Sequence[int], fill: float | bool = 0) -> Any:
    """Stack tensors into ``[b, *shape]``, each copied into the leading corner."""
    import torch

    out = torch.full((len(tensors), *shape), fill, dtype=tensors[0].dtype)
    for k, t in enumerate(tensors):
        out[(k, *(slice(0, s) for s in t.shape))] = t
    return out


def _collate(
    items: Sequence[dict[str, Any]],
    residue_keys: Sequence[str],
    extra: Callable[[dict[str, Any], int], None] | None = None,
) -> dict[str, Any]:
    import torch

    if not items:
        raise ValueError("cannot collate an empty batch")
    lengths = torch.stack([it["length"] for it in items]).to(torch.int64)
    n = int(lengths.max()) if len(items) else 0
    batch: dict[str, Any] = {
        "id": [it["id"] for it in items],
        "length": lengths,
        "residue_mask": torch.arange(n)[None, :] < lengths[:, None],
    }
    for key in residue_keys:
        ts = [it[key] for it in items]
        batch[key] = _pad(ts, (n, *ts[0].shape[1:]))
    if extra is not None:
        extra(batch, n)
    return batch


_RESIDUE_KEYS_COMMON = (
    "aatype",
    "resnum",
    "backbone",
    "backbone_mask",
    "frame_rot",
    "frame_trans",
    "frame_mask",
)


def collate_cath(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pad a list of :class:`CathDataset` items to the longest chain.

    Padding is 0/False; ``residue_mask`` marks real residues; ``contacts`` is ``[b, n, n]``.
    """
    import torch

    keys = (
        *_RESIDUE_KEYS_COMMON,
        "atoms",
        "atom_mask",
        "phi",
        "psi",
        "omega",
        "phi_mask",
        "psi_mask",
        "omega_mask",
        "chi",
        "chi_mask",
    )

    def extra(batch: dict[str, Any], n: int) -> None:
        batch["contacts"] = _pad([it["contacts"] for it in items], (n, n))
        for key in ("cath_class", "cath_architecture", "cath_topology", "cath_homology"):
            batch[key] = torch.stack([it[key] for it in items]).to(torch.int64)
        batch["sequence"] = [it["sequence"] for it in items]
        batch["split"] = [it.get("split") for it in items]

    return _collate(items, keys, extra)


def collate_qfit(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pad a list of :class:`QfitDataset` items to the longest chain and the most conformers.

    ``occupancy`` is 0 and ``altloc_mask``/``chi_mask`` False on padding; ``valid`` =
    residue_mask & n_obs ≥ 2 & d_eff ≥ 1.
    """
    keys = (*_RESIDUE_KEYS_COMMON, "chi_symmetric", "n_obs", "d_eff", "valid")

    def extra(batch: dict[str, Any], n: int) -> None:
        a = max(int(it["altloc_mask"].shape[1]) for it in items)
        for key in ("chi", "chi_mask"):
            batch[key] = _pad([it[key] for it in items], (n, a, 4))
        for key in ("altloc_mask", "occupancy"):
            batch[key] = _pad([it[key] for it in items], (n, a))
        batch["valid"] = batch["valid"] & batch["residue_mask"]
        batch["sequence"] = [it["sequence"] for it in items]

    return _collate(items, keys, extra)
