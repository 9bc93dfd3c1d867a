"""Where the data ptk ships lives: the sample structures in the installed package.

``ptk/sample_data/`` holds a few real PDB-derived entries (about 1.2 MB), copied byte for byte
from the MDAnalysisTests source distribution; their provenance, licence and sha256 are listed in
``data_manifests/sample_data.tsv`` of the source tree.

- ``cath_style``: 30 single-chain proteins (``*.pdb.gz``) for the CATH-style ingest path. Each
  chain is named in the Ingraham CATH 4.2 split file (train, validation and test, all four classes).
- ``altloc``: 4 deposited entries with named alternative conformers (19hc, 4E43 as PDB; 3PWP,
  5PTI as mmCIF) for the qFit ingest path.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Final, Literal, get_args

from ptk.errors import PtkError, unknown_choice

__all__ = ["SampleKind", "SAMPLE_KINDS", "sample_data_dir", "sample_files"]

SampleKind = Literal["cath_style", "altloc"]
SAMPLE_KINDS: Final[tuple[str, ...]] = get_args(SampleKind)


def sample_data_dir(kind: SampleKind) -> Path:
    """The folder of shipped sample structures of one ``kind`` (``"cath_style"`` or ``"altloc"``).

    Raises:
        ConfigError: ``kind`` is not one of :data:`SAMPLE_KINDS`.
        PtkError: the package is installed in a form without a real folder (a zip import) or
            the folder is missing from the installation.
    """
    if kind not in SAMPLE_KINDS:
        raise unknown_choice("sample data kind", kind, SAMPLE_KINDS)
    folder = resources.files("ptk") / "sample_data" / kind
    if not isinstance(folder, Path):
        raise PtkError(f"ptk sample data is not on the file system ({folder}); install ptk unzipped")
    if not folder.is_dir():
        raise PtkError(f"ptk sample data folder {folder} is missing from this installation")
    return folder


def sample_files(kind: SampleKind) -> list[Path]:
    """Every shipped structure file of one ``kind``, sorted by name."""
    return sorted(p for p in sample_data_dir(kind).iterdir() if p.is_file())
