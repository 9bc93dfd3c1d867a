"""``ptk ingest cath`` on the real files of ../shared/data: accounting, values, labels, resume.

Most runs use ``--scheduler synchronous`` (a documented option: the same per-file function in
this process); the default local-cluster path and a real ``dask scheduler`` are exercised in
``test_ingest_dask.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from click.testing import CliRunner

from ptk import features, geometry, labels, shards
from ptk.pipelines.cli import cli
from ptk.residues import BACKBONE_INDICES
from ptk.structure import read_chains

#: Ingest evaluates all dihedrals of a chain in one stacked call of geometry.dihedral; torch's
#: kernels may round the last float32 bit differently for another tensor shape (seen: 1.2e-7).
ANGLE_TOL = 1e-6


def ingest(*args: object) -> object:
    result = CliRunner().invoke(cli, ["ingest", *map(str, args)], catch_exceptions=False)
    return result


def chain_set_jsonl(path: Path, shared_data: Path) -> list[str]:
    """A chain_set.jsonl in the Ingraham layout, written from real backbones (TS50 entries and
    dompdb chains), plus one malformed line and one entry whose coordinates do not match its
    sequence. Returns the names of the good entries."""
    ts50 = json.loads((shared_data / "cath" / "ts50" / "ts50.json").read_text())[:4]
    lines, names = [], []
    for entry in ts50:
        coords = np.asarray(entry["coords"])
        name = f"{entry['name'][:4]}.{entry['name'][4:]}"
        lines.append(
            {
                "name": name,
                "seq": entry["seq"],
                "CATH": ["2.60.40"],
                "num_chains": 1,
                "coords": {k: coords[:, i].tolist() for i, k in enumerate(("N", "CA", "C", "O"))},
            }
        )
        names.append(name)
    chain = read_chains(shared_data / "cath" / "dompdb" / "1cf7B00").chains[0]
    bb = chain.positions[:, list(BACKBONE_INDICES)].astype(float)
    bb[3, 3] = np.nan  # a missing O, written as NaN the way json.dumps writes it
    lines.append(
        {
            "name": "1cf7.B",
            "seq": chain.sequence,
            "CATH": ["1.10.10"],
            "coords": {k: bb[:, i].tolist() for i, k in enumerate(("N", "CA", "C", "O"))},
        }
    )
    names.append("1cf7.B")
    bad_shape = dict(lines[0], name="9bad.A", seq=lines[0]["seq"] + "G")
    text = "\n".join(json.dumps(x) for x in lines[:2]) + "\n{not json\n" + json.dumps(bad_shape) + "\n"
    text += "\n".join(json.dumps(x) for x in lines[2:]) + "\n"
    path.write_text(text)
    return names


@pytest.fixture(scope="module")
def cath_run(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict:
    tmp = tmp_path_factory.mktemp("ingest_cath")
    jsonl = tmp / "chain_set.jsonl"
    names = chain_set_jsonl(jsonl, shared_data)
    clf = tmp / "domains.clf"
    header = (shared_data / "cath" / "cath-domain-list-v4_3_0.partial.txt").read_text().splitlines()[:20]
    clf.write_text(
        "\n".join(
            [
                *(h for h in header if h.startswith("#")),
                "1cf7B00     1    10    10    10     1     1     1     1     1    82 2.600",
                "1c0pA01     3    40    50   720     1     1     1     1     1   199 1.800",
            ]
        )
        + "\n"
    )
    out = tmp / "shards"
    result = ingest(
        "cath",
        shared_data / "cath" / "dompdb",
        shared_data / "cath" / "ts50" / "ts50.json",
        jsonl,
        "--out",
        out,
        "--splits",
        shared_data / "cath" / "chain_set_splits.json",
        "--cath-list",
        clf,
        "--scheduler",
        "synchronous",
        "--shard-rows",
        "25",
    )
    return {"out": out, "result": result, "jsonl": jsonl, "names": names, "tmp": tmp}


def test_every_input_is_accounted_for(cath_run: dict, shared_data: Path) -> None:
    result, out = cath_run["result"], cath_run["out"]
    assert result.exit_code == 0, result.output
    table = shards.read_table(out)
    rejects = shards.read_rejects(out).to_pylist()
    # 20 dompdb + 50 TS50 + 5 good jsonl entries, minus the 4 jsonl entries that TS50 already gave
    assert table.num_rows == 20 + 50 + 1
    assert (
        result.stdout.strip().splitlines()[-1]
        == f"71 chains from 22 files; 6 rejected → {out / 'rejects.parquet'}"
    )
    sources = set(table.column("source").to_pylist())
    assert {str(p) for p in (shared_data / "cath" / "dompdb").iterdir()} <= sources
    by_item = {(r["input"], r["item"]): r for r in rejects}
    jsonl = str(cath_run["jsonl"])
    assert by_item[(jsonl, "line 3")]["stage"] == "parse"  # "{not json"
    assert by_item[(jsonl, "9bad.A")]["error_class"] == "ValueError"
    dupes = [r for r in rejects if r["stage"] == "dedupe"]
    assert sorted(r["item"] for r in dupes) == sorted(cath_run["names"][:4])
    assert all("ts50.json" in r["message"] for r in dupes)
    # every file: rows, or rejects, or both for item-level rejects; never nothing
    manifest = shards.read_manifest(out)
    assert manifest["complete"] and manifest["cursor"] == len(manifest["inputs"]) == 22
    for rec in manifest["inputs"]:
        assert rec["rows"] + rec["rejects"] > 0
        assert rec["sha256"] == hashlib.sha256(Path(rec["path"]).read_bytes()).hexdigest()
    assert (
        sum(r["rows"] for r in manifest["inputs"])
        == table.num_rows
        == sum(p["rows"] for p in manifest["parts"])
    )
    assert manifest["command"].startswith("ptk ingest cath") or manifest["command"]
    assert manifest["options"]["splits"]["sha256"] == (
        "8e9a587a50c7f6c026e4ed00f6c1c30b106100f36f7a01de47542bdfc060adc2"
    )
    assert len(table.column("id").unique()) == table.num_rows


def test_values_equal_core_geometry_on_the_same_file(cath_run: dict, shared_data: Path) -> None:
    table = shards.read_table(cath_run["out"])
    rows = {r["id"]: r for r in table.to_pylist()}
    for path in sorted((shared_data / "cath" / "dompdb").iterdir()):
        chain = read_chains(path).chains[0]
        row = rows[path.name]
        assert row["chain_id"] == f"{path.name[:4]}.{path.name[4]}"
        assert row["sequence"] == chain.sequence and row["length"] == len(chain)
        assert row["resnum"] == chain.resnum.tolist()
        pos = torch.from_numpy(np.where(chain.mask[..., None], chain.positions, np.nan))
        n, ca, c = pos[:, 0], pos[:, 1], pos[:, 2]
        rot, trans, valid = geometry.backbone_frames(n, ca, c)
        np.testing.assert_array_equal(np.asarray(row["frame_rot"], np.float32), rot.reshape(-1, 9).numpy())
        np.testing.assert_array_equal(np.asarray(row["frame_trans"], np.float32), trans.numpy())
        assert row["frame_mask"] == valid.tolist()
        dih = geometry.backbone_dihedrals(n, ca, c)
        breaks = np.asarray(row["chain_break"])
        for name in ("phi", "psi", "omega"):
            # equal wherever no chain break intervenes (ingest masks those; see the break test)
            ok = np.asarray(row[f"{name}_mask"])
            np.testing.assert_allclose(
                np.asarray(row[name], np.float32)[ok], dih[name].numpy()[ok], atol=ANGLE_TOL, rtol=0
            )
            assert (
                ok == dih[f"{name}_mask"].numpy() & ~(breaks if name != "phi" else np.r_[False, breaks[:-1]])
            ).all()
        chi, chi_mask = geometry.chi_angles(
            pos.float(), torch.from_numpy(chain.mask), torch.from_numpy(chain.aatype)
        )
        np.testing.assert_allclose(np.asarray(row["chi"], np.float32), chi.numpy(), atol=ANGLE_TOL, rtol=0)
        assert row["chi_mask"] == chi_mask.tolist()
        dense = geometry.contact_map(ca.float()).numpy()
        pairs = np.asarray(row["contacts"]).reshape(-1, 2)
        expected = np.argwhere(np.triu(dense, 1))
        np.testing.assert_array_equal(pairs, expected)
        atoms = np.asarray(row["atoms"], np.float32).reshape(-1, 37, 3)
        np.testing.assert_array_equal(np.isfinite(atoms).all(-1), chain.mask)
        np.testing.assert_array_equal(atoms[chain.mask], chain.positions[chain.mask])


def test_part_layout_within_a_task() -> None:
    from ptk.pipelines.ingest import Packed, Unit, part_layout

    def cuts(units: list[tuple[Unit, int]], shard_rows: int) -> list[tuple]:
        packed = [Packed(u, n, [], 0) for u, n in units]
        return [
            (c.start, c.stop, c.inputs, c.complete_through, c.boundary)
            for c in part_layout(packed, shard_rows)
        ]

    # Files 10..14 giving 1, 2, 0 (a reject), 2, 1 rows, parts of 3: file 13 does not fit after
    # 10 and 11 (3 rows) and starts the second part; the first part covers inputs 10-12 (12
    # gave no rows), the second runs to the task's end, a file boundary: a resume may cut there.
    files = [(Unit(10 + k, f"f{k}"), n) for k, n in enumerate([1, 2, 0, 2, 1])]
    assert cuts(files, 3) == [(0, 3, (10, 13), 13, False), (3, 6, (13, 15), 15, True)]
    # One file of 7 rows fills parts exactly; only the last one completes it.
    assert cuts([(Unit(4, "big"), 7)], 3) == [
        (0, 3, (4, 5), 4, False),
        (3, 6, (4, 5), 4, False),
        (6, 7, (4, 5), 5, True),
    ]
    # A task that ends inside a .jsonl (chunk 1 of 3) completes no input and is no place to cut.
    chunks = [(Unit(2, "set.jsonl", k, 3, (10 * k, 10 * k + 10)), 2) for k in range(2)]
    assert cuts(chunks, 3) == [(0, 3, (2, 3), 2, False), (3, 4, (2, 3), 2, False)]
    # Rows of a later chunk fill the open part (chunks never start a new part).
    assert cuts([(Unit(0, "a"), 1), *chunks], 5) == [(0, 5, (0, 3), 2, False)]
    assert cuts([(Unit(0, "a"), 0)], 3) == []  # no rows, no part
    with pytest.raises(ValueError, match="at least 1"):
        cuts(files, 0)


def test_rows_do_not_depend_on_which_files_share_a_task(dompdb_files: list[Path], tmp_path: Path) -> None:
    # A task computes the geometry of all its chains in one call: a chain's row must be the same
    # bits whatever else is in the call (so a dataset does not depend on workers or resume point).
    bad = tmp_path / "9bad" / "1xyzA00"
    bad.parent.mkdir()
    bad.write_text("not a structure\n")
    files = [*dompdb_files[:7], bad, *dompdb_files[7:]]
    together = features.cath_files_rows([(p, None, None) for p in files], max_length=300)
    rng = np.random.default_rng(0)
    for k, path in enumerate(files):
        alone = features.cath_file_rows(path, max_length=300)
        with_others = together[k]
        assert [vars(r) for r in alone.rejects] == [vars(r) for r in with_others.rejects]
        assert len(alone.rows) == len(with_others.rows)
        for a, b in zip(alone.rows, with_others.rows, strict=True):
            assert a.keys() == b.keys()
            for key in a:
                if isinstance(a[key], np.ndarray):
                    np.testing.assert_array_equal(a[key], b[key])
                else:
                    assert a[key] == b[key]
    order = rng.permutation(len(files))
    shuffled = features.cath_files_rows([(files[i], None, None) for i in order])
    for i, result in zip(order, shuffled, strict=True):
        for a, b in zip(features.cath_file_rows(files[i]).rows, result.rows, strict=True):
            for key in ("phi", "psi", "omega", "chi", "frame_rot"):
                np.testing.assert_array_equal(a[key], b[key])


def test_json_rows_are_backbone_only_and_match_geometry(cath_run: dict, shared_data: Path) -> None:
    rows = {r["id"]: r for r in shards.read_table(cath_run["out"]).to_pylist()}
    ts50 = json.loads((shared_data / "cath" / "ts50" / "ts50.json").read_text())
    entry = ts50[10]
    row = rows[f"{entry['name'][:4]}.{entry['name'][4:]}"]
    coords = torch.tensor(entry["coords"], dtype=torch.float32)
    rot, _, valid = geometry.backbone_frames(coords[:, 0], coords[:, 1], coords[:, 2])
    np.testing.assert_array_equal(np.asarray(row["frame_rot"], np.float32), rot.reshape(-1, 9).numpy())
    assert row["atoms"] is None and row["chi"] is None and row["atom_mask"] is None
    assert row["sequence"] == entry["seq"] and row["resnum"] == list(range(1, len(entry["seq"]) + 1))
    jsonl_row = rows["1cf7.B"]  # from the jsonl: one O missing (NaN), CATH codes of the entry
    bb = np.asarray(jsonl_row["backbone"], dtype=np.float32).reshape(-1, 4, 3)
    assert np.isnan(bb[3, 3]).all() and np.isfinite(np.delete(bb.reshape(-1, 3), 15, axis=0)).all()
    assert jsonl_row["source"] == str(cath_run["jsonl"])
    assert jsonl_row["n_incomplete_backbone"] == 1


def test_a_synchronous_ingest_leaves_the_callers_torch_threads(
    dompdb_files: list[Path], tmp_path: Path
) -> None:
    """Each ingest task runs on one core; with the synchronous scheduler the task runs in the
    caller's process (ptk demo, notebooks, benchmarks), which must get its threads back: it
    trains next, and on one thread instead of the machine's cores."""
    from ptk.pipelines.ingest import run_ingest

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)
        run_ingest("cath", [str(dompdb_files[0])], tmp_path / "out", scheduler="synchronous", progress=False)
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_cath_labels(cath_run: dict) -> None:
    rows = {r["id"]: r for r in shards.read_table(cath_run["out"]).to_pylist()}

    def cath(i: str) -> tuple:
        r = rows[i]
        return r["split"], r["cath_class"], r["cath_architecture"], r["cath_topology"], r["cath_homology"]

    assert cath("1cf7B00") == ("train", 1, 10, 10, 10)  # domain list wins
    assert cath("1c0pA01") == ("train", 3, 40, 50, 720)
    assert cath("1a04A02") == ("train", 1, 10, 10, None)  # split file cath_nodes, first node
    assert cath("1wzaA02") == ("train", 3, 90, 400, None)
    assert cath("1zjaA02") == (None, None, None, None, None)  # in neither file
    assert cath("1cf7.B") == ("train", 1, 10, 10, 10)  # jsonl chain: its first domain in the list


