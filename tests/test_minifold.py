"""Mini-Fold (ptk.models.minifold): the version registry, the page's sizes and loss tables,
training steps of every version, equivariance of the denoisers, the SNR gate, sampling and the
mixed-precision step of v13 (minifold_report_page.txt)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ptk.errors import ConfigError
from ptk.geometry import contact_map
from ptk.models import minifold
from ptk.models.minifold import registry
from ptk.models.minifold.config import VersionConfig, page_deviations
from ptk.models.minifold.contact_classifier import CATH_ARCHITECTURES, MASK, PAD, arch_index, tokenize
from ptk.models.minifold.frames import ca_frames, gated_frames
from ptk.models.optim import module_matches
from ptk.models.rigid import random_rigid, rotation_angle
from ptk.models.tasks import get_task
from ptk.residues import BACKBONE_INDICES
from ptk.structure import read_chains

VERSIONS = ("contact-classifier", "v10", "v11", "v11b", "v12", "v12b", "v13", "v14")
DENOISERS = VERSIONS[1:]


# ---------------------------------------------------------------------------------------------
# real data


def cath_batch(paths: list[Path], max_length: int | None = None) -> dict[str, torch.Tensor]:
    """A ``collate_cath``-shaped batch of real CATH domains, first ``max_length``
    residues of each. CATH labels are arbitrary valid codes, the last one unknown (−1)."""
    items = []
    for path in paths:
        chain = read_chains(path).chains[0]
        pos = np.where(chain.mask[..., None], chain.positions, np.nan)[:, list(BACKBONE_INDICES)]
        items.append((chain.aatype.astype(np.int64), pos)[:2])
    n = max(len(a[: max_length or None]) for a, _ in items)
    b = len(items)
    batch = {
        "aatype": torch.zeros(b, n, dtype=torch.long),
        "residue_mask": torch.zeros(b, n, dtype=torch.bool),
        "backbone": torch.zeros(b, n, 4, 3),
        "backbone_mask": torch.zeros(b, n, 4, dtype=torch.bool),
    }
    for i, (aatype, pos) in enumerate(items):
        aatype, pos = aatype[: max_length or None], torch.from_numpy(pos[: max_length or None]).float()
        m = len(aatype)
        batch["aatype"][i, :m] = torch.from_numpy(aatype)
        batch["residue_mask"][i, :m] = True
        ok = torch.isfinite(pos).all(-1)
        batch["backbone"][i, :m] = torch.nan_to_num(pos)
        batch["backbone_mask"][i, :m] = ok
    batch["contacts"] = contact_map(batch["backbone"][:, :, 1], batch["residue_mask"])
    labels = [(1, 10), (2, 60), (3, 40), (4, 10)]
    batch["cath_class"] = torch.tensor([labels[i % 4][0] for i in range(b)])
    batch["cath_architecture"] = torch.tensor([labels[i % 4][1] for i in range(b)])
    if b > 1:
        batch["cath_class"][-1] = -1
        batch["cath_architecture"][-1] = -1
    batch["length"] = batch["residue_mask"].sum(-1)
    return batch


@pytest.fixture(scope="module")
def dompdb(dompdb_files) -> dict[str, Path]:
    return {p.name: p for p in dompdb_files}


@pytest.fixture(scope="module")
def small_batch(dompdb) -> dict[str, torch.Tensor]:
    """Two real domains of different length (padding exercised): 24 and 20 residues."""
    batch = cath_batch([dompdb["1a04A02"], dompdb["1cf7B00"]], max_length=24)
    batch["residue_mask"][1, 20:] = False
    batch["backbone"][1, 20:] = 0
    batch["backbone_mask"][1, 20:] = False
    batch["contacts"] = contact_map(batch["backbone"][:, :, 1], batch["residue_mask"])
    return batch


def randomize(model: torch.nn.Module, seed: int = 0, std: float = 0.1) -> torch.nn.Module:
    """Random weights everywhere: the zero-initialised output layers would make a block the
    identity and an equivariance test vacuous."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


# ---------------------------------------------------------------------------------------------
# registry and configs


def test_registry_lists_every_version():
    assert tuple(minifold.list_versions()) == VERSIONS


@pytest.mark.parametrize("name", VERSIONS)
@pytest.mark.parametrize("size", ["default", "tiny"])
def test_every_version_resolves_typed_and_frozen(name, size):
    cfg = minifold.load_version(name, size)
    assert isinstance(cfg, VersionConfig) and cfg.name == name and cfg.size == size
    assert cfg.changes, "every version states what it changes"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model.encoder.dim = 7  # type: ignore[misc]
    assert cfg.train_config().ema_decay == 0.999
    # the saved form reloads to the same config
    assert VersionConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


@pytest.mark.parametrize("name", VERSIONS)
def test_every_size_resolves_and_freezes_the_stage1_encoder_of_its_size(name):
    """``small`` (CPU minutes, ``benchmarks/learning.py``) resolves like the others, and at every
    size a denoiser's encoder is its stage-1 model's (so ``load_encoder`` fits)."""
    small = minifold.load_version(name, "small")
    assert small.size == "small" and VersionConfig.from_dict(json.loads(json.dumps(small.to_dict()))) == small
    for size in ("default", "small", "tiny"):
        stage1 = minifold.load_version("contact-classifier", size).model.encoder
        assert minifold.load_version(name, size).model.encoder == stage1
    assert minifold.load_version(name, "tiny").model != small.model != minifold.load_version(name).model


def test_unknown_names_and_keys_are_config_errors():
    with pytest.raises(ConfigError, match="allowed: .*v13"):
        minifold.load_version("v99")
    with pytest.raises(ConfigError, match="allowed: default, small, tiny"):
        minifold.load_version("v13", "huge")
    data = minifold.load_version("v13").to_dict()
    data["model"]["denoiser"]["n_layerz"] = 8
    with pytest.raises(ConfigError, match="n_layerz.*allowed: .*n_layers"):
        VersionConfig.from_dict(data)
    data = minifold.load_version("v13").to_dict()
    data["train"]["learning_rate"] = 1.0
    with pytest.raises(ConfigError, match="learning_rate"):
        VersionConfig.from_dict(data)
    data = minifold.load_version("v13").to_dict()
    data["model"]["denoiser"]["kind"] = "transformer"
    with pytest.raises(ConfigError, match="allowed: egnn, ipa"):
        VersionConfig.from_dict(data)


