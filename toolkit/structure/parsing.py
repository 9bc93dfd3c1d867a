"""From a path to a :class:`gemmi.Structure`: the file checks (a regular file, readable), gzip
detected from the content, the format detected from the content (PDB or mmCIF), and the PDB id
(from the header, else the file name)."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
from os import PathLike
from pathlib import Path

import gemmi

from ptk.errors import StructureError

_GZIP_MAGIC = b"\x1f\x8b"
_PDB_RECORD = re.compile(rb"^(ATOM  |HETATM)", re.MULTILINE)
_PDB_ID_IN_NAME = re.compile(r"^(\d[a-zA-Z0-9]{3})(?=[_.\-A-Za-z0-9]|$)")


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