def test_real_partial_cath_domain_list_parses(shared_data: Path) -> None:
    domains = labels.read_cath_list(shared_data / "cath" / "cath-domain-list-v4_3_0.partial.txt")
    assert len(domains) == 2643
    assert domains["4heoA00"] == (1, 10, 8, 10)


def test_max_length_rejects_long_chains(tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "short"
    result = ingest(
        "cath",
        shared_data / "cath" / "dompdb",
        "--out",
        out,
        "--max-length",
        80,
        "--scheduler",
        "synchronous",
    )
    assert result.exit_code == 0
    lengths = shards.read_table(out, columns=["length"]).column("length").to_pylist()
    rejects = shards.read_rejects(out).to_pylist()
    assert max(lengths) <= 80 and len(lengths) + len(rejects) == 20
    assert {r["error_class"] for r in rejects} == {"TooLong"} and all(r["stage"] == "filter" for r in rejects)
    long = {p.name for p in (shared_data / "cath" / "dompdb").iterdir() if len(read_chains(p).chains[0]) > 80}
    assert {r["item"] for r in rejects} == long and len(long) == 10


def _copy_inputs(shared_data: Path, dest: Path) -> Path:
    dest.mkdir()
    for p in sorted((shared_data / "cath" / "dompdb").iterdir())[:12]:
        shutil.copy(p, dest / p.name)
    return dest


def _rows(out: Path, drop: tuple[str, ...] = ()) -> str:
    """Every row as canonical JSON (NaN written as NaN, so equal datasets give equal strings)."""
    table = shards.read_table(out)
    return json.dumps(table.drop_columns(list(drop)).to_pylist())


def _snapshot(out: Path, drop: tuple[str, ...] = ()) -> dict[str, object]:
    return {
        "rows": _rows(out, drop),
        "rejects": shards.read_rejects(out).to_pylist(),
        "parts": [(p["file"], p["rows"], p["inputs"]) for p in shards.read_manifest(out)["parts"]],
    }


def _kill_at_commit(n: int, run: Callable[[], object], on_kill: Callable | None = None) -> None:
    """Run ``run()`` with the ``n``-th ``PartWriter.commit`` interrupted (KeyboardInterrupt, as a
    kill would stop it; ``on_kill(part)`` first), and check that the interrupt reaches here."""
    real_commit = shards.PartWriter.commit
    calls = {"n": 0}

    def dying_commit(part):  # noqa: ANN001
        calls["n"] += 1
        if calls["n"] == n:
            if on_kill is not None:
                on_kill(part)
            raise KeyboardInterrupt
        return real_commit(part)

    shards.PartWriter.commit = dying_commit
    try:
        with pytest.raises(KeyboardInterrupt):
            run()
    finally:
        shards.PartWriter.commit = real_commit


def test_rerun_resumes_and_an_interrupted_run_completes_to_the_same_dataset(
    tmp_path: Path, shared_data: Path
) -> None:
    from ptk.pipelines import ingest as pipeline

    inputs = _copy_inputs(shared_data, tmp_path / "in")
    (inputs / "broken.pdb").write_text("ATOM      1  N   ALA A   1      1.0\n")  # a reject mid-way
    fresh = tmp_path / "fresh"
    args = ("cath", inputs, "--scheduler", "synchronous", "--shard-rows", "3")
    assert ingest(*args, "--out", fresh).exit_code == 0
    expected = _snapshot(fresh)
    assert len(expected["parts"]) == 4

    # Re-running on a finished dataset does nothing and keeps every part file as it is.
    mtimes = {p: p.stat().st_mtime_ns for p in fresh.glob("part-*.parquet")}
    again = ingest(*args, "--out", fresh)
    assert again.exit_code == 0 and "up to date" in again.stderr
    assert {p: p.stat().st_mtime_ns for p in fresh.glob("part-*.parquet")} == mtimes
    assert _snapshot(fresh) == expected

    # A run killed after its second part: the manifest lists two whole parts, no half part.
    leftovers = []

    def crash_leftover(part):  # noqa: ANN001 - what a crash leaves beside the part
        leftover = part.path.parent / f".{part.path.name}.crash.tmp"
        leftover.write_bytes(b"PAR1 half a part")
        leftovers.append(leftover.name)

    killed = tmp_path / "killed"
    _kill_at_commit(
        3,
        lambda: pipeline.run_ingest("cath", [inputs], killed, scheduler="synchronous", shard_rows=3),
        crash_leftover,
    )
    # the interrupted part's own temporary file is gone; only the simulated crash's is left
    assert [p.name for p in killed.glob(".*.tmp")] == leftovers
    manifest = shards.read_manifest(killed)
    assert not manifest["complete"] and len(manifest["parts"]) == 2
    assert len(shards.CathDataset(killed)) == 6  # readable, holding exactly the whole parts
    kept = {p: p.stat().st_mtime_ns for p in killed.glob("part-*.parquet")}
    resumed = ingest(*args, "--out", killed)
    assert resumed.exit_code == 0 and "kept 2 parts" in resumed.stderr
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())
    assert not list(killed.glob(".*.tmp"))
    assert _snapshot(killed) == expected


