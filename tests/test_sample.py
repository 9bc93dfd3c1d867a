"""``ptk sample`` on a trained run: one PDB per reference chain, named like it, of the reference's
(cropped) length and residue types, N/Cα/C/O for v14 and Cα only for v13, plus the references;
``ptk eval --pred OUT --ref OUT/ref`` reads them all."""

from __future__ import annotations

import csv
from pathlib import Path

import gemmi
import numpy as np
import pytest
from test_train_families import ingest_cached, one_thread, trained_run  # noqa: F401  (fixtures)

from ptk.pipelines.cli import main
from ptk.residues import RESTYPES_3


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp()


def _residues(path: Path) -> list[tuple[int, str, list[str]]]:
    structure = gemmi.read_structure(str(path))
    assert len(structure) == 1 and len(structure[0]) == 1
    return [(r.seqid.num, r.name, [a.name for a in r]) for r in structure[0][0]]


@pytest.mark.parametrize(("version", "atoms"), [("v13", ["CA"]), ("v14", ["N", "CA", "C", "O"])])
def test_sample_writes_pdbs_that_eval_reads(
    version: str, atoms: list[str], session_dir: Path, shared_data: Path, tmp_path: Path
) -> None:
    from ptk.shards import CathDataset

    run = trained_run(session_dir, shared_data, version, epochs=2 if version == "v13" else 1)  # v13: shared
    data = ingest_cached(session_dir, shared_data, "cath")
    out = tmp_path / "samples"
    main(["sample", "--run", str(run), "--data", str(data), "--out", str(out), "--steps", "3", "--n", "3"])

    references = CathDataset(data, max_length=32, crop="first")  # the run's max_length
    for i in range(3):
        item = references[i]
        sample, ref = out / f"{item['id']}.pdb", out / "ref" / f"{item['id']}.pdb"
        got, want = _residues(sample), _residues(ref)
        assert len(got) == int(item["length"]) == len(want)  # the sampled length of the reference
        assert [g[:2] for g in got] == [w[:2] for w in want]  # same numbering and residue names
        assert [name for _, name, _ in got] == [RESTYPES_3[a] for a in item["aatype"].tolist()]
        assert all(names == atoms for _, _, names in got)
        assert (out / "x0" / f"{item['id']}.pdb").is_file()
    assert len(list(out.glob("*.pdb"))) == 3 and len(list((out / "ref").glob("*.pdb"))) == 3
    with open(out / "summary" / "samples.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["method"] for r in rows} == {"ddim", "x0"} and len(rows) == 6

    scores = tmp_path / "scores.csv"
    main(["eval", "--pred", str(out), "--ref", str(out / "ref"), "--out", str(scores)])
    with open(scores, newline="") as handle:
        evaluated = list(csv.DictReader(handle))
    assert len(evaluated) == 3
    ours = {r["id"]: float(r["tm"]) for r in rows if r["method"] == "ddim"}
    for row in evaluated:
        assert not row.get("error")
        assert 0.0 < float(row["tm"]) <= 1.0
        # the file round trip (3-decimal PDB coordinates) changes the TM-score by < 1e-3
        assert np.isclose(float(row["tm"]), ours[row["name"]], atol=1e-3)


def test_sample_refuses_non_generative_runs(
    session_dir: Path, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = trained_run(session_dir, shared_data, "qfitlatent", "qfit")
    with pytest.raises(SystemExit) as exc:
        main(["sample", "--run", str(run), "--data", str(ingest_cached(session_dir, shared_data, "qfit")),
              "--out", str(tmp_path / "x")])  # fmt: skip
    assert exc.value.code == 1
    assert "not generative" in capsys.readouterr().err
