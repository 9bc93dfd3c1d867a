"""Per-file rows: one input file → ``cath`` or ``qfit`` rows, or rejects (the pure per-file
functions of the ingest; the Dask pipeline, :mod:`ptk.pipelines.ingest`, only schedules them).

Nothing here raises: every failure becomes a :class:`Reject`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import numpy as np

from ptk.errors import StructureError
from ptk.features.backbone_json import entry_backbone, entry_ids, read_backbone_json
from ptk.features.cath import (
    backbone_array,
    backbone_features,
    backbone_features_batch,
    cath_features,
    cath_features_batch,
)
from ptk.features.qfit import qfit_features
from ptk.labels import DOMAIN_ID, CathLabels, domain_chain_id
from ptk.structure import Chain, read_chains, read_file_bytes

__all__ = ["Reject", "FileResult", "cath_file_rows", "cath_files_rows", "qfit_file_rows"]


@dataclass
class Reject:
    """One thing that did not become a row: a whole file (``item`` None) or one chain/entry."""

    input: str
    item: str | None
    stage: str  # "read" | "parse" | "features" | "filter" | "dedupe" | "write" | "worker"
    error_class: str
    message: str


@dataclass
class FileResult:
    """What one input file gave: rows (dicts of column → value) and rejects."""

    path: str
    sha256: str | None
    rows: list[dict[str, object]] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


def _reject(path: str, item: str | None, stage: str, exc: BaseException) -> Reject:
    message = exc.problem if isinstance(exc, StructureError) else str(exc)
    return Reject(path, item, stage, type(exc).__name__, message or type(exc).__name__)


def _row_ids(path: Path, chain: Chain, n_chains: int) -> tuple[str, str]:
    """(id, chain_id): a CATH domain file's single chain is its domain id; otherwise pdbid.chain."""
    chain_id = chain.chain_id
    stem = path.name
    if DOMAIN_ID.match(stem) and n_chains == 1:
        return stem, domain_chain_id(stem) or chain_id
    return chain_id, chain_id


def _is_json(path: Path, head: bytes) -> bool:
    name = path.name.lower()
    if name.endswith((".json", ".jsonl", ".json.gz", ".jsonl.gz")):
        return True
    return head.lstrip()[:1] in (b"{", b"[")


def cath_file_rows(
    path: str | PathLike[str],
    labels: CathLabels | None = None,
    max_length: int | None = None,
    byte_range: tuple[int, int] | None = None,
    sha256: str | None = None,
) -> FileResult:
    """One input file → ``cath`` rows (one per protein chain / domain / JSON entry) and rejects.

    ``byte_range`` (with the file's ``sha256``) reads only those bytes of a ``.jsonl`` file, so
    one large chain_set.jsonl can be spread over many tasks.

    Structure files go through :func:`ptk.structure.read_chains`; JSON files are read as the
    CATH 4.2 ``chain_set.jsonl`` layout or the TS50 list layout
    (:func:`~ptk.features.backbone_json.read_backbone_json`).
    Nothing raises: every failure becomes a :class:`Reject`.
    """
    return cath_files_rows([(path, byte_range, sha256)], labels, max_length)[0]


def cath_files_rows(
    files: Sequence[tuple[str | PathLike[str], tuple[int, int] | None, str | None]],
    labels: CathLabels | None = None,
    max_length: int | None = None,
) -> list[FileResult]:
    """:func:`cath_file_rows` of several files, (path, byte_range, sha256) each, in order: the
    chains of all structure files get their features in one
    :func:`~ptk.features.cath.cath_features_batch` (the same rows and rejects, in the same order,
    as one file at a time)."""
    labels = labels or CathLabels()
    results: list[FileResult] = []
    plans: list[list[Reject | tuple[Chain, str, str]]] = []
    for path, byte_range, sha256 in files:
        result, plan = _cath_file_chains(path, labels, max_length, byte_range, sha256)
        results.append(result)
        plans.append(plan)
    chains = [item[0] for plan in plans for item in plan if not isinstance(item, Reject)]
    try:
        rows: list[dict[str, object] | Exception] = list(cath_features_batch(chains))
    except Exception:  # noqa: BLE001 - find the chain that fails, keep the others
        rows = []
        for chain in chains:
            try:
                rows.append(cath_features(chain))
            except Exception as exc:  # noqa: BLE001
                rows.append(exc)
    done = iter(rows)
    for result, plan in zip(results, plans, strict=True):
        for item in plan:
            if isinstance(item, Reject):
                result.rejects.append(item)
                continue
            _, row_id, chain_id = item
            row = next(done)
            if isinstance(row, Exception):
                result.rejects.append(_reject(result.path, row_id, "features", row))
                continue
            _set_identity_and_labels(row, row_id, chain_id, result.path, result.sha256, labels, None)
            result.rows.append(row)
    return results


