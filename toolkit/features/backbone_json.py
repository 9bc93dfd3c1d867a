"""Backbone JSON sets: the CATH 4.2 ``chain_set.jsonl`` and TS50 layouts read into entries, and
an entry's sequence, backbone and ids."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from os import PathLike
from pathlib import Path

import numpy as np

from ptk.errors import StructureError
from ptk.labels import domain_chain_id
from ptk.structure import check_regular_file

__all__ = ["read_backbone_json", "entry_backbone", "entry_ids"]


def read_backbone_json(
    path: str | PathLike[str], byte_range: tuple[int, int] | None = None
) -> tuple[str | None, Iterator[tuple[str, dict | Exception]]]:
    """Open a backbone JSON set → (sha256, iterator of (entry name, entry dict or the error)).

    Layouts: ``chain_set.jsonl`` (one object per line: ``name``, ``seq``, ``coords`` {N, CA,
    C, O: [n, 3]}, ``CATH`` codes) and TS50 (one JSON list of {``name``, ``seq``, ``coords``:
    [n][4][3]}). A line that is not valid JSON is an error entry named ``line N`` (``byte N``
    when reading a ``byte_range`` of a large .jsonl: the pipeline splits those into tasks at
    line starts, and then the sha256 is the caller's to give, so None is returned).
    """
    import gzip
    import hashlib

    p = Path(path)
    digest = None
    check_regular_file(p)
    if byte_range is None:
        raw = p.read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
    else:
        with p.open("rb") as fh:
            fh.seek(byte_range[0])
            raw = fh.read(byte_range[1] - byte_range[0])
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise StructureError(p, f"corrupt or truncated gzip data ({exc})") from exc
    text = raw.decode("utf-8", errors="replace")
    if not text.strip():
        raise StructureError(p, "empty file")

    def entries() -> Iterator[tuple[str, dict | Exception]]:
        stripped = text.lstrip()
        if stripped.startswith("[") and byte_range is None:
            try:
                items = json.loads(text)
            except ValueError as exc:
                yield "file", StructureError(p, f"invalid JSON list ({exc})")
                return
            if not isinstance(items, list):
                yield "file", StructureError(p, "JSON is not a list of entries")
                return
            for k, item in enumerate(items):
                name = item.get("name", f"entry {k}") if isinstance(item, dict) else f"entry {k}"
                yield str(name), item if isinstance(item, dict) else ValueError("entry is not an object")
            return
        offset = 0 if byte_range is None else byte_range[0]
        for number, line in enumerate(text.splitlines(keepends=True), 1):
            where = f"line {number}" if byte_range is None else f"byte {offset}"
            offset += len(line.encode("utf-8", errors="replace"))
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError as exc:
                yield where, ValueError(f"{where}: invalid JSON ({exc})")
                continue
            if not isinstance(item, dict):
                yield where, ValueError(f"{where}: not a JSON object")
                continue
            yield str(item.get("name", where)), item

    return digest, entries()


def _float_array(values: object) -> np.ndarray:
    """JSON coordinates → float array; null → NaN (chain_set.jsonl may write either)."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        rows = [[np.nan] * 3 if xyz is None else [np.nan if v is None else v for v in xyz] for xyz in values]
        return np.asarray(rows, dtype=np.float64)


def entry_backbone(entry: dict) -> tuple[str, np.ndarray]:
    """One entry → (sequence, ``[n, 4, 3]`` float32 N/CA/C/O, NaN where null); ValueError when
    its ``seq`` or ``coords`` are missing or malformed."""
    seq = entry.get("seq")
    coords = entry.get("coords")
    if not isinstance(seq, str) or coords is None:
        raise ValueError("entry needs 'seq' (string) and 'coords'")
    if isinstance(coords, dict):  # chain_set.jsonl: {N: [n,3], CA: ..., C: ..., O: ...}
        try:
            stacked = [_float_array(coords[k]) for k in ("N", "CA", "C", "O")]
        except KeyError as exc:
            raise ValueError(f"coords has no {exc.args[0]} list") from exc
        shapes = {s.shape for s in stacked}
        if len(shapes) != 1:
            raise ValueError(f"coords N/CA/C/O lists differ in length: {sorted(shapes)}")
        backbone = np.stack(stacked, axis=1)
    else:  # TS50: [n][4][3]
        backbone = np.stack([_float_array(res) for res in coords]) if len(coords) else np.zeros((0, 4, 3))
    if backbone.ndim != 3 or backbone.shape[1:] != (4, 3) and backbone.size:
        raise ValueError(f"coords have shape {backbone.shape}, expected (n, 4, 3)")
    if backbone.shape[0] == 0:
        raise ValueError("entry has no residues")
    return seq, backbone.astype(np.float32)


def entry_ids(name: str) -> tuple[str, str]:
    """Entry name → (id, chain_id): ``1abc.A`` stays; TS50's ``1eteA`` becomes ``1ete.A``."""
    if "." in name:
        pdb, _, chain = name.partition(".")
        chain_id = f"{pdb.lower()}.{chain}"
        return chain_id, chain_id
    if domain_chain_id(name):
        return name, domain_chain_id(name) or name
    if re.match(r"^\d[A-Za-z0-9]{3}[A-Za-z0-9]+$", name):
        chain_id = f"{name[:4].lower()}.{name[4:]}"
        return chain_id, chain_id
    return name, name
