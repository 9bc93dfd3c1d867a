"""Sequence-independent structure comparison through TM-align (``tmtools``), for samples whose
residues do not correspond to the reference's."""

from __future__ import annotations

import numpy as np
from torch import Tensor

from ptk.errors import PtkError

__all__ = ["tm_align"]


def tm_align(
    pred_ca: np.ndarray | Tensor,
    ref_ca: np.ndarray | Tensor,
    pred_seq: str | None = None,
    ref_seq: str | None = None,
) -> dict[str, float]:
    """Sequence-independent structural alignment with TM-align (``tmtools.tm_align``).

    For samples whose residues do not correspond to the reference's. Residues with non-finite
    coordinates are dropped; sequences default to poly-alanine (TM-align's score does not use
    them).

    Returns:
        ``tm_align`` (TM-score normalised by the reference), ``tm_align_pred`` (normalised by the
        prediction), ``rmsd_align`` and ``n_aligned`` (residue pairs in the alignment).
    """
    from tmtools import tm_align as _tm_align

    def prepare(ca: np.ndarray | Tensor, seq: str | None) -> tuple[np.ndarray, str]:
        arr = ca.detach().cpu().numpy() if isinstance(ca, Tensor) else np.asarray(ca)
        arr = np.asarray(arr, dtype=np.float64)
        keep = np.isfinite(arr).all(-1)
        seq = seq if seq is not None else "A" * arr.shape[0]
        if len(seq) != arr.shape[0]:
            raise PtkError(f"sequence of length {len(seq)} for {arr.shape[0]} residues")
        seq = "".join(c for c, k in zip(seq, keep, strict=True) if k)
        return np.ascontiguousarray(arr[keep]), seq

    x, sx = prepare(pred_ca, pred_seq)
    y, sy = prepare(ref_ca, ref_seq)
    if x.shape[0] < 3 or y.shape[0] < 3:
        raise PtkError("TM-align needs at least 3 residues in each structure")
    result = _tm_align(x, y, sx, sy)
    n_aligned = sum(a != "-" and b != "-" for a, b in zip(result.seqxA, result.seqyA, strict=True))
    return {
        "tm_align": float(result.tm_norm_chain2),
        "tm_align_pred": float(result.tm_norm_chain1),
        "rmsd_align": float(result.rmsd),
        "n_aligned": int(n_aligned),
    }
