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
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import multiprocessing
import os
import re
import signal
import stat
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from ptk.files import atomic_write, sha256_file

log = logging.getLogger(__name__)

_JSON_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")
_DOMPDB_NAME = re.compile(r"^\d[A-Za-z0-9]{3}[A-Za-z0-9]\d{2}$")
DEFAULT_SHARD_ROWS = 1000


# --------------------------------------------------------------------------------------------
# Inputs


@dataclass
class Inputs:
    """The input files of a run, in order, and what folders held that is not a structure."""

    files: list[Path]
    skipped: list[Path] = field(default_factory=list)
    empty_folders: list[Path] = field(default_factory=list)


def _wanted(path: Path, kind: str) -> bool:
    from ptk.structure import has_structure_suffix

    name = path.name.lower()
    if has_structure_suffix(path):
        return True
    if kind == "cath" and name.endswith(_JSON_SUFFIXES):
        return True
    return bool(_DOMPDB_NAME.match(path.name))


def discover(inputs: Sequence[str | os.PathLike[str]], kind: str, exclude: Path | None = None) -> Inputs:
    """Expand INPUT arguments into files: explicit files as given, folders recursively (sorted).

    A file reached twice (named and inside a named folder) is taken once, at its first place.
    Raises click.UsageError for a path that does not exist.
    """
    files: list[Path] = []
    skipped: list[Path] = []
    empty: list[Path] = []
    seen: set[str] = set()
    exclude_abs = os.path.abspath(exclude) if exclude is not None else None

    def add(p: Path) -> None:
        key = os.path.abspath(p)
        if key not in seen:
            seen.add(key)
            files.append(p)

    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            raise click.UsageError(f"input {str(raw)!r} does not exist")
        if not p.is_dir():
            add(p)
            continue
        found = 0
        for root, dirs, names in os.walk(p):
            dirs[:] = sorted(
                d
                for d in dirs
                if not d.startswith(".") and os.path.abspath(os.path.join(root, d)) != exclude_abs
            )
            for name in sorted(names):
                if name.startswith("."):
                    continue
                f = Path(root) / name
                if _wanted(f, kind):
                    add(f)
                    found += 1
                else:
                    skipped.append(f)
        if not found:
            empty.append(p)
    return Inputs(files, skipped, empty)


