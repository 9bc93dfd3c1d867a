"""Geometry against biotite on every real file, analytic cases, and degenerate input."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import biotite.structure as bs
import biotite.structure.io.pdb as biotite_pdb
import numpy as np
import pytest
import torch

from ptk import geometry as G
from ptk.structure import Chain, read_chains

ANGLE_TOL = 1e-4  # rad, the tolerance vs biotite


def _tensors(chain: Chain) -> tuple[torch.Tensor, torch.Tensor]:
    pos = torch.from_numpy(chain.positions).double()
    mask = torch.from_numpy(chain.mask)
    return torch.where(mask[..., None], pos, torch.nan), mask


def _biotite_chain(path: Path, chain_name: str) -> bs.AtomArray:
    """The chain as biotite reads it, with ptk's primary-conformer rule applied independently:
    blank atoms plus, per residue, the altloc of highest mean heavy-atom occupancy (first on ties)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 66-column dompdb files: biotite guesses elements
        atoms = biotite_pdb.PDBFile.read(path).get_structure(
            model=1, altloc="all", extra_fields=["occupancy"]
        )
    keep = (atoms.element != "H") & bs.filter_amino_acids(atoms) & (atoms.chain_id == chain_name)
    atoms = atoms[keep]
    chosen = np.isin(atoms.altloc_id, ["", " ", "."])
    starts = bs.get_residue_starts(atoms, add_exclusive_stop=True)
    for start, stop in zip(starts[:-1], starts[1:], strict=True):
        alt, occ = atoms.altloc_id[start:stop], atoms.occupancy[start:stop]
        labels = list(dict.fromkeys(a for a in alt if a.strip(" .")))
        if labels:
            best = max(labels, key=lambda a: round(float(occ[alt == a].mean()), 4))
            chosen[start:stop] |= alt == best
    return atoms[chosen]


def _assert_same_angles(ours: torch.Tensor, mask: torch.Tensor, reference: np.ndarray, what: str) -> None:
    ref = np.asarray(reference, dtype=np.float64)
    defined = ~np.isnan(ref)
    np.testing.assert_array_equal(mask.numpy(), defined, err_msg=f"{what}: defined sets differ")
    diff = np.angle(np.exp(1j * (ours.numpy()[defined] - ref[defined])))
    assert np.abs(diff).max(initial=0.0) < ANGLE_TOL, f"{what}: max deviation {np.abs(diff).max()}"


def _pdb_files(shared_data: Path) -> list[Path]:
    dompdb = sorted((shared_data / "cath" / "dompdb").iterdir())
    qfit = sorted((shared_data / "qfit" / "qfit_models").glob("*.pdb"))
    return dompdb + qfit


def test_backbone_and_chi_match_biotite_on_every_real_file(shared_data: Path) -> None:
    files = _pdb_files(shared_data)
    assert len(files) >= 30
    checked = 0
    for path in files:
        parsed = read_chains(path)
        for chain in parsed.chains:
            reference = _biotite_chain(path, chain.name)
            ref_res_ids = bs.get_residues(reference)[0]
            if len(ref_res_ids) != len(chain):
                # biotite splits residues by (res_id, ins_code); ptk too. A mismatch means a
                # non-amino-acid group classified differently: skip with a visible reason.
                pytest.fail(f"{path.name} {chain.name}: {len(chain)} residues vs biotite {len(ref_res_ids)}")
            pos, mask = _tensors(chain)
            d = G.backbone_dihedrals(pos[:, 0], pos[:, 1], pos[:, 2])
            phi, psi, omega = bs.dihedral_backbone(reference)
            _assert_same_angles(d["phi"], d["phi_mask"], phi, f"{path.name} phi")
            _assert_same_angles(d["psi"], d["psi_mask"], psi, f"{path.name} psi")
            _assert_same_angles(d["omega"], d["omega_mask"], omega, f"{path.name} omega")
            chi, chi_mask = G.chi_angles(pos, mask, torch.from_numpy(chain.aatype))
            _assert_same_angles(chi, chi_mask, bs.dihedral_side_chain(reference), f"{path.name} chi")
            checked += 1
    assert checked >= 30


