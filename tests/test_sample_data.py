"""The shipped sample structures: exactly the files the manifest lists, byte for byte, all readable."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest

from ptk.datasets import SAMPLE_KINDS, sample_data_dir, sample_files
from ptk.errors import ConfigError
from ptk.structure import read_chains

MANIFEST = Path(__file__).resolve().parents[1] / "data_manifests" / "sample_data.tsv"
ROWS = list(csv.DictReader(MANIFEST.open(newline=""), delimiter="\t"))


def test_manifest_lists_exactly_the_shipped_files():
    shipped = {f"{kind}/{p.name}" for kind in SAMPLE_KINDS for p in sample_files(kind)}
    assert shipped == {row["file"] for row in ROWS}
    assert sum(int(row["bytes"]) for row in ROWS) < 6_000_000
    assert sum(row["kind"] == "cath_style" for row in ROWS) == 30
    assert sum(row["kind"] == "altloc" for row in ROWS) == 4
    for row in ROWS:
        assert row["licence"] and row["source"].startswith("PyPI MDAnalysisTests==")


@pytest.mark.parametrize("row", ROWS, ids=[r["file"] for r in ROWS])
def test_sample_file_matches_manifest_and_parses(row):
    kind, name = row["file"].split("/")
    path = sample_data_dir(kind) / name
    data = path.read_bytes()
    assert len(data) == int(row["bytes"])
    assert hashlib.sha256(data).hexdigest() == row["sha256"]

    parsed = read_chains(path, altlocs=kind == "altloc")
    assert parsed.sha256 == row["sha256"]
    assert parsed.pdb_id == row["pdb_id"]
    assert ",".join(c.name for c in parsed.chains) == row["chains"]
    assert sum(len(c) for c in parsed.chains) == int(row["residues"])
    if kind == "cath_style":
        assert len(parsed.chains) == 1 and len(parsed.chains[0]) >= 50
        assert row["cath42_nodes"].startswith(parsed.chains[0].chain_id + "=")
    else:
        # named altlocs (A, B, ...) with their own occupancies, on at least one residue
        named, partial = 0, False
        for chain in parsed.chains:
            conf = chain.conformers
            multi = conf.n_conformers > 1
            named += int(multi.sum())
            assert all(label.isalpha() for label in conf.labels[multi].ravel() if label)
            occ = conf.atom_occupancy[multi][conf.named_mask[multi]]
            partial |= bool(((occ > 0) & (occ < 1)).any())
        assert named == int(row["named_altloc_residues"]) > 0
        assert partial


def test_unknown_kind_names_the_allowed_ones():
    with pytest.raises(ConfigError, match="allowed: altloc, cath_style"):
        sample_data_dir("qfit")
