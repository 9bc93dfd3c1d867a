"""ptk.metrics against the TM-score program, biotite and hand-checked cases."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ptk import metrics as M
from ptk.errors import PtkError


@pytest.fixture(scope="module")
def reference(shared_data: Path) -> tuple[Path, dict[str, dict[str, float]]]:
    folder = shared_data / "eval_reference"
    if not (folder / "reference.json").is_file():
        pytest.skip("eval_reference not found")
    return folder, json.loads((folder / "reference.json").read_text())


@pytest.fixture(scope="module")
def reference_table(reference):
    folder, values = reference
    names = sorted(values)
    frame = M.evaluate_pairs(
        [folder / "pred" / f"{n}.pdb.gz" for n in names], [folder / "ref" / f"{n}.pdb.gz" for n in names]
    )
    return frame.set_index("name"), values


def _batch(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n = max(len(p) for p, _ in pairs)
    pred = torch.full((len(pairs), n, 3), math.nan, dtype=torch.float64)
    ref = torch.full((len(pairs), n, 3), math.nan, dtype=torch.float64)
    mask = torch.zeros(len(pairs), n, dtype=torch.bool)
    for i, (p, r) in enumerate(pairs):
        pred[i, : len(p)] = torch.as_tensor(p)
        ref[i, : len(r)] = torch.as_tensor(r)
        mask[i, : len(p)] = True
    return pred, ref, mask


def _load_pairs(reference, names: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    folder, _ = reference
    out = []
    for name in names:
        pred = M.read_ca(folder / "pred" / f"{name}.pdb.gz")
        ref = M.read_ca(folder / "ref" / f"{name}.pdb.gz")
        paired = M.pair_residues(pred, ref)
        out.append((paired.pred_xyz[paired.mask], paired.ref_xyz[paired.mask]))
    return out


# ---------------------------------------------------------------------------------------------
# the TM-score program's numbers


@pytest.mark.slow
def test_all_reference_pairs_match_the_tmscore_program(reference_table) -> None:
    """Issue 4 acceptance: RMSD within 0.01 Å, TM within 0.005, GDT-TS/HA within 0.01 of what
    the TM-score program printed, on all 120 pairs (GDT in reference.json are fractions)."""
    frame, values = reference_table
    assert len(frame) == len(values) == 120
    assert frame["error"].isna().all()
    worst = {}
    for name, want in values.items():
        got = frame.loc[name]
        assert int(got["n_common"]) == want["n_common"]
        for key, tolerance in (("rmsd", 0.01), ("tm", 0.005), ("gdt_ts", 0.01), ("gdt_ha", 0.01)):
            deviation = abs(float(got[key]) - want[key])
            worst[key] = max(worst.get(key, 0.0), deviation)
            assert deviation <= tolerance, (name, key, float(got[key]), want[key])
    # Tighter: the program's values are reproduced to its printed rounding (4 decimals for TM
    # and GDT, 3 for RMSD), i.e. the same search, not an approximation of it.
    assert worst["tm"] <= 5.1e-5 and worst["gdt_ts"] <= 5.1e-5 and worst["gdt_ha"] <= 5.1e-5, worst
    assert worst["rmsd"] <= 5.1e-4, worst


def test_hinge_motion_needs_the_search(reference) -> None:
    """A single global fit under-reports TM for a hinge; the search recovers the program's value."""
    _, values = reference
    name = "1a04A02_hinge75"
    [(pred, ref)] = _load_pairs(reference, [name])
    pred_t, ref_t = torch.as_tensor(pred), torch.as_tensor(ref)
    rot, trans = M.G.kabsch(pred_t, ref_t)
    d = (M.G.apply_transform(rot, trans, pred_t) - ref_t).norm(dim=-1)
    global_tm = float((1 / (1 + (d / M.tm_d0(len(ref))) ** 2)).sum() / len(ref))
    searched = float(M.tm_score(pred_t[None], ref_t[None], torch.ones(1, len(ref), dtype=torch.bool))[0])
    assert global_tm < values[name]["tm"] - 0.05
    assert searched == pytest.approx(values[name]["tm"], abs=1e-4)


def test_batch_composition_does_not_change_scores(reference) -> None:
    _, values = reference
    names = ["1a1hA01_noise1.5", "1o7iB00_hinge30", "1c0pA01_noise3.0", "2j7jA03_noise6.0", "1hdoA00_hinge75"]
    pairs = _load_pairs(reference, names)
    together = M.superposition_search(*_batch(pairs))
    for i, pair in enumerate(pairs):
        alone = M.superposition_search(*_batch([pair]))
        assert torch.equal(alone["gdt_counts"][0], together["gdt_counts"][i])
        assert float(alone["tm"][0]) == pytest.approx(float(together["tm"][i]), abs=1e-12)
        assert float(alone["tm"][0]) == pytest.approx(values[names[i]]["tm"], abs=1e-4)


