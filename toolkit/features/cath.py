"""``cath`` rows: the per-residue columns of single-conformer chains (atom37 structures) and of
backbone-only entries (chain_set.jsonl, TS50), computed many chains at a time.

Every formula comes from :mod:`ptk.geometry` (frames, dihedrals, χ, contacts); this module only
chooses which atoms go in and how the answers are masked.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ptk import geometry
from ptk.features.packing import contacts_many, segmented
from ptk.features.quality import chain_breaks, mask_breaks, quality_fields
from ptk.residues import BACKBONE_INDICES, RESTYPES_1, sequence_to_aatype
from ptk.structure import Chain

__all__ = [
    "cath_features",
    "cath_features_batch",
    "backbone_features",
    "backbone_features_batch",
    "backbone_array",
]

_N, _CA, _C, _O = BACKBONE_INDICES


def _sequence(aatype: np.ndarray) -> str:
    return "".join(RESTYPES_1[int(a)] for a in aatype)


def cath_features(chain: Chain) -> dict[str, object]:
    """The per-residue ``cath`` columns of one chain (no id/labels; see
    :func:`~ptk.features.rows.cath_file_rows`).

    Returns:
        dict with ``sequence``, ``length``, ``aatype`` [n] int8, ``resnum`` [n] int32,
        ``icode`` [n] str, ``backbone`` [n, 4, 3] (NaN where missing), ``atoms`` [n, 37, 3]
        (NaN where missing), ``atom_mask`` [n, 37], ``frame_rot`` [n, 9] (row-major R),
        ``frame_trans`` [n, 3], ``frame_mask`` [n], ``phi``/``psi``/``omega`` [n] (+ ``_mask``),
        ``chi`` [n, 4], ``chi_mask`` [n, 4], ``contacts`` [m, 2] and the quality fields
        ``chain_break`` [n], ``n_chain_breaks``, ``n_missing_residues``,
        ``n_incomplete_backbone``, ``n_unknown``.
    """
    return cath_features_batch([chain])[0]


def _frame_columns(n: torch.Tensor, ca: torch.Tensor, c: torch.Tensor) -> dict[str, torch.Tensor]:
    rot, trans, valid = geometry.backbone_frames(n, ca, c)
    return {"frame_rot": rot.reshape(-1, 9), "frame_trans": trans, "frame_mask": valid}


def _atom_geometry(
    positions: list[np.ndarray], masks: list[np.ndarray], aatypes: list[np.ndarray]
) -> list[dict[str, np.ndarray]]:
    """Frames (:func:`ptk.geometry.backbone_frames`) and φ/ψ/ω/χ
    (:func:`ptk.geometry.torsion_angles`) of several chains, one call of each per batch
    (:func:`~ptk.features.packing.segmented`).

    Args:
        positions: per chain ``[n, 37, 3]`` float32, NaN where absent.
        masks: per chain ``[n, 37]`` atom present (every absent atom is NaN in ``positions``;
            a present atom with non-finite coordinates is caught by the geometry's own check).
        aatypes: per chain ``[n]`` int64.
    """

    def fn(pos: torch.Tensor, mask: torch.Tensor, aatype: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            **_frame_columns(pos[:, _N], pos[:, _CA], pos[:, _C]),
            **geometry.torsion_angles(pos, mask, aatype),
        }

    chains = list(zip(positions, masks, aatypes, strict=True))
    return segmented(chains, (np.nan, False, 0), fn)


def _backbone_geometry(backbones: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Frames and φ/ψ/ω (:func:`ptk.geometry.backbone_dihedrals`) of several backbone-only
    chains (``[n, 4, 3]`` N, Cα, C, O float32, NaN where missing), one call of each per batch."""

    def fn(bb: torch.Tensor) -> dict[str, torch.Tensor]:
        n, ca, c = bb[:, 0], bb[:, 1], bb[:, 2]
        return {**_frame_columns(n, ca, c), **geometry.backbone_dihedrals(n, ca, c)}

    return segmented([(bb,) for bb in backbones], (np.nan,), fn)


def cath_features_batch(chains: list[Chain]) -> list[dict[str, object]]:
    """:func:`cath_features` of several chains, with the frames and torsions of all of them
    computed together (:func:`_atom_geometry`): the same values as one chain at a time, at a
    fraction of the fixed cost of torch's small ops."""
    positions = [np.where(c.mask[..., None], c.positions, np.nan).astype(np.float32) for c in chains]
    masks = [c.mask.astype(bool, copy=False) for c in chains]
    geometries = _atom_geometry(positions, masks, [c.aatype.astype(np.int64) for c in chains])
    contacts = contacts_many([p[:, _CA] for p in positions])
    rows = []
    for chain, pos, geom, pairs in zip(chains, positions, geometries, contacts, strict=True):
        backbone = pos[:, list(BACKBONE_INDICES)]
        chain_break = chain_breaks(backbone)
        angles = {k: v for k, v in geom.items() if not k.startswith("frame_")}
        row: dict[str, object] = {
            "sequence": chain.sequence,
            "length": len(chain),
            "aatype": chain.aatype.astype(np.int8),
            "resnum": chain.resnum.astype(np.int32),
            "icode": chain.icode.astype(str),
            "backbone": backbone,
            "atoms": pos,
            "atom_mask": chain.mask.astype(bool),
            "frame_rot": geom["frame_rot"],
            "frame_trans": geom["frame_trans"],
            "frame_mask": geom["frame_mask"],
            **mask_breaks(angles, chain_break),
            "contacts": pairs,
        }
        row.update(quality_fields(chain.aatype, chain.resnum, backbone, chain_break))
        rows.append(row)
    return rows


def backbone_features(
    sequence: str, backbone: np.ndarray, resnum: np.ndarray | None = None
) -> dict[str, object]:
    """The ``cath`` columns of a backbone-only entry (chain_set.jsonl, TS50): no side chains.

    ``atoms``, ``atom_mask``, ``chi`` and ``chi_mask`` are None (null in the shard: unknown,
    not "absent"); residue numbers default to 1..n and insertion codes to "".

    Args:
        sequence: one-letter sequence (anything unrecognised → ``X``/UNK).
        backbone: ``[n, 4, 3]`` N, Cα, C, O (NaN where missing).

    Raises:
        ValueError: the coordinates do not fit the sequence.
    """
    return backbone_features_batch([(sequence, backbone, resnum)])[0]


def backbone_array(sequence: str, backbone: np.ndarray) -> np.ndarray:
    """``backbone`` as float32 ``[n, 4, 3]``; ValueError when it does not fit ``sequence``."""
    backbone = np.asarray(backbone, dtype=np.float32)
    n = len(sequence)
    if backbone.shape != (n, 4, 3):
        raise ValueError(
            f"coordinates have shape {backbone.shape}, expected ({n}, 4, 3) for a {n}-residue sequence"
        )
    return backbone


def backbone_features_batch(
    entries: Sequence[tuple[str, np.ndarray, np.ndarray | None]],
) -> list[dict[str, object]]:
    """:func:`backbone_features` of several entries (sequence, backbone, resnum or None), with
    the frames, dihedrals and contacts of all of them computed together (the same values as one
    entry at a time: :func:`~ptk.features.packing.segmented`,
    :func:`~ptk.features.packing.contacts_many`).

    Raises:
        ValueError: an entry's coordinates do not fit its sequence (check with
            :func:`backbone_array` first to keep the others).
    """
    backbones = [backbone_array(seq, bb) for seq, bb, _ in entries]
    geometries = _backbone_geometry(backbones)
    contacts = contacts_many([bb[:, 1] for bb in backbones])
    rows = []
    for (sequence, _, resnum), backbone, geom, pairs in zip(
        entries, backbones, geometries, contacts, strict=True
    ):
        n = len(sequence)
        aatype = sequence_to_aatype(sequence)
        resnum = np.arange(1, n + 1, dtype=np.int32) if resnum is None else resnum.astype(np.int32)
        chain_break = chain_breaks(backbone)
        angles = {k: v for k, v in geom.items() if not k.startswith("frame_")}
        row: dict[str, object] = {
            "sequence": _sequence(aatype),
            "length": n,
            "aatype": aatype,
            "resnum": resnum,
            "icode": np.full(n, "", dtype=object),
            "backbone": backbone,
            "atoms": None,
            "atom_mask": None,
            "frame_rot": geom["frame_rot"],
            "frame_trans": geom["frame_trans"],
            "frame_mask": geom["frame_mask"],
            **mask_breaks(angles, chain_break),
            "chi": None,
            "chi_mask": None,
            "contacts": pairs,
        }
        row.update(quality_fields(aatype, None, backbone, chain_break))
        rows.append(row)
    return rows
