"""Shared fixtures: the real structures of ``../shared/data`` (set ``PTK_SHARED_DATA`` to move it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PTK_SHARED_DATA", REPO.parent / "shared" / "data"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} not found")
    return SHARED_DATA


@pytest.fixture(scope="session")
def dompdb_files(shared_data: Path) -> list[Path]:
    return sorted((shared_data / "cath" / "dompdb").iterdir())


@pytest.fixture(scope="session")
def qfit_model_files(shared_data: Path) -> list[Path]:
    return sorted((shared_data / "qfit" / "qfit_models").iterdir())


@pytest.fixture()
def cli_error(capsys: pytest.CaptureFixture[str]):  # noqa: ANN201
    """``cli_error(argv)`` runs ``ptk ARGV`` in this process, checks that it exits with status 1
    and one ``ptk: error: ...`` line on stderr (no traceback), and returns that line."""
    from ptk.pipelines.cli import main

    def run(argv: list[str]) -> str:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("ptk: error: ") and "Traceback" not in err, err
        return err

    return run