def test_small_memory_budget_gives_the_same_result(reference) -> None:
    pairs = _load_pairs(reference, ["1a1hA01_noise3.0", "1au7A02_hinge30", "1avyA00_noise1.5"])
    default = M.superposition_search(*_batch(pairs), backend="torch")
    tiny = M.superposition_search(*_batch(pairs), max_elements=1, backend="torch")
    assert torch.equal(default["gdt_counts"], tiny["gdt_counts"])
    assert torch.allclose(default["tm"], tiny["tm"], atol=1e-12)


def test_identity_and_rigid_motion(reference) -> None:
    [(_, ref)] = _load_pairs(reference, ["1fseB00_noise0.5"])
    ref_t = torch.as_tensor(ref)
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    q = q * torch.sign(torch.linalg.det(q))
    moved = ref_t @ q.T + torch.tensor([10.0, -4.0, 7.5], dtype=torch.float64)
    mask = torch.ones(1, len(ref), dtype=torch.bool)
    scores = M.score_batch(moved[None], ref_t[None], mask)
    assert float(scores["tm"][0]) == pytest.approx(1.0, abs=1e-9)
    assert float(scores["gdt_ts"][0]) == pytest.approx(1.0) and float(scores["gdt_ha"][0]) == pytest.approx(
        1.0
    )
    assert float(scores["rmsd"][0]) < 1e-5
    assert float(scores["lddt"][0]) == pytest.approx(1.0)


def test_tm_parameters() -> None:
    assert M.tm_d0(15) == 0.5 and M.tm_d0(10) == 0.5 and M.tm_d0(21) == 0.5
    assert M.tm_d0(100) == pytest.approx(1.24 * 85 ** (1 / 3) - 1.8)
    assert torch.allclose(
        M.tm_d0(torch.tensor([10.0, 100.0])), torch.tensor([0.5, 1.24 * 85 ** (1 / 3) - 1.8]).double()
    )
    # TMscore.f: L, L/2, L/4, ... stopping at 4, at most six lengths
    assert M.seed_lengths(80) == [80, 40, 20, 10, 5, 4]
    assert M.seed_lengths(200) == [200, 100, 50, 25, 12, 4]
    assert M.seed_lengths(8) == [8, 4]
    assert M.seed_lengths(3) == [3]
    distances = M.search_distances(torch.tensor([100.0, 300.0]), torch.tensor([100.0, 300.0]))
    assert distances[0].tolist() == pytest.approx([4.5, 4.5])  # both below 4.5, clamped
    assert distances[1].tolist() == pytest.approx([M.tm_d0(300.0) + 0.8, M.tm_d0(300.0)])


# ---------------------------------------------------------------------------------------------
# the two implementations of the search: compiled (CPU default) and batched torch

needs_native = pytest.mark.skipif(
    not M.native_search_available(), reason="ptk._tmsearch was not built (no C compiler at install)"
)


def _assert_same_search(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], names) -> None:
    mismatch = [
        n for n, x, y in zip(names, a["gdt_counts"], b["gdt_counts"], strict=True) if not torch.equal(x, y)
    ]
    assert not mismatch, mismatch
    assert torch.allclose(a["tm"], b["tm"], rtol=0.0, atol=1e-9), (a["tm"] - b["tm"]).abs().max()


@needs_native
@pytest.mark.slow
@pytest.mark.parametrize("seed_step", [1, 8])
def test_native_and_torch_searches_agree_on_all_reference_pairs(reference, seed_step: int) -> None:
    """The compiled kernel and the torch path are two implementations of one search: the same
    maxima (TM to 1e-9, GDT counts exactly) on all 120 real pairs, whole and with coarse seeds."""
    _, values = reference
    names = sorted(values)
    batch = _batch(_load_pairs(reference, names))
    native = M.superposition_search(*batch, seed_step=seed_step, backend="native")
    slow = M.superposition_search(*batch, seed_step=seed_step, backend="torch")
    _assert_same_search(native, slow, names)


