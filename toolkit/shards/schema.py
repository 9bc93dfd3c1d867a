"""The shard columns and their versioned Arrow schemas (``cath``, ``qfit``, ``rejects``).

Column names are the public ones of DESIGN.md "Shard columns", plus ``aatype`` (residue index,
0..20) and quality fields. Per-residue columns are Arrow lists over residues; per-altloc qfit
columns are lists over residues of lists over that residue's conformers (``n_obs`` long).
Coordinates are fixed-size lists of float32 (NaN where missing); codes are int8/int16.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

import pyarrow as pa

from ptk.errors import unknown_choice

__all__ = [
    "SCHEMA_VERSION",
    "KINDS",
    "Column",
    "CATH_COLUMNS",
    "QFIT_COLUMNS",
    "COLUMNS",
    "CATH_SCHEMA",
    "QFIT_SCHEMA",
    "REJECTS_SCHEMA",
    "schema_for",
]

#: Bump when a column is added, removed or changes type or meaning; readers refuse other versions.
SCHEMA_VERSION: Final[int] = 2
KINDS: Final[tuple[str, ...]] = ("cath", "qfit")


@dataclass(frozen=True)
class Column:
    """One shard column: name, Arrow type and what a row's value looks like.

    ``layout``: ``"row"`` a scalar per row; ``"res"`` ``[n, *shape]`` per residue;
    ``"conf"`` ``[n, A, *shape]`` per residue per conformer (stored ragged, ``n_obs`` each);
    ``"pairs"`` ``[m, 2]`` (contact pairs).
    """

    name: str
    type: pa.DataType
    layout: Literal["row", "res", "conf", "pairs"]
    doc: str
    nullable_row: bool = False  # a whole "res" value may be null (backbone-only JSON entries)


def _fsl(t: pa.DataType, k: int) -> pa.DataType:
    return pa.list_(pa.field("item", t, nullable=False), k)


_F32, _BOOL, _I8, _I16, _I32, _STR = pa.float32(), pa.bool_(), pa.int8(), pa.int16(), pa.int32(), pa.string()

_COMMON_HEAD: tuple[Column, ...] = (
    Column("id", _STR, "row", "domain or chain id (1c0pA01, 1g8a.A)"),
    Column("chain_id", _STR, "row", "pdbid.chain (author chain id)"),
    Column("source", _STR, "row", "input path as given"),
    Column("source_sha256", _STR, "row", "sha256 of the input file"),
    Column("sequence", _STR, "row", "one-letter sequence, X unknown"),
    Column("length", _I32, "row", "residue count"),
)
_COMMON_RES: tuple[Column, ...] = (
    Column("resnum", _I32, "res", "author residue number"),
    Column("icode", _STR, "res", "insertion code ('' where none)"),
    Column("aatype", _I8, "res", "residue index 0..20 (ptk.residues.RESTYPES_3; 20 = UNK)"),
    Column("backbone", _fsl(_F32, 12), "res", "N, CA, C, O xyz (NaN where missing)"),
    Column("frame_rot", _fsl(_F32, 9), "res", "backbone frame R, row-major (columns x̂ ŷ ẑ)"),
    Column("frame_trans", _fsl(_F32, 3), "res", "frame origin t = CA"),
    Column("frame_mask", _BOOL, "res", "frame defined (N, CA, C present, not collinear)"),
)
_QUALITY: tuple[Column, ...] = (
    Column("chain_break", _BOOL, "res", "no peptide bond from this residue to the next (C-N > 2 Å)"),
    Column("n_chain_breaks", _I32, "row", "number of chain_break residues"),
    Column("n_missing_residues", _I32, "row", "residues missing by author numbering gaps"),
    Column("n_incomplete_backbone", _I32, "row", "residues missing any of N, CA, C, O"),
    Column("n_unknown", _I32, "row", "residues of unknown type (UNK)"),
)

CATH_COLUMNS: Final[tuple[Column, ...]] = (
    *_COMMON_HEAD,
    Column("split", _STR, "row", "train / validation / test; null when no split file names it"),
    Column("cath_class", _I16, "row", "CATH class (C); null unknown"),
    Column("cath_architecture", _I16, "row", "CATH architecture number (A); null unknown"),
    Column("cath_topology", _I16, "row", "CATH topology number (T); null unknown"),
    Column("cath_homology", _I32, "row", "CATH homologous superfamily number (H); null unknown"),
    *_COMMON_RES,
    Column(
        "atoms",
        _fsl(_F32, 111),
        "res",
        "atom37 heavy atoms xyz (NaN missing); null: backbone-only",
        nullable_row=True,
    ),
    Column(
        "atom_mask", _fsl(_BOOL, 37), "res", "atom37 atom present; null: backbone-only", nullable_row=True
    ),
    Column("phi", _F32, "res", "φ (radians; 0 where undefined)"),
    Column("psi", _F32, "res", "ψ"),
    Column("omega", _F32, "res", "ω"),
    Column("phi_mask", _BOOL, "res", "φ defined (atoms present, no chain break)"),
    Column("psi_mask", _BOOL, "res", "ψ defined"),
    Column("omega_mask", _BOOL, "res", "ω defined"),
    Column(
        "chi",
        _fsl(_F32, 4),
        "res",
        "χ1–χ4 (radians; 0 where undefined); null: backbone-only",
        nullable_row=True,
    ),
    Column("chi_mask", _fsl(_BOOL, 4), "res", "χ defined; null: backbone-only", nullable_row=True),
    Column("contacts", _fsl(_I32, 2), "pairs", "residue index pairs (i < j) with CA-CA < 8 Å"),
    *_QUALITY,
)

QFIT_COLUMNS: Final[tuple[Column, ...]] = (
    *_COMMON_HEAD,
    *_COMMON_RES,
    Column("frame_altloc", _STR, "res", "altloc the frame came from ('' = blank altloc)"),
    Column("altlocs", _STR, "conf", "altloc label per conformer ('' = the residue has none)"),
    Column("occupancy", _F32, "conf", "conformer occupancy, normalised to sum 1 per residue"),
    Column("occupancy_raw", _F32, "conf", "median atom occupancy of the altloc, before normalising"),
    Column(
        "occupancy_flag",
        _I8,
        "res",
        "bits: 1 renormalised, 2 all-zero (equal weights), 4 atoms of one altloc disagree, "
        "8 microheterogeneity (another residue type under other altlocs; the dominant kept)",
    ),
    Column("chi", _fsl(_F32, 4), "conf", "χ1–χ4 per conformer (radians; 0 where undefined)"),
    Column("chi_mask", _fsl(_BOOL, 4), "conf", "χ defined per conformer"),
    Column("chi_symmetric", _fsl(_BOOL, 4), "res", "χ is π-periodic (ASP χ2, GLU χ3, PHE χ2, TYR χ2)"),
    Column("n_obs", _I8, "res", "observed conformers (named altlocs; 1 when none)"),
    Column("d_eff", _I8, "res", "χ angles defined in at least one conformer"),
    *_QUALITY,
    Column("n_occupancy_renormalised", _I32, "row", "residues with occupancy_flag bit 1"),
    Column("n_occupancy_zero", _I32, "row", "residues with occupancy_flag bit 2"),
    Column("n_occupancy_inconsistent", _I32, "row", "residues with occupancy_flag bit 4"),
    Column("n_microheterogeneous", _I32, "row", "residues with occupancy_flag bit 8"),
)

#: The columns of each shard kind, in schema order.
COLUMNS: Final = {"cath": CATH_COLUMNS, "qfit": QFIT_COLUMNS}


def _schema(kind: str, columns: Sequence[Column]) -> pa.Schema:
    fields = []
    for col in columns:
        if col.layout == "row":
            t = col.type
        elif col.layout in ("res", "pairs"):
            t = pa.list_(pa.field("item", col.type, nullable=col.type in (_STR,)))
        else:
            t = pa.list_(pa.field("item", pa.list_(pa.field("item", col.type)), nullable=False))
        fields.append(pa.field(col.name, t, metadata={"doc": col.doc}))
    return pa.schema(fields, metadata={"ptk.kind": kind, "ptk.schema_version": str(SCHEMA_VERSION)})


CATH_SCHEMA: Final[pa.Schema] = _schema("cath", CATH_COLUMNS)
QFIT_SCHEMA: Final[pa.Schema] = _schema("qfit", QFIT_COLUMNS)
REJECTS_SCHEMA: Final[pa.Schema] = pa.schema(
    [
        pa.field("input", _STR, nullable=False, metadata={"doc": "input path as given"}),
        pa.field("item", _STR, metadata={"doc": "chain or entry within the input; null = the whole file"}),
        pa.field(
            "stage",
            _STR,
            nullable=False,
            metadata={"doc": "read | parse | features | filter | dedupe | write | worker"},
        ),
        pa.field("error_class", _STR, nullable=False),
        pa.field("message", _STR, nullable=False),
    ],
    metadata={"ptk.kind": "rejects", "ptk.schema_version": str(SCHEMA_VERSION)},
)


def schema_for(kind: str) -> pa.Schema:
    """The Arrow schema of a shard kind (``cath`` or ``qfit``)."""
    if kind not in COLUMNS:
        raise unknown_choice("shard kind", kind, KINDS)
    return {"cath": CATH_SCHEMA, "qfit": QFIT_SCHEMA}[kind]