@pytest.fixture
def version_dir(tmp_path, monkeypatch):
    """The registry reading a temporary versions folder (a copy of the real one)."""
    real = Path(registry.__file__).parent / "versions"
    for path in real.glob("*.toml"):
        (tmp_path / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")

    def clear():
        for fn in (registry.list_versions, registry.raw_version, registry._default_tree,
                   registry._size_overrides, registry.load_version):  # fmt: skip
            fn.cache_clear()

    clear()
    monkeypatch.setattr(registry, "_version_dir", lambda: tmp_path)
    yield tmp_path
    monkeypatch.undo()
    clear()


def test_a_toml_naming_an_unknown_key_is_a_config_error(version_dir):
    (version_dir / "v15.toml").write_text(
        '[version]\nparent = "v14"\nchanges = ["typo"]\n[model.pair_stack]\nn_blockz = 12\n', encoding="utf-8"
    )
    (version_dir / "v16.toml").write_text('[version]\nparent = "v14"\n[modle.denoiser]\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="n_blockz"):
        registry.load_version("v15")
    with pytest.raises(ConfigError, match="modle"):
        registry.load_version("v16")


def test_a_denoiser_toml_setting_the_encoder_is_a_config_error(version_dir):
    """The encoder's sizes belong to the stage-1 version (encoder_from): one place."""
    (version_dir / "v15.toml").write_text(
        '[version]\nparent = "v13"\nchanges = ["wider"]\n[small.model.encoder]\ndim = 96\n', encoding="utf-8"
    )
    with pytest.raises(ConfigError, match="contact-classifier.toml"):
        registry.load_version("v15", "small")


def test_a_child_toml_inherits_and_overrides(version_dir):
    (version_dir / "v15.toml").write_text(
        '[version]\nparent = "v13"\nchanges = ["deeper"]\n[model.denoiser]\nn_layers = 12\n'
        '[train]\nclip = { "*" = 2.0 }\n',
        encoding="utf-8",
    )
    child, parent = registry.load_version("v15"), registry.load_version("v13")
    assert child.model.denoiser.n_layers == 12 and child.model.pair_stack == parent.model.pair_stack
    assert child.train["clip"] == {"*": 2.0}  # a table replaces the parent's table
    assert child.train["lr_groups"] == parent.train["lr_groups"]
    assert registry.changed_keys("v15") == ["model.denoiser.n_layers: 8 -> 12",
                                            "train.clip: {'denoiser': 1.0, 'pair_stack': 0.5, "
                                            "'aux_pair': 0.5, '*': 1.0} -> {'*': 2.0}"]  # fmt: skip
    assert registry.load_version("v15", "tiny").model.denoiser.n_layers == 2  # tiny overrides inherited


def test_version_lineage_and_what_changed():
    parents = {name: minifold.load_version(name).parent for name in VERSIONS}
    assert parents == {"contact-classifier": None, "v10": None, "v11": "v10", "v11b": "v11",
                       "v12": "v11b", "v12b": "v12", "v13": "v12b", "v14": "v13"}  # fmt: skip
    v12, v12b, v13, v14 = (minifold.load_version(n) for n in ("v12", "v12b", "v13", "v14"))
    assert v12b.model == v12.model  # v12b is a training fix, not a new architecture
    changed = minifold.changed_keys("v13")
    assert "model.pair_stack.triangle: False -> True" in changed
    assert "model.pair_stack.rpe: 'linear' -> 'log'" in changed
    assert "model.diffusion.p_uncond: 0.0 -> 0.1" in changed
    assert dataclasses.replace(v14.model.denoiser, backbone_head=False) == v13.model.denoiser
    assert all(cfg.encoder_from == "contact-classifier" for cfg in map(minifold.load_version, DENOISERS))


def test_architectures_are_the_pages():
    a = {n: minifold.load_version(n).model for n in VERSIONS}
    assert a["v10"].denoiser.kind == "egnn" and a["v10"].denoiser.n_layers == 8
    d11 = a["v11"].denoiser
    assert (d11.kind, d11.n_layers, d11.n_heads, d11.n_qk_points, d11.d_single) == ("ipa", 6, 4, 4, 256)
    for name in ("v12", "v12b", "v13", "v14"):
        d = a[name].denoiser
        assert (d.n_layers, d.n_heads, d.n_qk_points, d.d_single, d.d_ffn) == (8, 8, 8, 512, 1024)
        assert d.frame_update_hidden > 0  # 2-layer frame update
    assert a["v11"].denoiser.frame_update_hidden == 0
    p12, p13 = a["v12"].pair_stack, a["v13"].pair_stack
    assert (p12.n_blocks, p12.triangle, p12.rpe, p12.max_rel_pos) == (4, False, "linear", 32)
    assert (p13.n_blocks, p13.triangle, p13.tri_mul_dim, p13.d_pair, p13.rpe) == (8, True, 64, 128, "log")
    assert (p13.rpe_bins, p13.rpe_max_sep, p13.rpe_sinusoidal) == (128, 512, 32)
    enc = a["contact-classifier"].encoder
    assert (enc.dim, enc.n_towers, enc.d_pair, enc.n_contact_blocks) == (128, 2, 64, 2)
    assert a["v10"].diffusion.coord_norm == "rg" and a["v11"].diffusion.coord_norm == "fixed"
    assert a["v11"].aux_pair.source == "independent" and a["v10"].aux_pair.source == "main_detached"
    assert (a["v11"].aux_pair.d_pair, a["v11"].aux_pair.n_bins, a["v10"].aux_pair.n_bins) == (64, 32, 96)
    assert a["v13"].diffusion.p_uncond == 0.1 and a["v13"].diffusion.self_cond_prob == 0.25
    assert a["v10"].diffusion.self_cond_prob == 0.5 and a["v11"].diffusion.self_cond_prob == 0.5
    assert all(a[n].diffusion.T == 1000 for n in DENOISERS)
    assert a["v14"].denoiser.backbone_head and not a["v13"].denoiser.backbone_head


# The page's loss tables ("v12b Loss Weights", v10/v11/v11b table, "Loss Functions").
PAGE_WEIGHTS = {
    #        fape  rot  dist bond_end clash aux   chir angle rg
    "v10": (0.3, 0.0, 1.0, 5.0, 0.0, 0.0, 0.1, 0.5, 0.5),
    "v11": (1.0, 0.0, 1.0, 3.0, 0.1, 0.03, 0.1, 0.5, 0.5),
    "v11b": (1.0, 0.5, 1.0, 3.0, 0.1, 0.03, 0.1, 0.5, 0.5),
    "v12": (1.0, 0.5, 1.0, 3.0, 0.1, 0.03, 0.1, 0.5, 0.5),
    "v12b": (1.0, 0.5, 1.0, 3.0, 0.1, 0.03, 0.1, 0.5, 0.5),
    "v13": (1.0, 0.5, 1.0, 3.0, 0.1, 0.03, 0.1, 0.5, 0.5),
    "v14": (1.0, 0.5, 1.0, 3.0, 0.1, 0.03, 0.1, 0.5, 0.5),
}


@pytest.mark.parametrize("name", DENOISERS)
def test_loss_weights_are_the_pages_tables(name):
    w = minifold.load_version(name).loss
    got = (w.fape, w.frame_rot, w.dist_mse, w.bond_end, w.clash, w.aux_dist, w.chirality, w.angle, w.rg)
    assert got == PAGE_WEIGHTS[name]
    # bond anneal β(e): v10 1 → 5 over 15 epochs, v11+ 1 → 3 over 10
    assert (w.bond_start, w.bond_anneal_epochs) == (1.0, 15.0 if name == "v10" else 10.0)
    assert w.fape_frames == ("gram_schmidt" if name in ("v10", "v11") else "learned")
    backbone = (w.bb_fape, w.bb_bond, w.bb_angle, w.omega)
    assert all(x > 0 for x in backbone) if name == "v14" else all(x == 0 for x in backbone)


def test_training_recipes_are_the_pages():
    t = {n: minifold.load_version(n).train for n in VERSIONS}
    assert (t["v10"]["lr"], t["v10"]["schedule"], t["v10"]["restart_epochs"]) == (1e-4, "cosine_restarts", 15)
    assert (t["v10"]["batch_size"], t["v10"]["grad_accum"]) == (8, 2)
    assert t["v11"]["lr"] == 5e-5 and t["v11b"]["lr"] == 2e-5 and t["v12"]["lr"] == 2e-5
    assert (t["v12"]["batch_size"], t["v12"]["grad_accum"], t["v12"]["sample_every"]) == (4, 4, 1)
    assert t["v12b"]["clip"] == {"denoiser": 1.0, "pair_stack": 0.5, "aux_pair": 0.5, "*": 1.0}
    assert t["v12b"]["lr_groups"] == {"pair_stack": 3.0} and t["v12b"]["tripwire_module"] == "pair_stack"
    v13 = t["v13"]
    assert v13["schedule"] == "warmup_constant_cosine"
    assert (v13["warmup_epochs"], v13["warmup_start_factor"], v13["constant_epochs"], v13["epochs"]) == (
        3,
        0.01,
        20,
        60,
    )
    assert (v13["min_lr"], v13["lr_groups"]) == (1e-6, {"pair_stack": 3.0, "aux_pair": 2.0})
    assert (v13["sample_every"], v13["sample_eta"], v13["sample_guidance"]) == (5, 0.3, 1.0)
    # the page samples at guidance 1.5: ptk's 1.0 is a listed deviation, the page's one --set away
    devs = {d.key: (d.page, value) for d, value in page_deviations(minifold.load_version("v13").to_dict())}
    assert devs["train.sample_guidance"] == (1.5, 1.0)
    task = get_task("v13", "default", {"sample_guidance": "1.5"})
    assert task.train.sample_guidance == 1.5
    assert "train.sample_guidance" not in {d.key for d, _ in page_deviations(task.model_config)}
    assert t["v14"]["lr_groups"]["backbone_head"] == 5.0
    cc = t["contact-classifier"]
    assert (cc["batch_size"], cc["lr"], cc["patience"], cc["schedule"]) == (24, 2e-4, 15, "warmup_cosine")
    assert all(t[n]["ema_decay"] == 0.999 for n in VERSIONS)


@pytest.mark.parametrize("name", VERSIONS)
def test_recipe_module_names_own_parameters(name):
    """Every LR group, clip entry and tripwire names a module of the built model (the page's v14
    bug: an LR group keyed on a path where the head was not)."""
    cfg = minifold.load_version(name)
    with torch.device("meta"):
        model = minifold.build_model(cfg)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    keys = [*cfg.train["lr_groups"], *cfg.train["clip"]]
    if cfg.train["tripwire_module"]:
        keys.append(cfg.train["tripwire_module"])
    for key in keys:
        assert key == "*" or any(module_matches(n, key) for n in names), key
    if name == "v14":
        assert any(n.startswith("denoiser.backbone_head.") for n in names)


# Page sizes (M parameters) and the tolerance this package holds itself to.
PAGE_PARAMS = {"contact-classifier": (1.2, 1.2), "v10": (14.6, 14.6), "v11b": (8.4, 8.4), "v12": (31.1, 31.1),
               "v12b": (31.1, 31.1), "v13": (35.0, 38.0), "v14": (35.0, 40.0)}  # fmt: skip
TOLERANCE = 0.15


@pytest.mark.parametrize("name", sorted(PAGE_PARAMS))
def test_default_parameter_counts_are_near_the_page(name):
    """Default sizes within ±15% of the page's count (inside the page's range for v13/v14); v12's
    frozen encoder is the page's 1.2M of its 31.1M."""
    cfg = minifold.load_version(name)
    with torch.device("meta"):
        model = minifold.build_model(cfg)
    total = sum(p.numel() for p in model.parameters()) / 1e6
    low, high = PAGE_PARAMS[name]
    assert low * (1 - TOLERANCE) <= total <= high * (1 + TOLERANCE), total
    if low != high:
        assert low <= total <= high, total
    if name in DENOISERS:
        frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad) / 1e6
        assert abs(frozen - 1.2) <= 1.2 * TOLERANCE
        assert all(not p.requires_grad for p in model.encoder.parameters())


def test_cath_architectures_are_those_of_the_cath42_split(shared_data):
    nodes = json.loads((shared_data / "cath" / "chain_set_splits.json").read_text())["cath_nodes"]
    seen = {tuple(int(x) for x in code.split(".")[:2]) for codes in nodes.values() for code in codes}
    assert set(CATH_ARCHITECTURES) == seen and len(CATH_ARCHITECTURES) == 38
    idx = arch_index(torch.tensor([3, 2, 1, 9, -1]), torch.tensor([40, 60, 10, 10, -1]))
    assert idx.tolist() == [CATH_ARCHITECTURES.index((3, 40)), CATH_ARCHITECTURES.index((2, 60)), 0, -1, -1]


# ---------------------------------------------------------------------------------------------
# training steps


@pytest.mark.parametrize("name", VERSIONS)
def test_tiny_training_step_has_finite_loss_and_gradients(name, small_batch):
    cfg = minifold.load_version(name, "tiny")
    torch.manual_seed(0)
    model = minifold.build_model(cfg)
    model.train()
    loss, terms = minifold.training_step_loss(
        model, small_batch, cfg, epoch=2, generator=torch.Generator().manual_seed(1)
    )
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert all(torch.isfinite(v) for v in terms.values())
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert all(g is None or torch.isfinite(g).all() for g in grads.values())
    if name == "contact-classifier":
        assert {"class_ce", "arch_ce", "contact_bce", "class_acc", "arch_acc", "contact_recall"} <= set(terms)
        assert all(0.0 <= float(terms[k]) <= 1.0 for k in ("class_acc", "arch_acc", "contact_recall"))
        assert float(terms["contact_bce"]) == pytest.approx(math.log(2), abs=0.3)  # near chance
        return
    expected = set(minifold.training.MINIFOLD_TERMS) | {"bond_weight"}
    if cfg.model.denoiser.backbone_head:
        expected |= set(minifold.training.BACKBONE_TERMS) | {"bb_ramp"}
    assert set(terms) == expected
    assert all(p.grad is None for p in model.encoder.parameters())  # frozen
    assert not model.encoder.training  # stays in eval mode under model.train()
    # Output layers start at zero (the blocks start as the identity), so at init the gradient
    # stops at them; with random weights it reaches every trained block.
    model.zero_grad()
    randomize(model, std=0.05)
    loss, _ = minifold.training_step_loss(
        model, small_batch, cfg, epoch=2, generator=torch.Generator().manual_seed(1)
    )
    loss.backward()
    assert torch.isfinite(loss)
    moved = {
        n.split(".")[0] for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0
    }
    assert moved == {"denoiser", "pair_stack", "aux_pair", "rg_pred"} - (
        {"aux_pair"} if name == "v10" else set()
    )
    for p in model.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all()


def test_terms_follow_the_epoch_anneals(small_batch):
    cfg = minifold.load_version("v14", "tiny")
    model = minifold.build_model(cfg)
    g = torch.Generator()
    _, e1 = minifold.training_step_loss(model, small_batch, cfg, epoch=1, generator=g.manual_seed(0))
    _, e20 = minifold.training_step_loss(model, small_batch, cfg, epoch=20, generator=g.manual_seed(0))
    assert float(e1["bond_weight"]) == pytest.approx(1.2) and float(e20["bond_weight"]) == 3.0
    assert float(e1["bb_ramp"]) == pytest.approx(0.2) and float(e20["bb_ramp"]) == 1.0


def test_tokenize_null_conditioning_keeps_the_attention_mask():
    aatype = torch.tensor([[0, 5, 19, 20], [3, 3, 0, 0]])
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    tokens, tok_mask = tokenize(aatype, mask)
    null_tokens, null_mask = tokenize(aatype, mask, torch.tensor([True, True]))
    assert torch.equal(tok_mask, null_mask) and torch.equal(tok_mask, tokens.ne(PAD))
    assert (null_tokens[:, 1:-1][mask] == MASK).all()
    assert tokens[1].tolist()[:4] == [2, 7, 7, 3] and tokens[0, -1] == 3  # CLS … EOS
    # a residue without coordinates inside the chain is MASK, not PAD: no hole in the attention mask
    holed = mask.clone()
    holed[0, 1] = False
    hole_tokens, hole_mask = tokenize(aatype, holed)
    assert hole_tokens[0, 2] == MASK and torch.equal(hole_mask, tok_mask)


def test_load_encoder_puts_stage1_weights_in_the_frozen_encoder():
    clf = randomize(minifold.build_model(minifold.load_version("contact-classifier", "tiny")))
    model = minifold.build_model(minifold.load_version("v13", "tiny"))
    minifold.load_encoder(model, clf.state_dict())
    for key, value in clf.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[key], value)
    assert all(not p.requires_grad for p in model.encoder.parameters())
    wrong = minifold.build_model(minifold.load_version("contact-classifier"))
    with pytest.raises(ConfigError, match="shape"):
        minifold.load_encoder(model, wrong.state_dict())