@needs_native
def test_native_search_edge_cases_agree_with_torch() -> None:
    """Tiny chains (fewer residues than the kept-set minimum), collinear and coincident points,
    identical structures, padding and a pair with no common residue."""
    g = torch.Generator().manual_seed(7)
    cases = []
    for n in (1, 2, 3, 4, 5, 9, 17):
        ref = torch.cumsum(torch.randn(n, 3, generator=g, dtype=torch.float64) * 2.2, dim=0)
        cases.append((ref + 0.4 * torch.randn(n, 3, generator=g, dtype=torch.float64), ref))
    line = torch.arange(12, dtype=torch.float64)[:, None] * torch.tensor([3.8, 0.0, 0.0])
    cases.append((line + torch.tensor([0.0, 5.0, 1.0]), line))  # collinear
    cases.append((torch.zeros(6, 3, dtype=torch.float64), torch.zeros(6, 3, dtype=torch.float64)))
    ref = torch.cumsum(torch.randn(40, 3, generator=g, dtype=torch.float64) * 2.2, dim=0)
    cases.append((ref.clone(), ref))
    pred, refs, mask = _batch([(p.numpy(), r.numpy()) for p, r in cases])
    mask[3, 1] = False  # a gap among the common residues
    mask = torch.cat([mask, torch.zeros(1, mask.shape[1], dtype=torch.bool)])
    pred, refs = torch.cat([pred, pred[:1]]), torch.cat([refs, refs[:1]])
    native = M.superposition_search(pred, refs, mask, backend="native")
    slow = M.superposition_search(pred, refs, mask, backend="torch")
    _assert_same_search(native, slow, list(range(len(mask))))
    assert float(native["tm"][-2]) == pytest.approx(1.0, abs=1e-12)  # identical structures
    assert float(native["tm"][-1]) == 0.0 and int(native["n_common"][-1]) == 0


@needs_native
def test_native_search_is_the_same_on_any_number_of_threads(reference) -> None:
    names = ["1a1hA01_noise1.5", "1o7iB00_hinge30", "1c0pA01_noise3.0", "2j7jA03_noise6.0", "1hdoA00_hinge75"]
    batch = _batch(_load_pairs(reference, names))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = M.superposition_search(*batch, backend="native")
        torch.set_num_threads(3)
        three = M.superposition_search(*batch, backend="native")
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one["gdt_counts"], three["gdt_counts"]) and torch.equal(one["tm"], three["tm"])


def test_search_backend_choice(monkeypatch) -> None:
    pred = torch.randn(1, 6, 3, dtype=torch.float64)
    mask = torch.ones(1, 6, dtype=torch.bool)
    with pytest.raises(ValueError, match="unknown backend"):
        M.superposition_search(pred, pred, mask, backend="fortran")
    expected = "native" if M.native_search_available() else "torch"
    assert M.search_backend(torch.device("cpu")) == expected
    assert M.search_backend(torch.device("cuda")) == "torch"
    monkeypatch.setenv("PTK_TMSEARCH", "torch")
    assert M.search_backend(torch.device("cpu")) == "torch"
    if not M.native_search_available():
        with pytest.raises(ValueError, match="native backend"):
            M.superposition_search(pred, pred, mask, backend="native")


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 9])
def test_tiny_chains_do_not_crash(n: int) -> None:
    g = torch.Generator().manual_seed(n)
    ref = torch.cumsum(torch.randn(1, n, 3, generator=g, dtype=torch.float64) * 2.2, dim=1)
    pred = ref + 0.3 * torch.randn(1, n, 3, generator=g, dtype=torch.float64)
    scores = M.score_batch(pred, ref, torch.ones(1, n, dtype=torch.bool))
    assert 0.0 < float(scores["tm"][0]) <= 1.0
    assert 0.0 <= float(scores["gdt_ts"][0]) <= 1.0


def test_pairs_without_common_residues_are_nan() -> None:
    pred = torch.randn(2, 5, 3, dtype=torch.float64)
    mask = torch.tensor([[True] * 5, [False] * 5])
    scores = M.score_batch(pred, pred.clone(), mask)
    assert float(scores["tm"][0]) == pytest.approx(1.0)
    assert all(math.isnan(float(scores[k][1])) for k in ("tm", "rmsd", "gdt_ts", "gdt_ha", "lddt"))
    assert int(scores["n_common"][1]) == 0


