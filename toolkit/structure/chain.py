"""The in-memory form of a read structure: :class:`Chain` (atom37 arrays over residues), its
alternative conformers (:class:`Conformers`), and the chains of one file (:class:`ParsedFile`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ptk.residues import RESTYPES_3, THREE_TO_ONE


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
