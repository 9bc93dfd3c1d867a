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
import re
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
]

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
        mask: ``[n, 37]`` atom present in the primary conformer.
        bfactor: ``[n, 37]`` float32 B-factors (NaN where absent).
        conformers: all named conformers, when read with ``altlocs=True``.
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


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
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
    try:
        decoded = text.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        decoded = text.decode("latin-1")
    try:
        if head.startswith(b"data_") or (head.startswith(b"#") and b"\ndata_" in text[:4096]):
            doc = gemmi.cif.read_string(decoded)
            structure = gemmi.make_structure_from_block(doc.sole_block())
        elif _PDB_RECORD.search(text):
            structure = gemmi.read_pdb_string(decoded)
        else:
            raise StructureError(path, "not a PDB or mmCIF file (no ATOM/HETATM records, no data_ block)")
    except StructureError:
        raise
    except Exception as exc:  # gemmi raises RuntimeError/ValueError with a parser message
        raise StructureError(path, f"unreadable structure: {exc}") from exc
    if len(structure) == 0:
        raise StructureError(path, "no models in file")
    structure.merge_chain_parts()
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


def _is_hydrogen(atom: gemmi.Atom) -> bool:
    return atom.element.name in ("H", "D") or atom.is_hydrogen()


def _chain_arrays(chain: gemmi.Chain, pdb_id: str, altlocs: bool) -> Chain | None:
    # Group residues by (seqid) so a residue split over records (microheterogeneity or
    # altloc-specific residue records) is one residue; the first record's name wins.
    groups: list[tuple[str, int, str, list[gemmi.Residue]]] = []
    for residue in chain:
        if residue.is_water():
            continue
        parent = parent_residue(residue.name)
        if parent is None:
            continue
        key = (residue.seqid.num, residue.seqid.icode)
        if groups and (groups[-1][1], groups[-1][2]) == key:
            groups[-1][3].append(residue)
        else:
            groups.append((parent, key[0], key[1], [residue]))
    if not groups:
        return None

    n = len(groups)
    aatype = np.empty(n, dtype=np.int8)
    resname = np.empty(n, dtype=object)
    resnum = np.empty(n, dtype=np.int32)
    icode = np.empty(n, dtype=object)
    positions = np.full((n, NUM_ATOMS, 3), np.nan, dtype=np.float32)
    bfactor = np.full((n, NUM_ATOMS), np.nan, dtype=np.float32)
    mask = np.zeros((n, NUM_ATOMS), dtype=bool)
    primary_occ = np.full((n, NUM_ATOMS), -1.0, dtype=np.float32)

    per_residue_altlocs: list[list[str]] = []
    atom_records: list[list[tuple[str, int, gemmi.Atom]]] = []
    for i, (parent, num, ic, records) in enumerate(groups):
        first_name = records[0].name
        aatype[i] = restype_index(parent)
        resname[i] = first_name
        resnum[i] = num
        icode[i] = ic.strip()
        seen: list[str] = []
        atoms: list[tuple[str, int, gemmi.Atom]] = []
        for record in records:
            if record.name != first_name:
                continue
            for atom in record:
                if _is_hydrogen(atom):
                    continue
                atom_name = _RENAMED_ATOMS.get((record.name, atom.name), atom.name)
                slot = ATOM37_INDEX.get(atom_name)
                if slot is None:
                    continue
                label = atom.altloc if atom.altloc != "\x00" else ""
                label = label.strip()
                if label and label not in seen:
                    seen.append(label)
                atoms.append((label, slot, atom))
                # Primary conformer: blank altloc, else the highest-occupancy altloc of that atom
                # (first label on ties).
                occ = -0.5 if label else 2.0  # blank atoms always win
                if label:
                    occ = atom.occ
                if occ > primary_occ[i, slot]:
                    primary_occ[i, slot] = occ
                    pos = atom.pos
                    positions[i, slot] = (pos.x, pos.y, pos.z)
                    bfactor[i, slot] = atom.b_iso
                    mask[i, slot] = True
        per_residue_altlocs.append(seen)
        atom_records.append(atoms)

    conformers = _conformers(per_residue_altlocs, atom_records) if altlocs else None
    return Chain(
        pdb_id=pdb_id,
        name=chain.name,
        aatype=aatype,
        resname=resname.astype(str),
        resnum=resnum,
        icode=icode.astype(str),
        positions=positions,
        mask=mask,
        bfactor=bfactor,
        conformers=conformers,
    )


def _conformers(
    per_residue_altlocs: list[list[str]], atom_records: list[list[tuple[str, int, gemmi.Atom]]]
) -> Conformers:
    n = len(per_residue_altlocs)
    width = max(1, max((len(a) for a in per_residue_altlocs), default=1))
    labels = np.full((n, width), "", dtype="<U1")
    positions = np.full((n, width, NUM_ATOMS, 3), np.nan, dtype=np.float32)
    mask = np.zeros((n, width, NUM_ATOMS), dtype=bool)
    occupancy = np.full((n, width, NUM_ATOMS), np.nan, dtype=np.float32)
    named = np.zeros((n, width, NUM_ATOMS), dtype=bool)
    for i, (names, atoms) in enumerate(zip(per_residue_altlocs, atom_records, strict=True)):
        slots = {label: k for k, label in enumerate(names)}
        labels[i, : len(names)] = names
        n_conf = max(1, len(names))
        for label, slot, atom in atoms:
            pos = atom.pos
            targets = range(n_conf) if not label else (slots[label],)
            for k in targets:
                if label or not named[i, k, slot]:  # a named atom overrides a blank one
                    positions[i, k, slot] = (pos.x, pos.y, pos.z)
                    occupancy[i, k, slot] = atom.occ
                    mask[i, k, slot] = True
                    named[i, k, slot] = bool(label)
    return Conformers(labels, positions, mask, occupancy, named)


def read_structure(path: str | PathLike[str]) -> tuple[gemmi.Structure, str]:
    """Parse ``path`` with gemmi (format from content; gzip detected) → (structure, sha256).

    Raises:
        StructureError: missing, empty, binary, truncated or unparseable file.
    """
    path = Path(path)
    raw = _read_bytes(path)
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
    chains = []
    for gchain in model:
        chain = _chain_arrays(gchain, pdb_id, altlocs)
        if chain is not None:
            chains.append(chain)
    if not chains:
        raise StructureError(path, "no protein chain (only waters, ligands or other polymers)")
    return ParsedFile(path=str(path), sha256=digest, pdb_id=pdb_id, chains=chains)