def test_single_metric_views_agree_with_score_batch(reference) -> None:
    pairs = _load_pairs(reference, ["1ufmA00_noise1.5", "1wzaA02_hinge30"])
    pred, ref, mask = _batch(pairs)
    scores = M.score_batch(pred, ref, mask)
    assert torch.allclose(M.tm_score(pred, ref, mask), scores["tm"])
    assert torch.allclose(M.gdt_ts(pred, ref, mask), scores["gdt_ts"])
    assert torch.allclose(M.gdt_ha(pred, ref, mask), scores["gdt_ha"])
    assert torch.allclose(M.rmsd(pred, ref, mask), scores["rmsd"])


def test_score_batch_on_float32_input(reference) -> None:
    pairs = _load_pairs(reference, ["1zjaA02_noise1.5"])
    pred, ref, mask = _batch(pairs)
    full = M.score_batch(pred, ref, mask)
    single = M.score_batch(pred.float(), ref.float(), mask)
    assert float(single["tm"][0]) == pytest.approx(float(full["tm"][0]), abs=1e-4)


@pytest.mark.gpu
def test_cuda_matches_cpu(reference) -> None:
    pairs = _load_pairs(reference, ["1a04A02_noise1.5", "1o7iB00_hinge30", "1hdoA00_noise3.0"])
    pred, ref, mask = _batch(pairs)
    cpu = M.score_batch(pred, ref, mask)
    gpu = M.score_batch(pred.cuda(), ref.cuda(), mask.cuda())
    for key in ("tm", "rmsd", "gdt_ts", "gdt_ha", "lddt"):
        assert torch.allclose(cpu[key], gpu[key].cpu(), atol=1e-6), key


# ---------------------------------------------------------------------------------------------
# lDDT


def _biotite_lddt(ref_xyz: np.ndarray, subject_xyz: np.ndarray) -> float:
    import biotite.structure as bs

    atoms = bs.AtomArray(len(ref_xyz))
    atoms.coord = ref_xyz.astype(np.float32)
    atoms.res_id = np.arange(1, len(ref_xyz) + 1)
    atoms.atom_name[:] = "CA"
    atoms.element[:] = "C"
    atoms.chain_id[:] = "A"
    return float(bs.lddt(atoms, subject_xyz.astype(np.float32)))


@pytest.mark.parametrize(
    "name", ["1a04A02_noise0.5", "1c0pA01_noise1.5", "1o7iB00_hinge30", "3uljB00_noise3.0", "1hdoA00_hinge75"]
)
def test_lddt_equals_biotite(reference, name: str) -> None:
    [(pred, ref)] = _load_pairs(reference, [name])
    want = _biotite_lddt(ref, pred)
    got = M.lddt(
        torch.as_tensor(pred.astype(np.float32)).double(), torch.as_tensor(ref.astype(np.float32)).double()
    )
    assert float(got) == pytest.approx(want, abs=1e-9)


def test_lddt_counts_missing_predicted_residues_as_lost(reference) -> None:
    [(pred, ref)] = _load_pairs(reference, ["1zjaA02_noise0.5"])
    pred = pred.copy()
    pred[10:20] = np.nan  # residues the model did not produce
    want = _biotite_lddt(ref, pred)
    mask = torch.as_tensor(np.isfinite(pred).all(-1))
    pred_t = torch.as_tensor(pred.astype(np.float32)).double()
    ref_t = torch.as_tensor(ref.astype(np.float32)).double()
    got = M.lddt(pred_t, ref_t, mask, torch.ones(len(ref), dtype=torch.bool))
    assert float(got) == pytest.approx(want, abs=1e-9)


# ---------------------------------------------------------------------------------------------
# contacts


