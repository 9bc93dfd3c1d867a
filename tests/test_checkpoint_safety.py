"""A checkpoint never runs code: every command that reads one (``ptk sample``, ``ptk train
--resume``, a fresh run's ``init_from`` and stage-1 encoder) loads it weights-only, and a file
that asks for anything else is refused with one line naming it, before its payload runs.
``ptk upgrade-checkpoint --trust`` rewrites a ptk 0.1 checkpoint (numpy RNG state pickled as an
ndarray) so that it loads, and the resumed run goes on from it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train_families import ingest_cached, one_thread, train_args, trained_run  # noqa: F401  (fixtures)

from ptk.pipelines.cli import main


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp()


class Payload:
    """Unpickling this runs ``touch MARKER``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def crafted_run(session_dir: Path, shared_data: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of a real v13 run whose best.pt and last.pt carry the payload; and its marker."""
    run = tmp_path / "runs" / "v13"
    shutil.copytree(trained_run(session_dir, shared_data, "v13"), run)
    marker = tmp_path / "payload_ran"
    for name in ("best.pt", "last.pt"):
        state = torch.load(run / "checkpoints" / name, weights_only=True)
        state["model"] = Payload(marker)
        torch.save(state, run / "checkpoints" / name)
    return run, marker


def test_a_checkpoint_with_a_payload_is_refused_everywhere(
    session_dir: Path, shared_data: Path, tmp_path: Path, cli_error
) -> None:
    run, marker = crafted_run(session_dir, shared_data, tmp_path)
    data = ingest_cached(session_dir, shared_data, "cath")
    best = run / "checkpoints" / "best.pt"

    err = cli_error(["sample", "--run", str(run), "--data", str(data), "--out", str(tmp_path / "s")])
    assert str(best) in err and "refused" in err and ("os.system" in err or "posix.system" in err)

    err = cli_error(["train", "--out", str(run), "--resume", "--epochs", "3"])
    assert str(best) in err and "refused" in err  # last.pt refused, then best.pt refused too

    fresh = tmp_path / "runs" / "v14"  # v14's init_from is v13: the sibling crafted run
    err = cli_error(train_args("v14", data, fresh, "--set", f"init_checkpoint={run}"))
    assert str(best) in err and "refused" in err

    stage1 = ["--set", "encoder=stage1", "--set", f"encoder_checkpoint={best}"]  # an encoder named by path
    err = cli_error(train_args("v13", data, tmp_path / "v13b", *stage1))
    assert str(best) in err and "refused" in err

    assert not marker.exists()


def test_an_old_checkpoint_is_upgraded_once_then_resumes(
    session_dir: Path, shared_data: Path, tmp_path: Path, cli_error, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "v13"
    shutil.copytree(trained_run(session_dir, shared_data, "v13"), run)
    last = run / "checkpoints" / "last.pt"
    state = torch.load(last, weights_only=True)
    rng = state["rng"]  # as ptk 0.1 wrote it: numpy's and python's native tuples
    numpy = rng["numpy"]
    rng["numpy"] = (
        numpy["kind"],
        numpy["keys"].numpy().astype(np.uint32),
        numpy["pos"],
        numpy["has_gauss"],
        numpy["cached_gaussian"],
    )
    rng["python"] = (rng["python"]["version"], tuple(rng["python"]["state"]), rng["python"]["gauss"])
    torch.save(state, last)
    (run / "checkpoints" / "best.pt").unlink()

    err = cli_error(["train", "--out", str(run), "--resume", "--epochs", "3"])
    assert f"ptk upgrade-checkpoint --trust {last}" in err

    with pytest.raises(SystemExit) as exc:  # usage error without --trust
        main(["upgrade-checkpoint", str(last)])
    assert exc.value.code == 2
    main(["upgrade-checkpoint", "--trust", str(last)])
    assert "rewritten" in capsys.readouterr().out
    upgraded = torch.load(last, weights_only=True)
    assert np.array_equal(upgraded["rng"]["numpy"]["keys"].numpy(), rng["numpy"][1].astype(np.int64))
    assert all(torch.equal(upgraded["model"][k], v) for k, v in state["model"].items())

    main(["train", "--out", str(run), "--resume", "--epochs", "3"])
    assert torch.load(last, weights_only=True)["epoch"] == 3