def _sha256(path: Path) -> str | None:
    """The file's checksum; None for what is not a readable regular file (a FIFO or device,
    whose read may never return; an unreadable file, which the worker's read rejects)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        return sha256_file(path)
    except OSError:
        return None


# --------------------------------------------------------------------------------------------
# Worker side: one batch of files → packed results (pure; no writes)


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

    from ptk import shards

    token = uuid.uuid4().hex
    parts = []
    for k, cut in enumerate(part_layout(packed, shard_rows)):
        name = f".task-{token}-{k:03d}.parquet.tmp"
        with shards.PartWriter(Path(out) / name, table.schema) as part:
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


# --------------------------------------------------------------------------------------------
# Executors: synchronous (in-process) and dask.distributed


class _Synchronous:
    """Runs batches in this process, in order (``--scheduler synchronous``)."""

    n_workers = 1

    def __init__(self, fn: Callable[..., Batch], args: tuple) -> None:
        self.fn, self.args = fn, args

    def map(self, batches: Iterable[list[Unit]]) -> Iterator[Batch]:
        kind, labels, max_length, out, shard_rows = self.args
        for batch in batches:
            yield self.fn(kind, batch, labels, max_length, out, shard_rows)

    def close(self, interrupted: bool = False) -> None:
        pass


def _touch(folder: str) -> str | None:
    """(On a worker.) Create an empty hidden file in ``folder``; its name, or None if it cannot."""
    import uuid

    name = f".probe-{uuid.uuid4().hex}.tmp"
    try:
        Path(folder, name).touch(exist_ok=False)
    except OSError:
        return None
    return name


def _workers_share(client: Any, folder: Path) -> bool:
    """Whether every worker can write into ``folder`` and this process sees what it writes there
    (a local cluster, or a cluster on a shared file system)."""
    names = client.run(_touch, str(folder))
    seen = [name is not None and (folder / name).is_file() for name in names.values()]
    for name in names.values():
        if name is not None:
            (folder / name).unlink(missing_ok=True)
    return bool(seen) and all(seen)


class _Distributed:
    """Submits batches to a dask.distributed client with a bounded window; yields results in
    submission order. A batch whose task fails (a worker died on a file) is retried file by
    file; a single file that still fails becomes a reject (stage ``worker``).

    Workers write their task's parts into ``--out`` themselves when they can (the local
    cluster, or a cluster on a shared file system), so rows never travel through this process;
    otherwise they send the rows back and this process writes the same parts."""

    def __init__(self, client: Any, cluster: Any, fn: Callable[..., Batch], args: tuple) -> None:
        self.client, self.cluster, self.fn = client, cluster, fn
        self.kind, labels, self.max_length, out, self.shard_rows = args
        self.labels = client.scatter(labels, broadcast=True) if labels is not None else None
        self.n_workers = max(1, len(client.scheduler_info(n_workers=-1).get("workers", {})))
        self.out: str | None = str(out)
        if not _workers_share(client, Path(out)):
            log.warning(
                "the Dask workers cannot write into %s (not a folder they share with this "
                "machine): their rows come back here to be written",
                out,
            )
            self.out = None

    def _submit(self, batch: list[Unit], write: bool = True) -> Any:
        out = self.out if write else None
        return self.client.submit(
            self.fn, self.kind, batch, self.labels, self.max_length, out, self.shard_rows, pure=False
        )

    def map(self, batches: Iterable[list[Unit]]) -> Iterator[Batch]:
        from distributed import as_completed

        window = 4 * self.n_workers
        it = iter(batches)
        pending: dict[Any, tuple[int, list[Unit]]] = {}
        done: dict[int, Batch] = {}
        ac = as_completed()
        next_submit = next_yield = 0
        exhausted = False

        def fill() -> None:
            nonlocal next_submit, exhausted
            while not exhausted and len(pending) + len(done) < window:
                batch = next(it, None)
                if batch is None:
                    exhausted = True
                    return
                fut = self._submit(batch)
                pending[fut] = (next_submit, batch)
                ac.add(fut)
                next_submit += 1

        fill()
        while pending or done:
            while next_yield in done:
                yield done.pop(next_yield)
                next_yield += 1
                fill()
            if not pending:
                continue
            fut = next(ac)
            seq, batch = pending.pop(fut)
            try:
                done[seq] = fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker died or the task raised
                done[seq] = self._retry(batch, exc)
            fut.release()
        return

    def _retry(self, batch: list[Unit], exc: BaseException) -> Batch:
        """Each unit of a failed task alone; the rows come back, and the driver writes them as the
        task would have (the same parts)."""
        import pyarrow as pa

        packed: list[Packed] = []
        tables = []
        for unit in batch:
            if len(batch) > 1:
                try:
                    single = self._submit([unit], write=False).result()
                    packed.extend(single.packed)
                    if single.table is not None:
                        tables.append(single.table)
                    continue
                except Exception as inner:  # noqa: BLE001
                    exc = inner
            packed.append(Packed(unit, 0, [_reject_dict(unit, "worker", exc)], 0))
        table = pa.concat_tables(tables) if tables else None
        return Batch(packed, table.column("id").to_pylist() if table is not None else [], table)

    def close(self, interrupted: bool = False) -> None:
        """Close the client (and the local cluster). After an interrupt, Dask's complaints
        about the tasks it cancels are kept out of the console unless asked for (-vv)."""
        if interrupted and logging.getLogger().getEffectiveLevel() > logging.DEBUG:
            for name in ("distributed", "tornado", "asyncio"):
                logging.getLogger(name).setLevel(logging.CRITICAL)
        with contextlib.suppress(Exception):
            self.client.close()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()


def _check_scheduler(value: str | None) -> None:
    """A UsageError unless ``value`` is None, ``synchronous`` or a Dask address with a host and
    a port (``tcp://HOST:PORT``, or ``HOST:PORT``; ``inproc://`` needs no port)."""
    from urllib.parse import urlsplit

    if value is None or value == "synchronous":
        return
    parts = urlsplit(value if "://" in value else f"tcp://{value}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme == "inproc" and parts.hostname:  # a cluster in this process (Dask's tests, notebooks)
        return
    if parts.scheme not in ("tcp", "tls", "ws", "wss", "ucx") or not parts.hostname or port is None:
        raise click.UsageError(
            f"--scheduler {value!r}: expected 'synchronous' or a Dask scheduler address, tcp://HOST:PORT"
        )


def _probe(address: str) -> None:
    """Fail fast (OSError) when nothing listens at a tcp:// scheduler address."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme == "tcp" and parts.hostname and parts.port:
        socket.create_connection((parts.hostname, parts.port), timeout=10).close()


#: Dask settings of the local cluster's worker processes. Dask sets ``MALLOC_TRIM_THRESHOLD_``
#: to 64 KiB in workers so that freed memory goes back to the OS at once; the ingest's many
#: short-lived arrays then pay for fresh pages over and over (a quarter of a worker's time on
#: CATH domains), so glibc's own adaptive threshold is kept. The statistical profiler, which
#: samples the task thread every 10 ms for the dashboard the local cluster does not serve, is
#: off. Processes are forked from a server that has imported what a task needs once
#: (:data:`WORKER_PRELOAD`) instead of spawned afresh: each spawned nanny and worker imported
#: them itself (torch alone takes seconds), which made start-up most of a run on a few hundred
#: files. An existing cluster (``--scheduler``) keeps its own settings.
LOCAL_WORKER_CONFIG: dict[str, Any] = {
    # the driver owns Ctrl-C (workers ignore SIGINT instead of each printing a traceback)
    "distributed.worker.preload": ["ptk.pipelines._dask_worker"],
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    "distributed.worker.profile.enabled": False,
    "distributed.worker.multiprocessing-method": (
        "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    ),
}
#: Modules the fork server imports before forking the local cluster's processes.
#: The first one makes the server (and so every worker) ignore Ctrl-C, which the driver handles.
WORKER_PRELOAD = (
    "ptk.pipelines._dask_worker",
    "distributed",
    "numpy",
    "gemmi",
    "pyarrow.parquet",
    "torch",
    "ptk.features",
    __name__,
)


def local_cluster(n_workers: int, log_level: int = logging.WARNING) -> Any:
    """The ``dask.distributed.LocalCluster`` a run without ``--scheduler`` uses: ``n_workers``
    processes of one thread each, no dashboard, :data:`LOCAL_WORKER_CONFIG`."""
    import dask
    from distributed import LocalCluster
    from distributed.utils import get_mp_context

    with dask.config.set(LOCAL_WORKER_CONFIG):
        context = get_mp_context()  # Dask sets its own preload list on its first call: replace it
        if context.get_start_method() == "forkserver":
            import multiprocessing.forkserver

            context.set_forkserver_preload(list(WORKER_PRELOAD))
            # Started here with SIGINT blocked, a mask that survives fork and exec: the server
            # holds Ctrl-C pending from its first instruction until its first preload ignores it
            # and unblocks it (the driver handles it; one pressed while the server imports its
            # preloads would otherwise kill it). Only this thread's mask changes, never the
            # process's disposition, so the driver still sees a Ctrl-C pressed meanwhile.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                multiprocessing.forkserver.ensure_running()
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        return LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            scheduler_kwargs={"dashboard": False},
            silence_logs=log_level,
        )


@contextlib.contextmanager
def _interrupt_deferred() -> Iterator[Callable[[], bool]]:
    """Ctrl-C inside the block is remembered, not raised; yields "was there one?" (a cluster
    interrupted half-started fails in Dask's exit hook with a traceback)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    seen: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:
        yield lambda: bool(seen)
    finally:
        signal.signal(signal.SIGINT, previous)


def _executor(scheduler: str | None, workers: int | None, args: tuple) -> _Synchronous | _Distributed:
    if scheduler == "synchronous":
        return _Synchronous(process_batch, args)
    from distributed import Client

    # Dask logs at INFO through the root handler `ptk -v` sets up; keep it quiet unless asked.
    quiet = logging.WARNING if logging.getLogger().getEffectiveLevel() > logging.INFO else logging.INFO
    logging.getLogger("distributed").setLevel(quiet)
    if scheduler is None:
        # Ctrl-C while the cluster starts would leave half-started workers (and Dask's exit hook
        # then fails on them with a traceback): the interrupt waits until it is up and closed.
        with _interrupt_deferred() as interrupted:
            cluster = local_cluster(workers or os.cpu_count() or 1, quiet)
            executor = _Distributed(Client(cluster), cluster, process_batch, args)
        if interrupted():
            executor.close(interrupted=True)
            raise KeyboardInterrupt
        return executor
    if workers is not None:
        log.warning("--workers is ignored with --scheduler %s (the cluster has its own workers)", scheduler)
    try:
        _probe(scheduler)
        client = Client(scheduler, timeout="30s")
    except OSError as exc:
        raise click.UsageError(f"cannot reach the Dask scheduler at {scheduler} ({exc})") from exc
    return _Distributed(client, None, process_batch, args)


# --------------------------------------------------------------------------------------------
# Dataset state: manifest, resume, writing


@dataclass
class Summary:
    """What an ingest did (whole dataset totals, and this run's share)."""

    out: Path
    rows: int
    files_with_rows: int
    rejects: int
    inputs: int
    kept_parts: int
    new_parts: int
    processed_files: int
    processed_rows: int
    processed_atoms: int
    seconds: float
    changed: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.rows:,} chains from {self.files_with_rows:,} files; {self.rejects:,} rejected "
            f"→ {self.out / 'rejects.parquet'}"
        )


def _file_options(path: str | None) -> dict[str, str] | None:
    if path is None:
        return None
    return {"path": str(path), "sha256": _sha256(Path(path)) or ""}


def _same_options(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    diffs = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) or isinstance(b, dict):
            a = a and a.get("sha256")
            b = b and b.get("sha256")
        if a != b:
            diffs.append(key)
    return diffs


@contextlib.contextmanager
def _lock(out: Path) -> Iterator[None]:
    import fcntl

    fh = open(out / ".lock", "w")  # noqa: SIM115 - held for the whole run
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise click.UsageError(f"{out} is being written by another ptk ingest (lock held)") from exc
        yield
    finally:
        fh.close()


class _Writer:
    """Consumes task results in input order: accounts every unit, drops duplicate ids, renames the
    tasks' parts into place, and keeps rejects and the manifest up to date."""

    def __init__(
        self,
        kind: str,
        out: Path,
        inputs: list[dict[str, Any]],
        options: dict[str, Any],
        command: str,
        shard_rows: int,
        skipped: list[str],
    ) -> None:
        from ptk import __version__, shards

        self.shards = shards
        self.kind, self.out, self.inputs = kind, out, inputs
        self.options, self.command, self.shard_rows, self.skipped = options, command, shard_rows, skipped
        self.ptk_version = __version__
        self.parts: list[dict[str, Any]] = []
        self.rejects: list[dict[str, Any]] = []
        self.seen: dict[str, str] = {}
        self.cursor = 0
        self.created = datetime.now(UTC).isoformat(timespec="seconds")
        self.new_parts = 0
        self._unsaved_rows = 0  # rows in parts the manifest does not list yet
        self._cursor_ends_task = True

    # -- resume ---------------------------------------------------------------------------
    def resume(self, manifest: dict[str, Any]) -> tuple[int, list[str]]:
        """Adopt the unchanged prefix of an earlier run; returns (first input to do, changed paths).

        Kept: the parts up to the last one that ends a task at a file boundary and holds only
        inputs before the first changed one (inputs are compared by absolute path and sha256).
        Tasks are formed from the inputs alone, so the tasks from there on are the ones a fresh
        run forms, and what follows is written exactly as a fresh run would write it.
        """
        import pyarrow.parquet as pq

        old_inputs = manifest.get("inputs", [])
        old_cursor = int(manifest.get("cursor", 0))
        r = 0
        limit = min(len(old_inputs), len(self.inputs), old_cursor)
        while r < limit and (old_inputs[r]["abspath"], old_inputs[r]["sha256"]) == (
            self.inputs[r]["abspath"],
            self.inputs[r]["sha256"],
        ):
            r += 1
        changed = []
        if r < old_cursor:
            old_by_path = {i["abspath"]: i["sha256"] for i in old_inputs}
            changed = [
                rec["path"]
                for rec in self.inputs
                if rec["abspath"] in old_by_path and old_by_path[rec["abspath"]] != rec["sha256"]
            ] or [f"(the input list differs from input {r + 1} on: files added, removed or reordered)"]
        parts = manifest.get("parts", [])
        n_kept = 0
        for k, part in enumerate(parts):
            if part["complete_through"] > r:
                break
            if part["boundary"]:
                n_kept = k + 1
        self.parts = parts[:n_kept]
        resume_at = self.parts[-1]["complete_through"] if self.parts else 0
        if n_kept == len(parts) and r >= old_cursor and manifest.get("cursor_ends_task"):
            resume_at = old_cursor  # the tasks after the last part gave no rows (rejects only)
        self.cursor = resume_at
        self._cursor_ends_task = True
        for part in self.parts:
            ids = pq.read_table(self.out / part["file"], columns=["id", "source"])
            for row_id, source in zip(
                ids.column("id").to_pylist(), ids.column("source").to_pylist(), strict=True
            ):
                self.seen.setdefault(row_id, source)
        # rejects name an input as the earlier run typed it: compare by absolute path (a rerun
        # from another folder types the same files differently)
        typed_abspath = {i["path"]: i["abspath"] for i in old_inputs}
        done = {rec["abspath"] for rec in self.inputs[:resume_at]}
        old_rejects = self.shards.read_rejects(self.out).to_pylist()
        self.rejects = [rej for rej in old_rejects if typed_abspath.get(rej["input"], rej["input"]) in done]
        for rec, old in zip(self.inputs[:resume_at], old_inputs[:resume_at], strict=True):
            rec["rows"], rec["rejects"] = old.get("rows"), old.get("rejects")
        self.created = manifest.get("created", self.created)
        if n_kept < len(parts) or resume_at < len(self.inputs):
            # before any new part takes the name of a dropped one: a run stopped from here on
            # leaves a manifest of the kept parts only, not the old one beside new rows
            self._write_state(complete=False)
        return resume_at, changed

    # -- consuming results ----------------------------------------------------------------
    def add(self, batch: Batch) -> int:
        """Account one task's units (tasks must arrive in input order), put its parts in place;
        returns the rows kept."""
        keep, kept_per_unit = self._account(batch)
        parts = batch.parts
        if not all(keep) or batch.table is not None:
            # Rows to drop (duplicate ids), or rows the workers could not write: the parts are
            # (re)written here, laid out as the task would lay out the rows that are kept.
            table = batch.table if batch.table is not None else self._read(parts)
            if not all(keep):
                import pyarrow as pa

                table = table.filter(pa.array(keep))
            self._discard(parts)
            packed = [
                dataclasses.replace(p, n_rows=k) for p, k in zip(batch.packed, kept_per_unit, strict=True)
            ]
            parts = write_parts(self.out, table, packed, self.shard_rows) if table.num_rows else []
        self._place(parts)
        return sum(kept_per_unit)

    def _account(self, batch: Batch) -> tuple[list[bool], list[int]]:
        """Record each unit's outcome, checksum and rejects (duplicate ids among them); returns
        whether each of the task's rows is kept, and the rows kept per unit."""
        keep: list[bool] = []
        kept_per_unit = []
        ids = iter(batch.ids)
        for packed in batch.packed:
            unit = packed.unit
            if unit.index != self.cursor:  # internal invariant of the ordered executors
                raise RuntimeError(f"result for input {unit.index} arrived at input {self.cursor}")
            rec = self.inputs[unit.index]
            if unit.chunk == 0:
                rec["rows"], rec["rejects"] = 0, 0
            if rec["sha256"] is None:  # a fresh run takes each input's checksum from its worker
                rec["sha256"] = packed.sha256 or _sha256(Path(rec["path"]))
            rejects = [dict(r, input=rec["path"]) for r in packed.rejects]
            kept = 0
            for _ in range(packed.n_rows):
                row_id = next(ids)
                first = self.seen.get(row_id)
                keep.append(first is None)
                if first is None:
                    self.seen[row_id] = rec["path"]
                    kept += 1
                else:
                    rejects.append(
                        dict(
                            input=rec["path"],
                            item=row_id,
                            stage="dedupe",
                            error_class="DuplicateId",
                            message=f"id {row_id} already written from {first}",
                        )
                    )
            kept_per_unit.append(kept)
            self.rejects.extend(rejects)
            rec["rows"] += kept
            rec["rejects"] += len(rejects)
            if unit.chunk == unit.n_chunks - 1:
                self.cursor = unit.index + 1
        last = batch.packed[-1].unit
        self._cursor_ends_task = last.chunk == last.n_chunks - 1
        return keep, kept_per_unit

    def _place(self, parts: Sequence[PartFile]) -> None:
        """Rename a task's parts to the next part names and list them; the manifest follows."""
        for part in parts:
            name = self.shards.part_name(len(self.parts))
            os.replace(self.out / part.tmp, self.out / name)
            self.parts.append(
                {
                    "file": name,
                    "rows": part.rows,
                    "inputs": list(part.inputs),
                    "complete_through": part.complete_through,
                    "boundary": part.boundary,
                }
            )
            self.new_parts += 1
            self._unsaved_rows += part.rows
        # The manifest (and rejects) are rewritten after at least --shard-rows new rows: as often
        # as parts of that size would be written, not after every task (a manifest of many
        # inputs is large). Parts it does not list yet are redone by a resume.
        if parts and self._unsaved_rows >= self.shard_rows:
            self._write_state(complete=False)

    def _read(self, parts: Sequence[PartFile]) -> Any:
        import pyarrow as pa
        import pyarrow.parquet as pq

        return pa.concat_tables([pq.read_table(self.out / part.tmp) for part in parts])

    def _discard(self, parts: Sequence[PartFile]) -> None:
        for part in parts:
            (self.out / part.tmp).unlink(missing_ok=True)

    def start(self) -> None:
        """Write the manifest of a fresh dataset: no parts, nothing done yet."""
        self._write_state(complete=False)

    def finish(self) -> None:
        self._write_state(complete=True)
        listed = {p["file"] for p in self.parts}
        for stale in self.out.glob("part-*.parquet"):
            if stale.name not in listed:
                stale.unlink()
        for tmp in self.out.glob(".*.tmp"):  # parts of retried or duplicated tasks
            tmp.unlink(missing_ok=True)

    def _write_state(self, complete: bool) -> None:
        self._unsaved_rows = 0
        table = self.shards.rejects_to_table(self.rejects)
        buf = _parquet_bytes(table)
        atomic_write(self.out / self.shards.REJECTS_NAME, buf)
        manifest = {
            "kind": self.kind,
            "schema_version": self.shards.SCHEMA_VERSION,
            "ptk_version": self.ptk_version,
            "command": self.command,
            "options": self.options,
            "created": self.created,
            "updated": datetime.now(UTC).isoformat(timespec="seconds"),
            "complete": complete,
            "cursor": self.cursor,
            "cursor_ends_task": self._cursor_ends_task,  # a resume may start a task there
            "totals": self.totals(),
            "parts": self.parts,
            "inputs": self.inputs,
            "skipped": self.skipped,
        }
        atomic_write(self.out / self.shards.MANIFEST_NAME, (json.dumps(manifest, indent=1) + "\n").encode())

    def totals(self) -> dict[str, int]:
        done = self.inputs[: self.cursor]
        return {
            "rows": sum(p["rows"] for p in self.parts),
            "files_with_rows": sum(1 for r in done if r.get("rows")),
            "rejects": len(self.rejects),
            "inputs": len(self.inputs),
        }


def _parquet_bytes(table: Any) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


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
    (:func:`part_layout`), so every cluster, and a resume, writes the same dataset. Tasks are
    cut greedily, so the tasks after any task boundary are the same wherever the cut started."""
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


def run_ingest(
    kind: str,
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    splits: str | None = None,
    cath_list: str | None = None,
    max_length: int | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    shard_rows: int = DEFAULT_SHARD_ROWS,
    command: str | None = None,
    progress: bool | None = None,
) -> Summary:
    """Ingest ``inputs`` into the shard dataset ``out`` (created, or resumed). See the module doc.

    Raises:
        click.UsageError: no structure files, a missing input, conflicting options on resume.
        ptk.errors.PtkError: an unreadable split or CATH list file.
    """
    from ptk import shards
    from ptk.labels import CathLabels  # plain Python: this process does not need torch

    if kind not in shards.KINDS:
        raise click.UsageError(f"unknown kind {kind!r}; allowed: {', '.join(shards.KINDS)}")
    if shard_rows < 1:
        raise click.UsageError("--shard-rows must be at least 1")
    _check_scheduler(scheduler)
    started = time.perf_counter()
    out = Path(out)
    found = discover(inputs, kind, exclude=out)
    if not found.files:
        where = ", ".join(str(p) for p in inputs)
        raise click.UsageError(f"no structure files found in {where}")
    for folder in found.empty_folders:
        click.echo(f"ptk: note: no structure files in folder {folder}", err=True)

    labels = CathLabels.load(splits, cath_list) if kind == "cath" and (splits or cath_list) else None
    options: dict[str, Any] = {"shard_rows": shard_rows}
    if kind == "cath":
        options.update(
            max_length=max_length, splits=_file_options(splits), cath_list=_file_options(cath_list)
        )

    # Checksums: a resume compares them with the manifest's before anything is scheduled; a
    # fresh run has nothing to compare, and takes each one from the worker that reads the file.
    digests: list[str | None] = [None] * len(found.files)
    if (out / shards.MANIFEST_NAME).is_file():
        with ThreadPoolExecutor(max_workers=4) as pool:
            digests = list(pool.map(_sha256, found.files))
    records = [
        {"path": str(p), "abspath": os.path.abspath(p), "sha256": d, "rows": None, "rejects": None}
        for p, d in zip(found.files, digests, strict=True)
    ]

    if out.exists() and not out.is_dir():
        raise click.UsageError(f"--out {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / ".lock").touch()
    except OSError as exc:
        raise click.UsageError(f"--out {out}: cannot write a folder there ({exc.strerror or exc})") from None
    with _lock(out):
        for tmp in out.glob(".*.tmp"):
            tmp.unlink()
        writer = _Writer(
            kind, out, records, options, command or "", shard_rows, [str(p) for p in found.skipped]
        )
        start, changed = 0, []
        manifest_path = out / shards.MANIFEST_NAME
        if manifest_path.exists():
            manifest = shards.read_manifest(out)
            if manifest["kind"] != kind:
                raise click.UsageError(f"{out} holds {manifest['kind']} shards; use another --out for {kind}")
            diffs = _same_options(manifest.get("options", {}), options)
            if diffs:
                flags = ", ".join("--" + d.replace("_", "-") for d in diffs)
                raise click.UsageError(
                    f"{out} was written with different options ({flags}); "
                    "use a new --out, or remove the folder to rebuild it"
                )
            start, changed = writer.resume(manifest)
            if changed:
                click.echo(
                    f"ptk: {len(changed)} input(s) changed since {out} was written "
                    f"(first: {changed[0]}); re-processing from input {start + 1} of {len(records)}",
                    err=True,
                )
        elif any(p.name not in (".lock",) for p in out.iterdir()):
            raise click.UsageError(
                f"--out {out} is not empty and holds no {shards.MANIFEST_NAME}; choose an empty or new folder"
            )
        else:  # the manifest comes before the first part, so a run stopped at any point resumes
            writer.start()
        kept_parts = len(writer.parts)

        todo = [unit for i, rec in enumerate(records) if i >= start for unit in _units(i, rec)]
        show = sys.stderr.isatty() if progress is None else progress
        processed_rows = processed_atoms = 0
        if todo:
            executor = _executor(
                scheduler, workers, (kind, labels, max_length, os.path.abspath(out), shard_rows)
            )
            try:
                from tqdm import tqdm

                with tqdm(
                    total=len(records),
                    initial=start,
                    unit="file",
                    disable=not show,
                    desc=f"ingest {kind}",
                    file=sys.stderr,
                ) as bar:
                    for batch in executor.map(_batches(todo, shard_rows)):
                        processed_rows += writer.add(batch)
                        processed_atoms += sum(p.n_atoms for p in batch.packed)
                        bar.update(sum(p.unit.chunk == p.unit.n_chunks - 1 for p in batch.packed))
            except KeyboardInterrupt:
                executor.close(interrupted=True)
                raise
            finally:
                executor.close()
            writer.finish()
        elif not manifest_path.exists() or not shards.read_manifest(out).get("complete"):
            writer.finish()
        totals = writer.totals()
    return Summary(
        out=out,
        rows=totals["rows"],
        files_with_rows=totals["files_with_rows"],
        rejects=totals["rejects"],
        inputs=len(records),
        kept_parts=kept_parts,
        new_parts=writer.new_parts,
        processed_files=len(records) - start,
        processed_rows=processed_rows,
        processed_atoms=processed_atoms,
        seconds=time.perf_counter() - started,
        changed=changed,
    )


# --------------------------------------------------------------------------------------------
# Click commands


def _common(fn: Callable) -> Callable:
    options = [
        click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=str), metavar="INPUT..."),
        click.option(
            "--out",
            required=True,
            type=click.Path(file_okay=False, path_type=Path),
            help="Shard dataset folder (created; an existing one is resumed).",
        ),
        click.option(
            "--scheduler",
            default=None,
            metavar="ADDRESS",
            help="Dask scheduler: tcp://HOST:PORT of an existing cluster, or 'synchronous' to run "
            "in this process. Default: a local cluster sized to this machine.",
        ),
        click.option(
            "--workers",
            type=click.IntRange(min=1),
            default=None,
            help="Worker processes of the local cluster (default: one per CPU core).",
        ),
        click.option(
            "--shard-rows",
            type=click.IntRange(min=1),
            default=DEFAULT_SHARD_ROWS,
            show_default=True,
            help="Most rows per part file. A part holds one task's rows (up to 32 files or 16 MB "
            "of input), so parts of small files are smaller.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _report(summary: Summary) -> None:
    if summary.kept_parts and not summary.processed_files:
        click.echo(f"ptk: {summary.out} is up to date ({summary.kept_parts} parts kept)", err=True)
    elif summary.kept_parts:
        click.echo(
            f"ptk: resumed: kept {summary.kept_parts} parts, processed {summary.processed_files} files",
            err=True,
        )
    click.echo(summary.line())


@click.group("ingest")
def ingest() -> None:
    """Parse structure files into Parquet shard datasets (cath, qfit).

    INPUT is any mix of files and folders (searched recursively): PDB, mmCIF, .gz of either,
    CATH dompdb files; for cath also chain_set.jsonl / TS50 JSON backbone sets. Files that
    cannot be used are listed in DIR/rejects.parquet; re-running resumes.
    """


@ingest.command("cath")
@_common
@click.option(
    "--splits",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Ingraham CATH 4.2 chain_set_splits.json: fills `split` by chain id.",
)
@click.option(
    "--cath-list",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="CATH domain list (CLF) file: class/architecture/topology/homology by domain id.",
)
@click.option(
    "--max-length",
    type=click.IntRange(min=1),
    default=None,
    help="Reject chains longer than this (stage 'filter').",
)
def cath(
    inputs: tuple[str, ...],
    out: Path,
    scheduler: str | None,
    workers: int | None,
    shard_rows: int,
    splits: str | None,
    cath_list: str | None,
    max_length: int | None,
) -> None:
    """CATH domains/chains → cath shards (backbone, atoms, frames, dihedrals, χ, contacts)."""
    _report(
        run_ingest(
            "cath",
            inputs,
            out,
            splits=splits,
            cath_list=cath_list,
            max_length=max_length,
            scheduler=scheduler,
            workers=workers,
            shard_rows=shard_rows,
            command=_argv(),
        )
    )


@ingest.command("qfit")
@_common
def qfit(
    inputs: tuple[str, ...], out: Path, scheduler: str | None, workers: int | None, shard_rows: int
) -> None:
    """qFit multiconformer models → qfit shards (frames, per-altloc χ and occupancies)."""
    _report(
        run_ingest(
            "qfit", inputs, out, scheduler=scheduler, workers=workers, shard_rows=shard_rows, command=_argv()
        )
    )


def _argv() -> str:
    import shlex

    return " ".join(shlex.quote(a) for a in ["ptk", *sys.argv[1:]]) if sys.argv else "ptk"
