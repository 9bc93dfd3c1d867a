"""Protein geometry in torch, batched over leading dimensions: one implementation of each formula.

Everything here is called by ingest, the models, the losses and the evaluators alike. Units are
Å and radians. Every function that can meet degenerate input (coincident or collinear atoms,
missing atoms) returns finite values plus a validity mask, and has finite gradients there: the
unsafe operand of ``sqrt``/``atan2``/division is replaced *before* the operation, not after.

Shape letters: ``*b`` leading batch dims, ``n`` residues, ``a`` atoms (37 in atom37), ``k``
χ index (4).

One module per concept, every name re-exported here:

- :mod:`~ptk.geometry.vectors`: ``EPS``, the safe norm, normalisation, degrees for display;
- :mod:`~ptk.geometry.distances`: pairwise distances and the Cα contact map;
- :mod:`~ptk.geometry.angles`: dihedrals, bond angles, φ/ψ/ω, χ1–χ4, Cα pseudo angles;
- :mod:`~ptk.geometry.frames`: backbone frames;
- :mod:`~ptk.geometry.rotation`: the rotation of a Kabsch fit (SVD, or Horn's quaternion by QCP);
- :mod:`~ptk.geometry.superposition`: Kabsch, applying a transform, superposition, RMSD.
"""

from __future__ import annotations

from ptk.geometry.angles import (
    backbone_dihedrals,
    bond_angle,
    chi_angles,
    chi_symmetric,
    dihedral,
    pseudo_bond_angles,
    pseudo_torsions,
    shift_residues,
    torsion_angles,
)
from ptk.geometry.distances import contact_map, pairwise_distances
from ptk.geometry.frames import backbone_frames
from ptk.geometry.superposition import apply_transform, kabsch, rmsd, superpose
from ptk.geometry.vectors import EPS, deg, normalize, safe_norm

__all__ = [
    "EPS",
    "safe_norm",
    "normalize",
    "pairwise_distances",
    "dihedral",
    "bond_angle",
    "backbone_frames",
    "shift_residues",
    "backbone_dihedrals",
    "chi_angles",
    "torsion_angles",
    "chi_symmetric",
    "pseudo_bond_angles",
    "pseudo_torsions",
    "contact_map",
    "kabsch",
    "apply_transform",
    "superpose",
    "rmsd",
    "deg",
]
