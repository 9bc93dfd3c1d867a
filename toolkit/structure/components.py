"""Modified residues and their parents, looked up in the chemical component tables (gemmi's
tabulated residues, then biotite's copy of the full wwPDB CCD), never in a hand list."""

from __future__ import annotations

from functools import lru_cache

import gemmi

from ptk.residues import THREE_TO_ONE, restype_index


@lru_cache(maxsize=4096)
def parent_residue(name: str) -> str | None:
    """The standard parent of residue ``name`` (``MSE`` → ``MET``), or None if not an amino acid.

    Looked up in gemmi's tabulated residues (generated from the chemical component dictionary),
    then in biotite's full copy of the CCD for names gemmi does not tabulate.
    """
    name = name.strip().upper()
    if name in THREE_TO_ONE:
        return name
    info = gemmi.find_tabulated_residue(name)
    if info is not None:
        if not info.is_amino_acid():
            return None
        code = info.one_letter_code.upper()
    else:
        from biotite.structure import info as ccd

        try:
            link = ccd.link_type(name)
        except Exception:  # biotite raises for names absent from the CCD
            return None
        if link is None or "PEPTIDE" not in str(link).upper():
            return None
        code = (ccd.one_letter_code(name) or "X").upper()
    from ptk.residues import ONE_TO_THREE

    return ONE_TO_THREE.get(code, "UNK")


# Atoms of modified residues whose names differ from the parent's (selenomethionine's Se sits
# where methionine's S does). Everything else is matched by name against the parent's atoms.
_RENAMED_ATOMS = {("MSE", "SE"): "SD"}


def _parent_restype(name: str) -> int:
    parent = parent_residue(name)
    return -1 if parent is None else restype_index(parent)