def test_parts_the_manifest_does_not_list_yet_are_redone_on_resume(
    tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ptk.pipelines import ingest as pipeline
    from ptk.pipelines.ingest import plan

    inputs = _copy_inputs(shared_data, tmp_path / "in")
    monkeypatch.setattr(plan, "TASK_UNITS", 3)  # tasks of 3 files, parts of 3 rows
    fresh = tmp_path / "fresh"
    pipeline.run_ingest("cath", [inputs], fresh, scheduler="synchronous", shard_rows=6)
    expected = _snapshot(fresh)
    assert [p[1] for p in expected["parts"]] == [3, 3, 3, 3]

    # The manifest is rewritten after every 6 new rows, i.e. every second task: a run killed in
    # the fourth task has renamed the third task's part into place, but the manifest lists two.
    killed = tmp_path / "killed"
    _kill_at_commit(
        4, lambda: pipeline.run_ingest("cath", [inputs], killed, scheduler="synchronous", shard_rows=6)
    )
    assert (killed / "part-00002.parquet").exists()
    assert len(shards.read_manifest(killed)["parts"]) == 2
    assert len(shards.read_table(killed)) == 6  # readers see the listed parts only

    summary = pipeline.run_ingest("cath", [inputs], killed, scheduler="synchronous", shard_rows=6)
    assert (summary.kept_parts, summary.processed_files) == (2, 6)
    assert _snapshot(killed) == expected


def test_a_run_stopped_before_its_first_manifest_update_resumes(
    tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifest is written before the first part: a run stopped at its first part (long
    before the first --shard-rows rows would update the manifest) is resumed by the same
    command, not refused as a folder that is "not empty", and ends as a clean run's dataset."""
    from ptk.pipelines import ingest as pipeline
    from ptk.pipelines.ingest import plan

    inputs = _copy_inputs(shared_data, tmp_path / "in")
    monkeypatch.setattr(plan, "TASK_UNITS", 3)
    fresh = tmp_path / "fresh"
    pipeline.run_ingest("cath", [inputs], fresh, scheduler="synchronous")
    killed = tmp_path / "killed"
    _kill_at_commit(2, lambda: pipeline.run_ingest("cath", [inputs], killed, scheduler="synchronous"))
    manifest = shards.read_manifest(killed)
    assert not manifest["complete"] and manifest["parts"] == [] and manifest["cursor"] == 0
    result = ingest("cath", inputs, "--scheduler", "synchronous", "--out", killed)
    assert result.exit_code == 0, result.output
    assert _snapshot(killed) == _snapshot(fresh)


def test_changed_input_is_noticed_and_reprocessed(tmp_path: Path, shared_data: Path) -> None:
    inputs = _copy_inputs(shared_data, tmp_path / "in")
    out = tmp_path / "out"
    args = ("cath", inputs, "--scheduler", "synchronous", "--shard-rows", "3")
    assert ingest(*args, "--out", out).exit_code == 0
    before = shards.read_manifest(out)
    first_parts = {p: p.stat().st_mtime_ns for p in sorted(out.glob("part-*.parquet"))[:2]}

    victim = sorted(inputs.iterdir())[7]  # in the third part
    lines = victim.read_text().splitlines(keepends=True)
    x = float(lines[1][30:38]) + 1.5  # move the first residue's CA by 1.5 Å
    lines[1] = f"{lines[1][:30]}{x:8.3f}{lines[1][38:]}"
    victim.write_text("".join(lines))

    result = ingest(*args, "--out", out)
    assert result.exit_code == 0
    assert f"changed since {out} was written (first: {victim})" in result.stderr
    after = shards.read_manifest(out)
    rec = next(r for r in after["inputs"] if r["path"] == str(victim))
    assert rec["sha256"] != next(r for r in before["inputs"] if r["path"] == str(victim))["sha256"]
    assert {p: p.stat().st_mtime_ns for p in sorted(out.glob("part-*.parquet"))[:2]} == first_parts
    row = next(r for r in shards.read_table(out).to_pylist() if r["id"] == victim.name)
    chain = read_chains(victim).chains[0]
    np.testing.assert_allclose(np.asarray(row["backbone"]).reshape(-1, 4, 3)[0, 1], chain.positions[0, 1])
    assert row["source_sha256"] == rec["sha256"]

    fresh = tmp_path / "fresh"
    assert ingest(*args, "--out", fresh).exit_code == 0
    assert _snapshot(out) == _snapshot(fresh)


def test_other_options_on_an_existing_dataset_are_a_usage_error(tmp_path: Path, shared_data: Path) -> None:
    out = tmp_path / "out"
    files = sorted((shared_data / "cath" / "dompdb").iterdir())[:2]
    assert ingest("cath", *files, "--out", out, "--scheduler", "synchronous").exit_code == 0
    result = ingest("cath", *files, "--out", out, "--scheduler", "synchronous", "--max-length", 50)
    assert result.exit_code == 2 and "different options (--max-length)" in result.output
    result = ingest("qfit", *files, "--out", out, "--scheduler", "synchronous")
    assert result.exit_code == 2 and "holds cath shards" in result.output
    os.remove(out / "_manifest.json")
    result = ingest("cath", *files, "--out", out, "--scheduler", "synchronous")
    assert result.exit_code == 2 and "not empty" in result.output
    assert pq.read_table(out / "part-00000.parquet").num_rows == 2  # nothing overwritten


def test_large_jsonl_is_split_into_tasks_and_resumes_mid_file(
    tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ptk.pipelines import ingest as pipeline
    from ptk.pipelines.ingest import plan

    ts50 = json.loads((shared_data / "cath" / "ts50" / "ts50.json").read_text())
    jsonl = tmp_path / "chain_set.jsonl"
    with jsonl.open("w") as fh:
        for entry in ts50[:12]:
            coords = np.asarray(entry["coords"])
            fh.write(
                json.dumps(
                    {
                        "name": f"{entry['name'][:4]}.{entry['name'][4:]}",
                        "seq": entry["seq"],
                        "coords": {k: coords[:, i].tolist() for i, k in enumerate("N CA C O".split())},
                    }
                )
            )
            fh.write("\n")
    whole = tmp_path / "whole"
    pipeline.run_ingest("cath", [jsonl], whole, scheduler="synchronous", shard_rows=5)

    monkeypatch.setattr(plan, "JSONL_CHUNK_BYTES", jsonl.stat().st_size // 8)
    units = plan._units(0, {"path": str(jsonl), "sha256": "x"})
    assert len(units) >= 5 and units[0].byte_range[0] == 0 and units[-1].byte_range[1] == jsonl.stat().st_size
    assert all(a.byte_range[1] == b.byte_range[0] for a, b in zip(units, units[1:], strict=False))
    chunked = tmp_path / "chunked"
    pipeline.run_ingest("cath", [jsonl], chunked, scheduler="synchronous", shard_rows=5)
    assert _snapshot(chunked) == _snapshot(whole)
    parts = shards.read_manifest(chunked)["parts"]
    assert [p["rows"] for p in parts] == [5, 5, 2] and [p["boundary"] for p in parts] == [False, False, True]

    # killed after the first task's two parts (mid-file): nothing can be kept, the file is redone
    killed = tmp_path / "killed"
    _kill_at_commit(
        3, lambda: pipeline.run_ingest("cath", [jsonl], killed, scheduler="synchronous", shard_rows=5)
    )
    assert len(shards.read_manifest(killed)["parts"]) == 2
    summary = pipeline.run_ingest("cath", [jsonl], killed, scheduler="synchronous", shard_rows=5)
    assert summary.kept_parts == 0 and _snapshot(killed) == _snapshot(whole)


def test_a_resume_stopped_after_an_input_changed_never_lists_old_parts_beside_new_rows(
    tmp_path: Path, shared_data: Path
) -> None:
    """An input changed since the dataset was written: the resume drops the parts from it on and
    says so in the manifest before it writes any part, so a run stopped at its first new part
    leaves an incomplete manifest of the kept parts (not the old complete one, whose checksums no
    longer describe the part files); the next run finishes the dataset a fresh run would write."""
    from ptk.pipelines import ingest as pipeline

    inputs = _copy_inputs(shared_data, tmp_path / "in")
    out = tmp_path / "out"
    args = ("cath", inputs, "--scheduler", "synchronous", "--shard-rows", "3")
    assert ingest(*args, "--out", out).exit_code == 0
    changed = sorted(inputs.iterdir())[7]
    changed.write_text(changed.read_text().replace("ATOM  ", "ATOM  ", 1) + "REMARK 999 edited\n")
    _kill_at_commit(
        1, lambda: pipeline.run_ingest("cath", [inputs], out, scheduler="synchronous", shard_rows=3)
    )
    manifest = shards.read_manifest(out)
    assert not manifest["complete"]
    assert all(p["complete_through"] <= 7 for p in manifest["parts"])
    assert len(shards.CathDataset(out)) == sum(p["rows"] for p in manifest["parts"])
    assert ingest(*args, "--out", out).exit_code == 0
    fresh = tmp_path / "fresh"
    assert ingest(*args, "--out", fresh).exit_code == 0
    assert _snapshot(out, drop=("source",)) == _snapshot(fresh, drop=("source",))


def test_a_rerun_from_another_folder_keeps_the_rejects(
    tmp_path: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inputs are matched by absolute path; the rejects of kept inputs are kept too, whatever
    folder the command is typed in (here the rerun also has a new input to add)."""
    inputs = _copy_inputs(shared_data, tmp_path / "in")
    (inputs / "broken.pdb").write_text("ATOM      1  N   ALA A   1      1.0\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    assert ingest("cath", "in", "--out", "out", "--scheduler", "synchronous").exit_code == 0
    before = shards.read_rejects(tmp_path / "out").to_pylist()
    assert [r["input"] for r in before] == [str(Path("in") / "broken.pdb")]
    shutil.copy(sorted((shared_data / "cath" / "dompdb").iterdir())[12], inputs / "zz_new.pdb")
    monkeypatch.chdir(tmp_path / "elsewhere")
    again = ingest("cath", "../in", "--out", "../out", "--scheduler", "synchronous")
    assert again.exit_code == 0, again.stderr
    assert shards.read_rejects(tmp_path / "out").to_pylist() == before
    assert shards.read_manifest(tmp_path / "out")["totals"]["rejects"] == 1
    assert "; 1 rejected" in again.stdout + again.stderr
