"""Per-chain features for the shard datasets, and the pure per-file functions of the ingest.

Two row kinds (``../shared/DESIGN.md`` "Shard columns"; the Arrow schemas live in
:mod:`ptk.shards`):

- :func:`cath_features` — one single-conformer chain (or CATH domain) → backbone, atom37
  atoms, frames, φ/ψ/ω, χ, Cα contacts and quality fields;
- :func:`qfit_features` — one multiconformer chain → the primary backbone frame, per-altloc
  χ with occupancies normalised per residue, ``n_obs``, ``d_eff`` and ``chi_symmetric``.

Every formula comes from :mod:`ptk.geometry` (frames, dihedrals, χ, contacts); this module only
chooses which atoms go in and how the answers are masked. The functions are pure: numpy in,
numpy out, no I/O. :func:`cath_file_rows` and :func:`qfit_file_rows` turn one input file into
rows or a reject; the Dask pipeline (:mod:`ptk.pipelines.ingest`) only schedules them.

qFit occupancy rule (the qFitLatent loss weights each altloc's χ by its occupancy ``o_a``):

    A conformer's occupancy is the **median** occupancy of the atoms that carry its altloc
    letter (blank atoms copied into every conformer do not vote; a residue without named
    altlocs uses its own atoms). The per-residue values are then divided by their sum, so
    they sum to 1. If they sum to zero (all-zero occupancies), every conformer gets an equal
    weight 1/A and the residue is flagged (``OCC_ZERO``), never rejected.

Why the median: real qFit files disagree between atoms of one altloc
(``segment_example_multiconformer_model2_pruned.pdb``, LEU A10 altloc A: N 0.18, C 0.29,
CB 0.17, …). The mean is pulled by the odd backbone atoms; the max picks exactly those odd
values (0.29 there, although 6 of 8 atoms say 0.17–0.19); the median follows the majority
(0.185) and is unchanged when atoms agree, which is every other file in ``../shared/data``.
Residues whose raw values did not sum to 1 (±0.01) are flagged ``OCC_RENORMALISED``, and
residues whose atoms of one altloc spread by more than 0.01 are flagged ``OCC_INCONSISTENT``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import numpy as np
import torch

from ptk import geometry
from ptk.errors import StructureError
from ptk.labels import DOMAIN_ID, CathLabels, domain_chain_id
from ptk.residues import (
    BACKBONE_INDICES,
    RESTYPES_1,
    UNK_INDEX,
    sequence_to_aatype,
)
from ptk.structure import Chain, check_regular_file, read_chains, read_file_bytes

__all__ = [
    "CONTACT_CUTOFF",
    "PEPTIDE_BOND_MAX",
    "OCC_RENORMALISED",
    "OCC_ZERO",
    "OCC_INCONSISTENT",
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

#: Cα–Cα distance (Å) below which two residues are in contact (DESIGN.md, geometry.contact_map).
CONTACT_CUTOFF: float = 8.0
#: Longest C(i)–N(i+1) distance (Å) still read as a peptide bond; longer is a chain break.
#: (1.33 Å ideal; 2.0 Å leaves room for poorly refined models without bridging a gap.)
PEPTIDE_BOND_MAX: float = 2.0
#: Occupancy tolerance: raw per-residue sums within this of 1 count as summing to 1.
OCC_TOLERANCE: float = 0.01

#: ``occupancy_flag`` bits (per qfit residue).
OCC_RENORMALISED: int = 1  # raw conformer occupancies did not sum to 1 (±0.01); divided by their sum
OCC_ZERO: int = 2  # all raw occupancies were zero: equal weights 1/A
OCC_INCONSISTENT: int = 4  # atoms of one altloc disagree by more than 0.01; the median was used
#: microheterogeneity: another residue type shared this position under other altlocs; the type
#: with the highest mean occupancy was kept (its altlocs alone are the conformers)
OCC_MICROHET: int = 8

_N, _CA, _C, _O = BACKBONE_INDICES
#: CATH domain ids: 4-character PDB id, chain letter, 2-digit domain number (``1c0pA01``).


# --------------------------------------------------------------------------------------------
# Geometry shared by both row kinds


def _t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x))


def _frames(backbone: np.ndarray) -> dict[str, np.ndarray]:
    """``[n, 4, 3]`` N/CA/C/O (NaN where missing) → frame_rot [n,9], frame_trans [n,3], frame_mask [n]."""
    bb = _t(backbone.astype(np.float32, copy=False))
    rot, trans, valid = geometry.backbone_frames(bb[:, 0], bb[:, 1], bb[:, 2])
    return {
        "frame_rot": rot.reshape(-1, 9).numpy(),
        "frame_trans": trans.numpy(),
        "frame_mask": valid.numpy(),
    }


def _breaks(backbone: np.ndarray) -> np.ndarray:
    """``[n]`` True at i where residue i is not peptide-bonded to i+1 (C(i)–N(i+1) > 2 Å).

    A pair with either atom missing is not counted (missing atoms are their own quality field);
    the last residue is never a break.
    """
    n = backbone.shape[0]
    out = np.zeros(n, dtype=bool)
    if n > 1:
        d = np.linalg.norm(backbone[:-1, 2] - backbone[1:, 0], axis=-1)
        out[:-1] = np.isfinite(d) & (d > PEPTIDE_BOND_MAX)
    return out


def _mask_breaks(out: dict[str, np.ndarray], chain_break: np.ndarray) -> dict[str, np.ndarray]:
    """φ/ψ/ω masked (and 0) across chain breaks: ψᵢ and ωᵢ use residue i+1, φᵢ₊₁ uses residue i."""
    if chain_break.any():
        after = np.zeros_like(chain_break)
        after[1:] = chain_break[:-1]
        for name, broken in (("psi", chain_break), ("omega", chain_break), ("phi", after)):
            out[f"{name}_mask"] = out[f"{name}_mask"] & ~broken
            out[name] = np.where(broken, np.float32(0), out[name])
    return out


#: Most Cα pairs in one batched :func:`ptk.geometry.contact_map` call of :func:`_contacts_many`.
CONTACT_BATCH_PAIRS = 1 << 22
#: :func:`_contacts_many` pads chains to a multiple of this many residues and batches equal
#: sizes (the map's ops are exactly rounded elementwise, so padding never changes a pair; a
#: finer step wastes fewer padded pairs, a coarser one makes fewer calls: 16 is fastest here).
CONTACT_SEGMENT = 16


def _contacts_many(cas: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Cα contact pairs (i < j) of each chain (``[n, 3]`` Cα) from
    :func:`ptk.geometry.contact_map`, ``[m, 2]`` int32: the compact form of the dense map (the
    diagonal, always a contact, and the lower triangle are implied; residues without a Cα have
    no contacts). Chains of the same :data:`CONTACT_SEGMENT`-padded length share one batched
    call, padded with NaN (no contact), so the pairs are those of one call per chain (the
    distances are elementwise)."""
    out = [np.zeros((0, 2), dtype=np.int32) for _ in cas]
    by_size: dict[int, list[int]] = {}
    for k, ca in enumerate(cas):
        if len(ca):
            by_size.setdefault(-(-len(ca) // CONTACT_SEGMENT) * CONTACT_SEGMENT, []).append(k)
    for size, members in by_size.items():
        step = max(1, CONTACT_BATCH_PAIRS // (size * size))
        for lo in range(0, len(members), step):
            chunk = members[lo : lo + step]
            packed = np.full((len(chunk), size, 3), np.nan, dtype=np.float32)
            for b, k in enumerate(chunk):
                packed[b, : len(cas[k])] = cas[k]
            dense = geometry.contact_map(_t(packed), cutoff=CONTACT_CUTOFF).numpy()
            b, i, j = np.nonzero(np.triu(dense, k=1))  # row-major: by chain, then (i, j)
            pairs = np.stack([i, j], axis=-1).astype(np.int32)
            bounds = np.searchsorted(b, np.arange(len(chunk) + 1)).tolist()
            for m, k in enumerate(chunk):
                out[k] = pairs[bounds[m] : bounds[m + 1]]
    return out


def _quality(
    aatype: np.ndarray, resnum: np.ndarray | None, backbone: np.ndarray, chain_break: np.ndarray
) -> dict[str, object]:
    present = np.isfinite(backbone).all(-1)  # [n, 4]
    missing = 0
    if resnum is not None and len(resnum) > 1:
        gaps = np.diff(resnum.astype(np.int64)) - 1
        missing = int(np.clip(gaps, 0, None).sum())
    return {
        "chain_break": chain_break,
        "n_chain_breaks": int(chain_break.sum()),
        "n_missing_residues": missing,
        "n_incomplete_backbone": int((~present.all(-1)).sum()),
        "n_unknown": int((aatype == UNK_INDEX).sum()),
    }


def _sequence(aatype: np.ndarray) -> str:
    return "".join(RESTYPES_1[int(a)] for a in aatype)


# --------------------------------------------------------------------------------------------
# cath rows


def cath_features(chain: Chain) -> dict[str, object]:
    """The per-residue ``cath`` columns of one chain (no id/labels; see :func:`cath_file_rows`).

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


#: Batched geometry: each chain's residues start a segment whose length is a multiple of this
#: (at least one NaN row after the chain). Every chain then sits at the same place within a
#: vector of the elementwise kernels whatever else is in the batch, so a chain's values do not
#: depend on which chains share its call (torch's vectorised and scalar atan2 can differ in the
#: last bit, and only a tensor's tail takes the scalar path). The angles are computed on
#: ``[residues, 7]`` tensors and torch's vectorised loops take blocks of 2 SIMD vectors (16
#: floats with AVX2, 32 with AVX-512); 7 is odd, so 32 residues keep every chain at a block
#: start on both, with less padding than 64 (rows checked bit-equal to 64's on every shared file).
GEOMETRY_SEGMENT = 32
#: Most padded residues in one batched geometry call (bounds memory on large inputs).
GEOMETRY_BATCH_RESIDUES = 16384


def _segmented(
    chains: Sequence[tuple[np.ndarray, ...]],
    fills: tuple[object, ...],
    fn: Callable[..., dict[str, torch.Tensor]],
) -> list[dict[str, np.ndarray]]:
    """``fn`` of several chains at once, cut back per chain.

    Chains are laid end to end, each in its own :data:`GEOMETRY_SEGMENT`-padded segment whose
    padding rows hold ``fills`` (NaN coordinates), so a chain end meets NaN exactly as in a call
    on the chain alone (the neighbour of the first and last residue is missing) and nothing
    crosses from one chain to the next; at most :data:`GEOMETRY_BATCH_RESIDUES` rows per call.

    Args:
        chains: per chain, ``fn``'s array arguments (``[n, ...]`` each, the same ``n``).
        fills: the padding value of each argument.
        fn: packed tensors → ``[rows, ...]`` tensors by output name.
    """
    sizes = [-(-(len(arrays[0]) + 1) // GEOMETRY_SEGMENT) * GEOMETRY_SEGMENT for arrays in chains]
    out: list[dict[str, np.ndarray]] = []
    start = 0
    while start < len(chains):
        stop, total = start + 1, sizes[start]
        while stop < len(chains) and total + sizes[stop] <= GEOMETRY_BATCH_RESIDUES:
            total += sizes[stop]
            stop += 1
        first = chains[start]
        packed = [
            np.full((total, *a.shape[1:]), fill, dtype=a.dtype) for a, fill in zip(first, fills, strict=True)
        ]
        offsets = np.cumsum([0, *sizes[start:stop]])[:-1].tolist()
        for o, arrays in zip(offsets, chains[start:stop], strict=True):
            for target, a in zip(packed, arrays, strict=True):
                target[o : o + len(a)] = a
        columns = {name: value.numpy() for name, value in fn(*map(_t, packed)).items()}
        for o, arrays in zip(offsets, chains[start:stop], strict=True):
            out.append({name: value[o : o + len(arrays[0])] for name, value in columns.items()})
        start = stop
    return out


def _frame_columns(n: torch.Tensor, ca: torch.Tensor, c: torch.Tensor) -> dict[str, torch.Tensor]:
    rot, trans, valid = geometry.backbone_frames(n, ca, c)
    return {"frame_rot": rot.reshape(-1, 9), "frame_trans": trans, "frame_mask": valid}


def _atom_geometry(
    positions: list[np.ndarray], masks: list[np.ndarray], aatypes: list[np.ndarray]
) -> list[dict[str, np.ndarray]]:
    """Frames (:func:`ptk.geometry.backbone_frames`) and φ/ψ/ω/χ
    (:func:`ptk.geometry.torsion_angles`) of several chains, one call of each per batch
    (:func:`_segmented`).

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
    return _segmented(chains, (np.nan, False, 0), fn)


def _backbone_geometry(backbones: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Frames and φ/ψ/ω (:func:`ptk.geometry.backbone_dihedrals`) of several backbone-only
    chains (``[n, 4, 3]`` N, Cα, C, O float32, NaN where missing), one call of each per batch."""

    def fn(bb: torch.Tensor) -> dict[str, torch.Tensor]:
        n, ca, c = bb[:, 0], bb[:, 1], bb[:, 2]
        return {**_frame_columns(n, ca, c), **geometry.backbone_dihedrals(n, ca, c)}

    return _segmented([(bb,) for bb in backbones], (np.nan,), fn)


def cath_features_batch(chains: list[Chain]) -> list[dict[str, object]]:
    """:func:`cath_features` of several chains, with the frames and torsions of all of them
    computed together (:func:`_atom_geometry`): the same values as one chain at a time, at a
    fraction of the fixed cost of torch's small ops."""
    positions = [np.where(c.mask[..., None], c.positions, np.nan).astype(np.float32) for c in chains]
    masks = [c.mask.astype(bool, copy=False) for c in chains]
    geometries = _atom_geometry(positions, masks, [c.aatype.astype(np.int64) for c in chains])
    contacts = _contacts_many([p[:, _CA] for p in positions])
    rows = []
    for chain, pos, geom, pairs in zip(chains, positions, geometries, contacts, strict=True):
        backbone = pos[:, list(BACKBONE_INDICES)]
        chain_break = _breaks(backbone)
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
            **_mask_breaks(angles, chain_break),
            "contacts": pairs,
        }
        row.update(_quality(chain.aatype, chain.resnum, backbone, chain_break))
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


def _backbone_array(sequence: str, backbone: np.ndarray) -> np.ndarray:
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
    entry at a time: :func:`_segmented`, :func:`_contacts_many`).

    Raises:
        ValueError: an entry's coordinates do not fit its sequence (check with
            :func:`_backbone_array` first to keep the others).
    """
    backbones = [_backbone_array(seq, bb) for seq, bb, _ in entries]
    geometries = _backbone_geometry(backbones)
    contacts = _contacts_many([bb[:, 1] for bb in backbones])
    rows = []
    for (sequence, _, resnum), backbone, geom, pairs in zip(
        entries, backbones, geometries, contacts, strict=True
    ):
        n = len(sequence)
        aatype = sequence_to_aatype(sequence)
        resnum = np.arange(1, n + 1, dtype=np.int32) if resnum is None else resnum.astype(np.int32)
        chain_break = _breaks(backbone)
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
            **_mask_breaks(angles, chain_break),
            "chi": None,
            "chi_mask": None,
            "contacts": pairs,
        }
        row.update(_quality(aatype, None, backbone, chain_break))
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# qfit rows


def conformer_occupancy(
    atom_occupancy: np.ndarray, voting: np.ndarray, present: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-residue conformer weights by the module's occupancy rule (median, then normalise).

    Args:
        atom_occupancy: ``[n, A, 37]`` occupancy per atom (NaN where absent).
        voting: ``[n, A, 37]`` atoms whose occupancy decides the conformer's (those carrying its
            altloc letter, or every atom of a residue without named altlocs).
        present: ``[n, A]`` conformer slot in use.

    Returns:
        (weights ``[n, A]`` float32 summing to 1 over present slots, 0 elsewhere;
        raw ``[n, A]`` float32 medians before normalisation (NaN on unused slots);
        flags ``[n]`` int8 of ``OCC_*`` bits).
    """
    occ = np.where(voting, atom_occupancy, np.nan).astype(np.float64)
    n, a = present.shape
    raw = np.full((n, a), np.nan)
    spread = np.zeros((n, a))
    has_votes = voting.any(-1) & present
    if has_votes.any():
        sel = occ[has_votes]
        raw[has_votes] = np.nanmedian(sel, axis=-1)
        spread[has_votes] = np.nanmax(sel, axis=-1) - np.nanmin(sel, axis=-1)
    raw = np.where(present, np.nan_to_num(raw, nan=0.0), np.nan)
    raw_clipped = np.where(present, np.clip(np.nan_to_num(raw), 0.0, None), 0.0)
    total = raw_clipped.sum(-1)
    zero = total <= 0
    count = present.sum(-1)
    equal = present / np.maximum(count, 1)[:, None]
    weights = np.where(zero[:, None], equal, raw_clipped / np.where(zero, 1.0, total)[:, None])
    flags = np.zeros(n, dtype=np.int8)
    flags |= np.where(zero, OCC_ZERO, 0).astype(np.int8)
    flags |= np.where(~zero & (np.abs(total - 1.0) > OCC_TOLERANCE), OCC_RENORMALISED, 0).astype(np.int8)
    flags |= np.where((spread > OCC_TOLERANCE + 1e-6).any(-1), OCC_INCONSISTENT, 0).astype(np.int8)
    return weights.astype(np.float32), raw.astype(np.float32), flags


def qfit_features(chain: Chain) -> dict[str, object]:
    """The ``qfit`` columns of one multiconformer chain (read with ``altlocs=True``).

    Conformers are the residue's named altlocs (blank atoms belong to every one of them); a
    residue without named altlocs has one conformer labelled ``""``. Per-conformer arrays are
    padded to ``A`` (the chain's largest altloc count) with ``altloc_mask`` marking real slots;
    the shard stores them ragged (``n_obs`` per residue).

    The frame (and ``backbone``) come from the blank altloc; where N, Cα or C carries an altloc
    letter (a split backbone) they come from the conformer with the highest normalised
    occupancy, the first label in file order on ties (``frame_altloc`` records which).

    Returns:
        dict with ``sequence``, ``length``, ``aatype``, ``resnum``, ``icode``, ``backbone``
        [n,4,3], ``frame_rot`` [n,9], ``frame_trans``, ``frame_mask``, ``frame_altloc`` [n] str,
        ``altlocs`` [n, A] str, ``altloc_mask`` [n, A], ``occupancy`` [n, A] (normalised),
        ``occupancy_raw`` [n, A], ``occupancy_flag`` [n] int8, ``chi`` [n, A, 4],
        ``chi_mask`` [n, A, 4], ``chi_symmetric`` [n, 4], ``n_obs`` [n] int8, ``d_eff`` [n] int8,
        the per-row counts of each ``occupancy_flag`` bit, and the quality fields of
        :func:`cath_features`.
    """
    conf = chain.conformers
    if conf is None:
        raise ValueError("qfit_features needs a chain read with altlocs=True")
    n, a = conf.labels.shape
    named = conf.labels != ""
    present = named.copy()
    present[:, 0] |= ~named.any(-1)  # the single blank conformer of a residue without altlocs
    voting = np.where(named.any(-1)[:, None, None], conf.named_mask, conf.mask) & conf.mask
    weights, raw, flags = conformer_occupancy(conf.atom_occupancy, voting, present)
    if chain.microhet is not None:
        flags |= np.where(chain.microhet, OCC_MICROHET, 0).astype(np.int8)

    # Frame source: conformer 0 holds the blank atoms like every other one; a split backbone
    # (N, CA or C carrying a letter) takes the highest-weight conformer (argmax: first on ties).
    split_backbone = conf.named_mask[:, :, [_N, _CA, _C]].any(axis=(1, 2))
    best = np.argmax(np.where(present, weights, -1.0), axis=-1)
    source = np.where(split_backbone, best, 0)
    rows = np.arange(n)
    positions = np.where(conf.mask[..., None], conf.positions, np.nan).astype(np.float32)
    backbone = positions[rows, source][:, list(BACKBONE_INDICES)]
    frame_altloc = np.where(split_backbone, conf.labels[rows, source], "")

    aatype = chain.aatype.astype(np.int64)
    chi, chi_mask = geometry.chi_angles(
        _t(positions), _t(conf.mask), _t(np.broadcast_to(aatype[:, None], (n, a)).copy())
    )
    chi_mask = chi_mask.numpy() & present[..., None]
    chi = np.where(chi_mask, chi.numpy(), np.float32(0))
    n_obs = present.sum(-1).astype(np.int8)
    d_eff = chi_mask.any(axis=1).sum(-1).astype(np.int8)
    chain_break = _breaks(backbone)

    row: dict[str, object] = {
        "sequence": chain.sequence,
        "length": n,
        "aatype": chain.aatype.astype(np.int8),
        "resnum": chain.resnum.astype(np.int32),
        "icode": chain.icode.astype(str),
        "backbone": backbone,
        **_frames(backbone),
        "frame_altloc": frame_altloc.astype(str),
        "altlocs": conf.labels.astype(str),
        "altloc_mask": present,
        "occupancy": weights,
        "occupancy_raw": np.where(present, raw, np.float32(0)),
        "occupancy_flag": flags,
        "chi": chi.astype(np.float32),
        "chi_mask": chi_mask,
        "chi_symmetric": geometry.chi_symmetric(_t(aatype)).numpy(),
        "n_obs": n_obs,
        "d_eff": d_eff,
        "n_occupancy_renormalised": int(((flags & OCC_RENORMALISED) > 0).sum()),
        "n_occupancy_zero": int(((flags & OCC_ZERO) > 0).sum()),
        "n_occupancy_inconsistent": int(((flags & OCC_INCONSISTENT) > 0).sum()),
        "n_microheterogeneous": int(((flags & OCC_MICROHET) > 0).sum()),
    }
    row.update(_quality(chain.aatype, chain.resnum, backbone, chain_break))
    return row


# --------------------------------------------------------------------------------------------
# Per-file functions (pure: path in, rows or a reject out)


@dataclass
class Reject:
    """One thing that did not become a row: a whole file (``item`` None) or one chain/entry."""

    input: str
    item: str | None
    stage: str  # "read" | "parse" | "features" | "filter" | "dedupe" | "write" | "worker"
    error_class: str
    message: str


@dataclass
class FileResult:
    """What one input file gave: rows (dicts of column → value) and rejects."""

    path: str
    sha256: str | None
    rows: list[dict[str, object]] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


def _reject(path: str, item: str | None, stage: str, exc: BaseException) -> Reject:
    message = exc.problem if isinstance(exc, StructureError) else str(exc)
    return Reject(path, item, stage, type(exc).__name__, message or type(exc).__name__)


def _row_ids(path: Path, chain: Chain, n_chains: int) -> tuple[str, str]:
    """(id, chain_id): a CATH domain file's single chain is its domain id; otherwise pdbid.chain."""
    chain_id = chain.chain_id
    stem = path.name
    if DOMAIN_ID.match(stem) and n_chains == 1:
        return stem, domain_chain_id(stem) or chain_id
    return chain_id, chain_id


def _is_json(path: Path, head: bytes) -> bool:
    name = path.name.lower()
    if name.endswith((".json", ".jsonl", ".json.gz", ".jsonl.gz")):
        return True
    return head.lstrip()[:1] in (b"{", b"[")


def cath_file_rows(
    path: str | PathLike[str],
    labels: CathLabels | None = None,
    max_length: int | None = None,
    byte_range: tuple[int, int] | None = None,
    sha256: str | None = None,
) -> FileResult:
    """One input file → ``cath`` rows (one per protein chain / domain / JSON entry) and rejects.

    ``byte_range`` (with the file's ``sha256``) reads only those bytes of a ``.jsonl`` file, so
    one large chain_set.jsonl can be spread over many tasks.

    Structure files go through :func:`ptk.structure.read_chains`; JSON files are read as the
    CATH 4.2 ``chain_set.jsonl`` layout or the TS50 list layout (:func:`read_backbone_json`).
    Nothing raises: every failure becomes a :class:`Reject`.
    """
    return cath_files_rows([(path, byte_range, sha256)], labels, max_length)[0]


def cath_files_rows(
    files: Sequence[tuple[str | PathLike[str], tuple[int, int] | None, str | None]],
    labels: CathLabels | None = None,
    max_length: int | None = None,
) -> list[FileResult]:
    """:func:`cath_file_rows` of several files, (path, byte_range, sha256) each, in order: the
    chains of all structure files get their features in one :func:`cath_features_batch` (the
    same rows and rejects, in the same order, as one file at a time)."""
    labels = labels or CathLabels()
    results: list[FileResult] = []
    plans: list[list[Reject | tuple[Chain, str, str]]] = []
    for path, byte_range, sha256 in files:
        result, plan = _cath_file_chains(path, labels, max_length, byte_range, sha256)
        results.append(result)
        plans.append(plan)
    chains = [item[0] for plan in plans for item in plan if not isinstance(item, Reject)]
    try:
        rows: list[dict[str, object] | Exception] = list(cath_features_batch(chains))
    except Exception:  # noqa: BLE001 - find the chain that fails, keep the others
        rows = []
        for chain in chains:
            try:
                rows.append(cath_features(chain))
            except Exception as exc:  # noqa: BLE001
                rows.append(exc)
    done = iter(rows)
    for result, plan in zip(results, plans, strict=True):
        for item in plan:
            if isinstance(item, Reject):
                result.rejects.append(item)
                continue
            _, row_id, chain_id = item
            row = next(done)
            if isinstance(row, Exception):
                result.rejects.append(_reject(result.path, row_id, "features", row))
                continue
            _set_identity_and_labels(row, row_id, chain_id, result.path, result.sha256, labels, None)
            result.rows.append(row)
    return results


def _cath_file_chains(
    path: str | PathLike[str],
    labels: CathLabels,
    max_length: int | None,
    byte_range: tuple[int, int] | None,
    sha256: str | None,
) -> tuple[FileResult, list[Reject | tuple[Chain, str, str]]]:
    """Read one file: (its result, finished for JSON files and unreadable files; and for a
    structure file the per-chain plan in chain order: a ``filter`` reject, or (chain, id,
    chain_id) waiting for its features)."""
    p = Path(path)
    result = FileResult(str(path), None)
    try:
        raw = read_file_bytes(p, limit=64)
    except StructureError as exc:
        result.rejects.append(_reject(str(path), None, "read", exc))
        return result, []
    if byte_range is not None or _is_json(p, raw):
        return _json_rows(p, result, labels, max_length, byte_range, sha256), []
    try:
        parsed = read_chains(p)
    except StructureError as exc:
        result.rejects.append(_reject(str(path), None, "read", exc))
        return result, []
    except Exception as exc:  # noqa: BLE001 - a reader bug must not stop the other files
        result.rejects.append(_reject(str(path), None, "read", exc))
        return result, []
    result.sha256 = parsed.sha256
    plan: list[Reject | tuple[Chain, str, str]] = []
    for chain in parsed.chains:
        row_id, chain_id = _row_ids(p, chain, len(parsed.chains))
        if max_length is not None and len(chain) > max_length:
            plan.append(
                Reject(
                    str(path),
                    row_id,
                    "filter",
                    "TooLong",
                    f"{len(chain)} residues > --max-length {max_length}",
                )
            )
            continue
        plan.append((chain, row_id, chain_id))
    return result, plan


def _set_identity_and_labels(
    row: dict,
    row_id: str,
    chain_id: str,
    source: str,
    sha: str | None,
    labels: CathLabels,
    own_nodes: list[str] | None,
) -> None:
    c, a, t, h = labels.numbers(row_id, chain_id, own_nodes)
    row.update(
        id=row_id,
        chain_id=chain_id,
        source=source,
        source_sha256=sha,
        split=labels.split.get(chain_id),
        cath_class=c,
        cath_architecture=a,
        cath_topology=t,
        cath_homology=h,
    )


def read_backbone_json(
    path: str | PathLike[str], byte_range: tuple[int, int] | None = None
) -> tuple[str | None, Iterator[tuple[str, dict | Exception]]]:
    """Open a backbone JSON set → (sha256, iterator of (entry name, entry dict or the error)).

    Layouts: ``chain_set.jsonl`` (one object per line: ``name``, ``seq``, ``coords`` {N, CA,
    C, O: [n, 3]}, ``CATH`` codes) and TS50 (one JSON list of {``name``, ``seq``, ``coords``:
    [n][4][3]}). A line that is not valid JSON is an error entry named ``line N`` (``byte N``
    when reading a ``byte_range`` of a large .jsonl: the pipeline splits those into tasks at
    line starts, and then the sha256 is the caller's to give, so None is returned).
    """
    import gzip
    import hashlib

    p = Path(path)
    digest = None
    check_regular_file(p)
    if byte_range is None:
        raw = p.read_bytes()
        digest = hashlib.sha256(raw).hexdigest()
    else:
        with p.open("rb") as fh:
            fh.seek(byte_range[0])
            raw = fh.read(byte_range[1] - byte_range[0])
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise StructureError(p, f"corrupt or truncated gzip data ({exc})") from exc
    text = raw.decode("utf-8", errors="replace")
    if not text.strip():
        raise StructureError(p, "empty file")

    def entries() -> Iterator[tuple[str, dict | Exception]]:
        stripped = text.lstrip()
        if stripped.startswith("[") and byte_range is None:
            try:
                items = json.loads(text)
            except ValueError as exc:
                yield "file", StructureError(p, f"invalid JSON list ({exc})")
                return
            if not isinstance(items, list):
                yield "file", StructureError(p, "JSON is not a list of entries")
                return
            for k, item in enumerate(items):
                name = item.get("name", f"entry {k}") if isinstance(item, dict) else f"entry {k}"
                yield str(name), item if isinstance(item, dict) else ValueError("entry is not an object")
            return
        offset = 0 if byte_range is None else byte_range[0]
        for number, line in enumerate(text.splitlines(keepends=True), 1):
            where = f"line {number}" if byte_range is None else f"byte {offset}"
            offset += len(line.encode("utf-8", errors="replace"))
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except ValueError as exc:
                yield where, ValueError(f"{where}: invalid JSON ({exc})")
                continue
            if not isinstance(item, dict):
                yield where, ValueError(f"{where}: not a JSON object")
                continue
            yield str(item.get("name", where)), item

    return digest, entries()


def _float_array(values: object) -> np.ndarray:
    """JSON coordinates → float array; null → NaN (chain_set.jsonl may write either)."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        rows = [[np.nan] * 3 if xyz is None else [np.nan if v is None else v for v in xyz] for xyz in values]
        return np.asarray(rows, dtype=np.float64)


def _entry_backbone(entry: dict) -> tuple[str, np.ndarray]:
    seq = entry.get("seq")
    coords = entry.get("coords")
    if not isinstance(seq, str) or coords is None:
        raise ValueError("entry needs 'seq' (string) and 'coords'")
    if isinstance(coords, dict):  # chain_set.jsonl: {N: [n,3], CA: ..., C: ..., O: ...}
        try:
            stacked = [_float_array(coords[k]) for k in ("N", "CA", "C", "O")]
        except KeyError as exc:
            raise ValueError(f"coords has no {exc.args[0]} list") from exc
        shapes = {s.shape for s in stacked}
        if len(shapes) != 1:
            raise ValueError(f"coords N/CA/C/O lists differ in length: {sorted(shapes)}")
        backbone = np.stack(stacked, axis=1)
    else:  # TS50: [n][4][3]
        backbone = np.stack([_float_array(res) for res in coords]) if len(coords) else np.zeros((0, 4, 3))
    if backbone.ndim != 3 or backbone.shape[1:] != (4, 3) and backbone.size:
        raise ValueError(f"coords have shape {backbone.shape}, expected (n, 4, 3)")
    if backbone.shape[0] == 0:
        raise ValueError("entry has no residues")
    return seq, backbone.astype(np.float32)


def _entry_ids(name: str) -> tuple[str, str]:
    """Entry name → (id, chain_id): ``1abc.A`` stays; TS50's ``1eteA`` becomes ``1ete.A``."""
    if "." in name:
        pdb, _, chain = name.partition(".")
        chain_id = f"{pdb.lower()}.{chain}"
        return chain_id, chain_id
    if domain_chain_id(name):
        return name, domain_chain_id(name) or name
    if re.match(r"^\d[A-Za-z0-9]{3}[A-Za-z0-9]+$", name):
        chain_id = f"{name[:4].lower()}.{name[4:]}"
        return chain_id, chain_id
    return name, name


def _json_rows(
    path: Path,
    result: FileResult,
    labels: CathLabels,
    max_length: int | None,
    byte_range: tuple[int, int] | None,
    sha256: str | None,
) -> FileResult:
    source = result.path
    try:
        digest, entries = read_backbone_json(path, byte_range)
    except StructureError as exc:
        result.rejects.append(_reject(source, None, "read", exc))
        return result
    digest = digest or sha256
    result.sha256 = digest
    # (row id, chain id, own CATH codes, (sequence, backbone, None)) of the entries that parse;
    # their features are computed together below.
    todo: list[tuple[str, str, list[str] | None, tuple[str, np.ndarray, None]]] = []
    for name, entry in entries:
        if isinstance(entry, Exception):
            item = None if name == "file" else name
            result.rejects.append(_reject(source, item, "parse", entry))
            continue
        row_id, chain_id = _entry_ids(name)
        try:
            seq, backbone = _entry_backbone(entry)
            if max_length is not None and len(seq) > max_length:
                result.rejects.append(
                    Reject(
                        source,
                        row_id,
                        "filter",
                        "TooLong",
                        f"{len(seq)} residues > --max-length {max_length}",
                    )
                )
                continue
            backbone = _backbone_array(seq, backbone)
        except Exception as exc:  # noqa: BLE001
            result.rejects.append(_reject(source, row_id, "parse", exc))
            continue
        own = entry.get("CATH") or entry.get("cath")
        own_nodes = [str(c) for c in own] if isinstance(own, list) else None
        todo.append((row_id, chain_id, own_nodes, (seq, backbone, None)))
    try:
        rows: list[dict[str, object] | Exception] = list(backbone_features_batch([t[3] for t in todo]))
    except Exception:  # noqa: BLE001 - find the entry that fails, keep the others
        rows = []
        for *_, item in todo:
            try:
                rows.append(backbone_features(*item))
            except Exception as exc:  # noqa: BLE001
                rows.append(exc)
    for (row_id, chain_id, own_nodes, _), row in zip(todo, rows, strict=True):
        if isinstance(row, Exception):
            result.rejects.append(_reject(source, row_id, "parse", row))
            continue
        _set_identity_and_labels(row, row_id, chain_id, source, digest, labels, own_nodes)
        result.rows.append(row)
    if not result.rows and not result.rejects and byte_range is None:
        result.rejects.append(Reject(source, None, "parse", "StructureError", "no entries in JSON file"))
    return result


def qfit_file_rows(path: str | PathLike[str]) -> FileResult:
    """One multiconformer structure file → ``qfit`` rows (one per protein chain) and rejects."""
    p = Path(path)
    result = FileResult(str(path), None)
    try:
        parsed = read_chains(p, altlocs=True)
    except Exception as exc:  # noqa: BLE001 - StructureError, or a reader bug: never stop the run
        result.rejects.append(_reject(str(path), None, "read", exc))
        return result
    result.sha256 = parsed.sha256
    for chain in parsed.chains:
        try:
            row = qfit_features(chain)
        except Exception as exc:  # noqa: BLE001
            result.rejects.append(_reject(str(path), chain.chain_id, "features", exc))
            continue
        row.update(id=chain.chain_id, chain_id=chain.chain_id, source=str(path), source_sha256=parsed.sha256)
        result.rows.append(row)
    return result
