"""Residue constants cross-checked against gemmi's residue tables and biotite's copy of the CCD."""

from __future__ import annotations

import biotite.structure.geometry as biotite_geometry
import biotite.structure.info as ccd
import gemmi
import numpy as np
import pytest

from ptk import residues as R


def test_one_and_three_letter_codes_match_gemmi() -> None:
    assert len(R.RESTYPES_3) == len(R.RESTYPES_1) == R.NUM_RESTYPES == 21
    for three, one in zip(R.RESTYPES_3, R.RESTYPES_1, strict=True):
        info = gemmi.find_tabulated_residue(three)
        assert info is not None and info.is_amino_acid()
        assert info.one_letter_code.upper() == one, three


@pytest.mark.parametrize("name", [n for n in R.RESTYPES_3 if n != "UNK"])
def test_heavy_atoms_match_the_chemical_component_dictionary(name: str) -> None:
    component = ccd.residue(name)
    heavy = {a for a, e in zip(component.atom_name, component.element, strict=True) if e != "H"}
    heavy.discard("OXT")  # present only on a C-terminus
    assert set(R.RESIDUE_HEAVY_ATOMS[name]) == heavy
    assert R.RESTYPE_ATOM37_MASK[R.RESTYPE_INDEX[name]].sum() == len(heavy)


def test_atom37_layout_holds_every_heavy_atom_once() -> None:
    assert len(R.ATOM37) == len(set(R.ATOM37)) == R.NUM_ATOMS
    every = {a for atoms in R.RESIDUE_HEAVY_ATOMS.values() for a in atoms} | {"OXT"}
    assert every == set(R.ATOM37)
    assert R.BACKBONE_ATOMS == ("N", "CA", "C", "O") and R.BACKBONE_INDICES == (0, 1, 2, 4)


def test_chi_atoms_match_biotite_definitions() -> None:
    reference = biotite_geometry._CHI_ATOMS  # biotite's IUPAC table (the one its dihedral_side_chain uses)
    for name in R.RESTYPES_3:
        assert tuple(tuple(q) for q in reference.get(name, [])) == R.CHI_ATOMS[name], name
        for quad in R.CHI_ATOMS[name]:
            assert set(quad) <= set(R.RESIDUE_HEAVY_ATOMS[name])


def test_pi_periodic_chi_are_the_symmetric_terminal_groups() -> None:
    flagged = {(R.RESTYPES_3[r], k + 1) for r, k in zip(*np.nonzero(R.CHI_SYMMETRIC), strict=True)}
    assert flagged == {("ASP", 2), ("GLU", 3), ("PHE", 2), ("TYR", 2)}
    assert not (R.CHI_SYMMETRIC & ~R.CHI_DEFINED).any()


def test_tables_are_immutable() -> None:
    with pytest.raises(TypeError):
        R.CHI_ATOMS["ALA"] = ()  # type: ignore[index]
    with pytest.raises(ValueError):
        R.CHI_ATOM37_INDEX[0, 0, 0] = 1


def test_sequence_round_trip_and_unknowns() -> None:
    seq = "ACDEFGHIKLMNPQRSTVWYX"
    aatype = R.sequence_to_aatype(seq)
    assert R.aatype_to_sequence(aatype) == seq
    assert R.sequence_to_aatype("B")[0] == R.UNK_INDEX
    assert R.restype_index("XYZ") == R.UNK_INDEX
