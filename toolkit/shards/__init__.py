"""Shard datasets: the versioned Arrow schemas of both kinds, writing them, and reading them back.

A shard dataset is a folder of Parquet parts, ``_manifest.json`` and ``rejects.parquet``
(``../shared/DESIGN.md`` "Shards"; the layout is drawn once, in :mod:`ptk.shards.store`).

Column names are the public ones of DESIGN.md "Shard columns", plus ``aatype`` (residue index,
0..20) and quality fields. Per-residue columns are Arrow lists over residues; per-altloc qfit
columns are lists over residues of lists over that residue's conformers (``n_obs`` long).
Coordinates are fixed-size lists of float32 (NaN where missing); codes are int8/int16.

Readers (:class:`CathDataset`, :class:`QfitDataset`) are torch Datasets that decode one Parquet
row group at a time straight from Arrow buffers (no pandas), crop to ``max_length`` and return
one chain's tensors; :func:`collate_cath` / :func:`collate_qfit` pad a batch and add masks
(the batch layout is :func:`collate_cath`'s). The folder's contract: ``docs/shard-folder.md``.

Modules:

- :mod:`~ptk.shards.schema`: the columns, ``SCHEMA_VERSION`` and the Arrow schemas;
- :mod:`~ptk.shards.encoding`: rows → Arrow tables, Arrow row groups → per-row numpy;
- :mod:`~ptk.shards.store`: the folder, written and read: part names and encoding, the atomic
  part writer, part placement, the manifest and the rejects written and read back, the lock;
- :mod:`~ptk.shards.datasets`: the torch Datasets and their collates.
"""

from ptk.shards.datasets import CathDataset, QfitDataset, collate_cath, collate_qfit, open_dataset
from ptk.shards.encoding import rejects_to_table, rows_to_table
from ptk.shards.schema import (
    CATH_COLUMNS,
    CATH_SCHEMA,
    KINDS,
    QFIT_COLUMNS,
    QFIT_SCHEMA,
    REJECTS_SCHEMA,
    SCHEMA_VERSION,
    Column,
    schema_for,
)
from ptk.shards.store import (
    MANIFEST_NAME,
    REJECTS_NAME,
    ROW_GROUP_ROWS,
    PartWriter,
    cath_classes,
    parquet_writer,
    part_name,
    part_paths,
    read_manifest,
    read_rejects,
    read_table,
    write_parquet_atomic,
)

__all__ = [
    "SCHEMA_VERSION",
    "KINDS",
    "MANIFEST_NAME",
    "REJECTS_NAME",
    "ROW_GROUP_ROWS",
    "Column",
    "CATH_COLUMNS",
    "QFIT_COLUMNS",
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
