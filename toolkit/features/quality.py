"""Chain quality: chain breaks (and the dihedrals they invalidate) and the per-row quality fields
both row kinds carry."""

from __future__ import annotations

import numpy as np

from ptk.residues import UNK_INDEX

__all__ = ["PEPTIDE_BOND_MAX", "chain_breaks", "mask_breaks", "quality_fields"]

#: Longest C(i)–N(i+1) distance (Å) still read as a peptide bond; longer is a chain break.
#: (1.33 Å ideal; 2.0 Å leaves room for poorly refined models without bridging a gap.)
PEPTIDE_BOND_MAX: float = 2.0


def chain_breaks(backbone: np.ndarray) -> np.ndarray:
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


def mask_breaks(out: dict[str, np.ndarray], chain_break: np.ndarray) -> dict[str, np.ndarray]:
    """φ/ψ/ω masked (and 0) across chain breaks: ψᵢ and ωᵢ use residue i+1, φᵢ₊₁ uses residue i."""
    if chain_break.any():
        after = np.zeros_like(chain_break)
        after[1:] = chain_break[:-1]
        for name, broken in (("psi", chain_break), ("omega", chain_break), ("phi", after)):
            out[f"{name}_mask"] = out[f"{name}_mask"] & ~broken
            out[name] = np.where(broken, np.float32(0), out[name])
    return out


def quality_fields(
    aatype: np.ndarray, resnum: np.ndarray | None, backbone: np.ndarray, chain_break: np.ndarray
) -> dict[str, object]:
    """The quality columns of a row: ``chain_break`` [n], ``n_chain_breaks``,
    ``n_missing_residues`` (author numbering gaps), ``n_incomplete_backbone``, ``n_unknown``."""
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
