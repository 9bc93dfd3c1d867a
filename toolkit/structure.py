"""Reading protein structures with gemmi into per-chain atom37 arrays.

One reader for every input ptk takes: PDB, mmCIF, either gzipped, and CATH ``dompdb`` files
with no extension (the format is detected from the content, not the name). Only the first
model is read. Hydrogens, waters and non-amino-acid groups are dropped; modified residues are
mapped to their parent residue through the chemical component tables (gemmi's tabulated
residues, then biotite's copy of the full wwPDB CCD), never through a hand list.

The in-memory form is :class:`Chain`: arrays over residues in the atom37 layout of
:mod:`ptk.residues`. With ``altlocs=True`` each chain also carries every named alternative
conformer (:class:`Conformers`) with per-atom occupancies; turning those into per-residue
conformer weights is the qFit ingest's job, not the reader's.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from os import PathLike
from pathlib import Path

import gemmi
import numpy as np

from ptk.errors import StructureError
from ptk.residues import ATOM37_INDEX, NUM_ATOMS, RESTYPES_3, THREE_TO_ONE, restype_index

__all__ = [
    "Chain",
    "Conformers",
    "ParsedFile",
    "parent_residue",
    "read_structure",
    "read_chains",
    "read_file_bytes",
    "check_regular_file",
    "STRUCTURE_SUFFIXES",
    "has_structure_suffix",
    "structure_name",
]

#: File extensions of structure files (PDB and mmCIF), any case, each also with ``.gz``. Files
#: without one are structures too when named like a CATH ``dompdb`` domain (the ingest decides).
STRUCTURE_SUFFIXES = (".pdb", ".ent", ".cif", ".mmcif", ".pdbx")

_GZIP_MAGIC = b"\x1f\x8b"
_PDB_RECORD = re.compile(rb"^(ATOM  |HETATM)", re.MULTILINE)
_PDB_ID_IN_NAME = re.compile(r"^(\d[a-zA-Z0-9]{3})(?=[_.\-A-Za-z0-9]|$)")


@dataclass(frozen=True)
class Conformers:
    """Every named alternative conformer of a chain, per residue.

    ``A`` is the largest number of named altlocs on any residue of the chain (at least 1).
    Blank-altloc atoms are copied into every conformer of their residue, so each conformer is a
    whole residue. A residue with no named altloc has one conformer, labelled ``""``.

    Attributes:
        labels: ``[n, A]`` altloc letter per conformer slot (``""`` for an unused slot, or the
            single blank conformer of a residue without altlocs), in file order.
        positions: ``[n, A, 37, 3]`` float32 coordinates, NaN where absent.
        mask: ``[n, A, 37]`` atom present.
        atom_occupancy: ``[n, A, 37]`` float32 occupancy of each atom as written (NaN where
            absent). Blank atoms carry their own occupancy into every conformer.
        named_mask: ``[n, A, 37]`` the atom carried this conformer's altloc letter (not a
            blank atom copied in), so a reader can choose which atoms decide an occupancy.
    """

    labels: np.ndarray
    positions: np.ndarray
    mask: np.ndarray
    atom_occupancy: np.ndarray
    named_mask: np.ndarray

    @property
    def n_conformers(self) -> np.ndarray:
        """``[n]`` conformers per residue (1 for a residue without named altlocs)."""
        return np.maximum((self.labels != "").sum(axis=1), 1)


@dataclass(frozen=True)
class Chain:
    """One protein chain: residues in chain order, atoms in the atom37 layout.

    Attributes:
        pdb_id: lower-case PDB id (from the header, else the file name, else the file stem).
        name: author chain id (``auth_asym_id``; the PDB-format chain letter).
        aatype: ``[n]`` int8 index into :data:`ptk.residues.RESTYPES_3` (parents of modified
            residues; 20 = unknown).
        resname: ``[n]`` residue names as written in the file.
        resnum: ``[n]`` int32 author residue numbers.
        icode: ``[n]`` insertion codes (``""`` where none).
        positions: ``[n, 37, 3]`` float32 coordinates of the primary conformer, NaN where absent.
            The primary conformer of a residue is its blank-altloc atoms plus the named altloc
            with the highest mean heavy-atom occupancy (first label in file order on ties); a
            per-residue choice, so a side chain is never stitched from two altlocs.
        mask: ``[n, 37]`` atom present in the primary conformer.
        bfactor: ``[n, 37]`` float32 B-factors (NaN where absent).
        conformers: all named conformers, when read with ``altlocs=True``.
        hetero: ``[n]`` bool, the residue's first record is HETATM (PDB) / ``HETATM`` group
            (mmCIF): a modified residue such as MSE in most entries. ptk reads these as their
            parent; the TM-score program reads ATOM records only (``ptk eval --atom-records-only``).
        microhet: ``[n]`` bool, records of another residue type shared this residue's number
            (microheterogeneity, e.g. 1EJG's PRO/SER 22 under altlocs A/B): the type with the
            highest mean occupancy was kept, the other type's atoms were not read.
    """

    pdb_id: str
    name: str
    aatype: np.ndarray
    resname: np.ndarray
    resnum: np.ndarray
    icode: np.ndarray
    positions: np.ndarray
    mask: np.ndarray
    bfactor: np.ndarray
    conformers: Conformers | None = None
    hetero: np.ndarray | None = None
    microhet: np.ndarray | None = None

    @property
    def chain_id(self) -> str:
        """``pdbid.chain``, the key of the CATH 4.2 split file (``1c0p.A``)."""
        return f"{self.pdb_id}.{self.name}"

    @property
    def sequence(self) -> str:
        return "".join(THREE_TO_ONE[RESTYPES_3[i]] for i in self.aatype)

    def __len__(self) -> int:
        return int(self.aatype.shape[0])


@dataclass(frozen=True)
class ParsedFile:
    """The chains of one file, with its checksum."""

    path: str
    sha256: str
    pdb_id: str
    chains: list[Chain] = field(default_factory=list)


@lru_cache(maxsize=4096)
def parent_residue(name: str) -> str | None:
    """The standard parent of residue ``name`` (``MSE`` → ``MET``), or None if not an amino acid.

    Looked up in gemmi's tabulated residues (generated from the chemical component dictionary),
    then in biotite's full copy of the CCD for names gemmi does not tabulate.
    """
    name = name.strip().upper()
    if name in THREE_TO_ONE:
        return name
    info = gemmi.find_tabulated_residue(name)
    if info is not None:
        if not info.is_amino_acid():
            return None
        code = info.one_letter_code.upper()
    else:
        from biotite.structure import info as ccd

        try:
            link = ccd.link_type(name)
        except Exception:  # biotite raises for names absent from the CCD
            return None
        if link is None or "PEPTIDE" not in str(link).upper():
            return None
        code = (ccd.one_letter_code(name) or "X").upper()
    from ptk.residues import ONE_TO_THREE

    return ONE_TO_THREE.get(code, "UNK")


# Atoms of modified residues whose names differ from the parent's (selenomethionine's Se sits
# where methionine's S does). Everything else is matched by name against the parent's atoms.
_RENAMED_ATOMS = {("MSE", "SE"): "SD"}


def _kind_of(mode: int) -> str | None:
    """What a file that is not a regular file is, in words (None for a regular file)."""
    import stat

    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))  # fmt: skip
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def check_regular_file(path: Path) -> None:
    """Raise a StructureError naming ``path`` unless it is (or links to) a regular file: reading
    a FIFO waits for a writer and a device such as /dev/zero never ends."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError as exc:
        raise StructureError(path, "no such file") from exc
    except OSError as exc:
        raise StructureError(path, f"cannot be read ({exc.strerror})") from exc
    kind = _kind_of(mode)
    if kind is not None:
        raise StructureError(path, f"is {kind}, not a structure file" if kind.startswith("a") else kind)


def read_file_bytes(path: Path, limit: int | None = None) -> bytes:
    """The bytes of ``path`` (the first ``limit`` only, when given); a StructureError naming the
    file for a missing path, a directory, a FIFO or device, or an unreadable file."""
    check_regular_file(path)
    try:
        with path.open("rb") as fh:
            raw = fh.read() if limit is None else fh.read(limit)
    except FileNotFoundError as exc:
        raise StructureError(path, "no such file") from exc
    except IsADirectoryError as exc:
        raise StructureError(path, "is a directory, not a structure file") from exc
    except OSError as exc:
        raise StructureError(path, f"cannot be read ({exc.strerror})") from exc
    return raw


def _decompress(path: Path, raw: bytes) -> bytes:
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise StructureError(path, f"corrupt or truncated gzip data ({exc})") from exc


def _parse(path: Path, text: bytes) -> gemmi.Structure:
    if not text.strip():
        raise StructureError(path, "empty file")
    head = text[:4096].lstrip()
    if b"\x00" in text[:4096]:
        raise StructureError(path, "binary data, not a PDB or mmCIF file")
    # gemmi is handed the bytes as they are when they are UTF-8 (a str would be encoded to
    # UTF-8 again on the way in: the same bytes, for half the parse time again); other files are
    # read as latin-1 text, so every byte is some character.
    source: bytes | str = text
    if not text.isascii():  # ASCII (nearly every file) is UTF-8; otherwise decode to find out
        try:
            text.decode("utf-8", errors="strict")
        except UnicodeDecodeError:
            source = text.decode("latin-1")
    try:
        if head.startswith(b"data_") or (head.startswith(b"#") and b"\ndata_" in text[:4096]):
            doc = gemmi.cif.read_string(source)
            structure = gemmi.make_structure_from_block(doc.sole_block())
        elif _PDB_RECORD.search(text):
            structure = gemmi.read_pdb_string(source)
        else:
            raise StructureError(path, "not a PDB or mmCIF file (no ATOM/HETATM records, no data_ block)")
    except StructureError:
        raise
    except Exception as exc:  # gemmi raises RuntimeError/ValueError with a parser message
        raise StructureError(path, f"unreadable structure: {exc}") from exc
    if len(structure) == 0:
        raise StructureError(path, "no models in file")
    structure.merge_chain_parts()
    structure.remove_hydrogens()  # in C++, before the atoms are taken into numpy
    structure.remove_waters()
    return structure


def _pdb_id(path: Path, structure: gemmi.Structure) -> str:
    info = structure.info
    header_id = (info["_entry.id"] if "_entry.id" in info else "").strip()
    if len(header_id) == 4 and header_id[0].isdigit():
        return header_id.lower()
    name = path.name
    for suffix in (".gz", ".cif", ".mmcif", ".pdb", ".ent"):
        name = name.removesuffix(suffix)
    match = _PDB_ID_IN_NAME.match(name)
    return (match.group(1) if match else name).lower()


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


def _key(name: str) -> np.uint64:
    """A residue or atom name as the integer its 8 NUL-padded bytes read as (see ``_FlatAtoms``)."""
    return np.frombuffer(name.encode("latin-1").ljust(8, b"\0"), dtype=np.uint64)[0]


def _text(keys: np.ndarray) -> np.ndarray:
    """Integer name keys (``_key``) → ``<U`` strings (latin-1, as the file's bytes were read)."""
    raw = np.ascontiguousarray(keys, dtype=np.uint64).view("S8")
    try:
        text = raw.astype(str)
    except UnicodeDecodeError:  # numpy decodes ASCII only
        text = np.asarray([b.decode("latin-1") for b in raw.tolist()], dtype="<U8")
    width = int(np.char.str_len(text).max()) if len(text) else 1
    return text.astype(f"<U{max(width, 1)}")  # as wide as the longest name, as np.asarray makes it


class _KeyTable:
    """A memo of ``fn(name)`` by name key (``_key``): every key array is answered with one
    sorted search, and ``fn`` is called once per distinct name this process meets."""

    def __init__(self, fn: Callable[[str], int]) -> None:
        self.fn = fn
        self.keys = np.zeros(0, dtype=np.uint64)  # sorted
        self.values = np.zeros(0, dtype=np.int64)

    def __call__(self, keys: np.ndarray) -> np.ndarray:
        """``[len(keys)]`` int64 ``fn`` of each key's name."""
        where = np.searchsorted(self.keys, keys)
        if len(self.keys):
            hit = self.keys[np.minimum(where, len(self.keys) - 1)] == keys
            if hit.all():
                return self.values[where]
        new = np.setdiff1d(keys, self.keys)
        keys_all = np.concatenate([self.keys, new])
        computed = np.asarray([self.fn(name) for name in _text(new).tolist()], dtype=np.int64)
        values = np.concatenate([self.values, computed])
        order = np.argsort(keys_all)
        self.keys, self.values = keys_all[order], values[order]
        return self.values[np.searchsorted(self.keys, keys)]


def _parent_restype(name: str) -> int:
    parent = parent_residue(name)
    return -1 if parent is None else restype_index(parent)


#: atom37 slot of an atom name (−1: none), and restype index of a residue name's parent (−1:
#: not an amino acid), shared by every structure this process reads.
_ATOM_SLOTS = _KeyTable(lambda name: ATOM37_INDEX.get(name, -1))
_PARENT_INDEX = _KeyTable(_parent_restype)


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


class _FlatAtoms:
    """Every atom of a structure as columns (:class:`gemmi.FlatStructure`, one C++ pass), in the
    order of iterating models → chains → residues → atoms, so a chain's atoms are a row range."""

    def __init__(self, structure: gemmi.Structure) -> None:
        flat = gemmi.FlatStructure(structure)
        self.pos = flat.pos  # [N, 3] float64, as gemmi stores them
        self.occ = flat.occ  # [N] float32
        self.b_iso = flat.b_iso  # [N] float32
        self._altloc = flat.altlocs  # [N] int8, 0 where blank
        # Atom names as fixed-width bytes (NUL-padded; numpy drops the padding when read).
        self._names = np.ascontiguousarray(flat.atom_names).view("S8")[:, 0]
        # Residue names, numbers and insertion codes of every atom's residue record; names as
        # their 8 NUL-padded bytes read as one integer (equal names ⇔ equal keys, fast to compare).
        self.resname_keys = np.ascontiguousarray(flat.residue_names).view(np.uint64)[:, 0]
        self.resnums = flat.resnums  # [N] int32
        self.icodes = flat.icodes  # [N] int8, ' ' where blank
        self.hetero = flat.het_flags == ord("H")  # [N] HETATM record (gemmi: 'A' ATOM, 'H' HETATM)
        self._slots: np.ndarray | None = None
        self._parents: np.ndarray | None = None

    def slots(self, rows: np.ndarray) -> np.ndarray:
        """``[len(rows)]`` int64 atom37 slot of each row's atom name, −1 for names not in atom37
        (a modified residue's renamed atoms, such as selenomethionine's SE, take the slot of the
        parent's atom)."""
        if self._slots is None:
            keys = self._names.view(np.uint64)
            self._slots = _ATOM_SLOTS(keys)
            for (residue, atom), parent_atom in _RENAMED_ATOMS.items():
                if residue in THREE_TO_ONE:
                    continue
                renamed = (self.resname_keys == _key(residue)) & (keys == _key(atom))
                self._slots[renamed] = ATOM37_INDEX[parent_atom]
        return self._slots[rows]

    def parent_index(self, rows: np.ndarray) -> np.ndarray:
        """``[len(rows)]`` int64 restype index of the parent of each row's residue name
        (:func:`parent_residue`), −1 where the residue is not an amino acid."""
        if self._parents is None:
            self._parents = _PARENT_INDEX(self.resname_keys)
        return self._parents[rows]

    def labels(self, rows: np.ndarray) -> np.ndarray:
        """``[len(rows)]`` altloc letters as ``<U1`` (``""`` where blank)."""
        altloc = self._altloc[rows]
        if not altloc.any():
            return np.zeros(len(rows), dtype="<U1")  # "" everywhere
        return altloc.view(np.uint8).view("S1").astype("<U1")


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


def _without_gz(name: str) -> str:
    return name[:-3] if name.lower().endswith(".gz") else name


def has_structure_suffix(path: str | PathLike[str]) -> bool:
    """The file name ends in one of :data:`STRUCTURE_SUFFIXES`, optionally followed by ``.gz``."""
    return _without_gz(Path(path).name).lower().endswith(STRUCTURE_SUFFIXES)


def structure_name(path: str | PathLike[str]) -> str:
    """The file name without ``.gz`` and without a structure extension (``x.pdb.gz`` → ``x``;
    ``1a04A02_noise0.5.pdb`` → ``1a04A02_noise0.5``; a CATH ``dompdb`` file without extension
    keeps its name): what ``ptk eval`` pairs predictions and references by."""
    name = _without_gz(Path(path).name)
    lower = name.lower()
    for suffix in STRUCTURE_SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def read_structure(path: str | PathLike[str]) -> tuple[gemmi.Structure, str]:
    """Parse ``path`` with gemmi (format from content; gzip detected) → (structure, sha256).

    Raises:
        StructureError: missing, empty, binary, truncated or unparseable file.
    """
    path = Path(path)
    raw = read_file_bytes(path)
    digest = hashlib.sha256(raw).hexdigest()
    structure = _parse(path, _decompress(path, raw))
    return structure, digest


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
