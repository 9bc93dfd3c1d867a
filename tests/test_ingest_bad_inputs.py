"""Bad inputs to ``ptk ingest``, each with its expected outcome (issue 3, "Never lose anything").

| input                          | outcome                                                         |
|--------------------------------|-----------------------------------------------------------------|
| empty file                     | reject: read / StructureError "empty file"                      |
| truncated .gz                  | reject: read / StructureError "corrupt or truncated gzip"       |
| truncated text (mid-record)    | reject: read / StructureError (gemmi: line too short)           |
| binary garbage                 | reject: read / StructureError "binary data"                     |
| ligand only, waters only       | reject: read / StructureError "no protein chain"                |
| nonexistent INPUT path         | usage error, exit 2, nothing written                            |
| folder with no structures      | only input: usage error (exit 2); beside others: a note, skipped |
| duplicate ids across inputs    | first in input order kept; later: reject dedupe / DuplicateId   |
| UNK / modified residues        | rows: UNK → X (n_unknown), MSE → M                              |
| residue unknown to the CCD     | dropped by the reader; a chain break is flagged there           |
| missing backbone atoms         | rows: NaN coordinates, masks False, n_incomplete_backbone       |
| chain breaks                   | rows: chain_break, n_chain_breaks, ψ/ω/φ masked across it       |
| occupancies not summing to 1   | qfit rows: normalised to 1, occupancy_flag bit 1                |
| all-zero occupancies           | qfit rows: equal weights 1/A, occupancy_flag bit 2              |

Rejects alone exit 0; usage errors exit non-zero with a message.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from ptk import features, shards
from ptk.pipelines.cli import cli


def ingest(*args: object):  # noqa: ANN201
    return CliRunner().invoke(cli, ["ingest", *map(str, args)], catch_exceptions=False)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict:
    d = tmp_path_factory.mktemp("bad")
    dompdb = shared_data / "cath" / "dompdb"
    src = (dompdb / "1a04A02").read_bytes()
    files = {}

    def put(name: str, data: bytes | str) -> Path:
        p = d / "in" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
        files[name] = p
        return p

    put("empty.pdb", b"")
    put("truncated.pdb.gz", gzip.compress(src)[:3000])
    put("truncated.pdb", src[:20000])  # cut inside an ATOM record
    put("garbage.pdb", bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)))
    deposited = _lines(shared_data / "qfit" / "deposited" / "4MS6.pdb")
    put("ligand.pdb", "".join(x for x in deposited if x.startswith("HETATM") and "HOH" not in x) + "END\n")
    waters = [
        x
        for x in _lines(shared_data / "qfit" / "qfit_models" / "3K0N_multiconformer_model2.pdb")
        if x[17:20] == "HOH"
    ]
    assert waters[0].startswith("ATOM")  # this file writes waters as ATOM records
    put("waters.pdb", "".join(waters) + "END\n")
    text = src.decode()
    put(
        "unknown.pdb",
        text.replace("ALA A 140", "ZZZ A 140")
        .replace("SER A 141", "UNK A 141")
        .replace("LEU A 142", "MSE A 142"),
    )
    put(
        "no_ca.pdb",
        "".join(x for x in text.splitlines(keepends=True) if not (x[12:16] == " CA " and x[22:26] == " 135")),
    )
    put("dup/1a04A02", src)  # same id as the first dompdb input
    (d / "empty_folder").mkdir()
    (d / "notes_only").mkdir()
    (d / "notes_only" / "README.txt").write_text("not a structure\n")
    return {"dir": d, "files": files, "dompdb": dompdb}


@pytest.fixture(scope="module")
def run(bad: dict) -> dict:
    out = bad["dir"] / "out"
    result = ingest(
        "cath",
        bad["dompdb"] / "1a04A02",
        bad["dir"] / "in",
        bad["dir"] / "notes_only",
        "--out",
        out,
        "--scheduler",
        "synchronous",
    )
    rejects = {Path(r["input"]).name: r for r in shards.read_rejects(out).to_pylist()}
    rows = {r["source"]: r for r in shards.read_table(out).to_pylist()}
    return {"result": result, "out": out, "rejects": rejects, "rows": rows}


def test_rejects_alone_exit_zero_and_every_file_is_accounted_for(run: dict, bad: dict) -> None:
    assert run["result"].exit_code == 0, run["result"].output
    manifest = shards.read_manifest(run["out"])
    assert len(manifest["inputs"]) == 1 + len(bad["files"])
    rejected = [r["input"] for r in shards.read_rejects(run["out"]).to_pylist()]
    assert len(rejected) == len(set(rejected))  # one reject per bad file here
    for rec in manifest["inputs"]:  # rows or a reject, never both, never neither
        assert (rec["rows"] > 0) != (rec["path"] in rejected), rec["path"]
        # the checksum a resume compares: the file's, also for a file that could not be parsed
        assert rec["sha256"] == hashlib.sha256(Path(rec["path"]).read_bytes()).hexdigest(), rec["path"]
    assert manifest["skipped"] == [str(bad["dir"] / "notes_only" / "README.txt")]
    assert "no structure files in folder" in run["result"].stderr and "notes_only" in run["result"].stderr
    line = run["result"].stdout.strip().splitlines()[-1]
    assert line == f"3 chains from 3 files; 7 rejected → {run['out'] / 'rejects.parquet'}"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("empty.pdb", "empty file"),
        ("truncated.pdb.gz", "corrupt or truncated gzip"),
        ("truncated.pdb", "line is too short"),
        ("garbage.pdb", "binary data"),
        ("ligand.pdb", "no protein chain"),
        ("waters.pdb", "no protein chain"),
    ],
)
def test_file_level_rejects(run: dict, name: str, message: str) -> None:
    reject = run["rejects"][name]
    assert reject["stage"] == "read" and reject["error_class"] == "StructureError" and reject["item"] is None
    assert message in reject["message"]


def test_duplicate_ids_keep_the_first_input(run: dict, bad: dict) -> None:
    reject = run["rejects"]["1a04A02"]
    assert reject["input"] == str(bad["files"]["dup/1a04A02"])
    assert (reject["stage"], reject["error_class"], reject["item"]) == ("dedupe", "DuplicateId", "1a04A02")
    assert str(bad["dompdb"] / "1a04A02") in reject["message"]
    assert run["rows"][str(bad["dompdb"] / "1a04A02")]["id"] == "1a04A02"


def test_unknown_and_modified_residues(run: dict, bad: dict) -> None:
    row = run["rows"][str(bad["files"]["unknown.pdb"])]
    ref = run["rows"][str(bad["dompdb"] / "1a04A02")]
    k = ref["resnum"].index(140)
    assert 140 not in row["resnum"]  # ZZZ is not in the CCD: not an amino acid to the reader
    assert row["chain_break"][k - 1] and row["n_chain_breaks"] == ref["n_chain_breaks"] + 1
    assert row["sequence"][k] == "X" and row["aatype"][k] == 20 and row["n_unknown"] == 1  # UNK
    assert row["sequence"][k + 1] == "M"  # MSE → MET through the component tables
    assert not row["psi_mask"][k - 1] and not row["phi_mask"][k]


def test_missing_backbone_atoms(run: dict, bad: dict) -> None:
    row = run["rows"][str(bad["files"]["no_ca.pdb"])]
    k = row["resnum"].index(135)
    bb = np.asarray(row["backbone"], dtype=np.float32).reshape(-1, 4, 3)
    assert np.isnan(bb[k, 1]).all() and np.isfinite(bb[k, [0, 2, 3]]).all()
    assert not row["frame_mask"][k] and row["frame_rot"][k] == [1, 0, 0, 0, 1, 0, 0, 0, 1]
    assert not row["phi_mask"][k] and not row["psi_mask"][k] and not row["chi_mask"][k][0]
    assert row["n_incomplete_backbone"] == 1 and not row["atom_mask"][k][1]


def test_chain_breaks_are_flagged_and_mask_dihedrals(shared_data: Path) -> None:
    # 1c0pA01 is a discontinuous CATH domain: two segments missing from the chain
    row = features.cath_file_rows(shared_data / "cath" / "dompdb" / "1c0pA01").rows[0]
    breaks = np.flatnonzero(row["chain_break"])
    assert row["n_chain_breaks"] == len(breaks) == 2
    gaps = np.diff(row["resnum"])
    assert (gaps[breaks] > 1).all() and row["n_missing_residues"] == int((gaps - 1).clip(0).sum())
    assert not row["psi_mask"][breaks].any() and not row["omega_mask"][breaks].any()
    assert not row["phi_mask"][breaks + 1].any()
    assert row["psi_mask"][breaks - 1].all()


def test_nonexistent_input_is_a_usage_error(tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "out"
    result = ingest(
        "cath",
        shared_data / "cath" / "dompdb" / "1a04A02",
        tmp_path / "nope.pdb",
        "--out",
        out,
        "--scheduler",
        "synchronous",
    )
    assert result.exit_code == 2 and "does not exist" in result.output and "nope.pdb" in result.output
    assert not out.exists()


def test_folder_with_no_structures_alone_is_a_usage_error(tmp_path: Path, bad: dict) -> None:
    for folder in ("empty_folder", "notes_only"):
        result = ingest("qfit", bad["dir"] / folder, "--out", tmp_path / folder, "--scheduler", "synchronous")
        assert result.exit_code == 2 and "no structure files found" in result.output
        assert not (tmp_path / folder).exists()


def test_usage_errors_through_the_console_script(tmp_path: Path) -> None:
    import subprocess

    proc = subprocess.run(
        ["ptk", "ingest", "qfit", str(tmp_path / "missing"), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def _qfit_variant(src: Path, dest: Path, occupancy: dict[str, float]) -> Path:
    """``src`` with the occupancy of every atom of altloc X set to ``occupancy[X]``."""
    out = []
    for line in _lines(src):
        if line.startswith(("ATOM", "HETATM")) and line[16] in occupancy:
            line = f"{line[:54]}{occupancy[line[16]]:6.2f}{line[60:]}"
        out.append(line)
    dest.write_text("".join(out))
    return dest


def test_occupancies_not_summing_to_one_and_all_zero(tmp_path: Path, shared_data: Path) -> None:
    src = shared_data / "qfit" / "fragments" / "AKA_multiconf.pdb"  # LYS 2: altlocs A/B/C 0.35/0.35/0.30
    inputs = tmp_path / "in"
    inputs.mkdir()
    _qfit_variant(src, inputs / "AKA_half.pdb", {"A": 0.5, "B": 0.5, "C": 0.5})
    _qfit_variant(src, inputs / "AKA_zero.pdb", {"A": 0.0, "B": 0.0, "C": 0.0})
    shutil.copy(src, inputs / "AKA_asis.pdb")
    out = tmp_path / "out"
    result = ingest("qfit", inputs, "--out", out, "--scheduler", "synchronous")
    assert result.exit_code == 0 and "3 chains from 3 files; 0 rejected" in result.stdout
    ds = shards.QfitDataset(out)
    items = {ds[i]["id"]: ds[i] for i in range(len(ds))}
    rows = {r["id"]: r for r in shards.read_table(out).to_pylist()}
    asis, half, zero = items["aka_asis.A"], items["aka_half.A"], items["aka_zero.A"]
    np.testing.assert_allclose(asis["occupancy"][1].numpy(), [0.35, 0.35, 0.30], atol=1e-6)
    np.testing.assert_allclose(half["occupancy"][1].numpy(), [1 / 3] * 3, atol=1e-6)
    np.testing.assert_allclose(zero["occupancy"][1].numpy(), [1 / 3] * 3, atol=1e-6)
    assert rows["aka_asis.A"]["occupancy_flag"] == [0, 0, 0]
    assert rows["aka_half.A"]["occupancy_flag"][1] == features.OCC_RENORMALISED
    assert (
        rows["aka_zero.A"]["occupancy_flag"][1] == features.OCC_ZERO
        and rows["aka_zero.A"]["n_occupancy_zero"] == 1
    )
    assert rows["aka_half.A"]["occupancy_raw"][1] == pytest.approx([0.5, 0.5, 0.5])
    assert zero["valid"][1] and zero["n_obs"][1] == 3  # still a training residue
    assert os.path.exists(out / "rejects.parquet") and shards.read_rejects(out).num_rows == 0


def test_fifos_and_device_links_are_rejects_not_hangs(tmp_path: Path, shared_data: Path) -> None:
    """Only regular files are read: a FIFO (which waits for a writer) and a link to /dev/zero
    (which never ends) become rejects naming what they are; the real file beside them lands."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(shared_data / "cath" / "dompdb" / "1a04A02", inputs / "1a04A02")
    os.mkfifo(inputs / "x.pdb")
    os.symlink("/dev/zero", inputs / "zero.pdb")
    out = tmp_path / "out"
    for _ in range(2):  # the second run resumes the finished dataset: it must not hash them either
        result = ingest("cath", inputs, "--out", out, "--scheduler", "synchronous")
        assert result.exit_code == 0, result.output
    rejects = {Path(r["input"]).name: r["message"] for r in shards.read_rejects(out).to_pylist()}
    assert "is a FIFO" in rejects["x.pdb"] and "is a character device" in rejects["zero.pdb"]
    assert len(shards.CathDataset(out)) == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--out", "/proc/ptk_out"], "--out /proc/ptk_out: cannot write a folder there"),
        (["--out", "FILE/sub"], "FILE/sub: cannot write a folder there"),
        (["--out", "OUT", "--scheduler", "nonsense"], "--scheduler 'nonsense': expected 'synchronous' or"),
        (["--out", "OUT", "--scheduler", "tcp://host"], "--scheduler 'tcp://host': expected"),
    ],
)
def test_bad_out_and_scheduler_are_one_line_usage_errors(
    tmp_path: Path, shared_data: Path, extra: list[str], message: str
) -> None:
    import subprocess

    (tmp_path / "FILE").write_text("a file")
    args = [a if a not in ("FILE/sub", "OUT") else str(tmp_path / a) for a in extra]
    domain = str(shared_data / "cath" / "dompdb" / "1a04A02")
    proc = subprocess.run(
        ["ptk", "ingest", "cath", domain, *args], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr.replace("\n", " ") and "Traceback" not in proc.stderr
    assert not (tmp_path / "OUT").exists()
