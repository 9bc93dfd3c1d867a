"""``qfit`` rows: the per-residue, per-conformer columns of one multiconformer chain, and the
occupancy rule that weights its conformers.

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

import numpy as np

from ptk import geometry
from ptk.features.packing import as_tensor
from ptk.features.quality import chain_breaks, quality_fields
from ptk.residues import BACKBONE_INDICES
from ptk.structure import Chain

__all__ = [
    "OCC_TOLERANCE",
    "OCC_RENORMALISED",
    "OCC_ZERO",
    "OCC_INCONSISTENT",
    "OCC_MICROHET",
    "conformer_occupancy",
    "qfit_features",
]

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


def _frames(backbone: np.ndarray) -> dict[str, np.ndarray]:
    """``[n, 4, 3]`` N/CA/C/O (NaN where missing) → frame_rot [n,9], frame_trans [n,3], frame_mask [n]."""
    bb = as_tensor(backbone.astype(np.float32, copy=False))
    rot, trans, valid = geometry.backbone_frames(bb[:, 0], bb[:, 1], bb[:, 2])
    return {
        "frame_rot": rot.reshape(-1, 9).numpy(),
        "frame_trans": trans.numpy(),
        "frame_mask": valid.numpy(),
    }


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
        :func:`~ptk.features.cath.cath_features`.
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
        as_tensor(positions), as_tensor(conf.mask), as_tensor(np.broadcast_to(aatype[:, None], (n, a)).copy())
    )
    chi_mask = chi_mask.numpy() & present[..., None]
    chi = np.where(chi_mask, chi.numpy(), np.float32(0))
    n_obs = present.sum(-1).astype(np.int8)
    d_eff = chi_mask.any(axis=1).sum(-1).astype(np.int8)
    chain_break = chain_breaks(backbone)

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
        "chi_symmetric": geometry.chi_symmetric(as_tensor(aatype)).numpy(),
        "n_obs": n_obs,
        "d_eff": d_eff,
        "n_occupancy_renormalised": int(((flags & OCC_RENORMALISED) > 0).sum()),
        "n_occupancy_zero": int(((flags & OCC_ZERO) > 0).sum()),
        "n_occupancy_inconsistent": int(((flags & OCC_INCONSISTENT) > 0).sum()),
        "n_microheterogeneous": int(((flags & OCC_MICROHET) > 0).sum()),
    }
    row.update(quality_fields(chain.aatype, chain.resnum, backbone, chain_break))
    return row
