"""qFitLatent: invariance, the von Mises mixture against scipy, the README loss against a
loop-written reference, symmetric folding, masks, degenerate gradients, parameter count."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

from ptk.errors import ConfigError
from ptk.geometry import chi_symmetric
from ptk.models.qfitlatent import (
    QFitLatentConfig,
    build_model,
    chi_accuracy,
    compute_loss,
    count_parameters,
    mixture_from_outputs,
    parameter_table,
    qfit_nll,
)
from ptk.models.rigid import Rigid, random_rigid
from ptk.models.vonmises import (
    VonMisesMixture,
    circular_residual,
    log_i0,
    mixture_log_prob,
    von_mises_log_prob,
)

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_batch(lengths=(10, 7), n_alt: int = 3, seed: int = 0, dtype=torch.float32) -> dict:
    """A synthetic ``collate_qfit`` batch: chain-like Cα trace, random frames, 1–3 altlocs."""
    g = gen(seed)
    b, n = len(lengths), max(lengths)
    residue_mask = torch.arange(n)[None] < torch.tensor(lengths)[:, None]
    aatype = torch.randint(0, 21, (b, n), generator=g)
    steps = torch.randn(b, n, 3, generator=g, dtype=dtype)
    steps = 3.8 * steps / steps.norm(dim=-1, keepdim=True)
    trans = steps.cumsum(1)
    rot = random_rigid((b, n), g, dtype=dtype).rot
    n_obs = torch.randint(1, n_alt + 1, (b, n), generator=g)
    altloc_mask = (torch.arange(n_alt)[None, None] < n_obs[..., None]) & residue_mask[..., None]
    occ = torch.rand(b, n, n_alt, generator=g, dtype=dtype) * altloc_mask
    occ = occ / occ.sum(-1, keepdim=True).clamp(min=1e-9)
    chi = (torch.rand(b, n, n_alt, 4, generator=g, dtype=dtype) * 2 - 1) * math.pi
    defined = torch.rand(b, n, 1, 4, generator=g) < 0.7
    chi_mask = defined & altloc_mask[..., None]
    chi = torch.where(chi_mask, chi, torch.zeros_like(chi))
    d_eff = chi_mask.any(2).sum(-1)
    valid = residue_mask & (n_obs >= 2) & (d_eff >= 1)
    return {
        "id": [f"x{i}" for i in range(b)], "length": torch.tensor(lengths), "residue_mask": residue_mask,
        "aatype": aatype * residue_mask, "frame_rot": rot, "frame_trans": trans * residue_mask[..., None],
        "frame_mask": residue_mask.clone(), "chi": chi, "chi_mask": chi_mask, "altloc_mask": altloc_mask,
        "occupancy": occ, "chi_symmetric": chi_symmetric(aatype) & residue_mask[..., None],
        "n_obs": n_obs * residue_mask, "d_eff": d_eff * residue_mask, "valid": valid,
    }  # fmt: skip


def tiny_model(dtype=F64, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(QFitLatentConfig.tiny()).to(dtype).eval()
    with torch.no_grad():  # zero-initialised output layers would make the invariance test vacuous
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen(seed + 1), dtype=p.dtype))
    return model


def moved(batch: dict, rigid: Rigid) -> dict:
    out = dict(batch)
    out["frame_rot"] = rigid.rot @ batch["frame_rot"]
    out["frame_trans"] = rigid.apply(batch["frame_trans"])
    return out


# --------------------------------------------------------------------------- config, size
def test_default_config_is_the_readme_and_parameter_count(capsys: pytest.CaptureFixture[str]) -> None:
    c = QFitLatentConfig()
    assert (c.d_s, c.d_z, c.n_blocks, c.n_heads, c.c_head, c.n_qk_points, c.n_v_points) == (
        128,
        32,
        8,
        4,
        8,
        4,
        8,
    )
    assert (c.n_components, c.n_chi, c.kappa_min, c.dropout) == (5, 4, 0.01, 0.2)
    model = build_model(c)
    n = count_parameters(model)
    table = parameter_table(model)
    with capsys.disabled():
        print(f"\nqFitLatent default: {n:,} parameters; {table}")
    assert n == sum(p.numel() for p in model.parameters()) == table["total"]
    assert sum(v for k, v in table.items() if k != "total") == n
    assert 0.9e6 < n < 1.2e6  # 8 IPA blocks of d_s 128 ≈ 124k each


def test_config_is_strict() -> None:
    with pytest.raises(ConfigError, match="allowed"):
        QFitLatentConfig.from_dict({"d_s": 8, "bogus": 1})
    with pytest.raises(ConfigError):
        QFitLatentConfig(dropout=1.5)
    with pytest.raises(ConfigError):
        QFitLatentConfig(n_blocks=0)
    assert QFitLatentConfig.from_dict(QFitLatentConfig.tiny().to_dict()) == QFitLatentConfig.tiny()
    assert build_model({"d_s": 8, "d_z": 4}).config.d_s == 8


# --------------------------------------------------------------------------- invariance
def test_outputs_invariant_to_rigid_motions() -> None:
    model = tiny_model()
    batch = make_batch(dtype=F64)
    out = model(batch)
    for seed in (1, 2):
        g = random_rigid((), gen(seed), translation_scale=30.0, dtype=F64)
        out2 = model(moved(batch, g))
        for key in ("log_pi", "mu", "kappa"):
            torch.testing.assert_close(out2[key], out[key], atol=1e-6, rtol=0)
    # per-protein motions too, and the loss
    g = random_rigid((2, 1), gen(3), dtype=F64)
    torch.testing.assert_close(compute_loss(model, moved(batch, g))[0], compute_loss(model, batch)[0])
    # but a change of the internal geometry is seen
    other = dict(batch, frame_trans=batch["frame_trans"] * 1.3)
    assert (model(other)["mu"] - out["mu"]).abs().max() > 1e-3


def test_outputs_invariant_fp32() -> None:
    model = tiny_model(torch.float32)
    batch = make_batch(seed=4)
    g = random_rigid((), gen(5), translation_scale=30.0)
    for key in ("log_pi", "mu", "kappa"):
        torch.testing.assert_close(model(moved(batch, g))[key], model(batch)[key], atol=1e-4, rtol=0)


# --------------------------------------------------------------------------- von Mises
@pytest.mark.parametrize("kappa", [0.01, 0.5, 4.0, 60.0, 2000.0])
def test_von_mises_density_integrates_to_one(kappa: float) -> None:
    m = 200_001
    x = torch.linspace(-math.pi, math.pi, m, dtype=F64)
    p = von_mises_log_prob(x, torch.tensor(0.7, dtype=F64), torch.tensor(kappa, dtype=F64)).exp()
    integral = torch.trapezoid(p, x)
    assert abs(integral.item() - 1) < 1e-6


def test_mixture_density_integrates_to_one_on_torus() -> None:
    k, m = 3, 801
    log_pi = torch.log_softmax(torch.randn(k, generator=gen(6), dtype=F64), -1)
    mu = (torch.rand(k, 2, generator=gen(7), dtype=F64) * 2 - 1) * math.pi
    kappa = torch.tensor([[0.3, 5.0], [12.0, 1.0], [2.0, 40.0]], dtype=F64)
    x = torch.linspace(-math.pi, math.pi, m, dtype=F64)
    grid = torch.stack(torch.meshgrid(x, x, indexing="ij"), -1)  # [m, m, 2]
    p = mixture_log_prob(log_pi, mu, kappa, grid).exp()
    integral = torch.trapezoid(torch.trapezoid(p, x, dim=-1), x)
    assert abs(integral.item() - 1) < 1e-6


def test_log_i0_matches_scipy_and_stays_finite() -> None:
    k = torch.tensor([1e-4, 0.01, 1.0, 30.0, 700.0, 1e5, 1e8], dtype=F64, requires_grad=True)
    expected = np.log(scipy.special.i0e(k.detach().numpy())) + k.detach().numpy()
    np.testing.assert_allclose(log_i0(k).detach().numpy(), expected, rtol=1e-10, atol=1e-15)
    log_i0(k).sum().backward()
    assert torch.isfinite(k.grad).all()


def test_one_component_nll_equals_scipy() -> None:
    x = np.array([0.3, -2.9, 3.1, 1.0])
    mu = np.array([-0.4, 2.8, -3.0, 1.0])
    kappa = np.array([0.05, 2.0, 17.0, 300.0])
    mix = VonMisesMixture(
        torch.zeros(1, 1, 1, dtype=F64),
        torch.tensor(mu)[None, None, None],
        torch.tensor(kappa)[None, None, None],
    )  # [b=1, n=1, k=1, d=4]
    # one residue, one altloc (occupancy 1), every χ defined: NLL = −Σ_d scipy logpdf
    loss, _ = qfit_nll(
        mix, torch.tensor(x)[None, None, None], torch.ones(1, 1, 1, 4, dtype=torch.bool),
        torch.ones(1, 1, 1, dtype=F64), torch.zeros(1, 1, 4, dtype=torch.bool),
        torch.ones(1, 1, dtype=torch.bool),
    )  # fmt: skip
    expected = -scipy.stats.vonmises.logpdf(x, kappa, loc=mu).sum()
    assert abs(loss.item() - expected) < 1e-10
    for d in range(4):  # and per χ
        single = von_mises_log_prob(torch.tensor(x[d]), torch.tensor(mu[d]), torch.tensor(kappa[d]))
        assert abs(single.item() - scipy.stats.vonmises.logpdf(x[d], kappa[d], loc=mu[d])) < 1e-10


def reference_loss(batch: dict, out: dict) -> float:
    """The README formula written with loops, scipy's von Mises and an explicit fold."""
    total, count = 0.0, 0
    log_pi, mu, kappa = (out[k].detach().numpy() for k in ("log_pi", "mu", "kappa"))
    b, n, a_max, d_max = batch["chi"].shape
    for b_i in range(b):
        for i in range(n):
            if not batch["valid"][b_i, i]:
                continue
            count += 1
            for a in range(a_max):
                o = float(batch["occupancy"][b_i, i, a])
                if not batch["altloc_mask"][b_i, i, a] or o == 0:
                    continue
                comps = []
                for k in range(log_pi.shape[-1]):
                    lp = log_pi[b_i, i, k]
                    for d in range(d_max):
                        if not batch["chi_mask"][b_i, i, a, d]:
                            continue
                        delta = float(batch["chi"][b_i, i, a, d]) - mu[b_i, i, k, d]
                        if batch["chi_symmetric"][b_i, i, d]:
                            delta = 0.5 * math.atan2(math.sin(2 * delta), math.cos(2 * delta))
                        # scipy's logpdf at the residual (loc 0) = the README's density
                        lp += scipy.stats.vonmises.logpdf(delta, kappa[b_i, i, k, d])
                    comps.append(lp)
                total -= o * scipy.special.logsumexp(comps)
    return total / max(count, 1)


