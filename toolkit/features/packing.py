"""Batch packing: the geometry of several chains computed in one call, with the values of one
call per chain.

Torch's small ops have a fixed cost that dominates on single chains; packing many chains into one
tensor (each in its own NaN-padded segment) pays it once per batch. The padding is chosen so that
a chain's values never depend on which chains share its call (see :data:`GEOMETRY_SEGMENT` and
:data:`CONTACT_SEGMENT`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from ptk import geometry

__all__ = [
    "CONTACT_CUTOFF",
    "CONTACT_BATCH_PAIRS",
    "CONTACT_SEGMENT",
    "GEOMETRY_SEGMENT",
    "GEOMETRY_BATCH_RESIDUES",
    "as_tensor",
    "contacts_many",
    "segmented",
]


def as_tensor(x: np.ndarray) -> torch.Tensor:
    """numpy → torch, sharing memory where ``x`` is already contiguous."""
    return torch.from_numpy(np.ascontiguousarray(x))


#: Cα–Cα distance (Å) below which two residues are in contact (DESIGN.md, geometry.contact_map).
CONTACT_CUTOFF: float = 8.0
#: Most Cα pairs in one batched :func:`ptk.geometry.contact_map` call of :func:`contacts_many`.
CONTACT_BATCH_PAIRS = 1 << 22
#: :func:`contacts_many` pads chains to a multiple of this many residues and batches equal
#: sizes (the map's ops are exactly rounded elementwise, so padding never changes a pair; a
#: finer step wastes fewer padded pairs, a coarser one makes fewer calls: 16 is fastest here).
CONTACT_SEGMENT = 16


def contacts_many(cas: Sequence[np.ndarray]) -> list[np.ndarray]:
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
            dense = geometry.contact_map(as_tensor(packed), cutoff=CONTACT_CUTOFF).numpy()
            b, i, j = np.nonzero(np.triu(dense, k=1))  # row-major: by chain, then (i, j)
            pairs = np.stack([i, j], axis=-1).astype(np.int32)
            bounds = np.searchsorted(b, np.arange(len(chunk) + 1)).tolist()
            for m, k in enumerate(chunk):
                out[k] = pairs[bounds[m] : bounds[m + 1]]
    return out


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


def segmented(
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
        columns = {name: value.numpy() for name, value in fn(*map(as_tensor, packed)).items()}
        for o, arrays in zip(offsets, chains[start:stop], strict=True):
            out.append({name: value[o : o + len(arrays[0])] for name, value in columns.items()})
        start = stop
    return out