def test_contact_metrics_hand_checked() -> None:
    """30 residues on a straight line 3.8 Å apart (no contact with |i−j| ≥ 3), except residue 29
    moved next to residue 0: true contacts with |i−j| ≥ 6 are exactly (0, 29) and (1, 29)
    (5 Å and √(3.8² + 5²) = 6.3 Å; residue 2 is at 9.1 Å)."""
    ca = torch.zeros(30, 3, dtype=torch.float64)
    ca[:, 0] = torch.arange(30) * 3.8
    ca[29] = torch.tensor([0.0, 5.0, 0.0])
    prob = torch.zeros(30, 30, dtype=torch.float64)
    prob[0, 29] = 0.9  # true positive
    prob[5, 20] = 0.8  # false positive (|i−j| = 15, 57 Å apart)
    prob[1, 29] = 0.3  # true contact below the threshold: a false negative, but ranked 2nd
    prob[0, 1] = prob[3, 5] = 1.0  # short range (|i−j| < 6): not counted
    out = {k: float(v) for k, v in M.contact_metrics(prob, ca).items()}
    assert out["n_true"] == 2 and out["n_predicted"] == 2
    assert out["precision"] == pytest.approx(0.5)  # 1 of the 2 predicted
    assert out["recall"] == pytest.approx(0.5)  # 1 of the 2 true
    # top-L (L = 30) long range |i−j| ≥ 24: only 6+5+4+3+2+1 = 21 such pairs exist, so all are
    # taken; (0, 29) and (1, 29) are true: 2 / 21.
    assert out["top_l_long"] == pytest.approx(2 / 21)
    assert out["top_l_ceiling"] == pytest.approx(2 / 21)  # only 2 true long-range contacts exist
    # top-L/5 = the 6 best long-range pairs: (0, 29) ranked 1st and (1, 29) 2nd, then 4 of the
    # zero-probability pairs in index order, none in contact: 2 / 6.
    assert out["top_l5_long"] == pytest.approx(2 / 6)
    # masking residue 29 removes both true contacts
    masked = M.contact_metrics(prob, ca, torch.arange(30) < 29)
    assert math.isnan(float(masked["recall"])) and float(masked["precision"]) == 0.0
    # batched input gives the same numbers
    batched = M.contact_metrics(torch.stack([prob, prob]), torch.stack([ca, ca]))
    assert batched["top_l_long"].tolist() == pytest.approx([2 / 21, 2 / 21])


def test_contact_metrics_of_the_truth_are_perfect(reference) -> None:
    [(_, ref)] = _load_pairs(reference, ["1o7iB00_noise0.5"])
    ca = torch.as_tensor(ref)
    truth = M.G.contact_map(ca).double()
    out = M.contact_metrics(truth, ca)
    assert float(out["precision"]) == 1.0 and float(out["recall"]) == 1.0


# ---------------------------------------------------------------------------------------------
# TM-align, pairing, names


def test_tm_align_wrapper(reference) -> None:
    from tmtools import tm_align

    folder, _ = reference
    pred = M.read_ca(folder / "pred" / "1au7A02_hinge30.pdb.gz")
    ref = M.read_ca(folder / "ref" / "1au7A02_hinge30.pdb.gz")
    out = M.tm_align(pred.coords, ref.coords, pred.sequence, ref.sequence)
    direct = tm_align(pred.coords, ref.coords, pred.sequence, ref.sequence)
    assert out["tm_align"] == pytest.approx(direct.tm_norm_chain2)
    assert out["tm_align_pred"] == pytest.approx(direct.tm_norm_chain1)
    assert 0 < out["n_aligned"] <= len(ref)
    # Sequence independent: a circular permutation of the prediction still aligns.
    shifted = np.roll(pred.coords, 10, axis=0)
    assert M.tm_align(torch.as_tensor(shifted), ref.coords)["tm_align"] > 0.3
    with pytest.raises(PtkError):
        M.tm_align(pred.coords[:2], ref.coords)


def test_structure_names() -> None:
    assert M.structure_name("a/1a04A02_noise0.5.pdb.gz") == "1a04A02_noise0.5"
    assert M.structure_name("1a04A02") == "1a04A02"
    assert M.structure_name("x.cif") == "x" and M.structure_name("X.CIF.GZ") == "X"
    assert M.structure_name("sample.1.pdb") == "sample.1"


def test_pair_residues_by_number_and_insertion_code() -> None:
    def trace(nums, icodes):
        coords = np.arange(len(nums) * 3, dtype=np.float64).reshape(-1, 3)
        return M.CaTrace(coords, np.array(nums), np.array(icodes), "A" * len(nums))

    pred = trace([1, 2, 2, 3, 7], ["", "", "A", "", ""])
    ref = trace([2, 2, 3, 4, 5], ["A", "", "", "", ""])
    paired = M.pair_residues(pred, ref)
    # rows: the five reference residues in order, then prediction residues 1 and 7 (unmatched)
    assert paired.mask.tolist() == [True, True, True, False, False, False, False]
    assert paired.ref_mask.tolist() == [True] * 5 + [False, False]
    assert paired.pred_mask.tolist() == [True, True, True, False, False, True, True]
    assert np.array_equal(paired.ref_xyz[:5], ref.coords)
    assert np.array_equal(paired.pred_xyz[0], pred.coords[2])  # 2A <-> 2A
    assert np.array_equal(paired.pred_xyz[1], pred.coords[1])  # 2 <-> 2
    assert np.array_equal(paired.pred_xyz[5:], pred.coords[[0, 4]])
    assert np.isnan(paired.pred_xyz[3:5]).all()
