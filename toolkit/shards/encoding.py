"""Rows to Arrow and back: shard rows (dicts of column → numpy value) encoded as Arrow tables of
the kind's schema, reject records as the rejects table, and Parquet row groups decoded column by
column into per-row numpy arrays (no pandas)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ptk.shards.schema import COLUMNS, REJECTS_SCHEMA, Column, schema_for

__all__ = ["rows_to_table", "rejects_to_table", "Decoded"]


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
    arrays = [_column_array(col, rows, schema.field(col.name).type) for col in COLUMNS[kind]]
    return pa.Table.from_arrays(arrays, schema=schema)


def rejects_to_table(rejects: Sequence[Any]) -> pa.Table:
    """Reject records (objects or dicts with input, item, stage, error_class, message) → table."""

    def get(r: Any, k: str) -> Any:
        return r[k] if isinstance(r, dict) else getattr(r, k)

    data = {f.name: [get(r, f.name) for r in rejects] for f in REJECTS_SCHEMA}
    return pa.Table.from_pydict(data, schema=REJECTS_SCHEMA)


def _np(arr: pa.Array, dtype: Any = None) -> np.ndarray:
    out = arr.to_numpy(zero_copy_only=False)
    return out if dtype is None else out.astype(dtype, copy=False)


class Decoded:
    """One row group decoded column by column into flat numpy + offsets."""

    def __init__(self, table: pa.Table, kind: str) -> None:
        self.n_rows = table.num_rows
        self.scalars: dict[str, list] = {}
        self.res: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}
        self.conf: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for col in COLUMNS[kind]:
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
