"""Structure files in, one row of metrics per pair out (what ``ptk eval`` runs).

A prediction file and a reference file are read as Cα traces (:func:`read_ca`), their residues
matched by residue number + insertion code (:func:`pair_residues`), and all pairs scored at once
with :func:`~ptk.metrics.scores.score_batch` (:func:`evaluate_pairs`); :func:`summarize` and
:func:`summarize_by` reduce the table. :func:`pair_files` pairs the files of two folders by name.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ptk.errors import PtkError, StructureError
from ptk.metrics.alignment import tm_align
from ptk.metrics.scores import score_batch
from ptk.structure import structure_name

__all__ = [
    "METRIC_COLUMNS",
    "STRUCTURE_COLUMNS",
    "CaTrace",
    "read_ca",
    "PairedResidues",
    "pair_residues",
    "pair_files",
    "sse_fractions",
    "long_range_contact_agreement",
    "evaluate_pairs",
    "summarize",
    "summarize_by",
]

#: Columns of :func:`evaluate_pairs` that hold metrics (summarised by :func:`summarize`).
METRIC_COLUMNS: tuple[str, ...] = ("rmsd", "tm", "gdt_ts", "gdt_ha", "lddt", "tm_align")
#: ``ptk eval --structure-stats``: helix / strand / coil fractions of each side (biotite's
#: Cα-based P-SEA) and the prediction's long-range (|i − j| ≥ 24) Cα-contact precision / recall.
STRUCTURE_COLUMNS: tuple[str, ...] = (
    "ref_helix", "ref_strand", "ref_coil", "pred_helix", "pred_strand", "pred_coil",
    "lr_contact_precision", "lr_contact_recall",
)  # fmt: skip


@dataclass(frozen=True)
class CaTrace:
    """The Cα trace of the first protein chain of a file, residues that have a Cα."""

    coords: np.ndarray  # [n, 3] float64
    resnum: np.ndarray  # [n] int
    icode: np.ndarray  # [n] str
    sequence: str

    def __len__(self) -> int:
        return int(self.coords.shape[0])


def read_ca(path: str | os.PathLike[str], atom_records_only: bool = False) -> CaTrace:
    """Cα trace of the first protein chain of ``path`` (any format :func:`ptk.structure.read_chains`
    reads, ``.gz`` included); residues without a Cα are left out.

    Modified residues (MSE, SME, …) count as their parent residue, HETATM records included;
    ``atom_records_only`` leaves out residues written as HETATM, as the TM-score program, which
    reads ATOM records only, does.

    Raises:
        StructureError: unreadable file, no protein chain, or no Cα atom.
    """
    from ptk.structure import read_chains

    chain = read_chains(path).chains[0]
    has_ca = chain.mask[:, 1] & np.isfinite(chain.positions[:, 1]).all(-1)
    if atom_records_only and chain.hetero is not None:
        has_ca &= ~chain.hetero
    if not has_ca.any():
        where = " in ATOM records" if atom_records_only else ""
        raise StructureError(path, f"no Cα atom{where} in the first protein chain")
    sequence = "".join(c for c, k in zip(chain.sequence, has_ca, strict=True) if k)
    return CaTrace(
        coords=chain.positions[has_ca, 1].astype(np.float64),
        resnum=chain.resnum[has_ca].astype(np.int64),
        icode=chain.icode[has_ca],
        sequence=sequence,
    )


@dataclass(frozen=True)
class PairedResidues:
    """A prediction and a reference on common rows: first the reference's residues in file
    order (with the matched prediction residue's coordinates), then the prediction residues
    that matched none. Coordinates are NaN where a side has no residue."""

    pred_xyz: np.ndarray  # [m, 3]
    ref_xyz: np.ndarray  # [m, 3]
    mask: np.ndarray  # [m] residue in both
    ref_mask: np.ndarray  # [m] residue of the reference
    pred_mask: np.ndarray  # [m] residue of the prediction


def pair_residues(pred: CaTrace, ref: CaTrace) -> PairedResidues:
    """Residues of ``pred`` and ``ref`` matched by residue number + insertion code; each
    reference residue takes the first prediction residue with its number. Rows follow the
    reference's order, as the TM-score program orders the common residues for its search."""
    first: dict[tuple[int, str], int] = {}
    for i, key in enumerate(zip(pred.resnum.tolist(), pred.icode.tolist(), strict=True)):
        first.setdefault(key, i)
    partner = np.array(
        [first.get(key, -1) for key in zip(ref.resnum.tolist(), ref.icode.tolist(), strict=True)],
        dtype=np.int64,
    )
    matched = partner >= 0
    used = np.zeros(len(pred), dtype=bool)
    used[partner[matched]] = True
    rest = np.nonzero(~used)[0]
    n_ref, m = len(ref), len(ref) + rest.shape[0]
    pred_xyz = np.full((m, 3), np.nan)
    ref_xyz = np.full((m, 3), np.nan)
    ref_xyz[:n_ref] = ref.coords
    pred_xyz[:n_ref][matched] = pred.coords[partner[matched]]
    pred_xyz[n_ref:] = pred.coords[rest]
    extra = np.ones(rest.shape[0], dtype=bool)
    return PairedResidues(
        pred_xyz=pred_xyz,
        ref_xyz=ref_xyz,
        mask=np.concatenate([matched, ~extra]),
        ref_mask=np.concatenate([np.ones(n_ref, dtype=bool), ~extra]),
        pred_mask=np.concatenate([matched, extra]),
    )


def _structure_files(folder: Path) -> dict[str, list[Path]]:
    if not folder.is_dir():
        raise PtkError(f"{folder}: not a directory")
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        found.setdefault(structure_name(path), []).append(path)
    return found


def pair_files(
    pred_dir: str | os.PathLike[str], ref_dir: str | os.PathLike[str]
) -> list[tuple[str, Path | None, Path | None, str | None]]:
    """Pair the files of two folders by :func:`structure_name`.

    Returns:
        ``(name, pred_path, ref_path, problem)`` for every name in either folder, sorted by name;
        ``problem`` says why a name cannot be evaluated (missing partner, several files of that
        name) and is None otherwise.
    """
    pred_dir, ref_dir = Path(pred_dir), Path(ref_dir)
    preds, refs = _structure_files(pred_dir), _structure_files(ref_dir)
    rows = []
    for name in sorted(set(preds) | set(refs)):
        p, r = preds.get(name, []), refs.get(name, [])
        problem = None
        if len(p) > 1 or len(r) > 1:
            several = p if len(p) > 1 else r
            problem = "several files of this name: " + ", ".join(x.name for x in several)
        elif not p:
            problem = f"no prediction named {name} in {pred_dir}"
        elif not r:
            problem = f"no reference named {name} in {ref_dir}"
        rows.append((name, p[0] if len(p) == 1 else None, r[0] if len(r) == 1 else None, problem))
    return rows


def sse_fractions(trace: CaTrace) -> dict[str, float]:
    """Helix, strand and coil fractions of a Cα trace by biotite's P-SEA
    (:func:`biotite.structure.annotate_sse`, which needs Cα atoms only), over the residues it
    assigns (NaN for a trace it assigns none of)."""
    import biotite.structure as struc

    atoms = struc.AtomArray(len(trace))
    atoms.coord = trace.coords.astype(np.float32)
    atoms.res_id = trace.resnum.astype(int)
    atoms.ins_code = trace.icode.astype(str)
    atoms.atom_name[:] = "CA"
    atoms.element[:] = "C"
    atoms.res_name[:] = "ALA"
    atoms.chain_id[:] = "A"
    labels = struc.annotate_sse(atoms)
    assigned = np.isin(labels, ["a", "b", "c"])
    n = int(assigned.sum())
    if n == 0:
        return {"helix": math.nan, "strand": math.nan, "coil": math.nan}
    return {
        name: float((labels == code).sum()) / n
        for name, code in (("helix", "a"), ("strand", "b"), ("coil", "c"))
    }


def long_range_contact_agreement(
    paired: PairedResidues, cutoff: float = 8.0, min_separation: int = 24
) -> dict[str, float]:
    """Precision and recall of the prediction's long-range Cα contacts (d < ``cutoff`` Å,
    |i − j| ≥ ``min_separation`` in the reference's numbering order) against the reference's,
    over the residues both hold (NaN: no predicted / no true long-range contact)."""
    rows = np.flatnonzero(paired.mask)
    index = np.arange(paired.mask.shape[0])[rows]  # reference rows come first, in file order
    far = np.abs(index[:, None] - index[None, :]) >= min_separation
    upper = np.triu(far, 1)

    def contacts(xyz: np.ndarray) -> np.ndarray:
        xyz = xyz[rows]
        return (np.linalg.norm(xyz[:, None] - xyz[None], axis=-1) < cutoff) & upper

    true, pred = contacts(paired.ref_xyz), contacts(paired.pred_xyz)
    hits = float((true & pred).sum())
    return {
        "lr_contact_precision": hits / pred.sum() if pred.any() else math.nan,
        "lr_contact_recall": hits / true.sum() if true.any() else math.nan,
    }


def evaluate_pairs(
    pred_paths: Sequence[str | os.PathLike[str] | None],
    ref_paths: Sequence[str | os.PathLike[str] | None],
    device: str | torch.device = "cpu",
    *,
    align: bool = False,
    structure_stats: bool = False,
    names: Sequence[str] | None = None,
    problems: Sequence[str | None] | None = None,
    atom_records_only: bool = False,
):
    """Score prediction files against reference files, pair by pair.

    Residues are matched by residue number + insertion code (:func:`pair_residues`); TM and GDT
    are normalised by the reference's length. Modified residues count as their parent, unless
    ``atom_records_only`` (the TM-score program's reading: HETATM residues left out of both
    files, :func:`read_ca`). A pair that cannot be evaluated (a missing path,
    an unreadable file, no common residue) becomes a row with the reason in ``error`` and NaN
    metrics; it never raises.

    Returns:
        pandas DataFrame, one row per pair in input order: ``name``, ``n_common``, ``ref_length``,
        ``rmsd``, ``tm``, ``gdt_ts``, ``gdt_ha``, ``lddt`` (+ ``tm_align`` with ``align``, +
        :data:`STRUCTURE_COLUMNS` with ``structure_stats``), ``error``.
    """
    import pandas as pd

    if len(pred_paths) != len(ref_paths):
        raise PtkError(f"{len(pred_paths)} predictions but {len(ref_paths)} references")
    count = len(pred_paths)
    names = list(names) if names is not None else [
        structure_name(p if p is not None else r) for p, r in zip(pred_paths, ref_paths, strict=True)  # type: ignore[arg-type]
    ]  # fmt: skip
    problems = list(problems) if problems is not None else [None] * count
    rows: list[dict] = []
    batch: list[tuple[int, PairedResidues]] = []
    traces: dict[int, tuple[CaTrace, CaTrace]] = {}
    for i, (p, r) in enumerate(zip(pred_paths, ref_paths, strict=True)):
        row = {"name": names[i], "n_common": 0, "ref_length": 0}
        row.update({k: math.nan for k in METRIC_COLUMNS if k != "tm_align" or align})
        row["error"] = problems[i]
        rows.append(row)
        if row["error"] is not None:
            continue
        if p is None or r is None:
            row["error"] = "no prediction file" if p is None else "no reference file"
            continue
        try:
            pred, ref = read_ca(p, atom_records_only), read_ca(r, atom_records_only)
        except PtkError as exc:
            row["error"] = str(exc)
            continue
        except Exception as exc:  # a reader bug must not take the whole table down
            row["error"] = f"{type(exc).__name__}: {exc}"
            continue
        paired = pair_residues(pred, ref)
        row["ref_length"] = len(ref)
        row["n_common"] = int(paired.mask.sum())
        if not paired.mask.any():
            row["error"] = "no common residues (no residue number + insertion code in both files)"
            continue
        batch.append((i, paired))
        traces[i] = (pred, ref)
        if structure_stats:
            for side, trace in (("ref", ref), ("pred", pred)):
                row.update({f"{side}_{k}": v for k, v in sse_fractions(trace).items()})
            row.update(long_range_contact_agreement(paired))
    if batch:
        m = max(item.mask.shape[0] for _, item in batch)
        pred_t = torch.full((len(batch), m, 3), math.nan, dtype=torch.float64)
        ref_t = torch.full((len(batch), m, 3), math.nan, dtype=torch.float64)
        masks = torch.zeros(3, len(batch), m, dtype=torch.bool)  # common, reference, prediction
        for k, (_, item) in enumerate(batch):
            rows_k = item.mask.shape[0]
            pred_t[k, :rows_k] = torch.from_numpy(item.pred_xyz)
            ref_t[k, :rows_k] = torch.from_numpy(item.ref_xyz)
            for j, values in enumerate((item.mask, item.ref_mask, item.pred_mask)):
                masks[j, k, :rows_k] = torch.from_numpy(values)
        device = torch.device(device)
        masks = masks.to(device)
        scores = score_batch(pred_t.to(device), ref_t.to(device), masks[0], masks[1], masks[2])
        scores = {k: v.cpu().tolist() for k, v in scores.items()}
        for k, (i, _) in enumerate(batch):
            for key in ("rmsd", "tm", "gdt_ts", "gdt_ha", "lddt"):
                rows[i][key] = scores[key][k]
    if align:
        for i, (pred, ref) in traces.items():
            try:
                rows[i]["tm_align"] = tm_align(pred.coords, ref.coords, pred.sequence, ref.sequence)[
                    "tm_align"
                ]
            except Exception as exc:  # keep the metric table even if TM-align refuses one pair
                rows[i]["error"] = f"TM-align: {exc}"
    columns = ["name", "n_common", "ref_length", "rmsd", "tm", "gdt_ts", "gdt_ha", "lddt"]
    columns += ["tm_align"] if align else []
    columns += list(STRUCTURE_COLUMNS) if structure_stats else []
    columns += ["error"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["error"] = frame["error"].astype(object)
    return frame


def summarize_by(frame, column: str) -> dict[object, dict[str, dict[str, float]]]:
    """:func:`summarize` of each group of rows sharing a value of ``column`` (rows without a
    value form the group ``None``), groups in sorted order, ``None`` last."""
    return {
        None if _missing(key) else key: summarize(part)
        for key, part in frame.groupby(column, dropna=False, sort=True)
    }


def _missing(value: object) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))


def summarize(frame) -> dict[str, dict[str, float]]:
    """Mean and median of each metric column over the rows without an error."""
    ok = frame[frame["error"].isna()] if "error" in frame else frame
    out = {}
    for column in (*METRIC_COLUMNS, *STRUCTURE_COLUMNS):
        if column in ok:
            values = ok[column].astype(float)
            out[column] = {
                "mean": float(values.mean()),
                "median": float(values.median()),
                "n": int(values.notna().sum()),
            }
    return out
