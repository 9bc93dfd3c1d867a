"""Reading chains: a structure file → the atom37 arrays of each protein chain of its first model
(:func:`read_chains`), all array work on the rows of the flat-atom table; microheterogeneity
resolved to the dominant residue type, the primary conformer chosen per residue, and every named
conformer kept on request."""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import gemmi
import numpy as np

from ptk.errors import StructureError
from ptk.residues import NUM_ATOMS
from ptk.structure.chain import Chain, Conformers, ParsedFile
from ptk.structure.flat import _FlatAtoms, _text
from ptk.structure.parsing import _pdb_id, read_structure


def _chain_arrays(
    chain: gemmi.Chain, pdb_id: str, altlocs: bool, flat: _FlatAtoms, offset: int
) -> tuple[Chain | None, int]:
    """One chain → :class:`Chain` (None without amino-acid residues), and the flat-table offset
    of the next chain. ``offset`` is the row of the chain's first atom in ``flat``.

    Residues are grouped by seqid so that a residue split over records (microheterogeneity, or
    altloc-specific residue records) is one residue; where records of two residue types share a
    seqid (microheterogeneity: 1EJG's PRO/SER 22) the dominant type is kept
    (:func:`_dominant_records`), the others are not read, and ``Chain.microhet`` marks it.
    Everything is array work on the flat table's rows of the chain (no Python per residue or
    atom, but for microheterogeneous ones); a residue record with no heavy atom left is not a
    residue (it has nothing observed)."""
    stop = offset + chain.count_atom_sites()
    rows = np.arange(offset, stop, dtype=np.int64)
    parent = flat.parent_index(rows)  # restype index of the record's parent, −1: not an amino acid
    amino = parent >= 0
    if not amino.any():
        return None, stop
    rows, parent = rows[amino], parent[amino]
    resname, resnum, icode = flat.resname_keys[rows], flat.resnums[rows], flat.icodes[rows]
    # A new residue where the seqid changes between consecutive amino-acid atoms.
    new = np.empty(len(rows), dtype=bool)
    new[0] = True
    np.not_equal(resnum[1:], resnum[:-1], out=new[1:])
    new[1:] |= icode[1:] != icode[:-1]
    first = np.flatnonzero(new)
    residue_of = np.cumsum(new) - 1
    first, microhet = _dominant_records(first, residue_of, resname, flat.occ[rows])
    hetero = flat.hetero[rows[first]]
    same_name = resname == resname[first][residue_of]  # atoms of the residue's kept name
    rows, residue_of = rows[same_name], residue_of[same_name]
    slot = flat.slots(rows)
    keep = slot >= 0  # OXT-like extras and atoms of names atom37 has no slot for
    rows, residue_of, slot = rows[keep], residue_of[keep], slot[keep]
    n = len(first)
    atoms = _AtomTable(
        residue=residue_of,
        slot=slot,
        label=flat.labels(rows),
        xyz=flat.pos[rows].astype(np.float32),
        occupancy=flat.occ[rows],
        bfactor=flat.b_iso[rows],
    )

    # Per residue, the altloc letters in file order and the mean heavy-atom occupancy of each.
    named = atoms.label != ""
    sums: dict[tuple[int, str], list[float]] = {}
    per_residue_labels: list[list[str]] = [[] for _ in range(n)] if altlocs or named.any() else []
    for i, label, o in zip(
        atoms.residue[named].tolist(),
        atoms.label[named].tolist(),
        atoms.occupancy[named].tolist(),
        strict=True,
    ):
        entry = sums.get((i, label))
        if entry is None:
            per_residue_labels[i].append(label)
            sums[(i, label)] = [o, 1.0]
        else:
            entry[0] += o
            entry[1] += 1.0

    # Primary conformer: blank atoms, plus the altloc with the highest mean heavy-atom occupancy
    # (first label on ties; means rounded to 1e-4 since occupancies are written with two decimals
    # and float sums must not break ties); a slot only other altlocs fill takes the first of them.
    if sums:
        primary = [
            max(labels, key=lambda a, i=i: round(sums[(i, a)][0] / sums[(i, a)][1], 4)) if labels else ""
            for i, labels in enumerate(per_residue_labels)
        ]
        primary_label = np.asarray(primary, dtype="<U1")[atoms.residue]
        rank = np.where(~named, 0, np.where(atoms.label == primary_label, 1, 2))
        order = np.lexsort((np.arange(len(rank)), rank, atoms.slot, atoms.residue))
    else:  # no altlocs: every rank is 0, so the same order is a stable sort by (residue, slot)
        order = np.argsort(atoms.residue * NUM_ATOMS + atoms.slot, kind="stable")
    cell = atoms.residue[order] * NUM_ATOMS + atoms.slot[order]  # sorted
    first_in_cell = np.empty(len(cell), dtype=bool)
    first_in_cell[:1] = True
    np.not_equal(cell[1:], cell[:-1], out=first_in_cell[1:])
    chosen, cell = order[first_in_cell], cell[first_in_cell]  # the first atom of each cell

    positions = np.full((n, NUM_ATOMS, 3), np.nan, dtype=np.float32)
    bfactor = np.full((n, NUM_ATOMS), np.nan, dtype=np.float32)
    mask = np.zeros((n, NUM_ATOMS), dtype=bool)
    positions.reshape(-1, 3)[cell] = atoms.xyz[chosen]  # cell = residue * 37 + slot
    bfactor.reshape(-1)[cell] = atoms.bfactor[chosen]
    mask.reshape(-1)[cell] = True

    codes = np.where(icode[first] == 32, 0, icode[first]).astype(np.uint8)  # blank: ' ' or NUL
    chain_arrays = Chain(
        pdb_id=pdb_id,
        name=chain.name,
        aatype=parent[first].astype(np.int8),
        resname=_text(resname[first]),
        resnum=resnum[first].astype(np.int32),
        icode=codes.view("S1").astype("<U1"),  # NUL → ""
        positions=positions,
        mask=mask,
        bfactor=bfactor,
        conformers=_conformers(per_residue_labels, atoms) if altlocs else None,
        hetero=hetero,
        microhet=microhet,
    )
    return chain_arrays, stop