def test_loss_matches_loop_reference() -> None:
    model = tiny_model()
    batch = make_batch(lengths=(9, 6), seed=8, dtype=F64)
    batch["chi_symmetric"] = (
        torch.rand(batch["chi_symmetric"].shape, generator=gen(9)) < 0.5
    )  # exercise folding
    loss, terms = compute_loss(model, batch)
    assert batch["valid"].sum() >= 4
    assert abs(loss.item() - reference_loss(batch, model(batch))) < 1e-9
    assert set(terms) >= {"nll"} and all(k.startswith(("nll", "chi_acc_")) for k in terms)


def test_symmetric_folding() -> None:
    delta = torch.linspace(-10, 10, 2001, dtype=F64)
    folded = circular_residual(delta, torch.ones_like(delta, dtype=torch.bool))
    assert folded.min() > -math.pi / 2 - 1e-12 and folded.max() <= math.pi / 2 + 1e-12
    torch.testing.assert_close(torch.cos(2 * folded), torch.cos(2 * delta))
    assert circular_residual(
        torch.tensor(math.pi / 2, dtype=F64), torch.tensor(True)
    ).item() == pytest.approx(math.pi / 2)
    assert circular_residual(torch.tensor(1.5 * math.pi, dtype=F64)).item() == pytest.approx(-math.pi / 2)

    model = tiny_model()
    batch = make_batch(seed=10, dtype=F64)
    for sym in (True, False):
        b = dict(batch, chi_symmetric=torch.full_like(batch["chi_symmetric"], sym))
        flipped = dict(b, chi=b["chi"] + math.pi)
        la, lb = compute_loss(model, b)[0], compute_loss(model, flipped)[0]
        if sym:
            torch.testing.assert_close(la, lb)
        else:
            assert abs(la - lb) > 1e-3


