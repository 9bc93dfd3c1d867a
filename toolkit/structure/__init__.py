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

One module per concept, every public name re-exported here:

- :mod:`~ptk.structure.chain`: :class:`Chain`, :class:`Conformers`, :class:`ParsedFile`;
- :mod:`~ptk.structure.parsing`: file checks, gzip and format detection, gemmi's parse, the PDB id;
- :mod:`~ptk.structure.components`: the parent of a modified residue;
- :mod:`~ptk.structure.flat`: the flat-atom table and its name-key memos;
- :mod:`~ptk.structure.reader`: :func:`read_chains`, the per-chain arrays and conformers;
- :mod:`~ptk.structure.suffixes`: structure-file suffixes and names.
"""

from __future__ import annotations

from ptk.structure.chain import Chain, Conformers, ParsedFile
from ptk.structure.components import parent_residue
from ptk.structure.parsing import check_regular_file, read_file_bytes, read_structure
from ptk.structure.reader import read_chains
from ptk.structure.suffixes import STRUCTURE_SUFFIXES, has_structure_suffix, structure_name

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
