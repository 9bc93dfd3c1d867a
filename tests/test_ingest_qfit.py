"""``ptk ingest qfit`` checked against an independent reading of the same PDB text.

The reference here parses ATOM/HETATM columns itself (altloc col 17, occupancy cols 55-60),
applies the documented rules (conformers = named altlocs, blank atoms shared; occupancy =
median over the altloc's own atoms, normalised; frame from the blank altloc, else from the
highest-occupancy altloc, first label on ties) and computes dihedrals and frames with plain
numpy, without ptk.structure or ptk.geometry.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ptk import features, shards
from ptk.pipelines.cli import cli
from ptk.residues import CHI_ATOMS, CHI_PI_PERIODIC

TOL_RAD = 1e-4  # float32 coordinates through float32 torch vs float64 numpy


def parse_pdb(path: Path) -> dict[str, OrderedDict]:
    """chain → (resseq, icode) → {"name", "atoms": {(atom, altloc): (xyz, occ)}}: standard amino
    acids only (these files hold no modified residues), no hydrogens."""
    chains: dict[str, OrderedDict] = {}
    for line in path.read_text().splitlines():
        if not line.startswith(("ATOM  ", "HETATM")):
            continue
        resname, name = line[17:20].strip(), line[12:16].strip()
        element = line[76:78].strip() if len(line) >= 78 else ""
        if resname not in CHI_ATOMS or element in ("H", "D") or (not element and name.startswith("H")):
            continue
        key = (int(line[22:26]), line[26].strip())
        res = chains.setdefault(line[21], OrderedDict()).setdefault(key, {"name": resname, "atoms": {}})
        xyz = np.array([float(line[30:38]), float(line[38:46]), float(line[46:54])])
        res["atoms"][(name, line[16].strip())] = (xyz, float(line[54:60]))
    return chains


def dihedral(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, p3: np.ndarray) -> float:
    b0, b1, b2 = p0 - p1, p2 - p1, p3 - p2
    b1 = b1 / np.linalg.norm(b1)
    v = b0 - np.dot(b0, b1) * b1
    w = b2 - np.dot(b2, b1) * b1
    return math.atan2(np.dot(np.cross(b1, v), w), np.dot(v, w))


def expected_residue(res: dict) -> dict:
    atoms = res["atoms"]
    labels = list(OrderedDict.fromkeys(alt for (_, alt) in atoms if alt))
    confs = labels or [""]
    raw = [
        float(np.median([o for (n, a), (_, o) in atoms.items() if a == lab]))
        if lab
        else float(np.median([o for (_, o) in atoms.values()]))
        for lab in confs
    ]
    total = sum(raw)
    occ = [r / total for r in raw] if total > 0 else [1 / len(confs)] * len(confs)

    def atom(name: str, lab: str) -> np.ndarray | None:
        hit = atoms.get((name, lab)) or atoms.get((name, ""))
        return None if hit is None else hit[0]

    chis, masks = [], []
    for lab in confs:
        row, mask = [], []
        for quad in CHI_ATOMS.get(res["name"], ()):
            pts = [atom(n, lab) for n in quad]
            ok = all(p is not None for p in pts)
            row.append(dihedral(*pts) if ok else 0.0)
            mask.append(ok)
        chis.append(row + [0.0] * (4 - len(row)))
        masks.append(mask + [False] * (4 - len(mask)))
    split = any((n, lab) in atoms for n in ("N", "CA", "C") for lab in labels)
    src = confs[int(np.argmax(occ))] if split else ""
    n, ca, c = (atom(x, src) for x in ("N", "CA", "C"))
    x = (c - ca) / np.linalg.norm(c - ca)
    z = np.cross(x, n - ca)
    z /= np.linalg.norm(z)
    rot = np.stack([x, np.cross(z, x), z], axis=-1)
    d_eff = int(np.any(masks, axis=0).sum())
    return {
        "labels": labels or [""],
        "occ": occ,
        "raw": raw,
        "chi": chis,
        "chi_mask": masks,
        "rot": rot,
        "frame_altloc": src,
        "n_obs": len(confs),
        "d_eff": d_eff,
    }


def ingest(*args: object):  # noqa: ANN201
    return CliRunner().invoke(cli, ["ingest", *map(str, args)], catch_exceptions=False)


@pytest.fixture(scope="module")
def qfit(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict:
    models = shared_data / "qfit" / "qfit_models"
    files = [
        models / n
        for n in (
            "1G8A_multiconformer_model2.pdb",
            "segment_example_multiconformer_model2_pruned.pdb",
            "3K0N_multiconformer_model2.pdb",
            "Test_relabel.pdb",
            "7A4M_cryoem_multiconformer_model2.v2022.pdb",
        )
    ]
    out = tmp_path_factory.mktemp("qfit") / "shards"
    result = ingest("qfit", *files, "--out", out, "--scheduler", "synchronous")
    assert result.exit_code == 0, result.output
    rows = {r["id"]: r for r in shards.read_table(out).to_pylist()}
    return {"out": out, "rows": rows, "files": files, "result": result}


def _compare(row: dict, chain: OrderedDict) -> int:
    """Check every residue of a shard row against the reference; returns residues with altlocs."""
    assert row["length"] == len(chain)
    assert row["resnum"] == [k[0] for k in chain]
    multi = 0
    for i, res in enumerate(chain.values()):
        exp = expected_residue(res)
        multi += exp["n_obs"] > 1
        assert row["altlocs"][i] == exp["labels"], (i, res["name"])
        assert row["n_obs"][i] == exp["n_obs"] and row["d_eff"][i] == exp["d_eff"]
        np.testing.assert_allclose(row["occupancy"][i], exp["occ"], atol=1e-6)
        np.testing.assert_allclose(row["occupancy_raw"][i], exp["raw"], atol=1e-6)
        assert row["chi_mask"][i] == exp["chi_mask"]
        got = np.asarray(row["chi"][i])
        diff = np.angle(np.exp(1j * (got - np.asarray(exp["chi"]))))
        assert np.abs(diff[np.asarray(exp["chi_mask"])]).max(initial=0) < TOL_RAD
        assert row["frame_altloc"][i] == exp["frame_altloc"]
        np.testing.assert_allclose(np.asarray(row["frame_rot"][i]).reshape(3, 3), exp["rot"], atol=1e-5)
        sym = [k + 1 in CHI_PI_PERIODIC.get(res["name"], ()) for k in range(4)]
        assert row["chi_symmetric"][i] == sym
    return multi


def test_1g8a_model_against_an_independent_parse(qfit: dict, shared_data: Path) -> None:
    path = shared_data / "qfit" / "qfit_models" / "1G8A_multiconformer_model2.pdb"
    chain = parse_pdb(path)["A"]
    row = qfit["rows"]["1g8a.A"]
    assert _compare(row, chain) == 58  # the data README: altlocs A-D on 58 residues
    assert row["source"] == str(path) and len(row["source_sha256"]) == 64
    valid = [o >= 2 and d >= 1 for o, d in zip(row["n_obs"], row["d_eff"], strict=True)]
    ds = shards.QfitDataset(qfit["out"])
    item = next(ds[i] for i in range(len(ds)) if ds[i]["id"] == "1g8a.A")
    assert item["valid"].tolist() == valid and sum(valid) > 40
    split = [i for i, a in enumerate(row["frame_altloc"]) if a]
    assert split and all(row["altlocs"][i][0] for i in split)  # split backbones take a named altloc


def test_segment_example_occupancy_rule(qfit: dict, shared_data: Path) -> None:
    # Atoms of one altloc disagree here (LEU A10 altloc A: N 0.18, C 0.29, CB 0.17, ...); the median
    # of the altloc's own atoms is the conformer's occupancy, then normalised over A-E.
    path = shared_data / "qfit" / "qfit_models" / "segment_example_multiconformer_model2_pruned.pdb"
    chain = parse_pdb(path)["A"]
    row = qfit["rows"]["segment_example_multiconformer_model2_pruned.A"]
    assert _compare(row, chain) == 270
    k = row["resnum"].index(10)
    assert row["altlocs"][k][0] == "A" and row["occupancy_raw"][k][0] == pytest.approx(0.185, abs=1e-6)
    assert row["occupancy_flag"][k] & features.OCC_INCONSISTENT
    assert all(abs(sum(o) - 1) < 1e-5 for o in row["occupancy"])
    assert row["n_occupancy_renormalised"] > 200 and row["n_occupancy_inconsistent"] > 200


def test_waters_written_as_atom_records_are_waters(qfit: dict, shared_data: Path) -> None:
    path = shared_data / "qfit" / "qfit_models" / "3K0N_multiconformer_model2.pdb"
    chain = parse_pdb(path)["A"]  # the reference drops HOH by residue name
    row = qfit["rows"]["3k0n.A"]
    assert _compare(row, chain) == 45
    assert "X" not in row["sequence"]


def test_multichain_and_five_altlocs(qfit: dict, shared_data: Path) -> None:
    models = shared_data / "qfit" / "qfit_models"
    chains = parse_pdb(models / "Test_relabel.pdb")
    assert {k for k in qfit["rows"] if k.startswith("test_relabel")} == {
        "test_relabel.A",
        "test_relabel.B",
        "test_relabel.C",
    }
    for name in "ABC":
        _compare(qfit["rows"][f"test_relabel.{name}"], chains[name])
    row = qfit["rows"]["7a4m.A"]
    assert _compare(row, parse_pdb(models / "7A4M_cryoem_multiconformer_model2.v2022.pdb")["A"]) == 166
    assert max(row["n_obs"]) == 5


def test_split_backbone_frame_takes_the_highest_occupancy_altloc(tmp_path: Path, shared_data: Path) -> None:
    # AKA_multiconf: LYS 2 has its whole residue (backbone too) under A/B/C at 0.35/0.35/0.30.
    # A and B tie: the first label (A) gives the frame. Raise C to 0.40: C gives it.
    src = shared_data / "qfit" / "fragments" / "AKA_multiconf.pdb"
    text = src.read_text().splitlines(keepends=True)
    variant = "".join(
        f"{x[:54]}{0.40:6.2f}{x[60:]}" if x.startswith("ATOM") and x[16] == "C" else x for x in text
    )
    (tmp_path / "AKA_c.pdb").write_text(variant)
    tie = features.qfit_file_rows(src).rows[0]
    c_wins = features.qfit_file_rows(tmp_path / "AKA_c.pdb").rows[0]
    assert list(tie["frame_altloc"]) == ["", "A", ""] and list(c_wins["frame_altloc"]) == ["", "C", ""]
    ref = parse_pdb(tmp_path / "AKA_c.pdb")["A"]
    exp = expected_residue(list(ref.values())[1])
    np.testing.assert_allclose(c_wins["frame_rot"][1].reshape(3, 3), exp["rot"], atol=1e-5)
    ca_c = ref[(2, "")]["atoms"][("CA", "C")][0]
    np.testing.assert_allclose(c_wins["frame_trans"][1], ca_c, atol=1e-3)


def _microheterogeneous(src: Path, out: Path, occupancy_a: float, occupancy_b: float) -> None:
    """ASA_multiconf with altloc B of SER 2 written as CYS (OG → SG): one position, two residue
    types under two altlocs, as crambin 1EJG's PRO/SER 22."""
    lines = []
    for line in src.read_text().splitlines(keepends=True):
        if line.startswith("ATOM") and line[17:20] == "SER" and line[16] in "AB":
            occupancy = occupancy_a if line[16] == "A" else occupancy_b
            line = f"{line[:54]}{occupancy:6.2f}{line[60:]}"
            if line[16] == "B":
                line = line[:17] + "CYS" + line[20:]
                if line[12:16] == " OG ":
                    line = line[:12] + " SG " + line[16:76] + " S" + line[78:]
        lines.append(line)
    out.write_text("".join(lines))


