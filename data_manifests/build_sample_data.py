"""Rebuild ``toolkit/sample_data/`` and ``data_manifests/sample_data.tsv`` from the MDAnalysisTests sdist.

Usage (no install of MDAnalysisTests; only its source archive is read)::

    pip download --no-deps --no-binary :all: MDAnalysisTests==2.11.0 -d /tmp/mdat
    python data_manifests/build_sample_data.py /tmp/mdat/mdanalysistests-2.11.0.tar.gz

Files are copied byte for byte; the manifest records, per file, its size, sha256, where it came
from, what ``ptk.structure.read_chains`` reads in it, and its CATH 4.2 split and topology labels
looked up in the Ingraham split file (``../shared/data/cath/chain_set_splits.json`` by default).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE, VERSION = "MDAnalysisTests", "2.11.0"
LICENCE = (
    "coordinates: wwPDB archive data, CC0 1.0; as distributed in MDAnalysisTests (package licence LGPLv3+)"
)

# The 30 single-chain TS50/DSSP test proteins that the CATH 4.2 split file labels (29 in a split,
# 2qdlA with topology labels only), so the demo has train, validation and test chains of all
# four CATH classes. Excluded on purpose: 1mr1D_failing (a deliberately broken twin) and
# wrong_hydrogens (a 2-residue fixture).
CATH_STYLE = [
    "1ahsA", "1bvyF", "1dx5I", "1eteA", "1i8nA", "1mr1D", "1pdoA", "1v7mV", "1y1lA", "2cviA",
    "2gu3A", "2j49A", "2qdlA", "2va0A", "2xcjA", "2xdgA", "3e8mA", "3ejfA", "3fhkA", "3gwiA",
    "3hklA", "3ieyB", "3l4rA", "3lqcA", "3nngA", "3ny7A", "3on9A", "3pivA", "3q4oA", "3so6A",
]  # fmt: skip
# Deposited entries with named altlocs (A/B), multi-chain, PDB and mmCIF.
ALTLOC = {
    "19hc.pdb.gz": "19hc.pdb.gz",
    "4E43.pdb": "4E43.pdb",
    "mmcif/3PWP.cif.gz": "3PWP.cif.gz",
    "mmcif/5PTI.cif.gz": "5PTI.cif.gz",
}
COLUMNS = [
    "kind", "file", "bytes", "sha256", "pdb_id", "chains", "residues", "named_altloc_residues",
    "cath42_split", "cath42_nodes", "source", "source_path", "licence",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sdist", type=Path)
    parser.add_argument("--splits", type=Path, default=REPO.parent / "shared/data/cath/chain_set_splits.json")
    args = parser.parse_args()

    from ptk.structure import read_chains

    splits = json.loads(args.splits.read_text())
    split_of = {c: name for name in ("train", "validation", "test") for c in splits[name]}
    sdist_sha = hashlib.sha256(args.sdist.read_bytes()).hexdigest()
    source = f"PyPI {PACKAGE}=={VERSION} sdist {args.sdist.name} (sha256 {sdist_sha})"
    root = f"{PACKAGE.lower()}-{VERSION}/{PACKAGE}/data/"
    plan = [("cath_style", f"dssp/{i}.pdb.gz", f"{i}.pdb.gz") for i in CATH_STYLE]
    plan += [("altloc", src, dst) for src, dst in ALTLOC.items()]

    out = REPO / "toolkit" / "sample_data"
    rows = []
    with tarfile.open(args.sdist) as tar:
        for kind, src, dst in plan:
            data = tar.extractfile(root + src).read()
            target = out / kind / dst
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            parsed = read_chains(target, altlocs=kind == "altloc")
            chains = parsed.chains
            n_alt = sum(int((c.conformers.n_conformers > 1).sum()) for c in chains) if kind == "altloc" else 0
            chain_ids = [c.chain_id for c in chains]
            labelled = [c for c in chain_ids if c in split_of or c in splits["cath_nodes"]]
            rows.append({
                "kind": kind,
                "file": f"{kind}/{dst}",
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "pdb_id": parsed.pdb_id,
                "chains": ",".join(c.name for c in chains),
                "residues": sum(len(c) for c in chains),
                "named_altloc_residues": n_alt,
                "cath42_split": ";".join(f"{c}={split_of[c]}" for c in labelled if c in split_of),
                "cath42_nodes": ";".join(
                    f"{c}={' '.join(splits['cath_nodes'].get(c, []))}" for c in labelled
                ),
                "source": source,
                "source_path": root + src,
                "licence": LICENCE,
            })  # fmt: skip
    with open(REPO / "data_manifests" / "sample_data.tsv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, COLUMNS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} files, {sum(r['bytes'] for r in rows):,} bytes")


if __name__ == "__main__":
    main()
