"""``ptk train`` refuses what cannot train, with one line and exit status 1: a recipe value out
of its range, a ``--set`` of what names the version, a run that diverged (every batch of an
epoch skipped), a resume without a readable config.json; and it accepts restating a resumed
run's own setting."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_train_families import ingest_cached, one_thread, read_metrics, train_args, trained_run  # noqa: F401

from ptk.pipelines.cli import main


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp()


@pytest.mark.parametrize(
    ("setting", "named"),
    [
        ("val_fraction=1.5", "val_fraction"),
        ("sample_n=-1", "sample_n"),
        ("max_length=1", "max_length"),
        ("ema_decay=1", "ema_decay"),
        ("lr=-1e-3", "lr"),
        ("lr=nan", "lr"),
        ('clip={"*": -1}', "clip"),
        ("betas=[0.9, 1.5]", "betas"),
        ("version=v10", "--version"),
        ("model.size=default", "--size"),
    ],
)
def test_a_value_out_of_range_is_refused(
    setting: str, named: str, session_dir: Path, shared_data: Path, tmp_path: Path, cli_error
) -> None:
    data = ingest_cached(session_dir, shared_data, "cath")
    err = cli_error(train_args("v13", data, tmp_path / "run", "--set", setting))
    assert named in err
    assert not (tmp_path / "run").exists()


def test_a_diverged_run_stops_with_an_error(
    session_dir: Path, shared_data: Path, tmp_path: Path, cli_error
) -> None:
    data = ingest_cached(session_dir, shared_data, "cath")
    out = tmp_path / "run"
    err = cli_error(train_args("v13", data, out, "--set", "lr=1e6", epochs=4))
    assert "diverged: every batch of epoch" in err and str(out) in err and "lr 1e+06" in err
    rows = read_metrics(out)
    assert rows[-1]["status"].startswith("HALT (diverged") and len(rows) < 4


def test_resume_needs_a_readable_config_and_accepts_restated_settings(
    session_dir: Path, shared_data: Path, tmp_path: Path, cli_error
) -> None:
    run = tmp_path / "run"
    shutil.copytree(trained_run(session_dir, shared_data, "v13"), run)
    config = run / "config.json"
    text = config.read_text()

    config.write_text(text[: len(text) // 2])
    assert "not readable as JSON" in cli_error(["train", "--out", str(run), "--resume"])
    config.unlink()
    assert "config.json" in cli_error(["train", "--out", str(run), "--resume"])
    config.write_text(text)

    err = cli_error(["train", "--out", str(run), "--resume", "--set", "lr=0.5"])
    assert "cannot change lr" in err
    lr = json.loads(text)["train"]["lr"]
    main(
        [
            "train",
            "--out",
            str(run),
            "--resume",
            "--epochs",
            "3",
            "--set",
            f"lr={lr}",
            "--set",
            "max_length=32",
        ]
    )
    assert [r["epoch"] for r in read_metrics(run)] == ["1", "2", "3"]
