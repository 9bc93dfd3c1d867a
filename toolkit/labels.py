"""Row labels of the ``cath`` shards: the CATH 4.2 split (Ingraham's ``chain_set_splits.json``)
and the four CATH numbers (a CATH domain list file, or the split file's ``cath_nodes``).

Plain Python (no torch): the ingest's driver reads these files and sends the labels to the
workers.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

from ptk.errors import PtkError

__all__ = ["DOMAIN_ID", "CATH_CLASS_NAMES", "CathLabels", "read_cath_list", "domain_chain_id"]

#: The CATH classes (the first CATH number).
CATH_CLASS_NAMES: dict[int, str] = {
    1: "mainly alpha",
    2: "mainly beta",
    3: "alpha beta",
    4: "few secondary structures",
}

#: A CATH domain id: PDB id, chain letter, two-digit domain number (``1c0pA01``).
DOMAIN_ID = re.compile(r"^(\d[A-Za-z0-9]{3})([A-Za-z0-9])(\d{2})$")


@dataclass(frozen=True)
class CathLabels:
    """CATH 4.2 split and CATH numbers for rows, looked up by id.

    Attributes:
        split: chain id (``1c0p.A``) → ``train``/``validation``/``test`` (Ingraham split file).
        nodes: chain id → CATH codes from the split file's ``cath_nodes`` (``"3.40.50"``).
        domains: domain id (``1c0pA01``) → (class, architecture, topology, homology) from a
            CATH domain list (CLF) file.
    """

    split: Mapping[str, str] = field(default_factory=dict)
    nodes: Mapping[str, list[str]] = field(default_factory=dict)
    domains: Mapping[str, tuple[int, int, int, int]] = field(default_factory=dict)

    @classmethod
    def load(
        cls, splits: str | PathLike[str] | None = None, cath_list: str | PathLike[str] | None = None
    ) -> CathLabels:
        """Read the Ingraham ``chain_set_splits.json`` and/or a CATH domain list file."""
        split: dict[str, str] = {}
        nodes: dict[str, list[str]] = {}
        domains: dict[str, tuple[int, int, int, int]] = {}
        if splits is not None:
            try:
                data = json.loads(Path(splits).read_text())
            except (OSError, ValueError) as exc:
                raise PtkError(f"{splits}: not a readable split file ({exc})") from exc
            if not isinstance(data, dict) or not {"train", "validation", "test"} & set(data):
                raise PtkError(
                    f"{splits}: not a CATH 4.2 split file (expected keys train, validation, test, cath_nodes)"
                )
            for name in ("train", "validation", "test"):
                for chain_id in data.get(name, ()):
                    split[chain_id] = name
            nodes = {k: list(v) for k, v in data.get("cath_nodes", {}).items()}
        if cath_list is not None:
            domains = read_cath_list(cath_list)
        return cls(split, nodes, domains)

    def numbers(
        self, row_id: str, chain_id: str, own_nodes: list[str] | None = None
    ) -> tuple[int | None, ...]:
        """(class, architecture, topology, homology) for a row, None where unknown.

        Order of evidence: the CATH domain list for the domain id (or, for a whole chain, its
        first domain in the list), then the entry's own CATH codes (chain_set.jsonl), then the
        split file's ``cath_nodes`` for the chain; a C.A.T code leaves homology unknown.
        """
        if self.domains:
            hit = self.domains.get(row_id)
            if hit is None:
                pdb, _, chain = chain_id.partition(".")
                prefix = f"{pdb}{chain}"
                keys = sorted(k for k in self._by_chain().get(prefix, ()))
                hit = self.domains[keys[0]] if keys else None
            if hit is not None:
                return hit
        for codes in (own_nodes, self.nodes.get(chain_id)):
            if codes:
                return _parse_cath_code(codes[0])
        return (None, None, None, None)

    def _by_chain(self) -> dict[str, list[str]]:
        cache = self.__dict__.get("_chain_index")
        if cache is None:
            cache = {}
            for key in self.domains:
                cache.setdefault(key[:5], []).append(key)
            object.__setattr__(self, "_chain_index", cache)
        return cache


def _parse_cath_code(code: str) -> tuple[int | None, ...]:
    parts = [int(p) for p in str(code).strip().split(".") if p.strip().isdigit()][:4]
    return tuple(parts + [None] * (4 - len(parts)))


def read_cath_list(path: str | PathLike[str]) -> dict[str, tuple[int, int, int, int]]:
    """A CATH List File (CLF 2.0: domain id then class, architecture, topology, homology, …)
    → domain id → the four CATH numbers. Comment lines (``#``) are skipped."""
    out: dict[str, tuple[int, int, int, int]] = {}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise PtkError(f"{path}: cannot read the CATH domain list ({exc.strerror})") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        try:
            out[fields[0]] = (int(fields[1]), int(fields[2]), int(fields[3]), int(fields[4]))
        except (IndexError, ValueError) as exc:
            raise PtkError(f"{path}:{number}: not a CATH domain list line: {line[:60]!r}") from exc
    if not out:
        raise PtkError(f"{path}: no domain records (expected a CATH List File, CLF 2.0)")
    return out


def domain_chain_id(name: str) -> str | None:
    """``1c0pA01`` → ``1c0p.A`` for a CATH domain id, else None."""
    m = DOMAIN_ID.match(name)
    return f"{m.group(1).lower()}.{m.group(2)}" if m else None
