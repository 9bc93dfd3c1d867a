"""Samples out: PDB files of predicted and reference structures and their Cα scores against the
reference (the run's ``eval.csv``, written by :func:`ptk.runs.write_eval_csv`;
``docs/run-folder.md``)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from ptk.runs import write_eval_csv


def _score(pred: Tensor, ref: Tensor, mask: Tensor) -> dict[str, Tensor]:
    """TM, RMSD, GDT-TS/HA and lDDT of Cα traces [b,n,3] (:func:`ptk.metrics.score_batch`)."""
    from ptk import metrics

    out = metrics.score_batch(pred, ref, mask)
    return {k: out[k] for k in ("tm", "rmsd", "gdt_ts", "gdt_ha", "lddt")}


def write_structures(
    folder: Path,
    batch: Mapping[str, Any],
    coords: Tensor,
    atom_mask: Tensor | None = None,
) -> list[Path]:
    """One PDB per example of ``batch``, named ``<id>.pdb``: ``coords`` [b,n,3] (Cα) or
    [b,n,4,3] (N, Cα, C, O), residues where ``residue_mask`` holds."""
    from ptk.pdbio import write_pdb

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    mask = batch["residue_mask"].cpu()
    for b, ident in enumerate(batch["id"]):
        keep = mask[b]
        resnum = batch["resnum"][b].cpu()[keep] if "resnum" in batch else None
        am = atom_mask[b].cpu()[keep] if atom_mask is not None else None
        path = folder / f"{ident}.pdb"
        write_pdb(
            path,
            batch["aatype"][b].cpu()[keep],
            coords[b].detach().float().cpu()[keep],
            atom_mask=am,
            resnum=resnum,
        )
        paths.append(path)
    return paths


def write_and_score(
    batch: Mapping[str, Any], preds: Mapping[str, Mapping[str, Tensor | None]], dirs: Mapping[str, Path]
) -> list[dict[str, Any]]:
    """Write reference and predicted structures, score every prediction's Cα trace against the
    reference's. Returns one row per (example, method)."""
    ref_bb = batch["backbone"]
    ref_mask = batch.get("backbone_mask")
    write_structures(dirs["ref"], batch, ref_bb, ref_mask)
    ref_ca = ref_bb[..., 1, :]
    ca_mask = batch["residue_mask"] & (ref_mask[..., 1] if ref_mask is not None else True)
    rows = []
    for method, out in preds.items():
        coords = out["backbone"] if out.get("backbone") is not None else out["ca"]
        write_structures(dirs[method], batch, coords)
        scores = _score(out["ca"].float(), ref_ca.float(), ca_mask)
        for b, ident in enumerate(batch["id"]):
            row = {"id": ident, "length": int(batch["residue_mask"][b].sum()), "method": method}
            row.update({k: float(v[b]) for k, v in scores.items()})
            rows.append(row)
    return rows


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if v == v]
    return sum(finite) / len(finite) if finite else float("nan")


def _standard_error(values: Sequence[float]) -> float:
    """Standard error of the mean of the finite ``values`` (ddof 1); NaN below two values."""
    finite = [v for v in values if v == v]
    if len(finite) < 2:
        return float("nan")
    return statistics.stdev(finite) / math.sqrt(len(finite))


#: The scores CSV's writer, :mod:`ptk.runs`'s (kept under its former name).
_write_eval_csv = write_eval_csv
