"""The flat-atom table: every atom of a structure as numpy columns (one C++ pass of
:class:`gemmi.FlatStructure`), with residue and atom names as integer keys and the per-process
memos that map them to atom37 slots and parent residue types."""

from __future__ import annotations

from collections.abc import Callable

import gemmi
import numpy as np

from ptk.residues import ATOM37_INDEX, THREE_TO_ONE
from ptk.structure.components import _RENAMED_ATOMS, _parent_restype


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


#: atom37 slot of an atom name (−1: none), and restype index of a residue name's parent (−1:
#: not an amino acid), shared by every structure this process reads.
_ATOM_SLOTS = _KeyTable(lambda name: ATOM37_INDEX.get(name, -1))
_PARENT_INDEX = _KeyTable(_parent_restype)


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
