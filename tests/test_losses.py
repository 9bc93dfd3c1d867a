"""Every loss of ``ptk.models.losses`` against an independent computation written here (loops in
float64 numpy, hand-computed cases, biotite's lDDT, scipy's rotations), plus masks, fp32 under
autocast, and finite gradients on degenerate input."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from ptk.models import losses as L
from ptk.residues import BACKBONE_INDICES


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _t(x: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64, requires_grad=grad)


def _kabsch_np(mobile: np.ndarray, target: np.ndarray) -> np.ndarray:
    """mobile moved onto target (plain numpy SVD, no weights)."""
    mc, tc = mobile.mean(0), target.mean(0)
    h = (mobile - mc).T @ (target - tc)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    rot = vt.T @ np.diag([1, 1, d]) @ u.T
    return (mobile - mc) @ rot.T + tc


def _log_softmax_np(x: np.ndarray) -> np.ndarray:
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


# ------------------------------------------------------------------------------------ Pallatom


def test_atom_loss_against_numpy_kabsch_and_masks() -> None:
    rng = _rng(1)
    gt = rng.normal(size=(30, 3)) * 5
    pred = gt @ Rotation.random(random_state=2).as_matrix().T + rng.normal(size=3) + rng.normal(size=(30, 3))
    aligned = _kabsch_np(gt, pred)
    ref = ((pred - aligned) ** 2).sum() / (3 * 30)
    assert L.atom_loss(_t(pred), _t(gt)).item() == pytest.approx(ref, rel=1e-9)
    # rigidly moved ground truth → 0
    moved = gt @ Rotation.random(random_state=3).as_matrix().T + 7.0
    assert L.atom_loss(_t(moved), _t(gt)).item() == pytest.approx(0.0, abs=1e-18)
    # masked points (NaN or junk) change nothing; L counts valid points only
    mask = np.ones(30, bool)
    mask[[3, 17]] = False
    gt_bad = gt.copy()
    gt_bad[3] = np.nan
    gt_bad[17] = 1e4
    ref_m = ((pred[mask] - _kabsch_np(gt[mask], pred[mask])) ** 2).sum() / (3 * 28)
    got = L.atom_loss(_t(pred), _t(gt_bad), torch.tensor(mask))
    assert got.item() == pytest.approx(ref_m, rel=1e-9)
    # batch dims: (2,) per example
    both = L.atom_loss(_t(np.stack([pred, moved])), _t(np.stack([gt, gt])))
    assert both.shape == (2,) and both[0].item() == pytest.approx(ref, rel=1e-9)


def test_atom_loss_gradient_only_through_prediction() -> None:
    rng = _rng(4)
    gt, pred = _t(rng.normal(size=(12, 3)), grad=True), _t(rng.normal(size=(12, 3)), grad=True)
    L.atom_loss(pred, gt).backward()
    assert gt.grad is None
    aligned = _kabsch_np(gt.detach().numpy(), pred.detach().numpy())
    expected = 2 * (pred.detach().numpy() - aligned) / (3 * 12)  # alignment held constant
    np.testing.assert_allclose(pred.grad.numpy(), expected, rtol=1e-8, atol=1e-12)


def _dist_ce_np(logits, target_idx, valid):
    logp = _log_softmax_np(logits)
    total, count = 0.0, 0
    for index in np.ndindex(*valid.shape):
        if valid[index]:
            total -= logp[index][target_idx[index]]
            count += 1
    return total / max(count, 1)


def test_distogram_loss_residue_onehot_index_and_mask() -> None:
    rng = _rng(5)
    n, nb = 7, 10
    logits = rng.normal(size=(n, n, nb))
    idx = rng.integers(0, nb, size=(n, n))
    onehot = np.eye(nb)[idx]
    full = _dist_ce_np(logits, idx, np.ones((n, n), bool))
    assert L.distogram_loss_residue(_t(logits), torch.tensor(idx)).item() == pytest.approx(full)
    assert L.distogram_loss_residue(_t(logits), _t(onehot)).item() == pytest.approx(full)
    mask = np.array([1, 1, 0, 1, 1, 1, 0], bool)
    ref = _dist_ce_np(logits, idx, mask[:, None] & mask[None, :])
    got = L.distogram_loss_residue(_t(logits), torch.tensor(idx), torch.tensor(mask))
    assert got.item() == pytest.approx(ref)
    batched = L.distogram_loss_residue(_t(logits[None]), _t(onehot[None]), torch.tensor(mask)[None])
    assert batched.shape == (1,)
    with pytest.raises(TypeError):
        L.distogram_loss_residue(_t(logits), _t(idx.astype(float)))
    with pytest.raises(ValueError):
        L.distogram_loss_residue(_t(logits), _t(onehot[..., :-1]))


def test_distogram_loss_atom_local_mask_and_negative_index() -> None:
    rng = _rng(6)
    b, n, k, nb = 2, 9, 5, 6
    logits = rng.normal(size=(b, n, k, nb))
    idx = rng.integers(0, nb, size=(b, n, k))
    local = rng.random((b, n, k)) > 0.3
    for bb in range(b):
        ref = _dist_ce_np(logits[bb], idx[bb], local[bb])
        got = L.distogram_loss_atom(_t(logits), torch.tensor(idx), torch.tensor(local))[bb]
        assert got.item() == pytest.approx(ref)
    # −1 index = masked slot; one-hot and index agree
    idx_neg = np.where(local, idx, -1)
    np.testing.assert_allclose(
        L.distogram_loss_atom(_t(logits), torch.tensor(idx_neg)).numpy(),
        L.distogram_loss_atom(_t(logits), _t(np.eye(nb)[idx]), torch.tensor(local)).numpy(),
    )
    unmasked = _dist_ce_np(logits[0], idx[0], np.ones((n, k), bool))
    assert L.distogram_loss_atom(_t(logits), torch.tensor(idx))[0].item() == pytest.approx(unmasked)


def _med_block_np(r, gt, logits, aa, lam, alpha, mask):
    aligned = _kabsch_np(gt[mask], r[mask])
    struct = ((r[mask] - aligned) ** 2).sum() / (3 * mask.sum())
    logp = _log_softmax_np(logits)
    ce = -np.mean([logp[i, aa[i]] for i in range(len(aa)) if mask[i]])
    return lam * struct + alpha * ce


def test_med_loss_per_block_and_gamma_weights() -> None:
    rng = _rng(7)
    n, a, kb = 15, 21, 3
    gt = rng.normal(size=(n, 3)) * 4
    blocks = [gt + rng.normal(size=(n, 3)) * s for s in (3.0, 2.0, 1.0)]
    logits = [rng.normal(size=(n, a)) for _ in range(kb)]
    aa = rng.integers(0, a, size=n)
    mask = np.ones(n, bool)
    mask[4] = False
    lam, alpha, gamma = 0.7, 0.25, 0.9
    per = [_med_block_np(r, gt, lg, aa, lam, alpha, mask) for r, lg in zip(blocks, logits, strict=True)]
    got = L.med_loss_per_block(_t(blocks[0]), _t(gt), _t(logits[0]), torch.tensor(aa), lam, alpha,
                               torch.tensor(mask))  # fmt: skip
    assert got.item() == pytest.approx(per[0], rel=1e-9)
    ref = (gamma**2 * per[0] + gamma * per[1] + per[2]) / 3
    total = L.med_loss([_t(r) for r in blocks], _t(gt), [_t(lg) for lg in logits], torch.tensor(aa),
                       lam, alpha, gamma=gamma, mask=torch.tensor(mask))  # fmt: skip
    assert total.shape == () and total.item() == pytest.approx(ref, rel=1e-9)
    with pytest.raises(ValueError):
        L.med_loss([_t(r) for r in blocks], _t(gt), [_t(lg) for lg in logits[:2]], torch.tensor(aa), lam, 1.0)
    with pytest.raises(ValueError):
        L.med_loss([], _t(gt), [], torch.tensor(aa), lam, alpha)


def _smooth_lddt_np(pred, true, mask, cutoff=15.0):
    n = len(pred)
    num = den = 0.0
    for l in range(n):  # noqa: E741
        for m in range(n):
            if l == m or not (mask[l] and mask[m]):
                continue
            d_true = np.linalg.norm(true[l] - true[m])
            if d_true >= cutoff:
                continue
            delta = abs(d_true - np.linalg.norm(pred[l] - pred[m]))
            eps = sum(1 / (1 + math.exp(-(t - delta))) for t in (0.5, 1, 2, 4)) / 4
            num += eps
            den += 1
    return 1 - num / den


def test_smooth_lddt_loop_reference_and_mask() -> None:
    rng = _rng(8)
    true = rng.normal(size=(25, 3)) * 6
    pred = true + rng.normal(size=(25, 3)) * 1.5
    mask = np.ones(25, bool)
    mask[[0, 9]] = False
    assert L.smooth_lddt_loss(_t(pred), _t(true)).item() == pytest.approx(
        _smooth_lddt_np(pred, true, np.ones(25, bool)), rel=1e-10
    )
    pred_junk = pred.copy()
    pred_junk[9] = 1e3
    got = L.smooth_lddt_loss(_t(pred_junk), _t(true), torch.tensor(mask))
    assert got.item() == pytest.approx(_smooth_lddt_np(pred, true, mask), rel=1e-10)
    batch = L.smooth_lddt_loss(_t(np.stack([pred, true])), _t(np.stack([true, true])))
    assert batch.shape == ()  # mean over the batch


@pytest.fixture(scope="module")
def dompdb_atoms(dompdb_files):
    import biotite.structure.io.pdb as pdb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        atoms = pdb.PDBFile.read(str(dompdb_files[0])).get_structure(model=1)
    return atoms[atoms.element != "H"]


def test_smooth_lddt_tends_to_biotite_lddt_with_sharp_sigmoids(dompdb_atoms) -> None:
    import biotite.structure as struc

    ref = dompdb_atoms
    subject = ref.coord + _rng(9).normal(size=ref.coord.shape).astype(np.float32) * 0.8
    hard = struc.lddt(ref, subject, exclude_same_residue=False)
    losses = [
        L.smooth_lddt_loss(_t(subject), _t(ref.coord.astype(np.float64)), sharpness=s).item()
        for s in (1.0, 30.0, 3000.0)
    ]
    assert abs(1 - losses[2] - hard) < 2e-3
    assert abs(1 - losses[2] - hard) < abs(1 - losses[1] - hard) < abs(1 - losses[0] - hard)


# ------------------------------------------------------------------------------------ Mini-Fold


def _frames(rng, n):
    rot = Rotation.random(n, random_state=int(rng.integers(1 << 30))).as_matrix()
    return rot, rng.normal(size=(n, 3)) * 5


def _fape_np(rp, tp, xp, rt, tt, xt, fm, pm, clamp, scale, eps=1e-4):
    total, count = 0.0, 0
    for f in range(len(rp)):
        for j in range(len(xp)):
            if fm[f] and pm[j]:
                a = rp[f].T @ (xp[j] - tp[f])
                b = rt[f].T @ (xt[j] - tt[f])
                d = math.sqrt(((a - b) ** 2).sum() + eps)
                total += min(d, clamp) if clamp is not None else d
                count += 1
    return total / count / scale


def test_fape_loop_reference_clamp_masks_and_invariance() -> None:
    rng = _rng(10)
    rt, tt = _frames(rng, 6)
    rp, tp = _frames(rng, 6)
    xt = rng.normal(size=(9, 3)) * 6
    xp = xt + rng.normal(size=(9, 3)) * 4
    fm = np.array([1, 1, 0, 1, 1, 1], bool)
    pm = np.array([1, 0, 1, 1, 1, 1, 1, 0, 1], bool)
    args = [_t(a) for a in (rp, tp, xp, rt, tt, xt)]
    for clamp in (10.0, 2.0, None):
        ref = _fape_np(rp, tp, xp, rt, tt, xt, fm, pm, clamp, 10.0)
        got = L.fape_loss(*args, torch.tensor(fm), torch.tensor(pm), clamp_distance=clamp)
        assert got.item() == pytest.approx(ref, rel=1e-10)
    # a global rigid motion of the prediction (frames and points) leaves FAPE unchanged
    g = Rotation.random(random_state=11).as_matrix()
    shift = np.array([3.0, -2.0, 9.0])
    moved = [_t(g @ rp), _t(tp @ g.T + shift), _t(xp @ g.T + shift)]
    torch.testing.assert_close(L.fape_loss(*moved, *args[3:]), L.fape_loss(*args))
    perfect = L.fape_loss(*args[3:], *args[3:], length_scale=1.0)
    assert perfect.item() == pytest.approx(math.sqrt(1e-4))


def test_frame_rotation_loss_against_scipy_angle() -> None:
    rng = _rng(12)
    rp = Rotation.random(8, random_state=13)
    rt = Rotation.random(8, random_state=14)
    theta = (rp.inv() * rt).magnitude()
    mask = np.array([1, 1, 1, 0, 1, 1, 0, 1], bool)
    ref = np.mean(1 - np.cos(theta[mask]))
    got = L.frame_rotation_loss(_t(rp.as_matrix()), _t(rt.as_matrix()), torch.tensor(mask))
    assert got.item() == pytest.approx(ref, rel=1e-10)
    # hand case: 90° about z → 1, 180° → 2, identity → 0
    rz = Rotation.from_euler("z", [[0], [90], [180]], degrees=True).as_matrix()
    per = [L.frame_rotation_loss(_t(r[None]), _t(np.eye(3)[None])).item() for r in rz]
    assert per == pytest.approx([0.0, 1.0, 2.0], abs=1e-12)
    del rng


def test_distance_mse_loop_reference() -> None:
    rng = _rng(15)
    xt, xp = rng.normal(size=(10, 3)) * 5, rng.normal(size=(10, 3)) * 5
    mask = np.ones(10, bool)
    mask[2] = False
    vals = [
        (np.linalg.norm(xp[i] - xp[j]) - np.linalg.norm(xt[i] - xt[j])) ** 2
        for i in range(10) for j in range(10) if i != j and mask[i] and mask[j]
    ]  # fmt: skip
    assert L.distance_mse_loss(_t(xp), _t(xt), torch.tensor(mask)).item() == pytest.approx(np.mean(vals))


def test_ca_bond_hand_cases_and_gaps() -> None:
    line = np.zeros((5, 3))
    line[:, 0] = np.arange(5) * 4.0
    assert L.ca_bond_loss(_t(line)).item() == pytest.approx(0.04)
    assert L.ca_bond_loss(_t(line), ideal=4.0).item() == pytest.approx(0.0, abs=1e-12)
    line[3:, 0] += 10.0  # a 14 Å jump between residue 2 and 3 ...
    gap = torch.tensor([1, 2, 3, 10, 11])  # ... which is a chain gap: skipped
    assert L.ca_bond_loss(_t(line), residue_index=gap).item() == pytest.approx(0.04)
    mask = torch.tensor([True, True, True, False, True])
    assert L.ca_bond_loss(_t(line), mask).item() == pytest.approx(0.04)
    assert L.ca_bond_loss(_t(line)).item() == pytest.approx((3 * 0.04 + 10.2**2) / 4)


def test_bond_weight_schedule() -> None:
    assert [L.bond_weight(e) for e in (0, 5, 10, 30)] == pytest.approx([1.0, 2.0, 3.0, 3.0])
    assert L.bond_weight(7.5, 1.0, 5.0, 15) == pytest.approx(3.0)


def _signed_vol_np(x):
    out = []
    for i in range(len(x) - 3):
        v1, v2, v3 = x[i + 1] - x[i], x[i + 2] - x[i + 1], x[i + 3] - x[i + 2]
        out.append(v1 @ np.cross(v2, v3) / (np.linalg.norm(v1) * np.linalg.norm(v2) * np.linalg.norm(v3)))
    return np.array(out)


def test_chirality_loop_reference_and_mirror() -> None:
    rng = _rng(16)
    t = np.arange(12) * 100 / 180 * math.pi
    helix = np.stack([2.3 * np.cos(t), 2.3 * np.sin(t), 1.5 * np.arange(12)], -1)
    pred = helix + rng.normal(size=helix.shape) * 0.5
    ref = np.mean((_signed_vol_np(pred) - _signed_vol_np(helix)) ** 2)
    assert L.chirality_loss(_t(pred), _t(helix)).item() == pytest.approx(ref, rel=1e-10)
    mirror = helix * np.array([1, 1, -1])
    expected = np.mean((2 * _signed_vol_np(helix)) ** 2)
    assert L.chirality_loss(_t(mirror), _t(helix)).item() == pytest.approx(expected, rel=1e-10)
    mask = np.ones(12, bool)
    mask[6] = False  # removes the quartets 3..6 (windows starting at 3, 4, 5, 6)
    keep = [i for i in range(9) if not (i <= 6 <= i + 3)]
    ref_m = np.mean(((_signed_vol_np(pred) - _signed_vol_np(helix)) ** 2)[keep])
    assert L.chirality_loss(_t(pred), _t(helix), torch.tensor(mask)).item() == pytest.approx(ref_m)


def test_bond_angle_hand_case_and_reference() -> None:
    zigzag = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [2, 1, 0]], float)  # 90° angles: cos 0
    straight = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]], float)  # cos −1
    assert L.bond_angle_loss(_t(zigzag), _t(straight)).item() == pytest.approx(1.0)
    assert L.bond_angle_loss(_t(zigzag), _t(straight), target_cos=-0.5).item() == pytest.approx(0.25)
    rng = _rng(17)
    xt, xp = rng.normal(size=(8, 3)), rng.normal(size=(8, 3))

    def cosines(x):
        return np.array([
            (x[i] - x[i + 1]) @ (x[i + 2] - x[i + 1])
            / (np.linalg.norm(x[i] - x[i + 1]) * np.linalg.norm(x[i + 2] - x[i + 1]))
            for i in range(len(x) - 2)
        ])  # fmt: skip

    ref = np.mean((cosines(xp) - cosines(xt)) ** 2)
    assert L.bond_angle_loss(_t(xp), _t(xt)).item() == pytest.approx(ref, rel=1e-10)


def test_radius_of_gyration_and_log_rg() -> None:
    rng = _rng(18)
    x = rng.normal(size=(20, 3)) * 4
    mask = np.ones(20, bool)
    mask[:3] = False
    xm = x[mask]
    rg = math.sqrt(((xm - xm.mean(0)) ** 2).sum(-1).mean())
    assert L.radius_of_gyration(_t(x), torch.tensor(mask)).item() == pytest.approx(rg)
    got = L.log_rg_loss(_t(np.array([10.0, 5.0])), _t(np.array([20.0, 5.0])), torch.tensor([True, False]))
    assert got.tolist() == pytest.approx([math.log(2) ** 2, 0.0])


def test_aux_distance_ce_loop_reference() -> None:
    rng = _rng(19)
    n = 9
    x = rng.normal(size=(n, 3)) * 12
    logits = rng.normal(size=(n, n, 32))
    mask = np.ones(n, bool)
    mask[5] = False
    width = 38 / 32
    logp = _log_softmax_np(logits)
    vals = []
    for i in range(n):
        for j in range(n):
            if i != j and mask[i] and mask[j]:
                d = np.linalg.norm(x[i] - x[j])
                b = min(max(int((d - 2.0) // width), 0), 31)
                vals.append(-logp[i, j, b])
    got = L.aux_distance_ce_loss(_t(logits), _t(x), torch.tensor(mask))
    assert got.item() == pytest.approx(np.mean(vals))
    assert L.distance_to_bins(torch.tensor([0.0, 2.0, 3.2, 39.9, 80.0])).tolist() == [0, 0, 1, 31, 31]


def test_clash_loop_reference() -> None:
    rng = _rng(20)
    n = 12
    x = rng.normal(size=(n, 3)) * 2.5
    contact = rng.random((n, n)) > 0.5
    vals = []
    for i in range(n):
        for j in range(n):
            if abs(i - j) >= 3:
                d = np.linalg.norm(x[i] - x[j])
                vals.append(((1 + 2 * contact[i, j]) * max(0.0, 3.0 - d)) ** 2)
    got = L.clash_loss(_t(x), contact=torch.tensor(contact))
    assert got.item() == pytest.approx(np.mean(vals))
    assert L.clash_loss(_t(x * 100)).item() == 0.0


# ------------------------------------------------------------------------------- v14 backbone


@pytest.fixture(scope="module")
def real_backbone(dompdb_files):
    from ptk.structure import read_chains

    chain = read_chains(dompdb_files[0]).chains[0]
    bb = chain.positions[:, list(BACKBONE_INDICES)].astype(np.float64)  # N, CA, C, O
    return bb, chain.mask[:, list(BACKBONE_INDICES)], chain.resnum.astype(np.int64)


def _dihedral_np(p0, p1, p2, p3):
    b0, b1, b2 = p0 - p1, p2 - p1, p3 - p2
    b1n = b1 / np.linalg.norm(b1)
    v = b0 - (b0 @ b1n) * b1n
    w = b2 - (b2 @ b1n) * b1n
    return math.atan2(np.cross(b1n, v) @ w, v @ w)


def _angle_np(a, b, c):
    u, v = a - b, c - b
    return math.acos(np.clip(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)), -1, 1))


def test_backbone_geometry_losses_on_a_real_domain(real_backbone) -> None:
    bb, am, resnum = real_backbone
    n = len(bb)
    ideal = L.IDEAL_BACKBONE_BONDS
    ideal_cos = [math.cos(math.radians(a)) for a in L.IDEAL_BACKBONE_ANGLES_DEG]
    bonds, angles, omegas = [], [], []
    for i in range(n):
        if am[i, 0] and am[i, 1]:
            bonds.append((np.linalg.norm(bb[i, 0] - bb[i, 1]) - ideal[0]) ** 2)
        if am[i, 1] and am[i, 2]:
            bonds.append((np.linalg.norm(bb[i, 1] - bb[i, 2]) - ideal[1]) ** 2)
        if am[i, 2] and am[i, 3]:
            bonds.append((np.linalg.norm(bb[i, 2] - bb[i, 3]) - ideal[3]) ** 2)
        if am[i, :3].all():
            angles.append((math.cos(_angle_np(*bb[i, :3])) - ideal_cos[0]) ** 2)
        if i + 1 < n and resnum[i + 1] - resnum[i] == 1:
            if am[i, 2] and am[i + 1, 0]:
                bonds.append((np.linalg.norm(bb[i, 2] - bb[i + 1, 0]) - ideal[2]) ** 2)
            if am[i, 1] and am[i, 2] and am[i + 1, 0]:
                angles.append((math.cos(_angle_np(bb[i, 1], bb[i, 2], bb[i + 1, 0])) - ideal_cos[1]) ** 2)
            if am[i, 2] and am[i + 1, 0] and am[i + 1, 1]:
                angles.append((math.cos(_angle_np(bb[i, 2], bb[i + 1, 0], bb[i + 1, 1])) - ideal_cos[2]) ** 2)
            if am[i, 1] and am[i, 2] and am[i + 1, 0] and am[i + 1, 1]:
                omegas.append(1 + math.cos(_dihedral_np(bb[i, 1], bb[i, 2], bb[i + 1, 0], bb[i + 1, 1])))
    x, m, ri = _t(np.nan_to_num(bb)), torch.tensor(am), torch.tensor(resnum)
    assert L.backbone_bond_loss(x, m, ri).item() == pytest.approx(np.mean(bonds), rel=1e-9)
    assert L.backbone_angle_loss(x, m, ri).item() == pytest.approx(np.mean(angles), rel=1e-9)
    assert L.omega_loss(x, m, ri).item() == pytest.approx(np.mean(omegas), rel=1e-9)
    # a real structure is near-ideal: bonds within ~0.03 Å, angles within a few degrees, trans ω
    assert np.mean(bonds) < 1e-3 and np.mean(angles) < 5e-3 and np.mean(omegas) < 0.05


def test_omega_hand_cases() -> None:
    # Cα_i, C_i, N_i+1, Cα_i+1 trans (ω = 180°) and cis (ω = 0°) as residues 0 and 1
    def two_residues(sign):
        bb = np.zeros((2, 4, 3))
        bb[0, 1] = [-1.0, 1.0, 0.0]  # CA_0
        bb[0, 2] = [0.0, 0.0, 0.0]  # C_0
        bb[1, 0] = [1.3, 0.0, 0.0]  # N_1
        bb[1, 1] = [2.3, sign * 1.0, 0.0]  # CA_1
        return _t(bb)

    assert L.omega_loss(two_residues(-1.0)).item() == pytest.approx(0.0, abs=1e-12)
    assert L.omega_loss(two_residues(+1.0)).item() == pytest.approx(2.0)


def test_backbone_fape_is_fape_over_flattened_atoms() -> None:
    rng = _rng(21)
    n = 5
    rt, tt = _frames(rng, n)
    rp, tp = _frames(rng, n)
    bt = rng.normal(size=(n, 4, 3)) * 5
    bp = bt + rng.normal(size=(n, 4, 3))
    am = rng.random((n, 4)) > 0.2
    ones = np.ones(n, bool)
    ref = _fape_np(rp, tp, bp.reshape(-1, 3), rt, tt, bt.reshape(-1, 3), ones, am.reshape(-1), 10.0, 10.0)
    got = L.backbone_fape_loss(_t(rp), _t(tp), _t(bp), _t(rt), _t(tt), _t(bt), atom_mask=torch.tensor(am))
    assert got.item() == pytest.approx(ref, rel=1e-10)


# --------------------------------------------------------------------- precision and degenerate


def _all_losses(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None):
    """Every loss on points ``x`` (prediction) / ``y`` [b, n, 3]; returns a list of tensors."""
    b, n, _ = x.shape
    rot = torch.eye(3, dtype=x.dtype).expand(b, n, 3, 3)
    bb = x[..., None, :].expand(b, n, 4, 3)
    bb_true = y[..., None, :].expand(b, n, 4, 3)
    am = None if mask is None else mask[..., None].expand(b, n, 4)
    logits = (x[..., :1, None] * 0 + 1).expand(b, n, n, 32) * x.sum()
    idx = torch.zeros(b, n, n, dtype=torch.long)
    aa_logits = x.sum(-1, keepdim=True).expand(b, n, 21)
    aa = torch.zeros(b, n, dtype=torch.long)
    return [
        L.atom_loss(x, y, mask),
        L.distogram_loss_residue(logits, idx, mask),
        L.distogram_loss_atom(logits, idx, None if mask is None else mask[..., None].expand(b, n, n)),
        L.med_loss_per_block(x, y, aa_logits, aa, 1.0, 0.5, mask),
        L.med_loss([x, x], y, [aa_logits, aa_logits], aa, 1.0, 0.5, mask=mask),
        L.smooth_lddt_loss(x, y, mask),
        L.fape_loss(rot, x, x, rot, y, y, mask, mask),
        L.frame_rotation_loss(rot * x[..., :1, None], rot * y[..., :1, None], mask),
        L.distance_mse_loss(x, y, mask),
        L.ca_bond_loss(x, mask),
        L.chirality_loss(x, y, mask),
        L.bond_angle_loss(x, y, mask),
        L.log_rg_loss(L.radius_of_gyration(x, mask), L.radius_of_gyration(y, mask)),
        L.log_rg_loss(L.radius_of_gyration(x), y[..., 0, 0], None if mask is None else mask[..., 0]),
        L.aux_distance_ce_loss(logits, y, mask),
        L.clash_loss(x, mask),
        L.backbone_fape_loss(rot, x, bb, rot, y, bb_true, mask, am),
        L.backbone_bond_loss(bb, am),
        L.backbone_angle_loss(bb, am),
        L.omega_loss(bb, am),
    ]


@pytest.mark.parametrize("case", ["coincident", "all_masked", "collinear"])
def test_finite_gradients_on_degenerate_input(case: str) -> None:
    b, n = 2, 6
    if case == "coincident":
        x = torch.zeros(b, n, 3, dtype=torch.float64, requires_grad=True)
        y, mask = torch.zeros(b, n, 3, dtype=torch.float64), None
    elif case == "collinear":
        line = torch.zeros(b, n, 3, dtype=torch.float64)
        line[..., 0] = torch.arange(n, dtype=torch.float64)
        x, y, mask = line.clone().requires_grad_(True), line, None
    else:
        x = torch.randn(b, n, 3, dtype=torch.float64, requires_grad=True)
        y = torch.full((b, n, 3), float("nan"), dtype=torch.float64)
        mask = torch.zeros(b, n, dtype=torch.bool)
    values = _all_losses(x, y, mask)
    total = sum(v.sum() for v in values)
    assert all(torch.isfinite(v).all() for v in values), [torch.isfinite(v).all().item() for v in values]
    total.backward()
    assert torch.isfinite(x.grad).all()


def test_losses_run_in_fp32_under_autocast() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 8, 3) * 4
    y = x + torch.randn(2, 8, 3)
    ref = _all_losses(x, y, None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = _all_losses(x.bfloat16(), y.bfloat16(), None)
    for r, g in zip(ref, got, strict=True):
        assert g.dtype == torch.float32
        torch.testing.assert_close(g, r, rtol=0.05, atol=0.05)
