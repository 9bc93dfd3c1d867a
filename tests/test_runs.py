"""``ptk.runs``, the owner of the training run folder (``docs/run-folder.md``): its tables and
``config.json`` round-trip through its own readers byte for byte as the contract spells them, and
a real tiny ``ptk train`` (then ``--resume``, then ``ptk sample``) writes exactly the paths
``ptk.runs`` names, which the report's loader then finds."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from pathlib import Path

import pytest
from test_train_families import ingest_cached, one_thread, train_args  # noqa: F401  (fixtures)

from ptk import runs
from ptk.errors import PtkError
from ptk.pipelines.cli import main


def _row(epoch: int, **extra: object) -> dict[str, object]:
    row: dict[str, object] = {
        "epoch": epoch,
        "train_fape": 1 / 3,
        "val_fape": None,
        "train_loss": 2.0 / epoch,
    }
    return {**row, "lr": 1e-4, "status": "NEW BEST", "ddim_tm": math.nan, **extra}


# --------------------------------------------------------------------------- the tables, directly


def test_metrics_csv_bytes_append_and_read_back(tmp_path: Path) -> None:
    """The header is the first row's keys; later rows follow it (an unknown key is dropped and
    returned, an absent one is empty); cells are ints/strings as they are, floats %.7g, None and
    NaN empty; Python csv's CRLF line ends."""
    header = list(_row(1))
    assert runs.append_metrics(tmp_path, header, _row(1)) == []
    assert runs.append_metrics(tmp_path, header, {"epoch": 2, "status": "pat 1", "extra": 5.0}) == ["extra"]
    assert runs.metrics_path(tmp_path).read_bytes() == (
        b"epoch,train_fape,val_fape,train_loss,lr,status,ddim_tm\r\n"
        b"1,0.3333333,,2,0.0001,NEW BEST,\r\n"
        b"2,,,,,pat 1,\r\n"
    )
    frame = runs.read_metrics(tmp_path)
    assert list(frame.columns) == header and frame.attrs["label"] == tmp_path.name
    assert frame["epoch"].tolist() == [1, 2] and frame["status"].tolist() == ["NEW BEST", "pat 1"]
    assert frame["train_fape"][0] == pytest.approx(1 / 3, rel=1e-7) and math.isnan(frame["train_fape"][1])
    assert runs.loss_terms(header) == ["fape"]


def test_metrics_truncate_keeps_the_header_and_earlier_rows(tmp_path: Path) -> None:
    header = list(_row(1))
    for epoch in (1, 2, 3):
        runs.append_metrics(tmp_path, header, _row(epoch))
    before = runs.metrics_path(tmp_path).read_bytes()
    inode = runs.metrics_path(tmp_path).stat().st_ino
    runs.truncate_metrics(tmp_path, 3)  # nothing after epoch 3: the file is left alone
    assert runs.metrics_path(tmp_path).stat().st_ino == inode
    runs.truncate_metrics(tmp_path, 1)
    after = runs.metrics_path(tmp_path).read_bytes()
    assert after == b"".join(before.splitlines(keepends=True)[:2])
    assert [p.name for p in tmp_path.iterdir()] == [runs.METRICS_NAME]  # no temporary file left
    runs.append_metrics(tmp_path, header, _row(2))  # the resumed run appends under the same header
    assert runs.read_metrics(tmp_path)["epoch"].tolist() == [1, 2]


def test_grad_cosines_append_truncate_by_step_and_discard(tmp_path: Path) -> None:
    runs.append_cosines(tmp_path, 1, 10, [("fape", "dist", 0.5, 1.0, 2.0), ("fape", "rot", -0.25, 1.0, 3.0)])
    runs.append_cosines(tmp_path, 2, 20, [("fape", "dist", math.nan, 1.0, 2.0)])
    frame = runs.read_grad_cosines(tmp_path)
    assert list(frame.columns) == list(runs.COSINE_HEADER) and frame["step"].tolist() == [10, 10, 20]
    runs.truncate_cosines(tmp_path, 15)
    assert runs.grad_cosine_path(tmp_path).read_bytes() == (
        b"epoch,step,term_a,term_b,cosine,norm_a,norm_b\r\n1,10,fape,dist,0.5,1,2\r\n1,10,fape,rot,-0.25,1,3\r\n"
    )
    runs.append_metrics(tmp_path, ["epoch"], {"epoch": 1})
    runs.discard_tables(tmp_path)
    assert list(tmp_path.iterdir()) == [] and runs.read_grad_cosines(tmp_path) is None


def test_eval_csv_columns_and_number_format(tmp_path: Path) -> None:
    path = runs.epoch_samples_dir(tmp_path, 4) / runs.EVAL_NAME
    rows = [{"id": "1abcA00", "length": 30, "method": "ddim", "tm": 0.123456789, "rmsd": 2.0}]
    runs.write_eval_csv(path, [{**rows[0], "gdt_ts": 0.5, "gdt_ha": math.nan, "lddt": 1, "other": 9}])
    assert path.read_bytes() == (
        b"id,length,method,tm,rmsd,gdt_ts,gdt_ha,lddt\r\n1abcA00,30,ddim,0.123457,2,0.5,nan,1\r\n"
    )