@dataclass(frozen=True)
class _AtomTable:
    """The kept atoms of one chain, flat: residue index, atom37 slot, altloc letter, values."""

    residue: np.ndarray
    slot: np.ndarray
    label: np.ndarray
    xyz: np.ndarray
    occupancy: np.ndarray
    bfactor: np.ndarray


def _dominant_records(
    first: np.ndarray, residue_of: np.ndarray, resname: np.ndarray, occupancy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per residue, the index (into the chain's amino-acid atom rows) of the first atom of the
    residue type it keeps, and whether other types shared its seqid. Microheterogeneity keeps
    the type whose atoms have the highest mean occupancy (the first in file order on ties, means
    rounded to 1e-4 as occupancies carry two decimals); a residue of one type keeps it."""
    microhet = np.zeros(len(first), dtype=bool)
    other = resname != resname[first][residue_of]
    if not other.any():
        return first, microhet
    first = first.copy()
    for i in np.unique(residue_of[other]).tolist():
        atoms = np.flatnonzero(residue_of == i)
        names = list(dict.fromkeys(resname[atoms].tolist()))  # types in file order
        means = [round(float(occupancy[atoms[resname[atoms] == name]].mean()), 4) for name in names]
        kept = names[int(np.argmax(means))]
        first[i] = atoms[resname[atoms] == kept][0]
        microhet[i] = True
    return first, microhet


def _conformers(per_residue_labels: list[list[str]], atoms: _AtomTable) -> Conformers:
    n = len(per_residue_labels)
    width = max(1, max((len(a) for a in per_residue_labels), default=1))
    labels = np.full((n, width), "", dtype="<U1")
    positions = np.full((n, width, NUM_ATOMS, 3), np.nan, dtype=np.float32)
    mask = np.zeros((n, width, NUM_ATOMS), dtype=bool)
    occupancy = np.full((n, width, NUM_ATOMS), np.nan, dtype=np.float32)
    named = np.zeros((n, width, NUM_ATOMS), dtype=bool)
    for i, names in enumerate(per_residue_labels):
        labels[i, : len(names)] = names
    n_conf = np.maximum(np.fromiter((len(a) for a in per_residue_labels), dtype=np.int64, count=n), 1)
    is_named = atoms.label != ""
    for k in range(width):
        # Blank atoms go into every conformer of their residue; named atoms into their own.
        label_k = labels[atoms.residue, k]
        blank = ~is_named & (k < n_conf[atoms.residue])
        own = is_named & (atoms.label == label_k)
        for take, flag in ((blank, False), (own, True)):  # named written last: it overrides blank
            r, s = atoms.residue[take], atoms.slot[take]
            positions[r, k, s] = atoms.xyz[take]
            occupancy[r, k, s] = atoms.occupancy[take]
            mask[r, k, s] = True
            named[r, k, s] = flag
    return Conformers(labels, positions, mask, occupancy, named)


def read_chains(path: str | PathLike[str], *, altlocs: bool = False) -> ParsedFile:
    """Read every protein chain of the first model of ``path``.

    Args:
        path: PDB or mmCIF file, optionally gzipped; any name (CATH ``dompdb`` files have no
            extension).
        altlocs: also return every named alternative conformer (:class:`Conformers`).

    Returns:
        The file's chains in file order, with its sha256 and PDB id.

    Raises:
        StructureError: the file cannot be read, or holds no protein chain.
    """
    path = Path(path)
    structure, digest = read_structure(path)
    pdb_id = _pdb_id(path, structure)
    model = structure[0]
    flat = _FlatAtoms(structure)  # model 1 comes first in the table
    chains = []
    offset = 0
    for gchain in model:
        chain, offset = _chain_arrays(gchain, pdb_id, altlocs, flat, offset)
        if chain is not None:
            chains.append(chain)
    if not chains:
        raise StructureError(path, "no protein chain (only waters, ligands or other polymers)")
    return ParsedFile(path=str(path), sha256=digest, pdb_id=pdb_id, chains=chains)
