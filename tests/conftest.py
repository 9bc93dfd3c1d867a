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