def test_config_json_round_trip_and_refusals(tmp_path: Path) -> None:
    config = {"version": "v13", "size": "tiny", "train": {"epochs": 2}, "data": {"train": "s"}, "µ": [1.5]}
    runs.write_config(tmp_path, config)
    assert runs.config_path(tmp_path).read_text() == json.dumps(config, indent=2) + "\n"
    assert runs.read_config(tmp_path) == config == runs.read_resume_config(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [runs.CONFIG_NAME]

    runs.write_config(tmp_path, {"version": "v13"})
    with pytest.raises(PtkError, match="needs the keys version, size, train, data"):
        runs.read_resume_config(tmp_path)
    runs.config_path(tmp_path).write_text('{"version": ')
    with pytest.raises(PtkError, match="unreadable"):
        runs.read_config(tmp_path)
    with pytest.raises(PtkError, match="not readable as JSON"):
        runs.read_resume_config(tmp_path)
    with pytest.raises(PtkError, match="not a run folder"):
        runs.read_config(tmp_path / "elsewhere")


def test_names_and_paths() -> None:
    run = Path("RUNS/v13")
    assert runs.checkpoint_path(run, "best") == run / "checkpoints" / "best.pt"
    assert runs.checkpoint_path(run, "last") == run / "checkpoints" / "last.pt"
    with pytest.raises(ValueError, match="'last' or 'best'"):
        runs.checkpoint_path(run, "final")
    folder = runs.epoch_samples_dir(run, 7)
    assert folder == run / "samples" / "epoch_007" and runs.epoch_of(folder) == 7
    assert runs.epoch_of(runs.epoch_samples_dir(run, 1234)) == 1234 and runs.epoch_of(run / "manual") is None
    assert runs.sample_folders(folder, "run") == {
        "ddim": folder / "ddim",
        "x0": folder / "x0",
        "ref": folder / "ref",
    }
    assert runs.sample_folders(folder, "flat")["ddim"] == folder


def _fake_run(path: Path, version: str, created: str, epochs: int) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    runs.write_config(path, {"version": version, "created": created})
    for epoch in range(1, epochs + 1):
        runs.append_metrics(path, ["epoch", "status"], {"epoch": epoch, "status": "NEW BEST"})
    return path


def test_find_and_pick_runs(tmp_path: Path) -> None:
    """Runs are folders whose config.json names a version, up to three levels down, never inside
    another run; the version's own folder wins, then a run with rows, then the newest."""
    own = _fake_run(tmp_path / "v13", "v13", "2024-01-01", 0)
    newer = _fake_run(tmp_path / "old" / "try2", "v13", "2025-01-01", 2)
    _fake_run(tmp_path / "a" / "b" / "c" / "deep", "v13", "2026-01-01", 1)  # four levels down
    _fake_run(runs.report_dir(newer) / "x", "v13", "2027-01-01", 1)  # inside a run
    (tmp_path / "notes").mkdir()
    runs.config_path(tmp_path / "notes").write_text("{}")  # no version: not a run
    found = runs.find_runs(tmp_path)
    assert [r.path for r in found] == [newer, own]
    assert runs.pick_run("v13", tmp_path).path == newer  # the own folder has no finished epoch
    runs.append_metrics(own, ["epoch", "status"], {"epoch": 1, "status": "NEW BEST"})
    assert runs.pick_run("v13", tmp_path).path == own
    assert runs.pick_run("v14", tmp_path) is None
    run = runs.load_run(newer)
    assert run.n_epochs == 2 and run.best_index == 1 and run.version == "v13"


def test_latest_samples_across_both_layouts(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    runs.write_config(run_dir, {"version": "v13"})
    row = [
        {
            "id": "a",
            "length": 3,
            "method": "ddim",
            "tm": 0.5,
            "rmsd": 1.0,
            "gdt_ts": 0.5,
            "gdt_ha": 0.5,
            "lddt": 0.5,
        }
    ]
    for epoch, when in ((2, 100), (10, 100)):  # same time: the higher epoch wins
        path = runs.epoch_samples_dir(run_dir, epoch) / runs.EVAL_NAME
        runs.write_eval_csv(path, row)
        os.utime(path, (when, when))
    (runs.samples_dir(run_dir) / "empty").mkdir()
    latest = runs.latest_samples(runs.load_run(run_dir))
    assert latest.epoch == 10 and latest.ddim == runs.epoch_samples_dir(run_dir, 10) / "ddim"
    flat = runs.samples_dir(run_dir) / "manual"
    runs.write_eval_csv(flat / runs.FLAT_EVAL_NAME, row)
    latest = runs.latest_samples(runs.load_run(run_dir))
    assert latest.csv == flat / "summary" / "samples.csv" and latest.ddim == flat and latest.epoch is None
    assert latest.label == "manual"


# --------------------------------------------------------------------------- a real run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Path:
    """Two epochs of v11 (tiny, CPU), sampled at epoch 2, in ``RUNS/v11``."""
    import torch

    base = tmp_path_factory.getbasetemp()
    out = tmp_path_factory.mktemp("runs") / "v11"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        main(train_args("v11", ingest_cached(base, shared_data, "cath"), out))
    finally:
        torch.set_num_threads(threads)
    return out


def test_the_trainer_writes_the_paths_ptk_runs_names(tiny_run: Path) -> None:
    expected = {runs.CONFIG_NAME, runs.LOG_NAME, runs.METRICS_NAME, runs.CHECKPOINTS_DIR, runs.SAMPLES_DIR}
    assert {p.name for p in tiny_run.iterdir()} == expected
    assert {p.name for p in runs.checkpoints_dir(tiny_run).iterdir()} == {runs.LAST_NAME, runs.BEST_NAME}
    for which in ("last", "best"):
        assert runs.checkpoint_path(tiny_run, which).is_file()
    sampled = runs.epoch_samples_dir(tiny_run, 2)
    assert sorted(p.name for p in runs.samples_dir(tiny_run).iterdir()) == [sampled.name]
    assert (sampled / runs.EVAL_NAME).is_file()
    ids = sorted(p.stem for p in runs.sample_folders(sampled, "run")["ref"].glob("*.pdb"))
    for method, folder in runs.sample_folders(sampled, "run").items():
        assert sorted(p.stem for p in folder.glob("*.pdb")) == ids, method

    config = runs.read_config(tiny_run)
    assert config == runs.read_resume_config(tiny_run) and config["version"] == "v11"
    header = list(runs.read_metrics(tiny_run).columns)
    tail = list(runs.METRIC_TAIL)
    terms = runs.loss_terms(header)
    assert header[: 1 + 2 * len(terms)] == [
        "epoch",
        *(f"train_{t}" for t in terms),
        *(f"val_{t}" for t in terms),
    ]
    assert header[1 + 2 * len(terms) : 1 + 2 * len(terms) + len(tail)] == tail


def test_the_report_loader_finds_the_run(tiny_run: Path) -> None:
    from ptk import report

    run = report.pick_run("v11", tiny_run.parent)
    assert run is not None and run.path == tiny_run and run.n_epochs == 2
    assert run.metrics.equals(runs.read_metrics(tiny_run))
    with open(runs.metrics_path(tiny_run), newline="") as handle:
        assert [r["status"] for r in csv.DictReader(handle)] == run.metrics["status"].tolist()
    latest = report.latest_samples(run)
    assert latest.epoch == 2 and latest.csv == runs.epoch_samples_dir(tiny_run, 2) / runs.EVAL_NAME


def test_resume_truncates_and_appends_on_a_real_run(tiny_run: Path, tmp_path: Path) -> None:
    """A row written after the last checkpoint (a run killed between the two) is dropped on
    resume; the rows before it stay byte for byte and the resumed epoch is logged once."""
    run = tmp_path / "v11"
    shutil.copytree(tiny_run, run)
    before = runs.metrics_path(run).read_bytes()
    header = list(runs.read_metrics(run).columns)
    runs.append_metrics(run, header, {"epoch": 3, "status": "killed"})
    main(["train", "--out", str(run), "--resume", "--epochs", "3", "--set", "sample_every=0"])
    after = runs.metrics_path(run).read_bytes()
    assert after.startswith(before)
    frame = runs.read_metrics(run)
    assert frame["epoch"].tolist() == [1, 2, 3] and "killed" not in frame["status"].tolist()
    assert list(frame.columns) == header
    assert len(runs.read_config(run)["resumed_at"]) == 1


def test_ptk_sample_into_the_run_is_its_latest_sampling(
    tiny_run: Path, tmp_path: Path, shared_data: Path
) -> None:
    run = tmp_path / "v11"
    shutil.copytree(tiny_run, run)
    out = runs.samples_dir(run) / "manual"
    data = runs.read_config(run)["data"]["train"]
    main(["sample", "--run", str(run), "--data", data, "--out", str(out), "--steps", "2", "--n", "1"])
    latest = runs.latest_samples(runs.load_run(run))
    assert latest.path == out and latest.csv == out / runs.FLAT_EVAL_NAME and latest.epoch is None
    with open(latest.csv, newline="") as handle:
        scores = list(csv.DictReader(handle))
    assert list(scores[0]) == list(runs.EVAL_COLUMNS) and {r["method"] for r in scores} == {"ddim", "x0"}
    assert len(list(runs.sample_folders(out, "flat")["ddim"].glob("*.pdb"))) == 1
