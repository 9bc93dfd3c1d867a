"""Files written whole or not at all, and file checksums: the one place ptk does either.

Every file ptk writes for a reader to find later (a checkpoint, ``config.json``, ``metrics.csv``
after a resume truncates it, a shard part, ``_manifest.json``, ``rejects.parquet``, a report page,
an evaluation table, a fetch ledger) goes to a temporary file beside its final name, is flushed and
fsynced, then renamed over the final name (``os.replace``, atomic on POSIX), and the folder is
fsynced. A reader sees the old file or the new one, never half of one; a process killed mid-write
leaves the old file and a hidden ``.NAME.*.tmp`` beside it, which no reader opens.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterator
from os import PathLike
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "atomic_writer", "commit_temporary", "sha256_file", "temporary_beside"]

#: Bytes read at a time when checksumming.
CHUNK_BYTES = 1 << 20


def temporary_beside(path: str | PathLike[str]) -> Path:
    """A new empty hidden file ``.NAME.XXXXXXXX.tmp`` in the folder of ``path`` (same file
    system, so the final rename is atomic), with the permissions a plain ``open`` gives under
    the process's umask (``tempfile.mkstemp`` would make every result owner-only)."""
    path = Path(path)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp


def commit_temporary(tmp: str | PathLike[str], path: str | PathLike[str]) -> None:
    """Make the finished temporary file ``tmp`` the file ``path``: fsync its data, rename it
    over ``path``, fsync the folder (where the file system allows it)."""
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    with contextlib.suppress(OSError):  # some file systems refuse a folder fsync
        folder = os.open(Path(path).parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


@contextlib.contextmanager
def atomic_writer(path: str | PathLike[str], mode: str = "wb", **open_kwargs: Any) -> Iterator[IO[Any]]:
    """``open(path, mode)`` whose content replaces ``path`` only when the block ends without an
    exception; on any exception (KeyboardInterrupt too) ``path`` is untouched and the temporary
    file is removed. ``mode`` is ``"w"`` or ``"wb"``; ``open_kwargs`` go to :func:`open`
    (``encoding``, ``newline``)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_writer writes a whole file: mode 'w' or 'wb', not {mode!r}")
    tmp = temporary_beside(path)
    try:
        with open(tmp, mode, **open_kwargs) as fh:
            yield fh
        commit_temporary(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | PathLike[str], data: bytes | str, encoding: str = "utf-8") -> None:
    """Write ``data`` (bytes, or text in ``encoding``) as the whole new content of ``path``."""
    if isinstance(data, str):
        data = data.encode(encoding)
    with atomic_writer(path, "wb") as fh:
        fh.write(data)


def sha256_file(path: str | PathLike[str]) -> str:
    """The hex SHA-256 of the file at ``path``, read in chunks of :data:`CHUNK_BYTES`."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
