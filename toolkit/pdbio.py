"""Writing model outputs as PDB files (gemmi), so ``ptk eval``, PyMOL and TM-align read them.

A structure is one chain ``A`` of residues with coordinates in one of three layouts:

- ``[n, 3]``: Cα only (Mini-Fold v10–v13 predict one point per residue);
- ``[n, 4, 3]``: N, Cα, C, O (v14's backbone head, and the shards' ``backbone`` column);
- ``[n, 37, 3]``: atom37 heavy atoms (``ptk.residues.ATOM37``), e.g. the all-atom refiner.

Atoms that are masked out are left out (they may hold NaN); residues keep their author numbers
when ``resnum`` is given (1…n otherwise). Every atom written must be finite and fit the PDB
format's coordinate columns (``%8.3f``: -999.999 to 9999.999 Å), else nothing is written and a
:class:`PtkError` names the first bad atom: a diverged sample never becomes a file that reads
back as other coordinates.
"""

from __future__ import annotations

import os
from pathlib import Path

import gemmi
import numpy as np
from jaxtyping import Bool, Float, Int

from ptk.errors import PtkError
from ptk.residues import ATOM37, BACKBONE_ATOMS, RESTYPES_3

__all__ = ["write_pdb", "structure_from_arrays", "PDB_COORD_RANGE"]

_ELEMENT_OF = {"N": "N", "C": "C", "O": "O", "S": "S"}


def _element(atom_name: str) -> str:
    # heavy atoms of the 20 standard residues: the element is the first letter of the name
    return _ELEMENT_OF.get(atom_name[0], "C")


def _layout(shape: tuple[int, ...]) -> tuple[str, ...]:
    if len(shape) == 2 and shape[1] == 3:
        return ("CA",)
    if len(shape) == 3 and shape[2] == 3 and shape[1] == 4:
        return BACKBONE_ATOMS
    if len(shape) == 3 and shape[2] == 3 and shape[1] == len(ATOM37):
        return ATOM37
    raise PtkError(f"coordinates of shape {shape} are not [n,3], [n,4,3] or [n,37,3]")


#: the range of a PDB coordinate field (columns 31-54, ``%8.3f``).
PDB_COORD_RANGE: tuple[float, float] = (-999.999, 9999.999)


def _check_writable(
    coords: Float[np.ndarray, "n k 3"],
    present: Bool[np.ndarray, "n k"],
    numbers: Int[np.ndarray, " n"],
    names: tuple[str, ...],
) -> None:
    """Raise naming the first present atom that is not finite or does not fit a PDB field."""
    low, high = PDB_COORD_RANGE
    with np.errstate(invalid="ignore"):
        fits = np.isfinite(coords).all(-1) & (coords >= low - 5e-4).all(-1) & (coords < high + 5e-4).all(-1)
    bad = present & ~fits
    if bad.any():
        i, j = np.argwhere(bad)[0]
        x, y, z = coords[i, j]
        raise PtkError(
            f"{int(bad.sum())} atom(s) cannot be written to PDB (coordinates not finite or outside "
            f"{low:g}..{high:g} A), the first residue {int(numbers[i])} {names[j]} "
            f"at ({x:.4g}, {y:.4g}, {z:.4g})"
        )


def structure_from_arrays(
    aatype: Int[np.ndarray, " n"],
    coords: Float[np.ndarray, "n ..."],
    atom_mask: Bool[np.ndarray, "n ..."] | None = None,
    resnum: Int[np.ndarray, " n"] | None = None,
    chain_id: str = "A",
) -> gemmi.Structure:
    """A one-chain :class:`gemmi.Structure` from per-residue arrays (see the module docstring)."""
    aatype = np.asarray(aatype).astype(int)
    coords = np.asarray(coords, dtype=np.float64)
    n = aatype.shape[0]
    if coords.shape[0] != n:
        raise PtkError(f"{n} residue types but coordinates for {coords.shape[0]} residues")
    names = _layout(coords.shape)
    coords = coords.reshape(n, len(names), 3)
    present = np.ones((n, len(names)), dtype=bool)
    if atom_mask is not None:
        present &= np.asarray(atom_mask, dtype=bool).reshape(n, len(names))
    numbers = np.arange(1, n + 1) if resnum is None else np.asarray(resnum).astype(int)
    _check_writable(coords, present, numbers, names)

    structure = gemmi.Structure()
    structure.name = "ptk"
    structure.cell = gemmi.UnitCell()
    model = gemmi.Model("1")
    chain = gemmi.Chain(chain_id)
    serial = 1
    for i in range(n):
        residue = gemmi.Residue()
        residue.name = RESTYPES_3[aatype[i]] if 0 <= aatype[i] < len(RESTYPES_3) else "UNK"
        residue.seqid = gemmi.SeqId(int(numbers[i]), " ")
        residue.entity_type = gemmi.EntityType.Polymer
        for j, atom_name in enumerate(names):
            if not present[i, j]:
                continue
            atom = gemmi.Atom()
            atom.name = atom_name
            atom.element = gemmi.Element(_element(atom_name))
            atom.pos = gemmi.Position(*coords[i, j])
            atom.occ = 1.0
            atom.b_iso = 0.0
            atom.serial = serial
            serial += 1
            residue.add_atom(atom)
        chain.add_residue(residue)
    model.add_chain(chain)
    structure.add_model(model)
    structure.setup_entities()
    return structure


def write_pdb(
    path: str | os.PathLike[str],
    aatype: Int[np.ndarray, " n"],
    coords: Float[np.ndarray, "n ..."],
    atom_mask: Bool[np.ndarray, "n ..."] | None = None,
    resnum: Int[np.ndarray, " n"] | None = None,
    chain_id: str = "A",
) -> Path:
    """Write one chain as a PDB file (torch tensors are accepted too); returns the path."""

    def as_np(x):
        if x is None:
            return None
        return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)

    path = Path(path)
    try:
        structure = structure_from_arrays(
            as_np(aatype), as_np(coords), as_np(atom_mask), as_np(resnum), chain_id
        )
    except PtkError as exc:
        raise PtkError(f"{path}: not written: {exc}") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    options = gemmi.PdbWriteOptions(minimal=True, cryst1_record=False)
    path.write_text(structure.make_pdb_string(options))
    return path
