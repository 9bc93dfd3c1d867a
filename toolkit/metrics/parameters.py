"""The TM-score program's parameters: the distance scale d0, the search distances, the seed
fragment lengths and the GDT cutoffs (Zhang & Skolnick 2004; the current C++ ``TMscore``).

- d0 = 1.24·∛(L − 15) − 1.8 with L the reference length (0.5 for L ≤ 15, floor 0.5); the
  search distance d0_search = d0 clamped to [4.5, 8] Å.
- The first, TM-align-style pass searches with d0 of min(L_pred, L_ref) + 0.8 (0.968 below 20
  residues), clamped to [4.5, 8] Å.
- Seeds: fragments of L_ali, L_ali/2, L_ali/4, … common residues (at most six lengths, the
  shortest 4).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["GDT_CUTOFFS", "N_INIT_MAX", "tm_d0", "seed_lengths", "search_distances"]

#: GDT distance cutoffs in Å; GDT-TS uses the last four, GDT-HA the first four.
GDT_CUTOFFS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
#: Most seed fragment lengths the program tries for one pair (TMscore.f n_init_max).
N_INIT_MAX = 6
_L_INI_MIN = 4  # TMscore.f L_ini_min


def tm_d0(length: Tensor | float) -> Tensor | float:
    """TM-score distance scale d0 = 1.24·∛(L − 15) − 1.8 for reference length L (0.5 for
    L ≤ 15, never below 0.5), as the TM-score program computes it."""
    if isinstance(length, Tensor):
        length = length.to(torch.float64)
        d0 = 1.24 * torch.clamp(length - 15.0, min=0.0).pow(1.0 / 3.0) - 1.8
        return torch.where(length > 15, d0, torch.full_like(d0, 0.5)).clamp(min=0.5)
    if length <= 15:
        return 0.5
    return max(1.24 * (length - 15.0) ** (1.0 / 3.0) - 1.8, 0.5)


def seed_lengths(n_common: int) -> list[int]:
    """Fragment lengths of the TM-score program's seeds for ``n_common`` common residues:
    L, L/2, L/4, … (integer division), at most six, the last one 4 (or L when L < 4)."""
    minimum = min(_L_INI_MIN, n_common)
    lengths = []
    for i in range(N_INIT_MAX - 1):
        length = n_common // 2**i
        if length <= minimum:
            lengths.append(minimum)
            return lengths
        lengths.append(length)
    lengths.append(minimum)
    return lengths


def search_distances(ref_length: Tensor, pred_length: Tensor) -> Tensor:
    """``[b, 2]`` search distances of the TM-score program: column 0 that of its first pass
    (TM-align's search parameters on min(L_pred, L_ref): d0 + 0.8, with d0 = 0.168 for
    L ≤ 19), column 1 that of its final TM-score search (d0 of the reference length); each
    clamped to [4.5, 8] Å."""
    shorter = torch.minimum(ref_length, pred_length).to(torch.float64)
    d0_first = 1.24 * torch.clamp(shorter - 15.0, min=0.0).pow(1.0 / 3.0) - 1.8
    d0_first = torch.where(shorter > 19, d0_first, torch.full_like(d0_first, 0.168)) + 0.8
    d0_final = tm_d0(ref_length.to(torch.float64))
    return torch.stack([d0_first, d0_final], dim=-1).clamp(4.5, 8.0)