# --------------------------------------------------------------------------- masks
def test_padding_residues_altlocs_and_undefined_chi_change_nothing() -> None:
    model = tiny_model()
    batch = make_batch(lengths=(10, 7), seed=11, dtype=F64)
    out, (loss, _) = model(batch), compute_loss(model, batch)
    garbage = dict(batch)
    pad = ~batch["residue_mask"]
    garbage["aatype"] = torch.where(pad, 5, batch["aatype"])
    garbage["frame_trans"] = torch.where(
        pad[..., None], torch.full_like(batch["frame_trans"], float("nan")), batch["frame_trans"]
    )
    garbage["frame_rot"] = torch.where(pad[..., None, None], 7.0, batch["frame_rot"])
    no_alt = ~batch["altloc_mask"]
    garbage["chi"] = torch.where(
        ~batch["chi_mask"], torch.full_like(batch["chi"], float("nan")), batch["chi"]
    )
    garbage["chi_mask"] = batch["chi_mask"] | (
        no_alt[..., None] & (torch.rand(batch["chi"].shape, generator=gen(12)) < 0.5)
    )
    garbage["chi"] = torch.where(no_alt[..., None], 1.234, garbage["chi"])
    garbage["valid"] = batch["valid"]
    out2, (loss2, _) = model(garbage), compute_loss(model, garbage)
    real = batch["residue_mask"]
    for key in ("log_pi", "mu", "kappa"):
        torch.testing.assert_close(out2[key][real], out[key][real])
    torch.testing.assert_close(loss2, loss)
    # the 7-residue protein alone gives the same outputs as inside the padded batch
    single = {k: (v[1:2, :7] if torch.is_tensor(v) and v.dim() >= 2 else v) for k, v in batch.items()}
    single["length"] = batch["length"][1:]
    torch.testing.assert_close(model(single)["mu"][0], out["mu"][1, :7])


