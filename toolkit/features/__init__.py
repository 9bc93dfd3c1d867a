"""Per-chain features for the shard datasets, and the pure per-file functions of the ingest.

Two row kinds (``../shared/DESIGN.md`` "Shard columns"; the Arrow schemas live in
:mod:`ptk.shards`):

- :func:`cath_features` — one single-conformer chain (or CATH domain) → backbone, atom37
  atoms, frames, φ/ψ/ω, χ, Cα contacts and quality fields;
- :func:`qfit_features` — one multiconformer chain → the primary backbone frame, per-altloc
  χ with occupancies normalised per residue, ``n_obs``, ``d_eff`` and ``chi_symmetric``.

Every formula comes from :mod:`ptk.geometry` (frames, dihedrals, χ, contacts); these modules
only choose which atoms go in and how the answers are masked. The feature functions are pure:
numpy in, numpy out, no I/O. :func:`cath_file_rows` and :func:`qfit_file_rows` turn one input
file into rows or a reject; the Dask pipeline (:mod:`ptk.pipelines.ingest`) only schedules them.

Modules:

- :mod:`~ptk.features.cath`: ``cath`` rows of atom37 chains and of backbone-only entries;
- :mod:`~ptk.features.qfit`: ``qfit`` rows, and the occupancy rule that weights conformers;
- :mod:`~ptk.features.quality`: chain breaks and the quality fields of both kinds;
- :mod:`~ptk.features.packing`: several chains in one geometry call, with the values of one
  call per chain;
- :mod:`~ptk.features.backbone_json`: the ``chain_set.jsonl`` / TS50 backbone JSON readers;
- :mod:`~ptk.features.rows`: one input file → rows and rejects.
"""

from ptk.features.backbone_json import read_backbone_json
from ptk.features.cath import backbone_features, backbone_features_batch, cath_features, cath_features_batch
from ptk.features.packing import (
    CONTACT_BATCH_PAIRS,
    CONTACT_CUTOFF,
    CONTACT_SEGMENT,
    GEOMETRY_BATCH_RESIDUES,
    GEOMETRY_SEGMENT,
)
from ptk.features.qfit import (
    OCC_INCONSISTENT,
    OCC_MICROHET,
    OCC_RENORMALISED,
    OCC_TOLERANCE,
    OCC_ZERO,
    conformer_occupancy,
    qfit_features,
)
from ptk.features.quality import PEPTIDE_BOND_MAX
from ptk.features.rows import FileResult, Reject, cath_file_rows, cath_files_rows, qfit_file_rows
from ptk.labels import CathLabels, domain_chain_id

__all__ = [
    "CONTACT_CUTOFF",
    "CONTACT_BATCH_PAIRS",
    "CONTACT_SEGMENT",
    "GEOMETRY_SEGMENT",
    "GEOMETRY_BATCH_RESIDUES",
    "PEPTIDE_BOND_MAX",
    "OCC_TOLERANCE",
    "OCC_RENORMALISED",
    "OCC_ZERO",
    "OCC_INCONSISTENT",
    "OCC_MICROHET",
    "CathLabels",
    "FileResult",
    "Reject",
    "cath_features",
    "cath_features_batch",
    "backbone_features",
    "backbone_features_batch",
    "qfit_features",
    "conformer_occupancy",
    "cath_file_rows",
    "cath_files_rows",
    "qfit_file_rows",
    "read_backbone_json",
    "domain_chain_id",
]
