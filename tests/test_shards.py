"""ptk.shards: schemas round-trip, Datasets read row groups back exactly, collates pad and mask.

Shard folders are written here with the pipeline's own writer in-process
(``--scheduler synchronous``), so these tests start no cluster.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from ptk import features, geometry, shards
from ptk.errors import ConfigError, ShardError
from ptk.pipelines.ingest import run_ingest
from ptk.shards import store
from ptk.structure import read_chains


@pytest.fixture(scope="module")
def cath_dir(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    out = tmp_path_factory.mktemp("cath") / "shards"
    run_ingest(
        "cath",
        [shared_data / "cath" / "dompdb", shared_data / "cath" / "ts50" / "ts50.json"],
        out,
        splits=str(shared_data / "cath" / "chain_set_splits.json"),
        scheduler="synchronous",
        shard_rows=16,
    )
    return out


@pytest.fixture(scope="module")
def qfit_dir(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    out = tmp_path_factory.mktemp("qfit") / "shards"
    models = shared_data / "qfit" / "qfit_models"
    files = [
        models / "1G8A_multiconformer_model2.pdb",
        models / "Test_relabel.pdb",
        models / "3K0N_multiconformer_A_113.pdb",
        shared_data / "qfit" / "fragments",
    ]
    run_ingest("qfit", files, out, scheduler="synchronous", shard_rows=8)
    return out


def test_schemas_are_versioned_and_arrow_native() -> None:
    for kind in shards.KINDS:
        schema = shards.schema_for(kind)
        assert schema.metadata[b"ptk.kind"] == kind.encode()
        assert int(schema.metadata[b"ptk.schema_version"]) == shards.SCHEMA_VERSION
        backbone = schema.field("backbone").type.value_type
        assert backbone.list_size == 12 and str(backbone.value_type) == "float"
    # DESIGN.md "Shard columns": every public name is there
    cath = set(shards.CATH_SCHEMA.names)
    assert {
        "id",
        "chain_id",
        "source",
        "source_sha256",
        "sequence",
        "length",
        "resnum",
        "icode",
        "split",
        "cath_class",
        "cath_architecture",
        "cath_topology",
        "cath_homology",
        "backbone",
        "atoms",
        "atom_mask",
        "frame_rot",
        "frame_trans",
        "frame_mask",
        "phi",
        "psi",
        "omega",
        "phi_mask",
        "psi_mask",
        "omega_mask",
        "chi",
        "chi_mask",
        "contacts",
    } <= cath
    qfit = set(shards.QFIT_SCHEMA.names)
    assert {
        "id",
        "chain_id",
        "source",
        "source_sha256",
        "sequence",
        "length",
        "resnum",
        "icode",
        "backbone",
        "frame_rot",
        "frame_trans",
        "frame_mask",
        "chi",
        "chi_mask",
        "chi_symmetric",
        "altlocs",
        "occupancy",
        "n_obs",
        "d_eff",
    } <= qfit
    with pytest.raises(Exception, match="allowed: cath, qfit"):
        shards.schema_for("pdb")


def test_parts_are_bounded_and_row_groups_small(cath_dir: Path) -> None:
    manifest = shards.read_manifest(cath_dir)
    assert [p["rows"] for p in manifest["parts"]] == [16, 4, 16, 16, 16, 2]  # ts50.json (50) starts a part
    for part in shards.part_paths(cath_dir):
        meta = pq.ParquetFile(part).metadata
        assert meta.num_rows <= 16
        assert all(meta.row_group(g).num_rows <= shards.ROW_GROUP_ROWS for g in range(meta.num_row_groups))


def test_part_writer_builds_the_whole_table_file_and_hides_it_until_committed(
    cath_dir: Path, tmp_path: Path
) -> None:
    table = shards.read_table(cath_dir)
    whole = tmp_path / "whole.parquet"  # pyarrow's one-shot write of the same table and settings
    strings = [
        f"{f.name}.list.element" if f.name == "icode" else f.name
        for f in table.schema
        if "string" in str(f.type)
    ]
    scalars = [f.name for f in table.schema if "list" not in str(f.type)]
    pq.write_table(
        table,
        whole,
        row_group_size=shards.ROW_GROUP_ROWS,
        compression="zstd",
        use_dictionary=strings,
        write_statistics=scalars,
    )
    part = shards.PartWriter(tmp_path / "part.parquet", table.schema)
    for start, stop in ((0, 5), (5, 5), (5, 40), (40, 41), (41, table.num_rows)):  # uneven pieces
        part.write(table.slice(start, stop - start))
        assert not (tmp_path / "part.parquet").exists()
    part.commit()
    meta = pq.ParquetFile(tmp_path / "part.parquet").metadata
    size, n = shards.ROW_GROUP_ROWS, table.num_rows
    assert [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] == [
        min(size, n - k) for k in range(0, n, size)
    ]
    assert (tmp_path / "part.parquet").read_bytes() == whole.read_bytes()
    # statistics on scalar columns (row groups can be skipped by length), none on coordinates
    names = [meta.schema.column(k).path for k in range(meta.num_columns)]
    stats = meta.row_group(0).column(names.index("length")).statistics
    assert stats is not None and stats.has_min_max and stats.min >= 1
    assert meta.row_group(0).column(names.index("atoms.list.element.list.element")).statistics is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part.parquet", "whole.parquet"]

    with pytest.raises(RuntimeError), shards.PartWriter(tmp_path / "failed.parquet", table.schema) as failed:
        failed.write(table.slice(0, 40))
        raise RuntimeError("a run dies mid-part")
    # no temporary file left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part.parquet", "whole.parquet"]


def test_cath_items_equal_the_features(cath_dir: Path, shared_data: Path) -> None:
    ds = shards.CathDataset(cath_dir)
    assert len(ds) == 70
    ids = [ds[i]["id"] for i in range(len(ds))]
    item = ds[ids.index("1c0pA01")]
    row = features.cath_features(read_chains(shared_data / "cath" / "dompdb" / "1c0pA01").chains[0])
    n = row["length"]
    assert item["length"].item() == n == item["aatype"].shape[0]
    bb = row["backbone"]
    np.testing.assert_array_equal(item["backbone"].numpy(), np.nan_to_num(bb))
    np.testing.assert_array_equal(item["backbone_mask"].numpy(), np.isfinite(bb).all(-1))
    np.testing.assert_array_equal(item["frame_rot"].numpy(), row["frame_rot"].reshape(n, 3, 3))
    np.testing.assert_array_equal(item["chi"].numpy(), row["chi"])
    np.testing.assert_array_equal(item["atom_mask"].numpy(), row["atom_mask"])
    for name in ("phi", "psi", "omega"):
        np.testing.assert_array_equal(item[name].numpy(), row[name])
        np.testing.assert_array_equal(item[f"{name}_mask"].numpy(), row[f"{name}_mask"])
    # dense contacts rebuilt from the compact pairs = geometry.contact_map on the same Cα
    expected = geometry.contact_map(torch.from_numpy(bb[:, 1]))
    assert torch.equal(item["contacts"], expected)
    assert item["cath_class"].item() == 3 and item["cath_architecture"].item() == 40
    assert item["cath_topology"].item() == 50 and item["cath_homology"].item() == -1
    assert item["split"] == "train"


def test_backbone_only_rows_have_backbone_atoms_and_no_chi(cath_dir: Path) -> None:
    ds = shards.CathDataset(cath_dir)
    ids = [ds[i]["id"] for i in range(len(ds))]
    item = ds[ids.index("1ete.A")]
    assert item["atom_mask"].sum(-1).max().item() == 4  # N, CA, C, O only
    assert torch.equal(item["atoms"][:, [0, 1, 2, 4]], item["backbone"])
    assert not item["chi_mask"].any()
    table = shards.read_table(cath_dir, columns=["id", "atoms", "chi"])
    k = table.column("id").to_pylist().index("1ete.A")
    assert table.column("atoms")[k].as_py() is None and table.column("chi")[k].as_py() is None


@pytest.mark.parametrize("crop", ["first", "center", "random"])
def test_crop_windows(cath_dir: Path, crop: str) -> None:
    full = shards.CathDataset(cath_dir)
    ds = shards.CathDataset(cath_dir, max_length=40, crop=crop, seed=3)
    ids = [full[i]["id"] for i in range(len(full))]
    i = ids.index("1fi2A00")  # 201 residues
    whole, item = full[i], ds[i]
    assert item["aatype"].shape[0] == 40 and item["contacts"].shape == (40, 40)
    start = int(torch.nonzero(whole["resnum"] == item["resnum"][0])[0])
    if crop == "first":
        assert start == 0
    if crop == "center":
        assert start == (201 - 40) // 2
    w = slice(start, start + 40)
    assert torch.equal(item["contacts"], whole["contacts"][w, w])
    assert torch.equal(item["chi"], whole["chi"][w])
    assert torch.equal(ds[i]["resnum"], item["resnum"])  # same seed and epoch: same crop
    short = ids.index("2j7jA03")  # 27 residues: never cropped
    assert ds[short]["aatype"].shape[0] == 27


def test_random_crop_varies_by_epoch(cath_dir: Path) -> None:
    ds = shards.CathDataset(cath_dir, max_length=20, crop="random", seed=0)
    starts = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        starts.add(int(ds[4]["resnum"][0]))
    assert len(starts) > 1


def test_split_filter_and_open_dataset(cath_dir: Path, qfit_dir: Path, shared_data: Path) -> None:
    split = json.loads((shared_data / "cath" / "chain_set_splits.json").read_text())
    chain_ids = shards.read_table(cath_dir, columns=["chain_id"]).column("chain_id").to_pylist()
    train = shards.CathDataset(cath_dir, split="train")
    assert len(train) == sum(c in set(split["train"]) for c in chain_ids)
    train_domains = {
        "1a04A02",
        "1au7A02",
        "1c0pA01",
        "1cf7B00",
        "1fi2A00",
        "1hdoA00",
        "1j58A01",
        "1rr7A02",
        "1ufmA00",
        "1wzaA02",
        "2j7jA03",
    }  # the 11 dompdb chains in train (data README)
    assert train_domains <= {train[i]["id"] for i in range(len(train))}
    assert {train[i]["split"] for i in range(len(train))} == {"train"}
    assert isinstance(shards.open_dataset(cath_dir), shards.CathDataset)
    assert isinstance(shards.open_dataset(qfit_dir, max_length=50), shards.QfitDataset)
    with pytest.raises(ShardError, match="holds qfit shards"):
        shards.CathDataset(qfit_dir)


def test_collate_cath_pads_and_masks(cath_dir: Path) -> None:
    ds = shards.CathDataset(cath_dir)
    loader = torch.utils.data.DataLoader(ds, batch_size=5, collate_fn=shards.collate_cath)
    batch = next(iter(loader))
    b, n = 5, int(batch["length"].max())
    assert (
        batch["residue_mask"].shape == (b, n)
        and batch["residue_mask"].sum(1).tolist() == batch["length"].tolist()
    )
    assert batch["backbone"].shape == (b, n, 4, 3) and batch["backbone"].dtype == torch.float32
    assert batch["atoms"].shape == (b, n, 37, 3) and batch["atom_mask"].shape == (b, n, 37)
    assert batch["frame_rot"].shape == (b, n, 3, 3) and batch["frame_trans"].shape == (b, n, 3)
    assert batch["chi"].shape == (b, n, 4) and batch["contacts"].shape == (b, n, n)
    assert batch["aatype"].dtype == torch.int64 and batch["cath_class"].shape == (b,)
    pad = ~batch["residue_mask"]
    assert not batch["atom_mask"][pad].any() and not batch["frame_mask"][pad].any()
    assert not batch["contacts"][pad].any() and (batch["backbone"][pad] == 0).all()
    for k in range(b):
        assert torch.equal(batch["chi"][k, : batch["length"][k]], ds[k]["chi"])


def test_qfit_items_and_collate(qfit_dir: Path) -> None:
    ds = shards.QfitDataset(qfit_dir)
    ids = [ds[i]["id"] for i in range(len(ds))]
    item = ds[ids.index("1g8a.A")]
    a = item["altloc_mask"].shape[1]
    assert a == 4 and item["chi"].shape == (227, 4, 4) and item["occupancy"].shape == (227, 4)
    real = item["altloc_mask"]
    torch.testing.assert_close(item["occupancy"].sum(-1), torch.ones(227), atol=1e-5, rtol=0)
    assert (item["occupancy"][~real] == 0).all() and not item["chi_mask"][~real].any()
    assert torch.equal(item["valid"], (item["n_obs"] >= 2) & (item["d_eff"] >= 1))
    assert torch.equal(item["n_obs"], real.sum(-1))
    small = ds[ids.index("afa_single.A")]
    batch = shards.collate_qfit([item, small])
    assert batch["chi"].shape == (2, 227, 4, 4) and batch["altloc_mask"].shape == (2, 227, 4)
    assert batch["occupancy"][1, 3:].abs().sum() == 0 and not batch["valid"][1, 3:].any()
    assert batch["chi_symmetric"].shape == (2, 227, 4) and batch["n_obs"].dtype == torch.int64
    assert torch.equal(batch["valid"], batch["residue_mask"] & (batch["n_obs"] >= 2) & (batch["d_eff"] >= 1))


def test_datasets_pickle_for_loader_workers(cath_dir: Path) -> None:
    ds = shards.CathDataset(cath_dir, max_length=30, crop="first")
    first = ds[7]
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[7]["backbone"], first["backbone"])


def test_manifest_lists_only_whole_parts_and_refuses_other_versions(cath_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(cath_dir, copy)
    (copy / "part-00099.parquet").write_bytes(b"half a part")  # an interrupted run's leftover
    assert len(shards.CathDataset(copy)) == 70  # only the manifest's parts are read
    manifest = json.loads((copy / "_manifest.json").read_text())
    manifest["schema_version"] = 999
    (copy / "_manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match="schema version 999"):
        shards.CathDataset(copy)
    with pytest.raises(ShardError, match="not a shard dataset"):
        shards.read_manifest(tmp_path)


# --------------------------------------------------------------------------------------------
# The folder as ptk.shards.store writes it (the ingest calls these for every file it writes)


def test_a_manifest_the_store_writes_is_the_one_it_reads(tmp_path: Path) -> None:
    inputs = [
        {"path": "a.pdb", "abspath": "/x/a.pdb", "sha256": "aa", "rows": 2, "rejects": 0},
        {"path": "b.pdb", "abspath": "/x/b.pdb", "sha256": "bb", "rows": 0, "rejects": 1},
        {"path": "c.pdb", "abspath": "/x/c.pdb", "sha256": None, "rows": None, "rejects": None},
    ]
    parts = [store.part_entry(store.part_name(0), 2, (0, 2), 2, True)]
    manifest = store.manifest(
        kind="qfit",
        command="ptk ingest qfit a.pdb b.pdb c.pdb --out x",
        options={"shard_rows": 5},
        created="2024-01-02T03:04:05+00:00",
        complete=False,
        cursor=2,
        cursor_ends_task=True,
        parts=parts,
        inputs=inputs,
        rejects=1,
        skipped=["notes.txt"],
    )
    store.write_manifest(tmp_path, manifest)
    assert store.read_manifest(tmp_path) == manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == [store.MANIFEST_NAME]  # no temporary left
    text = (tmp_path / store.MANIFEST_NAME).read_text()
    assert text == json.dumps(manifest, indent=1) + "\n"
    assert list(manifest) == [
        "kind",
        "schema_version",
        "ptk_version",
        "command",
        "options",
        "created",
        "updated",
        "complete",
        "cursor",
        "cursor_ends_task",
        "totals",
        "parts",
        "inputs",
        "skipped",
    ]
    assert manifest["schema_version"] == shards.SCHEMA_VERSION
    assert manifest["totals"] == {"rows": 2, "files_with_rows": 1, "rejects": 1, "inputs": 3}
    assert manifest["parts"][0] == {
        "file": "part-00000.parquet",
        "rows": 2,
        "inputs": [0, 2],
        "complete_through": 2,
        "boundary": True,
    }
    assert store.part_paths(tmp_path) == [tmp_path / "part-00000.parquet"]
    store.write_manifest(tmp_path, dict(manifest, kind="pdb"))  # what the reader refuses
    with pytest.raises(ShardError, match="unknown shard kind 'pdb'"):
        store.read_manifest(tmp_path)


def test_rejects_the_store_writes_round_trip(tmp_path: Path) -> None:
    assert store.read_rejects(tmp_path).num_rows == 0  # none written yet
    rows = [
        {"input": "a.pdb", "item": None, "stage": "read", "error_class": "OSError", "message": "gone"},
        {
            "input": "dir/b.jsonl",
            "item": "bytes 0-4096",
            "stage": "worker",
            "error_class": "KilledWorker",
            "message": "Å, ±, \u00e9 and a\nsecond line",
        },
        {"input": "c.cif", "item": "1abc.A", "stage": "dedupe", "error_class": "DuplicateId", "message": ""},
    ]
    store.write_rejects(tmp_path, rows)
    table = store.read_rejects(tmp_path)
    assert table.schema.equals(shards.REJECTS_SCHEMA, check_metadata=True)
    assert table.to_pylist() == rows
    store.write_rejects(tmp_path, [])  # always rewritten whole, possibly empty
    empty = store.read_rejects(tmp_path)
    assert empty.num_rows == 0 and empty.schema.equals(shards.REJECTS_SCHEMA)
    assert sorted(p.name for p in tmp_path.iterdir()) == [store.REJECTS_NAME]


def test_the_lock_excludes_a_second_writer(tmp_path: Path) -> None:
    with store.lock(tmp_path):
        with pytest.raises(ConfigError, match="lock held"), store.lock(tmp_path):
            pass
    with store.lock(tmp_path):  # released
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == [store.LOCK_NAME]


def test_an_ingested_folder_holds_exactly_the_files_the_store_names(
    tmp_path: Path, shared_data: Path
) -> None:
    from click.testing import CliRunner

    from ptk.pipelines.cli import cli

    files = sorted((shared_data / "cath" / "dompdb").iterdir())[:5]
    out = tmp_path / "shards"

    def ingest(*inputs: Path) -> None:
        args = ["ingest", "cath", *map(str, inputs), "--out", str(out), "--scheduler", "synchronous"]
        result = CliRunner().invoke(cli, [*args, "--shard-rows", "2"], catch_exceptions=False)
        assert result.exit_code == 0, result.output

    def named_by_the_store() -> list[str]:
        parts = [p.name for p in store.part_paths(out)]
        assert parts == [store.part_name(k) for k in range(len(parts))]
        return sorted([store.MANIFEST_NAME, store.REJECTS_NAME, store.LOCK_NAME, *parts])

    ingest(*files[:3])
    assert sorted(p.name for p in out.iterdir()) == named_by_the_store()
    assert store.read_manifest(out)["totals"]["rows"] == 3
    # leftovers of a killed run: a task's temporary part, a probe, an unlisted part
    (out / store.temporary_name("task-0123-000.parquet")).write_bytes(b"half")
    (out / store.temporary_name("probe-0123")).touch()
    (out / store.part_name(99)).write_bytes(b"half a part")
    ingest(*files)  # resumes: the new files sort after the old ones
    assert sorted(p.name for p in out.iterdir()) == named_by_the_store()
    assert store.read_manifest(out)["complete"] and store.read_table(out).num_rows == 5