def test_valid_set_selects_residues() -> None:
    model = tiny_model()
    batch = make_batch(seed=13, dtype=F64)
    _, per_residue = qfit_nll(
        mixture_from_outputs(model(batch)),
        batch["chi"],
        batch["chi_mask"],
        batch["occupancy"],
        batch["chi_symmetric"],
        batch["valid"],
        batch["altloc_mask"],
    )
    assert torch.all(per_residue[~batch["valid"]] == 0)
    assert torch.all(per_residue[batch["valid"]] != 0)


# --------------------------------------------------------------------------- gradients
def test_finite_gradients_large_kappa_and_empty_masks() -> None:
    model = build_model(QFitLatentConfig.tiny()).double()
    with torch.no_grad():
        model.linear_kappa.bias.fill_(1e7)  # κ ≈ 1e7: log I0 must not overflow
    batch = make_batch(seed=14, dtype=F64)
    loss, _ = compute_loss(model, batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)

    model.zero_grad()
    empty = dict(batch, valid=torch.zeros_like(batch["valid"]))
    loss, terms = compute_loss(model, empty)
    loss.backward()
    assert loss.item() == 0 and not any(k.startswith("chi_acc") for k in terms)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)

    # a protein with every residue masked out (no keys at all) stays finite too
    model.zero_grad()
    none = dict(batch, residue_mask=torch.zeros_like(batch["residue_mask"]))
    loss, _ = compute_loss(model, none)
    loss.backward()
    assert loss.item() == 0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_coincident_frames_have_finite_gradients() -> None:
    model = tiny_model()
    batch = make_batch(seed=15, dtype=F64)
    batch["frame_trans"] = torch.zeros_like(batch["frame_trans"])  # every Cα at one point
    batch["frame_rot"] = torch.eye(3, dtype=F64).expand_as(batch["frame_rot"]).clone()
    loss, _ = compute_loss(model, batch)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# --------------------------------------------------------------------------- mixture API