def test_microheterogeneity_keeps_the_dominant_type_and_is_flagged(tmp_path: Path, shared_data: Path) -> None:
    """Where two residue types share a position under different altlocs, the row keeps the type
    whose atoms have the higher mean occupancy (gemmi's reading of the file decides which, the
    first type on a tie), its altlocs alone are the conformers, the residue's occupancy_flag has
    bit 8 and the row counts it in n_microheterogeneous."""
    import gemmi

    src = shared_data / "qfit" / "fragments" / "ASA_multiconf.pdb"
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    _microheterogeneous(src, inputs / "asa_tie.pdb", 0.50, 0.50)
    _microheterogeneous(src, inputs / "asa_cys.pdb", 0.30, 0.70)
    (inputs / "asa.pdb").write_text(src.read_text())
    out = tmp_path / "shards"
    result = ingest("qfit", inputs, "--out", out, "--scheduler", "synchronous")
    assert result.exit_code == 0, result.output
    rows = {Path(r["source"]).name: r for r in shards.read_table(out).to_pylist()}
    for name, kept_label in (("asa_tie.pdb", "A"), ("asa_cys.pdb", "B")):
        residues = [r for r in gemmi.read_structure(str(inputs / name))[0]["A"] if r.seqid.num == 2]
        means = {r.name: np.mean([a.occ for a in r]) for r in residues}
        dominant = max(means, key=lambda k: (round(means[k], 4), -list(means).index(k)))
        assert set(means) == {"SER", "CYS"}
        row = rows[name]
        assert row["sequence"][1] == {"SER": "S", "CYS": "C"}[dominant]
        assert row["altlocs"][1] == [kept_label] and row["n_obs"][1] == 1 and row["occupancy"][1] == [1.0]
        assert row["occupancy_flag"][1] & features.OCC_MICROHET
        assert [f & features.OCC_MICROHET for f in row["occupancy_flag"]] == [0, features.OCC_MICROHET, 0]
        assert row["n_microheterogeneous"] == 1
    plain = rows["asa.pdb"]
    assert plain["sequence"] == "ASA" and plain["altlocs"][1] == ["A", "B"]
    assert plain["n_microheterogeneous"] == 0
