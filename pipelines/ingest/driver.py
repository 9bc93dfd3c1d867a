"""The driver of an ingest: :func:`run_ingest` finds the inputs, resumes or starts the dataset,
schedules the tasks and hands their results, in input order, to the writer.

Library code: bad arguments raise :class:`ptk.errors.ConfigError`, notes for the user go to a
callback (default: this package's logger); the Click commands (:mod:`.commands`) turn both into
terminal output.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ptk.errors import ConfigError, unknown_choice
from ptk.pipelines.ingest.discovery import _sha256, discover
from ptk.pipelines.ingest.executors import _check_scheduler, _Distributed, _executor, _Synchronous
from ptk.pipelines.ingest.plan import _batches, _units
from ptk.pipelines.ingest.task import DEFAULT_SHARD_ROWS, Unit
from ptk.pipelines.ingest.writer import _Writer

__all__ = ["Summary", "run_ingest"]

log = logging.getLogger("ptk.pipelines.ingest")  # the package's name, as `ptk -v` shows it


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
        from ptk.shards import store

        return (
            f"{self.rows:,} chains from {self.files_with_rows:,} files; {self.rejects:,} rejected "
            f"→ {self.out / store.REJECTS_NAME}"
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
    notify: Callable[[str], None] | None = None,
) -> Summary:
    """Ingest ``inputs`` into the shard dataset ``out`` (created, or resumed).

    What a run does, and how it resumes: :mod:`ptk.pipelines.ingest`. ``progress``: a progress
    bar on stderr (default: when stderr is a terminal). ``notify`` is called with each note for
    the user, one line each (a folder without structure files; inputs changed since ``out`` was
    written); default: logged as a warning.

    Raises:
        ptk.errors.ConfigError: an unknown kind, a bad ``shard_rows`` or ``scheduler``, no
            structure files, a missing input, an ``out`` that cannot be used (not a folder, not
            empty, locked by another ingest), conflicting options on resume, an unreachable
            scheduler. ``ptk ingest`` reports these as usage errors (exit status 2).
        ptk.errors.PtkError: an unreadable split or CATH list file, an unreadable manifest.
    """
    from ptk import shards
    from ptk.labels import CathLabels  # plain Python: this process does not need torch
    from ptk.shards import store

    if kind not in shards.KINDS:
        raise unknown_choice("kind", kind, shards.KINDS)
    if shard_rows < 1:
        raise ConfigError("--shard-rows must be at least 1")
    _check_scheduler(scheduler)
    note = notify or (lambda line: log.warning("%s", line))
    started = time.perf_counter()
    out = Path(out)
    found = discover(inputs, kind, exclude=out)
    if not found.files:
        where = ", ".join(str(p) for p in inputs)
        raise ConfigError(f"no structure files found in {where}")
    for folder in found.empty_folders:
        note(f"note: no structure files in folder {folder}")

    labels = CathLabels.load(splits, cath_list) if kind == "cath" and (splits or cath_list) else None
    options: dict[str, Any] = {"shard_rows": shard_rows}
    if kind == "cath":
        options.update(
            max_length=max_length, splits=_file_options(splits), cath_list=_file_options(cath_list)
        )
    records = _records(found.files, hashed=(out / store.MANIFEST_NAME).is_file())
    _make_folder(out)
    with store.lock(out):
        store.sweep_temporary(out)
        writer = _Writer(
            kind, out, records, options, command or "", shard_rows, [str(p) for p in found.skipped]
        )
        start, changed = _open_dataset(writer, options)
        if changed:
            note(
                f"{len(changed)} input(s) changed since {out} was written "
                f"(first: {changed[0]}); re-processing from input {start + 1} of {len(records)}"
            )
        kept_parts = len(writer.parts)

        todo = [unit for i, rec in enumerate(records) if i >= start for unit in _units(i, rec)]
        show = sys.stderr.isatty() if progress is None else progress
        processed_rows = processed_atoms = 0
        if todo:
            executor = _executor(
                scheduler, workers, (kind, labels, max_length, os.path.abspath(out), shard_rows)
            )
            bar = dict(
                total=len(records), initial=start, unit="file", disable=not show, desc=f"ingest {kind}"
            )
            processed_rows, processed_atoms = _process(executor, todo, writer, bar)
            writer.finish()
        elif not store.read_manifest(out).get("complete"):
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


def _records(files: Sequence[Path], hashed: bool) -> list[dict[str, Any]]:
    """The manifest's record of each input. Checksums: a resume (``hashed``) compares them with the
    manifest's before anything is scheduled; a fresh run has nothing to compare, and takes each
    one from the worker that reads the file."""
    digests: list[str | None] = [None] * len(files)
    if hashed:
        with ThreadPoolExecutor(max_workers=4) as pool:
            digests = list(pool.map(_sha256, files))
    return [
        {"path": str(p), "abspath": os.path.abspath(p), "sha256": d, "rows": None, "rejects": None}
        for p, d in zip(files, digests, strict=True)
    ]


def _make_folder(out: Path) -> None:
    """Create ``out`` and its lock file; ConfigError where that cannot be."""
    from ptk.shards import store

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / store.LOCK_NAME).touch()
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write a folder there ({exc.strerror or exc})") from None


def _open_dataset(writer: _Writer, options: dict[str, Any]) -> tuple[int, list[str]]:
    """Resume the dataset in ``writer.out`` if it has a manifest, else start a fresh one; returns
    (first input to do, changed inputs) as :meth:`_Writer.resume` does.

    Raises:
        ptk.errors.ConfigError: the folder holds another kind, was written with other options,
            or holds files but no manifest.
    """
    from ptk.shards import store

    out, kind = writer.out, writer.kind
    if not (out / store.MANIFEST_NAME).exists():
        if any(p.name != store.LOCK_NAME for p in out.iterdir()):
            raise ConfigError(
                f"--out {out} is not empty and holds no {store.MANIFEST_NAME}; choose an empty or new folder"
            )
        writer.start()  # the manifest comes before the first part, so a run stopped at any point resumes
        return 0, []
    manifest = store.read_manifest(out)
    if manifest["kind"] != kind:
        raise ConfigError(f"{out} holds {manifest['kind']} shards; use another --out for {kind}")
    diffs = _same_options(manifest.get("options", {}), options)
    if diffs:
        flags = ", ".join("--" + d.replace("_", "-") for d in diffs)
        raise ConfigError(
            f"{out} was written with different options ({flags}); "
            "use a new --out, or remove the folder to rebuild it"
        )
    return writer.resume(manifest)


def _process(
    executor: _Synchronous | _Distributed, todo: list[Unit], writer: _Writer, bar: dict[str, Any]
) -> tuple[int, int]:
    """Run the tasks of ``todo`` and hand their results, in input order, to ``writer``, under a
    tqdm progress bar (``bar``: its settings) on stderr; closes ``executor``. Returns the rows
    kept and the atoms they hold."""
    rows = atoms = 0
    try:
        from tqdm import tqdm

        with tqdm(**bar, file=sys.stderr) as progress:
            for batch in executor.map(_batches(todo, writer.shard_rows)):
                rows += writer.add(batch)
                atoms += sum(p.n_atoms for p in batch.packed)
                progress.update(sum(p.unit.chunk == p.unit.n_chunks - 1 for p in batch.packed))
    except KeyboardInterrupt:
        executor.close(interrupted=True)
        raise
    finally:
        executor.close()
    return rows, atoms