def _cath_file_chains(
    path: str | PathLike[str],
    labels: CathLabels,
    max_length: int | None,
    byte_range: tuple[int, int] | None,
    sha256: str | None,
) -> tuple[FileResult, list[Reject | tuple[Chain, str, str]]]:
    """Read one file: (its result, finished for JSON files and unreadable files; and for a
    structure file the per-chain plan in chain order: a ``filter`` reject, or (chain, id,
    chain_id) waiting for its features)."""
    p = Path(path)
    result = FileResult(str(path), None)
    try:
        raw = read_file_bytes(p, limit=64)
    except StructureError as exc:
        result.rejects.append(_reject(str(path), None, "read", exc))
        return result, []
    if byte_range is not None or _is_json(p, raw):
        return _json_rows(p, result, labels, max_length, byte_range, sha256), []
    try:
        parsed = read_chains(p)
    except StructureError as exc:
        result.rejects.append(_reject(str(path), None, "read", exc))
        return result, []
    except Exception as exc:  # noqa: BLE001 - a reader bug must not stop the other files
        result.rejects.append(_reject(str(path), None, "read", exc))
        return result, []
    result.sha256 = parsed.sha256
    plan: list[Reject | tuple[Chain, str, str]] = []
    for chain in parsed.chains:
        row_id, chain_id = _row_ids(p, chain, len(parsed.chains))
        if max_length is not None and len(chain) > max_length:
            plan.append(
                Reject(
                    str(path),
                    row_id,
                    "filter",
                    "TooLong",
                    f"{len(chain)} residues > --max-length {max_length}",
                )
            )
            continue
        plan.append((chain, row_id, chain_id))
    return result, plan


def _set_identity_and_labels(
    row: dict,
    row_id: str,
    chain_id: str,
    source: str,
    sha: str | None,
    labels: CathLabels,
    own_nodes: list[str] | None,
) -> None:
    c, a, t, h = labels.numbers(row_id, chain_id, own_nodes)
    row.update(
        id=row_id,
        chain_id=chain_id,
        source=source,
        source_sha256=sha,
        split=labels.split.get(chain_id),
        cath_class=c,
        cath_architecture=a,
        cath_topology=t,
        cath_homology=h,
    )


def _json_rows(
    path: Path,
    result: FileResult,
    labels: CathLabels,
    max_length: int | None,
    byte_range: tuple[int, int] | None,
    sha256: str | None,
) -> FileResult:
    source = result.path
    try:
        digest, entries = read_backbone_json(path, byte_range)
    except StructureError as exc:
        result.rejects.append(_reject(source, None, "read", exc))
        return result
    digest = digest or sha256
    result.sha256 = digest
    # (row id, chain id, own CATH codes, (sequence, backbone, None)) of the entries that parse;
    # their features are computed together below.
    todo: list[tuple[str, str, list[str] | None, tuple[str, np.ndarray, None]]] = []
    for name, entry in entries:
        if isinstance(entry, Exception):
            item = None if name == "file" else name
            result.rejects.append(_reject(source, item, "parse", entry))
            continue
        row_id, chain_id = entry_ids(name)
        try:
            seq, backbone = entry_backbone(entry)
            if max_length is not None and len(seq) > max_length:
                result.rejects.append(
                    Reject(
                        source,
                        row_id,
                        "filter",
                        "TooLong",
                        f"{len(seq)} residues > --max-length {max_length}",
                    )
                )
                continue
            backbone = backbone_array(seq, backbone)
        except Exception as exc:  # noqa: BLE001
            result.rejects.append(_reject(source, row_id, "parse", exc))
            continue
        own = entry.get("CATH") or entry.get("cath")
        own_nodes = [str(c) for c in own] if isinstance(own, list) else None
        todo.append((row_id, chain_id, own_nodes, (seq, backbone, None)))
    try:
        rows: list[dict[str, object] | Exception] = list(backbone_features_batch([t[3] for t in todo]))
    except Exception:  # noqa: BLE001 - find the entry that fails, keep the others
        rows = []
        for *_, item in todo:
            try:
                rows.append(backbone_features(*item))
            except Exception as exc:  # noqa: BLE001
                rows.append(exc)
    for (row_id, chain_id, own_nodes, _), row in zip(todo, rows, strict=True):
        if isinstance(row, Exception):
            result.rejects.append(_reject(source, row_id, "parse", row))
            continue
        _set_identity_and_labels(row, row_id, chain_id, source, digest, labels, own_nodes)
        result.rows.append(row)
    if not result.rows and not result.rejects and byte_range is None:
        result.rejects.append(Reject(source, None, "parse", "StructureError", "no entries in JSON file"))
    return result


def qfit_file_rows(path: str | PathLike[str]) -> FileResult:
    """One multiconformer structure file → ``qfit`` rows (one per protein chain) and rejects."""
    p = Path(path)
    result = FileResult(str(path), None)
    try:
        parsed = read_chains(p, altlocs=True)
    except Exception as exc:  # noqa: BLE001 - StructureError, or a reader bug: never stop the run
        result.rejects.append(_reject(str(path), None, "read", exc))
        return result
    result.sha256 = parsed.sha256
    for chain in parsed.chains:
        try:
            row = qfit_features(chain)
        except Exception as exc:  # noqa: BLE001
            result.rejects.append(_reject(str(path), chain.chain_id, "features", exc))
            continue
        row.update(id=chain.chain_id, chain_id=chain.chain_id, source=str(path), source_sha256=parsed.sha256)
        result.rows.append(row)
    return result
