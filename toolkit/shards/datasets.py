"""The torch Datasets over a shard dataset folder, and the collates that pad their items into
batches.

:class:`CathDataset` and :class:`QfitDataset` decode one Parquet row group at a time straight
from Arrow buffers (no pandas), crop to ``max_length`` and return one chain's tensors;
:func:`collate_cath` / :func:`collate_qfit` pad a batch and add masks (the batch layout is
:func:`collate_cath`'s).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from ptk.errors import ShardError, unknown_choice
from ptk.shards.encoding import Decoded
from ptk.shards.store import part_paths, read_manifest

__all__ = ["CathDataset", "QfitDataset", "open_dataset", "collate_cath", "collate_qfit"]


# --------------------------------------------------------------------------------------------
# torch Datasets


class _ShardDataset:
    """Common machinery: the row index over (part, row group, row), a small row-group cache,
    and length cropping. Picklable for DataLoader workers (open files are not carried)."""

    kind: str = ""

    def __init__(
        self,
        path: str | PathLike[str],
        max_length: int | None = None,
        crop: str = "random",
        seed: int = 0,
        split: str | None = None,
        cache_row_groups: int = 4,
    ) -> None:
        if crop not in ("random", "first", "center"):
            raise unknown_choice("crop", crop, ("random", "first", "center"))
        if max_length is not None and max_length < 1:
            raise ShardError(f"max_length must be a positive number of residues, not {max_length}")
        self.path = Path(path)
        manifest = read_manifest(self.path)
        if manifest["kind"] != self.kind:
            raise ShardError(
                f"{self.path} holds {manifest['kind']} shards, not {self.kind}; "
                f"use {'CathDataset' if manifest['kind'] == 'cath' else 'QfitDataset'} "
                "or open_dataset()"
            )
        self.manifest = manifest
        self.max_length = max_length
        self.crop = crop
        self.seed = seed
        self.epoch = 0
        self.split = split
        self._parts = part_paths(self.path)
        index: list[tuple[int, int, int]] = []
        for p, part in enumerate(self._parts):
            meta = pq.ParquetFile(part).metadata
            keep = None
            if split is not None:
                if self.kind != "cath":
                    raise ShardError("split= applies to cath shards only (qfit rows have no split column)")
                keep = pq.read_table(part, columns=["split"]).column("split").to_pylist()
            row = 0
            for g in range(meta.num_row_groups):
                for r in range(meta.row_group(g).num_rows):
                    if keep is None or keep[row] == split:
                        index.append((p, g, r))
                    row += 1
        self._index = index
        self._cache_size = cache_row_groups
        self._cache: OrderedDict[tuple[int, int], Decoded] = OrderedDict()
        self._files: dict[int, pq.ParquetFile] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = OrderedDict()
        state["_files"] = {}
        return state

    def __len__(self) -> int:
        return len(self._index)

    def set_epoch(self, epoch: int) -> None:
        """Vary random crops by epoch (the crop of item i is a function of seed, epoch, i)."""
        self.epoch = int(epoch)

    def _row(self, i: int) -> dict[str, Any]:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} rows")
        p, g, r = self._index[i]
        key = (p, g)
        decoded = self._cache.get(key)
        if decoded is None:
            file = self._files.get(p)
            if file is None:
                file = self._files[p] = pq.ParquetFile(self._parts[p])
            decoded = Decoded(file.read_row_group(g), self.kind)
            self._cache[key] = decoded
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return decoded.row(r)

    def _window(self, i: int, n: int) -> slice:
        if self.max_length is None or n <= self.max_length:
            return slice(0, n)
        span = self.max_length
        if self.crop == "first":
            start = 0
        elif self.crop == "center":
            start = (n - span) // 2
        else:
            rng = np.random.default_rng((self.seed, self.epoch, i))
            start = int(rng.integers(0, n - span + 1))
        return slice(start, start + span)

    def _common(self, row: dict[str, Any], window: slice) -> dict[str, Any]:
        import torch

        backbone = row["backbone"][window].reshape(-1, 4, 3)
        bb_mask = np.isfinite(backbone).all(-1)
        return {
            "id": row["id"],
            "length": torch.tensor(backbone.shape[0], dtype=torch.int64),
            "aatype": torch.from_numpy(row["aatype"][window].astype(np.int64)),
            "resnum": torch.from_numpy(row["resnum"][window].astype(np.int64)),
            "backbone": torch.from_numpy(np.where(bb_mask[..., None], backbone, 0).astype(np.float32)),
            "backbone_mask": torch.from_numpy(bb_mask),
            "frame_rot": torch.from_numpy(row["frame_rot"][window].reshape(-1, 3, 3).astype(np.float32)),
            "frame_trans": torch.from_numpy(row["frame_trans"][window].astype(np.float32)),
            "frame_mask": torch.from_numpy(row["frame_mask"][window].astype(bool)),
        }


def _code_or_unknown(value: Any) -> int:
    return -1 if value is None else int(value)


class CathDataset(_ShardDataset):
    """``cath`` shards as a torch Dataset: ``ds[i]`` is one chain's tensors, unpadded.

    Args:
        path: shard dataset folder.
        max_length: crop chains longer than this many residues (None: whole chains).
        crop: ``random`` (seeded by ``seed``, the epoch of :meth:`set_epoch` and the index),
            ``first`` or ``center``.
        split: keep only rows of this split (``train``/``validation``/``test``).
        seed: crop seed.

    Item keys: ``id``, ``sequence``, ``split``, ``length``, ``aatype``, ``resnum``,
    ``backbone`` [n,4,3] (0 where missing), ``backbone_mask`` [n,4], ``atoms`` [n,37,3],
    ``atom_mask`` [n,37], ``frame_rot`` [n,3,3], ``frame_trans`` [n,3], ``frame_mask``,
    ``phi``/``psi``/``omega`` [n] + ``_mask``, ``chi``/``chi_mask`` [n,4], ``contacts`` [n,n]
    bool, ``cath_class``/``cath_architecture``/``cath_topology``/``cath_homology`` (-1 unknown).
    Backbone-only rows (JSON inputs) have atoms only in the N/CA/C/O slots and no χ.
    """

    kind = "cath"

    def __init__(
        self,
        path: str | PathLike[str],
        max_length: int | None = None,
        crop: str = "random",
        split: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(path, max_length=max_length, crop=crop, seed=seed, split=split)

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        from ptk.residues import BACKBONE_INDICES, NUM_ATOMS

        row = self._row(i)
        n = int(row["length"])
        w = self._window(i, n)
        item = self._common(row, w)
        m = item["backbone"].shape[0]
        if row["atoms"] is not None:
            atoms = row["atoms"][w].reshape(-1, NUM_ATOMS, 3)
            atom_mask = row["atom_mask"][w].astype(bool) & np.isfinite(atoms).all(-1)
            atoms = np.where(atom_mask[..., None], atoms, 0).astype(np.float32)
        else:  # backbone-only entry: the backbone is all we know of the atoms
            atoms = np.zeros((m, NUM_ATOMS, 3), dtype=np.float32)
            atom_mask = np.zeros((m, NUM_ATOMS), dtype=bool)
            atoms[:, list(BACKBONE_INDICES)] = item["backbone"].numpy()
            atom_mask[:, list(BACKBONE_INDICES)] = item["backbone_mask"].numpy()
        if row["chi"] is not None:
            chi = row["chi"][w].astype(np.float32)
            chi_mask = row["chi_mask"][w].astype(bool)
        else:
            chi = np.zeros((m, 4), dtype=np.float32)
            chi_mask = np.zeros((m, 4), dtype=bool)
        pairs = row["contacts"].astype(np.int64)
        dense = np.zeros((n, n), dtype=bool)
        dense[pairs[:, 0], pairs[:, 1]] = True
        dense[pairs[:, 1], pairs[:, 0]] = True
        full_ca = np.isfinite(row["backbone"].reshape(-1, 4, 3)[:, 1]).all(-1)
        dense[np.arange(n), np.arange(n)] = full_ca
        contacts = dense[w, w]
        item.update(
            sequence=row["sequence"][w],
            split=row["split"],
            atoms=torch.from_numpy(atoms),
            atom_mask=torch.from_numpy(atom_mask),
            chi=torch.from_numpy(chi),
            chi_mask=torch.from_numpy(chi_mask),
            contacts=torch.from_numpy(np.ascontiguousarray(contacts)),
            cath_class=torch.tensor(_code_or_unknown(row["cath_class"])),
            cath_architecture=torch.tensor(_code_or_unknown(row["cath_architecture"])),
            cath_topology=torch.tensor(_code_or_unknown(row["cath_topology"])),
            cath_homology=torch.tensor(_code_or_unknown(row["cath_homology"])),
        )
        for name in ("phi", "psi", "omega"):
            item[name] = torch.from_numpy(row[name][w].astype(np.float32))
            item[f"{name}_mask"] = torch.from_numpy(row[f"{name}_mask"][w].astype(bool))
        return item


class QfitDataset(_ShardDataset):
    """``qfit`` shards as a torch Dataset: ``ds[i]`` is one chain's tensors, unpadded.

    Item keys: ``id``, ``sequence``, ``length``, ``aatype``, ``resnum``, ``backbone``,
    ``backbone_mask``, ``frame_rot``/``frame_trans``/``frame_mask`` (primary altloc), and per
    residue per conformer (A = the chain's largest altloc count) ``chi`` [n,A,4],
    ``chi_mask`` [n,A,4], ``altloc_mask`` [n,A], ``occupancy`` [n,A] (sums to 1 over real
    conformers, 0 on padding); ``chi_symmetric`` [n,4], ``n_obs``, ``d_eff`` and ``valid``
    (n_obs ≥ 2 and d_eff ≥ 1, the qFitLatent training residues).
    """

    kind = "qfit"

    def __init__(
        self, path: str | PathLike[str], max_length: int | None = None, crop: str = "random", seed: int = 0
    ) -> None:
        super().__init__(path, max_length=max_length, crop=crop, seed=seed)

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        row = self._row(i)
        n = int(row["length"])
        w = self._window(i, n)
        item = self._common(row, w)
        present = row["altloc_mask"][w]
        width = max(1, int(present.sum(-1).max())) if present.shape[0] else 1
        present = present[:, :width]
        n_obs = row["n_obs"][w].astype(np.int64)
        d_eff = row["d_eff"][w].astype(np.int64)
        item.update(
            sequence=row["sequence"][w],
            chi=torch.from_numpy(row["chi"][w][:, :width].astype(np.float32)),
            chi_mask=torch.from_numpy(row["chi_mask"][w][:, :width].astype(bool) & present[..., None]),
            altloc_mask=torch.from_numpy(np.ascontiguousarray(present)),
            occupancy=torch.from_numpy(
                np.where(present, row["occupancy"][w][:, :width], 0).astype(np.float32)
            ),
            chi_symmetric=torch.from_numpy(row["chi_symmetric"][w].astype(bool)),
            n_obs=torch.from_numpy(n_obs),
            d_eff=torch.from_numpy(d_eff),
            valid=torch.from_numpy((n_obs >= 2) & (d_eff >= 1)),
        )
        return item


def open_dataset(path: str | PathLike[str], **kwargs: Any) -> CathDataset | QfitDataset:
    """The Dataset class matching the dataset's kind (from its manifest), built with ``kwargs``."""
    kind = read_manifest(path)["kind"]
    return (CathDataset if kind == "cath" else QfitDataset)(path, **kwargs)


# --------------------------------------------------------------------------------------------
# Collate


def _pad(tensors: Sequence[Any], shape: Sequence[int], fill: float | bool = 0) -> Any:
    """Stack tensors into ``[b, *shape]``, each copied into the leading corner."""
    import torch

    out = torch.full((len(tensors), *shape), fill, dtype=tensors[0].dtype)
    for k, t in enumerate(tensors):
        out[(k, *(slice(0, s) for s in t.shape))] = t
    return out


def _collate(
    items: Sequence[dict[str, Any]],
    residue_keys: Sequence[str],
    extra: Callable[[dict[str, Any], int], None] | None = None,
) -> dict[str, Any]:
    import torch

    if not items:
        raise ValueError("cannot collate an empty batch")
    lengths = torch.stack([it["length"] for it in items]).to(torch.int64)
    n = int(lengths.max()) if len(items) else 0
    batch: dict[str, Any] = {
        "id": [it["id"] for it in items],
        "length": lengths,
        "residue_mask": torch.arange(n)[None, :] < lengths[:, None],
    }
    for key in residue_keys:
        ts = [it[key] for it in items]
        batch[key] = _pad(ts, (n, *ts[0].shape[1:]))
    if extra is not None:
        extra(batch, n)
    return batch


_RESIDUE_KEYS_COMMON = (
    "aatype",
    "resnum",
    "backbone",
    "backbone_mask",
    "frame_rot",
    "frame_trans",
    "frame_mask",
)


def collate_cath(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pad a list of :class:`CathDataset` items to the longest chain.

    Padding is 0/False; ``residue_mask`` marks real residues; ``contacts`` is ``[b, n, n]``.
    """
    import torch

    keys = (
        *_RESIDUE_KEYS_COMMON,
        "atoms",
        "atom_mask",
        "phi",
        "psi",
        "omega",
        "phi_mask",
        "psi_mask",
        "omega_mask",
        "chi",
        "chi_mask",
    )

    def extra(batch: dict[str, Any], n: int) -> None:
        batch["contacts"] = _pad([it["contacts"] for it in items], (n, n))
        for key in ("cath_class", "cath_architecture", "cath_topology", "cath_homology"):
            batch[key] = torch.stack([it[key] for it in items]).to(torch.int64)
        batch["sequence"] = [it["sequence"] for it in items]
        batch["split"] = [it.get("split") for it in items]

    return _collate(items, keys, extra)


def collate_qfit(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pad a list of :class:`QfitDataset` items to the longest chain and the most conformers.

    ``occupancy`` is 0 and ``altloc_mask``/``chi_mask`` False on padding; ``valid`` =
    residue_mask & n_obs ≥ 2 & d_eff ≥ 1.
    """
    keys = (*_RESIDUE_KEYS_COMMON, "chi_symmetric", "n_obs", "d_eff", "valid")

    def extra(batch: dict[str, Any], n: int) -> None:
        a = max(int(it["altloc_mask"].shape[1]) for it in items)
        for key in ("chi", "chi_mask"):
            batch[key] = _pad([it[key] for it in items], (n, a, 4))
        for key in ("altloc_mask", "occupancy"):
            batch[key] = _pad([it[key] for it in items], (n, a))
        batch["valid"] = batch["valid"] & batch["residue_mask"]
        batch["sequence"] = [it["sequence"] for it in items]

    return _collate(items, keys, extra)
