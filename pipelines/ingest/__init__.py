"""``ptk ingest cath|qfit``: structure files → a Parquet shard dataset, fanned out with Dask.

The per-file work is the pure core function (:func:`ptk.features.cath_file_rows`, run on all
files of a task at once as :func:`ptk.features.cath_files_rows`, and
:func:`ptk.features.qfit_file_rows`: one file → rows or rejects). This module only finds the
inputs, schedules that function, and writes and accounts in input order:

- **Scheduling.** No ``--scheduler``: a ``dask.distributed.LocalCluster`` of ``--workers``
  processes (default: one per CPU core), one thread each. ``--scheduler tcp://HOST:PORT``: the
  same tasks on an existing cluster (its workers need ptk installed). ``--scheduler
  synchronous``: every file in this process, no cluster (debugging, tiny inputs, tests).
- **Accounting.** Every input file ends in exactly one place: rows in a part, or a row of
  ``rejects.parquet`` (input, item, stage, error_class, message); a file whose chains partly
  fail has rows for the good ones and item-level rejects (``item`` = chain/entry) for the rest.
  Ids are unique in a dataset: a chain whose id an earlier input (in input order) already gave
  is rejected at stage ``dedupe`` (``DuplicateId``), naming the first source.
- **Parts.** Consecutive inputs are grouped into tasks (up to ``TASK_UNITS`` files, no more
  files than ``--shard-rows``, up to ``TASK_BYTES`` of input), formed from the inputs alone, so
  every cluster and every resume forms the same ones. A task's rows are its own parts, in
  input order, of at most ``--shard-rows`` rows (:func:`part_layout`): the worker encodes them
  and writes each as a whole, fsynced file under a hidden temporary name in ``--out``, and
  this process renames them to ``part-NNNNN.parquet`` in order, after dropping duplicate ids.
  Rows never travel through this process, so it does not limit how many workers add
  throughput. (Where the workers cannot write into ``--out``, checked at the start, the rows
  come back and this process writes the same parts.) ``rejects.parquet`` and
  ``_manifest.json`` are written to a temporary name and renamed, after every ``--shard-rows``
  new rows and at the end: the manifest only ever lists whole parts. A large uncompressed
  ``.jsonl`` (chain_set.jsonl) is split into byte ranges at line starts, so one file still
  spreads over every worker.
- **Resume.** Re-running the same command on the same ``--out`` keeps every part whose inputs
  are unchanged, up to the end of a task, and does only the rest; the result is the dataset a
  fresh run would write.
  Inputs are compared by absolute path and sha256: a **changed input is re-processed** — the
  parts from the first changed (or added/removed) input on are dropped and rewritten, and the
  command says so on stderr. (A resume hashes every input before scheduling; a fresh run
  records the sha256 each worker takes of the bytes it read.) Different options
  (``--splits``, ``--cath-list``, ``--max-length``, ``--shard-rows``, or the other kind) are a
  usage error: use a new ``--out``.

Input discovery: files given explicitly are always read (whatever their name; a file that is
not a structure becomes a reject). Folders are searched recursively, skipping hidden entries
and the output folder, for ``.pdb .ent .cif .mmcif .pdbx`` and the ``.gz`` of each
(:data:`ptk.structure.STRUCTURE_SUFFIXES`), CATH ``dompdb`` files (no extension, named like
``1c0pA01``) and, for ``cath``, ``.json``/``.jsonl`` backbone sets; other files in a folder
are listed as ``skipped`` in the manifest. A path that does not exist, or inputs with no
structure file at all, are usage errors (exit 2, nothing written).

Modules, one concept each: :mod:`.discovery` (INPUT arguments → files), :mod:`.plan` (files →
units → tasks), :mod:`.task` (the Dask task and the parts it writes), :mod:`.executors`
(synchronous and dask.distributed), :mod:`.cluster` (the local cluster and its fork server),
:mod:`.writer` (parts in place, rejects, manifest, resume), :mod:`.driver` (:func:`run_ingest`)
and :mod:`.commands` (the Click commands).
"""

from __future__ import annotations

from ptk.pipelines.ingest.cluster import LOCAL_WORKER_CONFIG, WORKER_PRELOAD, local_cluster
from ptk.pipelines.ingest.commands import cath, ingest, qfit
from ptk.pipelines.ingest.discovery import Inputs, discover
from ptk.pipelines.ingest.driver import Summary, run_ingest
from ptk.pipelines.ingest.plan import JSONL_CHUNK_BYTES, TASK_BYTES, TASK_UNITS
from ptk.pipelines.ingest.task import (
    DEFAULT_SHARD_ROWS,
    Batch,
    Packed,
    PartFile,
    Unit,
    part_layout,
    process_batch,
    write_parts,
)

__all__ = [
    "DEFAULT_SHARD_ROWS",
    "JSONL_CHUNK_BYTES",
    "LOCAL_WORKER_CONFIG",
    "TASK_BYTES",
    "TASK_UNITS",
    "WORKER_PRELOAD",
    "Batch",
    "Inputs",
    "Packed",
    "PartFile",
    "Summary",
    "Unit",
    "cath",
    "discover",
    "ingest",
    "local_cluster",
    "part_layout",
    "process_batch",
    "qfit",
    "run_ingest",
    "write_parts",
]