def test_frames_follow_the_qfitlatent_convention(dompdb_files: list[Path]) -> None:
    for path in dompdb_files:
        chain = read_chains(path).chains[0]
        pos, _ = _tensors(chain)
        n, ca, c = pos[:, 0], pos[:, 1], pos[:, 2]
        rot, trans, valid = G.backbone_frames(n, ca, c)
        assert valid.any()
        r, t = rot[valid], trans[valid]
        eye = torch.eye(3, dtype=r.dtype).expand_as(r)
        torch.testing.assert_close(r.transpose(-1, -2) @ r, eye, atol=1e-9, rtol=0)
        torch.testing.assert_close(torch.linalg.det(r), torch.ones(len(r), dtype=r.dtype), atol=1e-9, rtol=0)
        ca_local, c_local, n_local = (
            (r.transpose(-1, -2) @ (p[valid] - t)[..., None])[..., 0] for p in (ca, c, n)
        )
        torch.testing.assert_close(ca_local, torch.zeros_like(t), atol=1e-9, rtol=0)
        assert (c_local[:, 0] > 0).all()
        torch.testing.assert_close(c_local[:, 1:], torch.zeros_like(c_local[:, 1:]), atol=1e-9, rtol=0)
        assert (n_local[:, 1] > 0).all()
        torch.testing.assert_close(n_local[:, 2], torch.zeros_like(n_local[:, 2]), atol=1e-9, rtol=0)


def test_dihedral_of_a_constructed_quadruple_is_exactly_90_degrees() -> None:
    p = torch.tensor([[1.0, 0, 0], [0, 0, 0], [0, 0, 1], [0, 1, 1]], dtype=torch.float64)
    angle, valid = G.dihedral(*p)
    assert valid
    # Looking down p1→p2 (+z), the front bond (+x) turns clockwise onto the back bond (+y):
    # IUPAC makes that +90°.
    assert angle.item() == pytest.approx(math.pi / 2, abs=1e-12)
    mirrored, _ = G.dihedral(*(p * torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)))
    assert mirrored.item() == pytest.approx(-math.pi / 2, abs=1e-12)


def test_bond_angle_and_pseudo_angles_analytic() -> None:
    # A planar zig-zag with 120° angles has pseudo-torsions of exactly 180°.
    ca = torch.tensor(
        [[0.0, 0, 0], [1, 0, 0], [1.5, math.sqrt(3) / 2, 0], [2.5, math.sqrt(3) / 2, 0]], dtype=torch.float64
    )
    theta, theta_mask = G.pseudo_bond_angles(ca)
    tau, tau_mask = G.pseudo_torsions(ca)
    assert theta_mask.tolist() == [False, True, True, False]
    assert tau_mask.tolist() == [False, True, False, False]
    torch.testing.assert_close(theta[1:3], torch.full((2,), 2 * math.pi / 3, dtype=torch.float64))
    assert abs(tau[1].item()) == pytest.approx(math.pi, abs=1e-9)


def test_contact_map_matches_numpy_distances(dompdb_files: list[Path]) -> None:
    chain = read_chains(dompdb_files[0]).chains[0]
    ca = chain.positions[:, 1].astype(np.float64)
    reference = np.linalg.norm(ca[:, None] - ca[None], axis=-1) < 8.0
    ours = G.contact_map(torch.from_numpy(ca))
    np.testing.assert_array_equal(ours.numpy(), reference)


def test_kabsch_recovers_a_known_rigid_motion(dompdb_files: list[Path]) -> None:
    gen = torch.Generator().manual_seed(0)
    chain = read_chains(dompdb_files[4]).chains[0]
    x = torch.from_numpy(chain.positions[:, 1]).double()
    q = torch.randn(4, generator=gen, dtype=torch.float64)
    q = q / q.norm()
    w, i, j, k = q
    rot = torch.tensor(
        [
            [1 - 2 * (j * j + k * k), 2 * (i * j - k * w), 2 * (i * k + j * w)],
            [2 * (i * j + k * w), 1 - 2 * (i * i + k * k), 2 * (j * k - i * w)],
            [2 * (i * k - j * w), 2 * (j * k + i * w), 1 - 2 * (i * i + j * j)],
        ],
        dtype=torch.float64,
    )
    trans = torch.randn(3, generator=gen, dtype=torch.float64) * 20
    y = x @ rot.T + trans
    rot_fit, trans_fit = G.kabsch(x, y)
    torch.testing.assert_close(rot_fit, rot, atol=1e-9, rtol=0)
    torch.testing.assert_close(trans_fit, trans, atol=1e-7, rtol=0)
    assert G.rmsd(x, y).item() < 1e-5
    # Batched, weighted: outliers with zero weight do not move the fit.
    y_bad = y.clone()
    y_bad[:5] += 50.0
    weights = torch.ones(len(x), dtype=torch.float64)
    weights[:5] = 0
    rot_b, _ = G.kabsch(
        torch.stack([x, x]), torch.stack([y, y_bad]), torch.stack([torch.ones_like(weights), weights])
    )
    torch.testing.assert_close(rot_b[1], rot, atol=1e-9, rtol=0)


