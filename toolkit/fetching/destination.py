"""The fetch state of a destination folder, which this module alone writes and reads.

- ``DEST/.ptk-fetch/SHA256SUMS``: the sha256 of every file a fetch put in DEST (``sha256sum -c``
  format, paths relative to DEST), so a later run catches a file corrupted on disk;
- ``DEST/.ptk-fetch/lock``: the pid of the one fetch writing into DEST;
- ``DEST/.ptk-fetch/partial/<path>.part``: downloads not yet complete and verified;
- ``DEST/fetch_failures.tsv``: one row per file that could not be fetched, with its reason.
"""

from __future__ import annotations

import csv
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ptk.errors import FetchError
from ptk.files import atomic_write, atomic_writer

__all__ = [
    "FAILURES_NAME",
    "LEDGER_NAME",
    "SHA256_HEX",
    "STATE_DIR",
    "DestLock",
    "Failure",
    "Ledger",
    "write_failures",
]

FAILURES_NAME: Final = "fetch_failures.tsv"
STATE_DIR: Final = ".ptk-fetch"
LEDGER_NAME: Final = "SHA256SUMS"
#: a sha256 as the manifests and the ledger write it.
SHA256_HEX: Final = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Failure:
    """A file that could not be fetched, and why."""

    key: str
    url: str
    path: str
    reason: str
    attempts: int = 0


class Ledger:
    """``DEST/.ptk-fetch/SHA256SUMS``: the checksum of every file this tool put in DEST."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.sums: dict[str, str] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                digest, _, rel = line.partition(" ")
                rel = rel.lstrip(" *")
                if SHA256_HEX.match(digest) and rel:
                    self.sums[rel] = digest

    def get(self, rel: str) -> str | None:
        with self.lock:
            return self.sums.get(rel)

    def record(self, rel: str, digest: str) -> None:
        with self.lock:
            self.sums[rel] = digest
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(f"{digest}  {rel}\n")

    def compact(self, dest: Path) -> None:
        """Rewrite with one line per file that still exists (atomically)."""
        with self.lock:
            lines = [f"{d}  {rel}\n" for rel, d in sorted(self.sums.items()) if (dest / rel).is_file()]
            atomic_write(self.path, "".join(lines))


class DestLock:
    """One ``ptk fetch`` at a time per destination folder (a pid file, taken over when stale)."""

    def __init__(self, state: Path) -> None:
        self.path = state / "lock"

    def __enter__(self) -> DestLock:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and pid != os.getpid() and _alive(pid):
                    raise FetchError(
                        f"{self.path.parent.parent}: another ptk fetch (pid {pid}) is "
                        f"writing here; wait for it or remove {self.path}"
                    ) from None
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(str(os.getpid()))
            return self
        raise FetchError(f"could not take the lock {self.path}")

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_failures(path: Path, failures: Sequence[Failure]) -> None:
    with atomic_writer(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(["id", "url", "path", "reason", "attempts"])
        for f in failures:
            writer.writerow(
                [f.key, f.url, f.path, f.reason.replace("\t", " ").replace("\n", " "), f.attempts]
            )
