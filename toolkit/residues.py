"""Residue constants: the 20 standard amino acids and unknown, their heavy atoms and χ angles.

Every table is keyed by the three-letter residue name and frozen (``MappingProxyType`` over
tuples). Sources:

- residue order, one/three-letter codes and the atom37 heavy-atom layout: AlphaFold2
  ``residue_constants`` (Jumper et al. 2021, supplementary 1.2.1), the layout most structure
  models use; the heavy-atom sets agree with the wwPDB chemical component dictionary
  (cross-checked against biotite's copy of it in ``tests/test_residues.py``);
- χ1–χ4 atom quadruples: IUPAC-IUB 1970 conventions as tabulated by biotite
  (``biotite.structure.dihedral_side_chain``; LEU χ2 and ILE χ2 via CD1, VAL χ1 via CG1) and
  identical to AlphaFold2's ``chi_angles_atoms``;
- π-periodic χ: the symmetric terminal groups (ASP χ2 over OD1/OD2, GLU χ3 over OE1/OE2,
  PHE χ2 and TYR χ2 over the ring's CD1/CD2), as qFitLatent folds them
  (``../shared/seeds/qfitlatent_readme.txt``).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

import numpy as np

#: The 20 standard residues in AlphaFold2 order (alphabetical by one-letter code of the
#: three-letter name), then ``UNK`` at index 20.
RESTYPES_3: Final[tuple[str, ...]] = (
    "ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE",
    "LEU", "LYS", "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL", "UNK",
)  # fmt: skip

#: One-letter codes, index-aligned with :data:`RESTYPES_3` (``X`` for unknown).
RESTYPES_1: Final[tuple[str, ...]] = (
    "A", "R", "N", "D", "C", "Q", "E", "G", "H", "I",
    "L", "K", "M", "F", "P", "S", "T", "W", "Y", "V", "X",
)  # fmt: skip

NUM_RESTYPES: Final[int] = 21  # 20 standard + unknown
UNK_INDEX: Final[int] = 20

#: Residue index by three-letter name.
RESTYPE_INDEX: Final = MappingProxyType({name: i for i, name in enumerate(RESTYPES_3)})
#: Three-letter name by one-letter code, and back.
ONE_TO_THREE: Final = MappingProxyType(dict(zip(RESTYPES_1, RESTYPES_3, strict=True)))
THREE_TO_ONE: Final = MappingProxyType(dict(zip(RESTYPES_3, RESTYPES_1, strict=True)))

#: The atom37 layout: every heavy atom name that occurs in a standard residue, at a fixed slot.
ATOM37: Final[tuple[str, ...]] = (
    "N", "CA", "C", "CB", "O", "CG", "CG1", "CG2", "OG", "OG1",
    "SG", "CD", "CD1", "CD2", "ND1", "ND2", "OD1", "OD2", "SD", "CE",
    "CE1", "CE2", "CE3", "NE", "NE1", "NE2", "OE1", "OE2", "CH2", "NH1",
    "NH2", "OH", "CZ", "CZ2", "CZ3", "NZ", "OXT",
)  # fmt: skip
ATOM37_INDEX: Final = MappingProxyType({name: i for i, name in enumerate(ATOM37)})
NUM_ATOMS: Final[int] = 37

#: Backbone atom slots in atom37 (N, CA, C, O), the order of the ``backbone`` shard column.
BACKBONE_ATOMS: Final[tuple[str, ...]] = ("N", "CA", "C", "O")
BACKBONE_INDICES: Final[tuple[int, ...]] = tuple(ATOM37_INDEX[a] for a in BACKBONE_ATOMS)

#: Heavy atoms of each standard residue (OXT, present only on a C-terminus, is allowed for all).
RESIDUE_HEAVY_ATOMS: Final = MappingProxyType(
    {
        "ALA": ("N", "CA", "C", "O", "CB"),
        "ARG": ("N", "CA", "C", "O", "CB", "CG", "CD", "NE", "CZ", "NH1", "NH2"),
        "ASN": ("N", "CA", "C", "O", "CB", "CG", "OD1", "ND2"),
        "ASP": ("N", "CA", "C", "O", "CB", "CG", "OD1", "OD2"),
        "CYS": ("N", "CA", "C", "O", "CB", "SG"),
        "GLN": ("N", "CA", "C", "O", "CB", "CG", "CD", "OE1", "NE2"),
        "GLU": ("N", "CA", "C", "O", "CB", "CG", "CD", "OE1", "OE2"),
        "GLY": ("N", "CA", "C", "O"),
        "HIS": ("N", "CA", "C", "O", "CB", "CG", "ND1", "CD2", "CE1", "NE2"),
        "ILE": ("N", "CA", "C", "O", "CB", "CG1", "CG2", "CD1"),
        "LEU": ("N", "CA", "C", "O", "CB", "CG", "CD1", "CD2"),
        "LYS": ("N", "CA", "C", "O", "CB", "CG", "CD", "CE", "NZ"),
        "MET": ("N", "CA", "C", "O", "CB", "CG", "SD", "CE"),
        "PHE": ("N", "CA", "C", "O", "CB", "CG", "CD1", "CD2", "CE1", "CE2", "CZ"),
        "PRO": ("N", "CA", "C", "O", "CB", "CG", "CD"),
        "SER": ("N", "CA", "C", "O", "CB", "OG"),
        "THR": ("N", "CA", "C", "O", "CB", "OG1", "CG2"),
        "TRP": ("N", "CA", "C", "O", "CB", "CG", "CD1", "CD2", "NE1", "CE2", "CE3", "CZ2", "CZ3", "CH2"),
        "TYR": ("N", "CA", "C", "O", "CB", "CG", "CD1", "CD2", "CE1", "CE2", "CZ", "OH"),
        "VAL": ("N", "CA", "C", "O", "CB", "CG1", "CG2"),
        "UNK": ("N", "CA", "C", "O", "CB"),
    }
)

#: χ1–χ4 atom quadruples per residue (IUPAC; see the module docstring for the source).
CHI_ATOMS: Final = MappingProxyType(
    {
        "ALA": (),
        "ARG": (
            ("N", "CA", "CB", "CG"),
            ("CA", "CB", "CG", "CD"),
            ("CB", "CG", "CD", "NE"),
            ("CG", "CD", "NE", "CZ"),
        ),
        "ASN": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "OD1")),
        "ASP": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "OD1")),
        "CYS": (("N", "CA", "CB", "SG"),),
        "GLN": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD"), ("CB", "CG", "CD", "OE1")),
        "GLU": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD"), ("CB", "CG", "CD", "OE1")),
        "GLY": (),
        "HIS": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "ND1")),
        "ILE": (("N", "CA", "CB", "CG1"), ("CA", "CB", "CG1", "CD1")),
        "LEU": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD1")),
        "LYS": (
            ("N", "CA", "CB", "CG"),
            ("CA", "CB", "CG", "CD"),
            ("CB", "CG", "CD", "CE"),
            ("CG", "CD", "CE", "NZ"),
        ),
        "MET": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "SD"), ("CB", "CG", "SD", "CE")),
        "PHE": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD1")),
        "PRO": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD")),
        "SER": (("N", "CA", "CB", "OG"),),
        "THR": (("N", "CA", "CB", "OG1"),),
        "TRP": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD1")),
        "TYR": (("N", "CA", "CB", "CG"), ("CA", "CB", "CG", "CD1")),
        "VAL": (("N", "CA", "CB", "CG1"),),
        "UNK": (),
    }
)

#: χ angles that are π-periodic (a symmetric terminal group), by residue: 1-based χ numbers.
CHI_PI_PERIODIC: Final = MappingProxyType({"ASP": (2,), "GLU": (3,), "PHE": (2,), "TYR": (2,)})


def _freeze(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _chi_atom37_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    index = np.zeros((NUM_RESTYPES, 4, 4), dtype=np.int64)
    defined = np.zeros((NUM_RESTYPES, 4), dtype=bool)
    symmetric = np.zeros((NUM_RESTYPES, 4), dtype=bool)
    for r, name in enumerate(RESTYPES_3):
        for k, quad in enumerate(CHI_ATOMS[name]):
            index[r, k] = [ATOM37_INDEX[a] for a in quad]
            defined[r, k] = True
        for chi_number in CHI_PI_PERIODIC.get(name, ()):
            symmetric[r, chi_number - 1] = True
    return _freeze(index), _freeze(defined), _freeze(symmetric)


#: ``[21, 4, 4]`` atom37 indices of each χ quadruple (zeros where undefined).
#: ``[21, 4]`` whether residue type r has χ k; ``[21, 4]`` whether that χ is π-periodic.
CHI_ATOM37_INDEX, CHI_DEFINED, CHI_SYMMETRIC = _chi_atom37_table()


def _atom37_mask_table() -> np.ndarray:
    mask = np.zeros((NUM_RESTYPES, NUM_ATOMS), dtype=bool)
    for r, name in enumerate(RESTYPES_3):
        for atom in RESIDUE_HEAVY_ATOMS[name]:
            mask[r, ATOM37_INDEX[atom]] = True
    return _freeze(mask)


#: ``[21, 37]`` which atom37 slots a residue type can fill (OXT excluded).
RESTYPE_ATOM37_MASK: np.ndarray = _atom37_mask_table()


def restype_index(name: str) -> int:
    """Index of a three-letter residue name; unknown names map to ``UNK`` (20)."""
    return RESTYPE_INDEX.get(name.upper(), UNK_INDEX)


def sequence_to_aatype(sequence: str) -> np.ndarray:
    """One-letter sequence → ``[n]`` int8 residue indices (anything unrecognised → UNK)."""
    lookup = {c: i for i, c in enumerate(RESTYPES_1)}
    return np.fromiter(
        (lookup.get(c, UNK_INDEX) for c in sequence.upper()), dtype=np.int8, count=len(sequence)
    )


def aatype_to_sequence(aatype: np.ndarray) -> str:
    """``[n]`` residue indices → one-letter sequence (``X`` for unknown)."""
    return "".join(RESTYPES_1[int(i)] if 0 <= int(i) < NUM_RESTYPES else "X" for i in aatype)