def test_kabsch_never_reflects() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(20, 3, generator=gen, dtype=torch.float64)
    mirror = x * torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)
    rot, _ = G.kabsch(x, mirror)
    assert torch.linalg.det(rot).item() == pytest.approx(1.0, abs=1e-9)


def test_degenerate_input_gives_finite_values_masks_and_gradients() -> None:
    # Coincident, collinear and missing atoms.
    n = torch.tensor([[0.0, 0, 0], [0, 0, 0], [1, 0, 0], [float("nan")] * 3], requires_grad=True)
    ca = torch.tensor([[0.0, 0, 0], [1, 0, 0], [2, 0, 0], [0, 0, 0]], requires_grad=True)
    c = torch.tensor([[0.0, 0, 0], [2, 0, 0], [3, 0, 0], [1, 0, 0]], requires_grad=True)
    rot, trans, valid = G.backbone_frames(n, ca, c)
    assert not valid.any()
    assert torch.isfinite(rot).all()
    torch.testing.assert_close(rot, torch.eye(3).expand(4, 3, 3))
    d = G.backbone_dihedrals(n, ca, c)
    assert not d["phi_mask"].any() and not d["psi_mask"].any()
    angle, ok = G.dihedral(n, ca, c, c)
    assert not ok.any()
    loss = rot.sum() + angle.sum() + d["psi"].sum() + G.pairwise_distances(ca).sum()
    loss = loss + G.rmsd(ca, ca).sum() + G.pseudo_bond_angles(c)[0].sum()
    loss.backward()
    for t in (n, ca, c):
        assert torch.isfinite(t.grad).all()


def test_chi_mask_on_broken_input(dompdb_files: list[Path]) -> None:
    chain = read_chains(dompdb_files[4]).chains[0]
    pos, mask = _tensors(chain)
    chi, chi_mask = G.chi_angles(pos, mask, torch.from_numpy(chain.aatype))
    has_chi1 = chi_mask[:, 0].nonzero()[0, 0]
    mask = mask.clone()
    mask[has_chi1, 3] = False  # drop CB: every χ of that residue goes
    chi2, chi_mask2 = G.chi_angles(pos, mask, torch.from_numpy(chain.aatype))
    assert not chi_mask2[has_chi1].any()
    assert chi2[has_chi1].abs().sum() == 0
    others = torch.ones(len(chain), dtype=torch.bool)
    others[has_chi1] = False
    torch.testing.assert_close(chi2[others], chi[others])


def test_geometry_is_batched_over_leading_dimensions(dompdb_files: list[Path]) -> None:
    chains = [read_chains(p).chains[0] for p in dompdb_files[:2]]
    n = min(len(c) for c in chains)
    pos = torch.stack([_tensors(c)[0][:n] for c in chains])
    mask = torch.stack([_tensors(c)[1][:n] for c in chains])
    aatype = torch.stack([torch.from_numpy(c.aatype[:n]) for c in chains])
    chi_b, m_b = G.chi_angles(pos, mask, aatype)
    for i in range(2):
        chi_i, m_i = G.chi_angles(pos[i], mask[i], aatype[i])
        torch.testing.assert_close(chi_b[i], chi_i)
        assert torch.equal(m_b[i], m_i)


def test_torsion_angles_in_one_call_equal_the_separate_functions(dompdb_files: list[Path]) -> None:
    chain = read_chains(dompdb_files[4]).chains[0]
    pos, mask = _tensors(chain)
    aatype = torch.from_numpy(chain.aatype)
    together = G.torsion_angles(pos, mask, aatype)
    backbone = G.backbone_dihedrals(pos[:, 0], pos[:, 1], pos[:, 2])
    chi, chi_mask = G.chi_angles(pos, mask, aatype)
    for name in ("phi", "psi", "omega"):
        torch.testing.assert_close(together[name], backbone[name], atol=0, rtol=0)
        assert torch.equal(together[f"{name}_mask"], backbone[f"{name}_mask"])
    torch.testing.assert_close(together["chi"], chi, atol=0, rtol=0)
    assert torch.equal(together["chi_mask"], chi_mask)
