"""File names of structure files: the PDB and mmCIF suffixes (each also gzipped), and the name
a structure file goes by without them."""

from __future__ import annotations

from os import PathLike
from pathlib import Path

#: File extensions of structure files (PDB and mmCIF), any case, each also with ``.gz``. Files
#: without one are structures too when named like a CATH ``dompdb`` domain (the ingest decides).
STRUCTURE_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif", ".pdbx")


def _without_gz(name: str) -> str:
    return name[:-3] if name.lower().endswith(".gz") else name


def has_structure_suffix(path: str | PathLike[str]) -> bool:
    """The file name ends in one of :data:`STRUCTURE_SUFFIXES`, optionally followed by ``.gz``."""
    return _without_gz(Path(path).name).lower().endswith(STRUCTURE_SUFFIXES)


def structure_name(path: str | PathLike[str]) -> str:
    """The file name without ``.gz`` and without a structure extension (``x.pdb.gz`` → ``x``;
    ``1a04A02_noise0.5.pdb`` → ``1a04A02_noise0.5``; a CATH ``dompdb`` file without extension
    keeps its name): what ``ptk eval`` pairs predictions and references by."""
    name = _without_gz(Path(path).name)
    lower = name.lower()
    for suffix in STRUCTURE_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name
