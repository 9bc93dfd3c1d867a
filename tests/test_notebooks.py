"""Execute every notebook in ``notebooks/`` with nbclient (kernel ``python3``), each in a fresh
kernel, with a per-notebook time limit. They use the shipped sample data only (CPU, offline)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT_S = 1800  # a hang guard, not a speed test: notebook 02 trains v13 for 250 steps in one cell


def _kernel_name() -> str:
    """``python3``, registered for this interpreter (``python -m ipykernel install --user``) when
    no kernel spec of that name exists."""
    from jupyter_client.kernelspec import KernelSpecManager

    if "python3" not in KernelSpecManager().find_kernel_specs():
        subprocess.run(
            [sys.executable, "-m", "ipykernel", "install", "--user"], check=True, capture_output=True
        )
    return "python3"


def test_notebooks_exist() -> None:
    names = [p.name for p in NOTEBOOKS]
    assert names == [
        "01_ingest_and_explore.ipynb",
        "02_train_and_sample.ipynb",
        "03_evaluate_and_plot.ipynb",
        "04_qfit_chi_distributions.ipynb",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path) -> None:
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("ipykernel")

    nb = nbformat.read(path, as_version=4)
    # the kernel runs the notebook from a scratch folder, with matplotlib headless
    env_before = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = "Agg"
    try:
        client = nbclient.NotebookClient(
            nb,
            kernel_name=_kernel_name(),
            timeout=CELL_TIMEOUT_S,
            resources={"metadata": {"path": str(tmp_path)}},
        )
        client.execute()
    finally:
        if env_before is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = env_before
    errors = [o for cell in nb.cells for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
