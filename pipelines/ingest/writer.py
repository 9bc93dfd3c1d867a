"""The writer of a shard dataset under ingest: what to write and when (parts put in place in input
order, rejects, manifest) and the resume of an earlier run's unchanged prefix. How each file is
named, laid out and written is :mod:`ptk.shards.store`'s, which this module calls for every write."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ptk.pipelines.ingest.discovery import _sha256
from ptk.pipelines.ingest.task import Batch, PartFile, write_parts


class _Writer:
    """Consumes task results in input order: accounts every unit, drops duplicate ids, has the
    store rename the tasks' parts into place, and keeps rejects and the manifest up to date."""

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
        from ptk.shards import store  # lazily: `ptk ingest --help` imports no pyarrow

        self.store = store
        self.kind, self.out, self.inputs = kind, out, inputs
        self.options, self.command, self.shard_rows, self.skipped = options, command, shard_rows, skipped
        self.parts: list[dict[str, Any]] = []
        self.rejects: list[dict[str, Any]] = []
        self.seen: dict[str, str] = {}
        self.cursor = 0
        self.created = store.timestamp()
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
            ids = self.store.read_part(self.out, part["file"], columns=["id", "source"])
            for row_id, source in zip(
                ids.column("id").to_pylist(), ids.column("source").to_pylist(), strict=True
            ):
                self.seen.setdefault(row_id, source)
        # rejects name an input as the earlier run typed it: compare by absolute path (a rerun
        # from another folder types the same files differently)
        typed_abspath = {i["path"]: i["abspath"] for i in old_inputs}
        done = {rec["abspath"] for rec in self.inputs[:resume_at]}
        old_rejects = self.store.read_rejects(self.out).to_pylist()
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
            name = self.store.place_part(self.out, part.tmp, len(self.parts))
            self.parts.append(
                self.store.part_entry(name, part.rows, part.inputs, part.complete_through, part.boundary)
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

        return pa.concat_tables([self.store.read_part(self.out, part.tmp) for part in parts])

    def _discard(self, parts: Sequence[PartFile]) -> None:
        for part in parts:
            (self.out / part.tmp).unlink(missing_ok=True)

    def start(self) -> None:
        """Write the manifest of a fresh dataset: no parts, nothing done yet."""
        self._write_state(complete=False)

    def finish(self) -> None:
        """Write the manifest of the whole dataset, then delete what it does not list: parts an
        earlier run left beyond the new end, parts of retried or duplicated tasks."""
        self._write_state(complete=True)
        self.store.remove_unlisted_parts(self.out, {p["file"] for p in self.parts})
        self.store.sweep_temporary(self.out)

    def _write_state(self, complete: bool) -> None:
        """Rewrite ``rejects.parquet``, then the manifest that counts its rows."""
        self._unsaved_rows = 0
        self.store.write_rejects(self.out, self.rejects)
        manifest = self.store.manifest(
            kind=self.kind,
            command=self.command,
            options=self.options,
            created=self.created,
            complete=complete,
            cursor=self.cursor,
            cursor_ends_task=self._cursor_ends_task,
            parts=self.parts,
            inputs=self.inputs,
            rejects=len(self.rejects),
            skipped=self.skipped,
        )
        self.store.write_manifest(self.out, manifest)

    def totals(self) -> dict[str, int]:
        """The manifest's ``totals`` of the dataset as it stands."""
        return self.store.totals(self.parts, self.inputs, self.cursor, len(self.rejects))
