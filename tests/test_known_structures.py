"""Real files that once broke something, each with the reason (a regression list)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ptk.residues import ATOM37_INDEX
from ptk.structure import read_chains

KNOWN = [
    # (path under shared/data, chains, residues of the first chain, why it is here)
    ("cath/dompdb/1hdoA00", 1, 205,
     "true A/B altlocs with hydrogens: biotite's 'occupancy' rule sums occupancies over atoms, so "
     "hydrogen counts decide its altloc; ptk compares mean heavy-atom occupancy per altloc"),
    ("qfit/qfit_models/segment_example_multiconformer_model2_pruned.pdb", 1, 279,
     "occupancies differ between atoms of one altloc; float sums made 0.2075 vs 0.20750000000000002 "
     "pick altloc B over A: means are rounded before the tie-break"),
    ("qfit/qfit_models/3K0N_multiconformer_model2.pdb", 1, 163,
     "waters written as ATOM HOH records must not become residues"),
    ("qfit/deposited/3SB3.pdb", 1, None,
     "selenomethionine as HETATM MSE inside the chain: parent MET, SE stored as SD"),
    ("qfit/fragments/4ms6_tiny.cif.gz", 1, 3,
     "mmCIF whose only altlocs are on a ligand: the protein has one conformer per residue"),
    ("cath/dompdb/1c0pA01", 1, 199,
     "80-column dompdb with a non-blank altloc column but one position per atom"),
]  # fmt: skip


@pytest.mark.parametrize(("relative", "n_chains", "n_residues", "why"), KNOWN, ids=[k[0] for k in KNOWN])
def test_known_structure(
    shared_data: Path, relative: str, n_chains: int, n_residues: int | None, why: str
) -> None:
    parsed = read_chains(shared_data / relative, altlocs=True)
    assert len(parsed.chains) == n_chains, why
    chain = parsed.chains[0]
    if n_residues is not None:
        assert len(chain) == n_residues, why
    assert "HOH" not in set(chain.resname), why
    assert chain.mask[:, ATOM37_INDEX["CA"]].mean() > 0.95, why
    assert np.isfinite(chain.positions[chain.mask]).all(), why
    if relative.endswith("4ms6_tiny.cif.gz"):
        assert chain.conformers is not None and chain.conformers.labels.shape[1] == 1
    if relative.endswith("3SB3.pdb"):
        assert "M" in chain.sequence and "MSE" in set(chain.resname)
