"""ptk.plots rendered from real structures: every figure builds headless and writes a PNG."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from ptk import geometry as G
from ptk import plots
from ptk.errors import PtkError
from ptk.metrics import contact_metrics, read_ca
from ptk.structure import read_chains


@pytest.fixture(scope="module")
def eval_reference(shared_data: Path) -> Path:
    folder = shared_data / "eval_reference"
    if not folder.is_dir():
        pytest.skip("eval_reference not found")
    return folder


def _ca(paths: list[Path]) -> list[torch.Tensor]:
    return [torch.from_numpy(read_chains(p).chains[0].positions[:, 1].astype(np.float64)) for p in paths]


def _check_png(path: Path, min_width: int = 400) -> np.ndarray:
    assert path.is_file() and path.stat().st_size > 10_000
    image = mpimg.imread(path)
    assert image.shape[1] >= min_width and image.shape[0] >= 300
    assert image[..., :3].std() > 0.05  # not a blank canvas
    return image


def _texts(fig: Figure) -> str:
    parts = [t.get_text() for t in fig.texts]
    if fig._suptitle is not None:
        parts.append(fig._suptitle.get_text())
    for ax in fig.axes:
        parts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
    return "\n".join(parts)


def test_pseudo_ramachandran_from_real_structures(
    eval_reference: Path, dompdb_files: list[Path], tmp_path: Path
) -> None:
    reference = _ca(dompdb_files)
    noisy = _ca(sorted((eval_reference / "pred").glob("*_noise1.5.pdb.gz")))
    hinged = _ca(sorted((eval_reference / "pred").glob("*_hinge30.pdb.gz")))
    fig = plots.pseudo_ramachandran_figure(
        {"reference": reference, "noise 1.5 Å": noisy, "hinge 30°": hinged}, axes="tau-theta"
    )
    assert isinstance(fig, Figure)
    theta, tau = plots.pseudo_ramachandran_angles(reference)
    n_ref = len(theta)
    assert 0.95 * sum(len(c) - 3 for c in reference) <= n_ref <= sum(len(c) - 3 for c in reference)
    assert np.all((theta > 0) & (theta < 180)) and np.all(np.abs(tau) <= 180)
    # α-helices: θ ≈ 91°, τ ≈ 50° is the densest region of real proteins
    hist, xe, ye = np.histogram2d(tau, theta, bins=12, range=[[-180, 180], [0, 180]])
    i, j = np.unravel_index(hist.argmax(), hist.shape)
    assert 0 <= xe[i] <= 90 and 60 <= ye[j] <= 120
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[0] == f"reference ({n_ref:,} residues)"
    assert len(titles) == 3
    _check_png(plots.save_figure(fig, tmp_path / "rama.png"), min_width=1000)


def test_the_page_s_pseudo_ramachandran_axes(dompdb_files: list[Path], tmp_path: Path) -> None:
    """Consecutive Cα pseudo-torsions (the default axes) put the CATH chains' helix cluster where
    the Mini-Fold page draws it, ~(50°, 50°); the angles equal biotite's dihedrals of the same
    Cα atoms, and biotite's Cα-based helix residues sit in that cluster."""
    import biotite.structure as struc

    reference = _ca(dompdb_files)
    first, second = plots.pseudo_torsion_pairs(reference)
    hist, xe, ye = np.histogram2d(first, second, bins=36, range=[[-180, 180], [-180, 180]])
    i, j = np.unravel_index(hist.argmax(), hist.shape)
    centre = np.array([xe[i] + 5.0, ye[j] + 5.0])  # 10° bins
    assert np.linalg.norm(centre - np.array([50.0, 50.0])) <= 15.0, centre

    ca = reference[0].numpy()
    atoms = struc.array([struc.Atom(c, atom_name="CA", element="C", res_id=k + 1, res_name="ALA",
                                    chain_id="A") for k, c in enumerate(ca)])  # fmt: skip
    want = np.degrees(struc.dihedral(atoms[:-3], atoms[1:-2], atoms[2:-1], atoms[3:]))
    got_first, got_second = plots.pseudo_torsion_pairs(reference[0])
    np.testing.assert_allclose(got_first, want[:-1], atol=1e-3)  # biotite works in float32
    np.testing.assert_allclose(got_second, want[1:], atol=1e-3)

    helix = struc.annotate_sse(atoms)[2:-2] == "a"  # residues 2..n-3 have both τᵢ₋₁ and τᵢ
    assert helix.sum() > 20
    assert np.all(np.abs(np.median(np.stack([got_first, got_second])[:, helix], axis=1) - 50.0) < 10.0)

    fig = plots.pseudo_ramachandran_figure({"reference": reference})
    assert "pseudo-torsion τᵢ₋₁ (°)" in _texts(fig) and "pseudo-torsion τᵢ (°)" in _texts(fig)
    assert "pseudo-bond angle θ (°)" in _texts(
        plots.pseudo_ramachandran_figure({"r": reference}, axes="tau-theta")
    )
    with pytest.raises(PtkError, match="tau-tau"):
        plots.pseudo_ramachandran_figure({"r": reference}, axes="phi-psi")