def test_modes_sampling_and_accuracy() -> None:
    log_pi = torch.log(torch.tensor([[0.2, 0.7, 0.1]], dtype=F64))
    mu = torch.tensor([[[0.0, 1.0], [2.0, -1.0], [-2.0, 3.0]]], dtype=F64)
    kappa = torch.full((1, 3, 2), 50.0, dtype=F64)
    mix = VonMisesMixture(log_pi, mu, kappa)
    torch.testing.assert_close(mix.modes(), mu[:, 1])
    torch.manual_seed(0)
    x = mix.sample((4000,))
    assert x.shape == (4000, 1, 2) and x.abs().max() <= math.pi
    near = [((x[:, 0] - mu[0, k]).abs() < 0.6).all(-1).float().mean().item() for k in range(3)]
    assert near == pytest.approx([0.2, 0.7, 0.1], abs=0.03)
    # one component: the samples follow scipy's von Mises cdf
    single = VonMisesMixture(
        torch.zeros(1, 1, dtype=F64), torch.tensor([[[0.5]]], dtype=F64), torch.tensor([[[2.0]]], dtype=F64)
    )
    s = single.sample((3000,))[:, 0, 0].numpy()
    assert scipy.stats.kstest(s, scipy.stats.vonmises(2.0, loc=0.5).cdf).pvalue > 1e-3
    # symmetric χ: half the samples land a half-turn away
    sym = single.sample((3000,), symmetric=torch.tensor([[True]]))[:, 0, 0]
    flipped = (circular_residual(sym - 0.5).abs() > math.pi / 2).double().mean().item()
    assert flipped == pytest.approx(0.5, abs=0.05)
    # log_prob with an altloc axis broadcasts the residue's mixture
    chi = torch.randn(1, 4, 2, generator=gen(16), dtype=F64)
    lp = mix.log_prob(chi)
    torch.testing.assert_close(lp[0, 2], mix.log_prob(chi[:, 2])[0])

    batch = {"chi": mu[:, None, 1:2].expand(1, 1, 1, 2).clone(),
             "chi_mask": torch.ones(1, 1, 1, 2, dtype=torch.bool), "occupancy": torch.ones(1, 1, 1),
             "chi_symmetric": torch.zeros(1, 1, 2, dtype=torch.bool),
             "valid": torch.ones(1, 1, dtype=torch.bool)}  # fmt: skip
    one = VonMisesMixture(log_pi[None], mu[None], kappa[None])
    hits, counts = chi_accuracy(one, batch)
    assert hits.tolist() == [1.0, 1.0] and counts.tolist() == [1.0, 1.0]
    batch["chi"] = batch["chi"] + math.radians(25)
    assert chi_accuracy(one, batch)[0].tolist() == [0.0, 0.0]


def test_tiny_training_step_reduces_loss() -> None:
    torch.manual_seed(0)
    model = build_model(QFitLatentConfig.tiny()).train()
    batch = make_batch(seed=17)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(30):
        loss, _ = compute_loss(model, batch)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first - 0.1
