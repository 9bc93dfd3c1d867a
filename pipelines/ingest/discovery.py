"""Input discovery: INPUT arguments → the files a run reads, in order (and what is skipped)."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ptk.errors import ConfigError
from ptk.files import sha256_file

__all__ = ["Inputs", "discover"]

_JSON_SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")
_DOMPDB_NAME = re.compile(r"^\d[A-Za-z0-9]{3}[A-Za-z0-9]\d{2}$")


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
    Raises ptk.errors.ConfigError for a path that does not exist.
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
            raise ConfigError(f"input {str(raw)!r} does not exist")
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