def test_pseudo_ramachandran_accepts_batches_masks_and_empty_sets() -> None:
    ca = torch.cumsum(torch.randn(2, 20, 3, dtype=torch.float64), dim=1) * 2
    mask = torch.ones(2, 20, dtype=torch.bool)
    mask[1, 10] = False  # breaks the second chain: 3 fewer θ/τ … and τ of residue 7
    theta, _ = plots.pseudo_ramachandran_angles((ca, mask))
    assert len(theta) == 17 + 17 - 4
    fig = plots.pseudo_ramachandran_figure({"batch": ca, "empty": []})
    assert "empty (0 residues)" in _texts(fig)


def test_chi_density_from_real_structures(dompdb_files: list[Path], tmp_path: Path) -> None:
    chis, masks = [], []
    for path in dompdb_files:
        chain = read_chains(path).chains[0]
        chi, mask = G.chi_angles(
            torch.from_numpy(chain.positions),
            torch.from_numpy(chain.mask),
            torch.from_numpy(chain.aatype.astype(np.int64)),
        )
        chis.append(chi)
        masks.append(mask)
    chi, mask = torch.cat(chis), torch.cat(masks)
    fig = plots.chi_density_figure({"dompdb": (chi, mask), "dompdb χ2/χ3": (chi, mask)}, chis=(0, 1))
    n = int((mask[:, 0] & mask[:, 1]).sum())
    assert f"dompdb ({n:,} residues)" in _texts(fig)
    assert "χ1 (°)" in _texts(fig) and "χ2 (°)" in _texts(fig)
    _check_png(plots.save_figure(fig, tmp_path / "chi.png"))


def test_contact_map_from_real_structures(eval_reference: Path, tmp_path: Path) -> None:
    pred = read_ca(eval_reference / "pred" / "1o7iB00_noise1.5.pdb.gz")
    ref = read_ca(eval_reference / "ref" / "1o7iB00_noise1.5.pdb.gz")
    distances = G.pairwise_distances(torch.from_numpy(pred.coords))
    prob = torch.sigmoid(1.5 * (8.0 - distances))
    fig = plots.contact_map_figure(prob, ref.coords, title="1o7iB00")
    scores = contact_metrics(prob, torch.from_numpy(ref.coords))
    text = _texts(fig)
    assert f"precision {float(scores['precision']):.3f}" in text
    assert f"recall {float(scores['recall']):.3f}" in text
    assert f"top-L long-range accuracy {float(scores['top_l_long']):.3f}" in text
    _check_png(plots.save_figure(fig, tmp_path / "contacts.png"), min_width=1000)
    with pytest.raises(PtkError):
        plots.contact_map_figure(prob[:-1, :-1], ref.coords)


def _write_run(folder: Path, version: str, scale: float, seed: int) -> Path:
    """A run folder in the RUN_FOLDER contract's format (metrics.csv + config.json)."""
    rng = np.random.default_rng(seed)
    epochs = np.arange(1, 21)
    train = scale * (2.0 * np.exp(-epochs / 6) + 0.3) + rng.normal(0, 0.01, 20)
    val = 1.1 * train + 0.05
    best = int(np.argmin(val))
    folder.mkdir(parents=True)
    frame = pd.DataFrame({
        "epoch": epochs, "train_fape": 0.6 * train, "val_fape": 0.6 * val,
        "train_loss": train, "val_loss": val, "lr": 1e-3, "skipped_batches": 0, "wall_time_s": 3.0,
        "status": ["NEW BEST" if i <= best else f"pat {i - best}" for i in range(20)],
        "ddim_tm": [0.3 + 0.01 * i if i % 5 == 4 else math.nan for i in range(20)],
    })  # fmt: skip
    frame.to_csv(folder / "metrics.csv", index=False)
    (folder / "config.json").write_text(f'{{"version": "{version}", "family": "minifold"}}')
    return folder


def test_loss_curves_of_several_runs(tmp_path: Path) -> None:
    runs = [
        _write_run(tmp_path / f"run{i}", v, s, i) for i, (v, s) in enumerate((("v12", 1.0), ("v13", 0.8)))
    ]
    fig = plots.loss_curves_figure(runs, terms=["loss", "fape", "ddim_tm"])
    assert [ax.get_title() for ax in fig.axes] == ["loss", "fape", "ddim_tm"]
    labels = [t.get_text() for t in fig.axes[-1].get_legend().get_texts()]
    assert labels[:2] == ["v12", "v13"]
    assert fig.axes[0].get_yscale() == "log"
    # 2 runs × (train, val) + best-epoch markers
    assert len([line for line in fig.axes[0].lines if line.get_linestyle() in ("-", "--")]) == 4
    _check_png(plots.save_figure(fig, tmp_path / "losses.png"), min_width=1000)
    frame = plots.read_metrics(runs[0])
    assert frame.attrs["label"] == "v12"
    linear = plots.loss_curves_figure({"a": frame}, log=False)
    assert linear.axes[0].get_yscale() == "linear"
    with pytest.raises(PtkError):
        plots.read_metrics(tmp_path / "missing")