# ---------------------------------------------------------------------------------------------
# geometry: equivariance and the SNR gate


def _noised(
    model, ca: torch.Tensor, mask: torch.Tensor, t: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    from ptk.models.diffusion import center, centered_noise

    x0 = center(ca, mask) / 10.0
    t_vec = torch.full((ca.shape[0],), t)
    x_t = model.schedule.q_sample(
        x0, t_vec, centered_noise(x0.shape, mask, torch.Generator().manual_seed(seed))
    )
    return x_t * mask[..., None], t_vec


def with_denoiser(name: str, size: str = "tiny", **denoiser) -> VersionConfig:
    """Version ``name`` with denoiser options set (e.g. the page's frame options, which
    ``PAGE_DEVIATIONS`` lists)."""
    data = minifold.load_version(name, size).to_dict()
    data["model"]["denoiser"].update(denoiser)
    return VersionConfig.from_dict(data)


#: The page's frame options (ptk's defaults differ: ``config.PAGE_DEVIATIONS``).
PAGE_FRAMES = {"frame_init": "snr_gated", "trans_init": "noised", "self_cond": "frames"}


@pytest.mark.parametrize("name", ["v12", "v14", "v10"])
def test_denoiser_x0_is_equivariant_to_a_rigid_motion(name, small_batch):
    """x0(R x_t + τ) = R x0(x_t) + τ (and the learned frames and backbone move along) at low noise,
    where the SNR gate gives pure Gram-Schmidt frames (conf = 1), with and without
    self-conditioning: the page's SNR-gated frames (ptk's other defaults kept)."""
    cfg = with_denoiser(name, frame_init="snr_gated")
    model = randomize(minifold.build_model(cfg)).eval()
    mask = small_batch["residue_mask"]
    x_t, t = _noised(model, small_batch["backbone"][:, :, 1], mask, t=50, seed=0)
    assert torch.all(model.frame_confidence(t) == 1.0)
    motion = random_rigid((2,), torch.Generator().manual_seed(3), translation_scale=3.0)
    moved = lambda x: motion[:, None].apply(x) * mask[..., None]  # noqa: E731
    with torch.no_grad():
        cond = model.condition(small_batch["aatype"], mask)
        a = model.denoise(cond, x_t, t)
        b = model.denoise(cond, moved(x_t), t)
        a_sc = model.denoise(cond, x_t, t, a["x0"])
        b_sc = model.denoise(cond, moved(x_t), t, moved(a["x0"]))
    assert (a["x0"] - x_t).abs().max() > 1e-2  # the model does something
    for ref, out in ((a, b), (a_sc, b_sc)):
        assert torch.allclose(moved(ref["x0"]), out["x0"], atol=1e-4), (
            (moved(ref["x0"]) - out["x0"]).abs().max()
        )
        if ref["rot"] is not None:
            rot = motion.rot[:, None] @ ref["rot"]
            assert torch.allclose(rot[mask], out["rot"][mask], atol=1e-4)
        if ref["backbone"] is not None:
            bb = motion[:, None, None].apply(ref["backbone"]) * mask[..., None, None]
            assert torch.allclose(bb, out["backbone"], atol=1e-4)


def test_snr_gate_identity_at_high_noise_gram_schmidt_at_low_noise(small_batch):
    """The page's frame options: the SNR gate slerps the identity into the Gram-Schmidt frames."""
    cfg = with_denoiser("v13", **PAGE_FRAMES)
    model = minifold.build_model(cfg)
    mask = small_batch["residue_mask"]
    ca = small_batch["backbone"][:, :, 1]
    eye = torch.eye(3).expand(2, mask.shape[1], 3, 3)
    for t, expect in ((999, "identity"), (900, "identity"), (0, "gs"), (300, "gs")):
        x_t, t_vec = _noised(model, ca, mask, t, seed=t)
        conf = model.frame_confidence(t_vec)
        init = model.denoiser.initial_frames(x_t, conf, mask, None)
        gs, valid = ca_frames(x_t, mask)
        assert torch.allclose(init.trans, x_t)
        if expect == "identity":
            assert torch.all(conf == 0) and torch.allclose(init.rot, eye, atol=1e-6)
        else:
            assert torch.all(conf == 1) and torch.allclose(init.rot, gs.rot, atol=1e-5)
            assert valid[:, 1:19].all() and not torch.allclose(gs.rot[valid], eye[valid], atol=1e-2)
    # in between, the slerp turns by conf × the Gram-Schmidt angle
    snr = model.schedule.snr(torch.arange(1000))
    t_mid = int(((snr - 0.6).abs()).argmin())
    x_t, t_vec = _noised(model, ca, mask, t_mid, seed=1)
    conf = model.frame_confidence(t_vec)
    assert torch.allclose(conf, torch.tensor(0.5), atol=0.01)
    gs, valid = ca_frames(x_t, mask)
    init = gated_frames(x_t, conf, mask)
    assert torch.allclose(rotation_angle(init.rot)[valid], conf[0] * rotation_angle(gs.rot)[valid], atol=1e-4)


def test_frame_confidence_share_is_logged_as_the_page_measures_it(small_batch):
    """With the page's SNR-gated frames, each step logs the share of frames whose gate
    confidence exceeds 0.5 (the page's "57.7% conf > 0.5"); it follows the step's t, weighted
    by residues, and a pass that starts from self-conditioning frames counts as confident."""
    lengths = small_batch["residue_mask"].sum(-1).double()
    for self_cond_prob, seed in ((0.0, 1), (0.0, 4), (0.0, 7), (1.0, 1)):
        cfg = with_denoiser("v11", **PAGE_FRAMES)
        data = cfg.to_dict()
        data["model"]["diffusion"]["self_cond_prob"] = self_cond_prob
        cfg = VersionConfig.from_dict(data)
        model = minifold.build_model(cfg).train()
        _, terms = minifold.training_step_loss(model, small_batch, cfg, epoch=1,
                                               generator=torch.Generator().manual_seed(seed))  # fmt: skip
        t = torch.randint(0, 1000, (2,), generator=torch.Generator().manual_seed(seed))  # the step's draw
        ab = torch.cos((torch.arange(1001, dtype=torch.float64) / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2
        snr = (ab[t + 1] / ab[0]) / (1 - ab[t + 1] / ab[0])
        confident = (snr > 0.2 + 0.5 * 0.8).double()
        if self_cond_prob == 1:
            confident = torch.ones(2, dtype=torch.float64)
        expect = float((confident * lengths).sum() / lengths.sum())
        assert float(terms["frame_conf_gt_half"]) == pytest.approx(expect, abs=1e-6), (seed, t)
    default = minifold.load_version("v11", "tiny")  # ptk's identity start: no gate, no column
    _, terms = minifold.training_step_loss(minifold.build_model(default), small_batch, default, epoch=1)
    assert "frame_conf_gt_half" not in terms


@pytest.mark.parametrize("name", ["v12", "v14"])
def test_default_denoiser_is_equivariant_to_a_translation(name, small_batch):
    """ptk's default frames (identity rotations, shrunk translations, self-conditioning as
    features) keep x0(x_t + τ) = x0(x_t) + τ at every noise level, with and without
    self-conditioning (rotations of x_t are not followed: ``PAGE_DEVIATIONS``)."""
    model = randomize(minifold.build_model(minifold.load_version(name, "tiny"))).eval()
    mask = small_batch["residue_mask"]
    shift = torch.tensor([[3.0, -2.0, 5.0], [-1.0, 4.0, 0.5]])[:, None]
    moved = lambda x: (x + shift) * mask[..., None]  # noqa: E731
    with torch.no_grad():
        cond = model.condition(small_batch["aatype"], mask)
        for t in (0, 50, 500, 999):
            x_t, t_vec = _noised(model, small_batch["backbone"][:, :, 1], mask, t=t, seed=t)
            a, b = model.denoise(cond, x_t, t_vec), model.denoise(cond, moved(x_t), t_vec)
            a_sc = model.denoise(cond, x_t, t_vec, a["x0"])
            b_sc = model.denoise(cond, moved(x_t), t_vec, moved(a["x0"]))
            for ref, out in ((a, b), (a_sc, b_sc)):
                assert torch.allclose(moved(ref["x0"]), out["x0"], atol=1e-4), t


def test_initial_frames_never_start_from_rotations_without_orientation(dompdb):
    """Gram-Schmidt frames of a noised Cα trace (÷10 Å) are no better than random rotations (median
    error ≥ 90°; random ones: 126°) from SNR ≈ 10 down. The page's gate opens them in full at SNR
    1 (the defect the default avoids); the default starts every frame at the identity, and
    wherever a denoiser starts from other rotations they must be near the clean trace's frames."""
    import math

    from ptk.models.diffusion import center

    batch = cath_batch([dompdb[n] for n in ("1a04A02", "1cf7B00", "1ufmA00", "4gs3A00")])
    mask = batch["residue_mask"]
    ca = batch["backbone"][:, :, 1]
    clean, clean_ok = ca_frames(center(ca, mask) / 10.0, mask)

    def median_error(model, t: int) -> tuple[float, float]:
        x_t, t_vec = _noised(model, ca, mask, t, seed=t)
        init = model.denoiser.initial_frames(x_t, model.frame_confidence(t_vec), mask, None)
        noisy, ok = ca_frames(x_t, mask)
        keep = ok & clean_ok
        gs_error = rotation_angle(noisy.rot.transpose(-1, -2) @ clean.rot)[keep].median()
        init_error = rotation_angle(init.rot.transpose(-1, -2) @ clean.rot)[keep].median()
        eye = torch.eye(3).expand_as(init.rot)
        identity = bool(torch.allclose(init.rot[mask], eye[mask], atol=1e-6))
        return math.degrees(gs_error), (math.nan if identity else math.degrees(init_error))

    page = minifold.build_model(with_denoiser("v13", **PAGE_FRAMES))
    gs_error, page_error = median_error(page, 500)  # SNR ≈ 1: the page's gate is fully open
    assert gs_error > 100 and page_error > 100
    for name in ("v11", "v12", "v13", "v14"):
        model = minifold.build_model(minifold.load_version(name, "tiny"))
        for t in range(0, 1000, 50):
            gs_error, init_error = median_error(model, t)
            assert math.isnan(init_error) or init_error < 30, (name, t, gs_error, init_error)


def test_shrunk_start_is_the_least_squares_estimate_of_x0():
    """For x0 ~ N(0, s²) per axis (s = R_g / √3 in model units), the c minimising E|x0 − c x_t|² is
    √ᾱ s² / (ᾱ s² + 1 − ᾱ): the shrink of the initial translations equals the regression slope of
    x0 on x_t over Gaussian draws (0.01 absolute), from about 1/√ᾱ at low noise to 0 at high."""
    model = minifold.build_model(minifold.load_version("v13", "tiny"))
    rg = torch.tensor([12.0, 20.0])  # Å
    cond = {"log_rg": torch.log(rg)}
    g = torch.Generator().manual_seed(0)
    for t in (0, 100, 300, 500, 700, 999):
        t_vec = torch.full((2,), t)
        c = model.shrink(t_vec, cond)
        x0 = torch.randn(2, 200_000, generator=g) * (rg[:, None] / 10.0 / math.sqrt(3.0))
        x_t = model.schedule.q_sample(x0[..., None], t_vec, torch.randn(2, 200_000, 1, generator=g))[..., 0]
        slope = (x0 * x_t).sum(-1) / (x_t * x_t).sum(-1)
        assert torch.allclose(c, slope, atol=0.01), (t, c, slope)


def test_v14_self_conditioning_frames_are_the_n_ca_c_frames_it_is_supervised_on(small_batch):
    """v14 with the page's ``self_cond="frames"`` starts the pass from the N–Cα–C frames of the
    previous backbone (the frames its rotation targets use, and the page's v14 convention), not
    from Cα-triplet Gram-Schmidt frames, which on real chains sit tens of degrees away."""
    from ptk.models.minifold.frames import backbone_residue_frames
    from ptk.models.rigid import Rigid

    cfg = with_denoiser("v14", **PAGE_FRAMES)
    model = minifold.build_model(cfg)
    mask = small_batch["residue_mask"].clone()
    bb = small_batch["backbone"].float() / 10.0
    ca = bb[:, :, 1]
    x_t, t_vec = _noised(model, small_batch["backbone"][:, :, 1], mask, 500, seed=3)
    conf = model.frame_confidence(t_vec)
    init = model.denoiser.initial_frames(x_t, conf, mask, ca, None, bb)
    truth, valid = Rigid.from_backbone(bb[:, :, 0], ca, bb[:, :, 2])  # what frame_rot is trained on
    valid &= mask
    assert torch.allclose(init.rot[valid], truth.rot[valid], atol=1e-5)
    assert torch.allclose(init.trans, ca)
    triplet, triplet_valid = ca_frames(ca, mask)
    both = valid & triplet_valid
    apart = torch.rad2deg(rotation_angle(triplet.rot.transpose(-1, -2) @ truth.rot))[both]
    assert float(apart.median()) > 15.0  # the two conventions differ on real chains
    frames, _ = backbone_residue_frames(bb, mask)
    assert torch.allclose(frames.rot[valid], truth.rot[valid], atol=1e-6)
    # without a backbone (v11 … v13) the pass still starts from the Cα-triplet frames
    old = model.denoiser.initial_frames(x_t, conf, mask, ca, None)
    assert torch.allclose(old.rot, triplet.rot, atol=1e-6)
    # and a training step with every pass self-conditioned runs on the backbone frames
    data = cfg.to_dict()
    data["model"]["diffusion"]["self_cond_prob"] = 1.0
    cfg = VersionConfig.from_dict(data)
    loss, terms = minifold.training_step_loss(minifold.build_model(cfg).train(), small_batch, cfg, epoch=1,
                                              generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert torch.isfinite(loss) and terms["frame_conf_gt_half"] == 1.0


def test_self_conditioning_features_keep_the_initial_frames(small_batch):
    """ptk's self-conditioning (``self_cond="features"``) feeds the previous x0 as features only:
    the frames the denoiser starts from are those without it (the page's ``"frames"`` starts from
    the previous x0 instead, which made DDIM drift: ``PAGE_DEVIATIONS``)."""
    model = randomize(minifold.build_model(minifold.load_version("v13", "tiny"))).eval()
    mask = small_batch["residue_mask"]
    x_t, t = _noised(model, small_batch["backbone"][:, :, 1], mask, t=300, seed=4)
    x_sc, _ = _noised(model, small_batch["backbone"][:, :, 1], mask, t=0, seed=5)
    conf = model.frame_confidence(t)
    with torch.no_grad():
        cond = model.condition(small_batch["aatype"], mask)
        skip = model.shrink(t, cond)
        without = model.denoiser.initial_frames(x_t, conf, mask, None, skip)
        with_sc = model.denoiser.initial_frames(x_t, conf, mask, x_sc, skip)
        assert torch.equal(without.trans, with_sc.trans) and torch.equal(without.rot, with_sc.rot)
        assert not torch.allclose(model.denoise(cond, x_t, t)["x0"], model.denoise(cond, x_t, t, x_sc)["x0"])


def test_gram_schmidt_frames_of_a_real_trace_follow_the_chain(small_batch):
    ca = small_batch["backbone"][:1, :, 1]
    frames, valid = ca_frames(ca)
    assert not valid[0, 0] and not valid[0, -1] and valid[0, 1:-1].all()
    x_axis = frames.rot[0, 1:-1, :, 0]
    forward = torch.nn.functional.normalize(ca[0, 2:] - ca[0, 1:-1], dim=-1)
    assert torch.allclose(x_axis, forward, atol=1e-5)
    local_prev = frames[:, 1:-1].invert_apply(ca[:, :-2])
    assert torch.allclose(local_prev[..., 2], torch.zeros(()), atol=1e-4) and (local_prev[..., 1] > 0).all()


# ---------------------------------------------------------------------------------------------
# sampling


@pytest.mark.parametrize("name", ["v10", "v13", "v14"])
def test_sample_shapes_padding_and_eta0_determinism(name, small_batch):
    cfg = minifold.load_version(name, "tiny")
    model = randomize(minifold.build_model(cfg), std=0.05).eval()
    aatype, mask = small_batch["aatype"], small_batch["residue_mask"]
    out = [
        minifold.sample(model, cfg, aatype, mask, steps=4, eta=0.0, guidance=1.5, generator=g.manual_seed(0),
                        return_traj=True)
        for g in (torch.Generator(), torch.Generator())
    ]  # fmt: skip
    ca = out[0]["ca"]
    assert ca.shape == (2, 24, 3) and torch.isfinite(ca).all() and torch.all(ca[~mask] == 0)
    assert torch.equal(out[0]["ca"], out[1]["ca"]) and len(out[0]["x0_traj"]) == 4
    if name == "v14":
        assert out[0]["backbone"].shape == (2, 24, 4, 3) and torch.isfinite(out[0]["backbone"]).all()
        assert torch.allclose(out[0]["backbone"][:, :, 1], ca, atol=1e-4)  # Cα = the sampled trace
    else:
        assert out[0]["backbone"] is None
    x0 = minifold.predict_x0(model, cfg, small_batch, t=100, generator=torch.Generator().manual_seed(0))
    assert x0["ca"].shape == (2, 24, 3) and torch.isfinite(x0["ca"]).all()


def test_ptk_versions_lists_every_version_with_its_size():
    from ptk.pipelines.cli import cli

    result = CliRunner().invoke(cli, ["versions", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert set(VERSIONS) | {"qfitlatent"} <= set(rows)
    assert rows["v13"]["parent"] == "v12b" and rows["v13"]["changes"]
    assert 35e6 <= rows["v13"]["params"] <= 38e6
    assert rows["v12"]["params"] - rows["v12"]["trainable_params"] == rows["contact-classifier"]["params"]
    text = CliRunner().invoke(cli, ["versions"])
    assert text.exit_code == 0 and "v14" in text.output and "37.0" in text.output


def test_every_default_that_differs_from_the_page_is_listed_with_the_way_back():
    """``ptk versions`` lists, per version, each default that differs from the Mini-Fold page with
    the ``--set`` that restores the page's value; set back, a key is no longer listed. v10 (EGNN,
    no frames, no guidance) keeps the page's settings but the noise schedule, the EMA warm-up, bf16 and the
    validation weights."""
    from ptk.models.minifold.config import PAGE_DEVIATIONS
    from ptk.pipelines.cli import cli

    rows = {row["name"]: row for row in json.loads(CliRunner().invoke(cli, ["versions", "--json"]).output)}
    assert [d["key"] for d in rows["v10"]["page_deviations"]] == [
        "model.diffusion.schedule",
        "train.ema_warmup",
        "train.amp",
        "train.val_weights",
    ]
    assert rows["contact-classifier"]["page_deviations"] == []
    listed = {d["key"]: (d["value"], d["page"]) for d in rows["v13"]["page_deviations"]}
    assert listed == {
        "model.denoiser.frame_init": ("identity", "snr_gated"),
        "model.denoiser.trans_init": ("shrunk", "noised"),
        "model.denoiser.self_cond": ("features", "frames"),
        "model.diffusion.schedule": ("cosine", "shifted_cosine"),
        "train.sample_guidance": (1.0, 1.5),
        "train.ema_warmup": (True, False),
        "train.amp": ("auto", "fp16"),
        "train.val_weights": ("final", "epoch"),
    }
    assert {d["key"] for d in rows["v12"]["page_deviations"]} == set(listed) - {"train.sample_guidance"}
    text = CliRunner().invoke(cli, ["versions"]).output
    assert "! model.denoiser.self_cond = features (page: --set model.denoiser.self_cond=frames)" in text
    page = get_task("v13", "tiny", {d.key: str(d.page) for d in PAGE_DEVIATIONS})  # as --set KEY=VALUE
    assert page_deviations(page.model_config) == []
    model = page.build_model()
    assert model.cfg.denoiser.frame_init == "snr_gated" and page.train.sample_guidance == 1.5
    snr = model.schedule.snr(torch.arange(1000))
    assert model.schedule.spec.kind == "shifted_cosine" and int((snr < 1).nonzero()[0]) == 702
    assert page.train.ema_warmup is False and page.train.amp == "fp16" and page.train.val_weights == "epoch"


# ---------------------------------------------------------------------------------------------
# mixed precision


@pytest.mark.slow
def test_bf16_autocast_step_of_default_v13_on_a_real_125_residue_batch(dompdb):
    """One bf16 CPU-autocast training step (forward + backward) of the default-size v13 on the
    first 125 residues of 1c0pA01: no NaN/inf in the loss, its terms or any gradient (the fp32
    islands: Gram-Schmidt, slerp, IPA points, triangle einsums, losses)."""
    cfg = minifold.load_version("v13")
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(
        cfg.model, diffusion=dataclasses.replace(cfg.model.diffusion, self_cond_prob=0.0)))  # fmt: skip
    torch.manual_seed(0)
    model = minifold.build_model(cfg).train()
    batch = cath_batch([dompdb["1c0pA01"]], max_length=125)
    assert int(batch["residue_mask"].sum()) == 125
    # No timing here (speed is measured by benchmarks/train_step.py): an AVX2-only CPU emulates
    # bf16 matmuls and needs minutes for this step, a CPU with native bf16 seconds.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, terms = minifold.training_step_loss(
            model, batch, cfg, epoch=1, generator=torch.Generator().manual_seed(0)
        )
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(v) for v in terms.values()), terms
    for n, p in model.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), n


def test_v13_warm_start_keeps_the_pair_stack_from_scratch() -> None:
    """The page: v13's denoiser, aux pair stack and R_g head initialise from v12b; "the pair
    stack trains from scratch". v12b's four pair blocks fit v13's blocks 0-3 tensor for tensor,
    so a plain strict=False load would take them; v13's ``init_fresh`` keeps them fresh."""
    from ptk.models.minifold import load_version
    from ptk.models.tasks import get_task, load_partial

    assert load_version("v13").init_fresh == ("pair_stack",)
    assert load_version("v14").init_fresh == ()  # v14 starts from all of v13 (its head aside)
    torch.manual_seed(0)
    v12b = get_task("v12b", "tiny").build_model().state_dict()
    model = get_task("v13", "tiny").build_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fits = [k for k, v in v12b.items() if k in before and before[k].shape == v.shape]
    assert any(k.startswith("pair_stack.") for k in fits)  # what the page's "from scratch" excludes
    line = load_partial(model, v12b, get_task("v13", "tiny").init_fresh)
    after = model.state_dict()
    for k in before:
        loaded = k in fits and not k.startswith("pair_stack.")
        assert torch.equal(after[k], v12b[k] if loaded else before[k]), k
    assert "(pair_stack by the version)" in line
    with pytest.raises(ConfigError, match="init_fresh names"):
        load_partial(model, v12b, ("pairstack",))


def test_contact_scores_logged_in_training_are_the_metrics_definition(dompdb) -> None:
    """The contact classifier's per-epoch contact precision and recall (metrics.csv) count what
    ``ptk.metrics`` and the contact-map plots count: pairs with |i − j| ≥ 6 (not ≥ 1), predicted
    at p ≥ 0.5, true where Cα–Cα < 8 Å. Checked against a plain numpy count on real domains."""
    from ptk.models.tasks import get_task

    names = sorted(dompdb)[:3]
    batch = cath_batch([dompdb[n] for n in names], max_length=60)
    task = get_task("contact-classifier", "tiny")
    torch.manual_seed(0)
    model = task.build_model().eval()
    with torch.no_grad():
        extras = task.extras(model, batch)
        logits = model(batch)["contact_logits"].float().numpy()
    correct = predicted = true = 0
    for b in range(len(names)):
        ca = batch["backbone"][b, :, 1].numpy().astype(np.float64)
        ok = (batch["residue_mask"][b] & batch["backbone_mask"][b, :, 1]).numpy()
        for i in range(len(ca)):
            for j in range(i + 6, len(ca)):
                if ok[i] and ok[j]:
                    is_true = np.linalg.norm(ca[i] - ca[j]) < 8.0
                    is_pred = logits[b, i, j] >= 0.0
                    true += is_true
                    predicted += is_pred
                    correct += is_true and is_pred
    assert true > 20 and predicted > 0
    assert extras["contact_recall"] == (pytest.approx(correct), pytest.approx(true))
    assert extras["contact_precision"] == (pytest.approx(correct), pytest.approx(predicted))
    for name in ("top_l_long", "top_l5_long"):
        total, chains = extras[name]
        assert 0.0 <= total <= chains <= len(names)


@pytest.mark.parametrize("unit", ["batch", "example"])
def test_the_unconditional_dropout_unit(unit, small_batch):
    """p_uncond_unit = batch (v13's default, the page: 10% of batches unconditioned) masks the
    whole batch or none of it; example draws per example (mixed batches occur)."""
    cfg = minifold.load_version("v13", "tiny")
    assert cfg.model.diffusion.p_uncond_unit == "batch"
    diffusion = dataclasses.replace(cfg.model.diffusion, p_uncond=0.5, p_uncond_unit=unit, self_cond_prob=0.0)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, diffusion=diffusion))
    torch.manual_seed(0)
    model = minifold.build_model(cfg).train()
    seen = []
    condition = model.condition

    def recording(aatype, mask, null):
        seen.append(tuple(null.tolist()))
        return condition(aatype, mask, null)

    model.condition = recording
    for seed in range(24):
        with torch.no_grad():
            minifold.training_step_loss(
                model, small_batch, cfg, epoch=1, generator=torch.Generator().manual_seed(seed)
            )
    kinds = set(seen)
    assert {(True, True), (False, False)} <= kinds
    assert ((True, False) in kinds or (False, True) in kinds) == (unit == "example")


@pytest.mark.parametrize("name", ["v13", "v14"])
def test_weighted_terms_in_the_graph_sum_to_the_training_loss(name, small_batch):
    """The terms the gradient-agreement diagnostic differentiates one by one are the training
    loss's own: same batch and seeds, their sum is the loss, each carries a gradient."""
    cfg = minifold.load_version(name, "tiny")
    model = minifold.build_model(cfg).train()
    torch.manual_seed(0)
    loss, _ = minifold.training_step_loss(
        model, small_batch, cfg, epoch=3, generator=torch.Generator().manual_seed(5)
    )
    torch.manual_seed(0)
    _, terms = minifold.training_step_loss(
        model, small_batch, cfg, epoch=3, generator=torch.Generator().manual_seed(5), graph_terms=True
    )
    assert len(terms) >= 5 and all(t.requires_grad for t in terms.values())
    assert float(sum(terms.values()).detach()) == pytest.approx(float(loss.detach()), rel=1e-5)
