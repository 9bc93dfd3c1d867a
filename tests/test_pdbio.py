"""``write_pdb`` writes what gemmi reads back to the last written decimal, at the edges of the
PDB format's coordinate field too, and refuses (writing nothing) coordinates that the field
cannot hold or that are not finite; ``ptk sample`` of a diverged run ends with one line."""

from __future__ import annotations

import shutil
from pathlib import Path

import gemmi
import numpy as np
import pytest
import torch
from test_train_families import ingest_cached, one_thread, trained_run  # noqa: F401  (fixtures)

from ptk.errors import PtkError
from ptk.pdbio import write_pdb


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp()


def _backbone(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Residue types and N/Cα/C/O of the first chain of a real CATH domain, read by gemmi."""
    from ptk.residues import RESTYPES_3

    chain = gemmi.read_structure(str(path), format=gemmi.CoorFormat.Pdb)[0][0]  # CATH names have no suffix
    rows = [r for r in chain if all(r.find_atom(a, "*") for a in ("N", "CA", "C", "O"))]
    aatype = np.array([RESTYPES_3.index(r.name) if r.name in RESTYPES_3 else 20 for r in rows])
    xyz = np.array([[r.find_atom(a, "*").pos.tolist() for a in ("N", "CA", "C", "O")] for r in rows])
    return aatype, xyz


def _read(path: Path) -> np.ndarray:
    chain = gemmi.read_structure(str(path))[0][0]
    return np.array([[a.pos.tolist() for a in r] for r in chain])


def test_a_real_chain_reads_back(dompdb_files: list[Path], tmp_path: Path) -> None:
    aatype, xyz = _backbone(dompdb_files[0])
    out = write_pdb(tmp_path / "a.pdb", aatype, xyz)
    np.testing.assert_allclose(_read(out), xyz, atol=5e-4)  # %8.3f


@pytest.mark.parametrize("edge", [-999.999, 9999.999])
def test_the_edges_of_the_coordinate_field_are_written(
    dompdb_files: list[Path], tmp_path: Path, edge: float
) -> None:
    aatype, xyz = _backbone(dompdb_files[0])
    xyz[3, 1, 0] = edge
    np.testing.assert_allclose(_read(write_pdb(tmp_path / "a.pdb", aatype, xyz))[3, 1, 0], edge, atol=5e-4)


@pytest.mark.parametrize("bad", [-1000.0, 10000.0, 1e7, np.nan, np.inf])
def test_coordinates_a_pdb_cannot_hold_are_refused(
    dompdb_files: list[Path], tmp_path: Path, bad: float
) -> None:
    aatype, xyz = _backbone(dompdb_files[0])
    xyz[5, 1, 2] = bad
    path = tmp_path / "a.pdb"
    with pytest.raises(PtkError, match=r"a\.pdb: not written: 1 atom\(s\) cannot be written .* CA"):
        write_pdb(path, aatype, xyz)
    assert not path.exists()
    mask = np.ones(xyz.shape[:2], dtype=bool)
    mask[5, 1] = False  # a masked-out atom may hold anything: it is left out
    assert len(gemmi.read_structure(str(write_pdb(path, aatype, xyz, atom_mask=mask)))[0][0][5]) == 3


def test_sampling_a_diverged_run_ends_with_one_line(
    session_dir: Path, shared_data: Path, tmp_path: Path, cli_error
) -> None:
    run = tmp_path / "v13"
    shutil.copytree(trained_run(session_dir, shared_data, "v13"), run)
    best = run / "checkpoints" / "best.pt"
    state = torch.load(best, weights_only=True)
    for name, tensor in state["ema"]["module"].items():  # blow every weight up: coordinates overflow
        if tensor.is_floating_point():
            state["ema"]["module"][name] = tensor * 1e6
    torch.save(state, best)
    out = tmp_path / "samples"
    data = ingest_cached(session_dir, shared_data, "cath")
    err = cli_error(
        ["sample", "--run", str(run), "--data", str(data), "--out", str(out), "--steps", "3", "--n", "2"]
    )
    assert "cannot be written to PDB" in err and "not written" in err
    assert not list(out.glob("*.pdb"))  # the DDIM samples: none written
