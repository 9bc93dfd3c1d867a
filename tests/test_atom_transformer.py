"""Pallatom sparse atom transformers: the neighbour index against brute force, sparse attention
against a dense N × N masked reference written here, documented shapes, finite gradients; and the
refiner's noise model (centring against a brute-force mean, noise draws, the loss's use of it)."""

from __future__ import annotations

import math

import pytest
import torch

from ptk.models.pallatom.atom_transformer import (
    AtomAttentionDecoder,
    AtomFeatureEncoder,
    AtomTransformer,
    AtomTransformerBlock,
    build_sparse_pairs,
    gather_neighbors,
)


def _tokens(n_res: int, gen: torch.Generator, max_atoms: int = 5) -> torch.Tensor:
    counts = torch.randint(1, max_atoms + 1, (n_res,), generator=gen)
    return torch.repeat_interleave(torch.arange(n_res), counts)


def _brute_force(tok: list[int], live: list[bool], half: int) -> list[set[int]]:
    n = len(tok)
    return [{m for m in range(n) if live[i] and live[m] and abs(tok[i] - tok[m]) < half} for i in range(n)]


@pytest.mark.parametrize("window", [32, 8, 5, 2])
def test_build_sparse_pairs_matches_brute_force(window: int) -> None:
    gen = torch.Generator().manual_seed(window)
    tok = _tokens(60, gen)
    idx, valid = build_sparse_pairs(tok, window)
    expected = _brute_force(tok.tolist(), [True] * len(tok), window // 2)
    assert idx.shape == valid.shape == (len(tok), max(1, max(len(s) for s in expected)))
    for l, nbrs in enumerate(expected):  # noqa: E741
        got = idx[l][valid[l]].tolist()
        assert got == sorted(nbrs)  # sorted tokens → neighbours in ascending atom order
        assert (idx[l][~valid[l]] == 0).all()


def test_build_sparse_pairs_unsorted_batched_and_masked() -> None:
    gen = torch.Generator().manual_seed(1)
    toks = torch.stack([_tokens(60, gen, 3)[:70] for _ in range(3)])
    toks[1] = toks[1][torch.randperm(70, generator=gen)]  # arbitrary order
    toks[2, 50:] = -7  # padding with junk tokens
    mask = torch.ones_like(toks, dtype=torch.bool)
    mask[2, 50:] = False
    mask[0, 10] = False
    idx, valid = build_sparse_pairs(toks, 10, mask)
    assert idx.shape[:2] == (3, 70)
    counts = []
    for b in range(3):
        expected = _brute_force(toks[b].tolist(), mask[b].tolist(), 5)
        for l, nbrs in enumerate(expected):  # noqa: E741
            got = idx[b, l][valid[b, l]].tolist()
            assert len(got) == len(set(got)) and set(got) == nbrs
            counts.append(len(nbrs))
    assert idx.shape[-1] == max(counts)
    assert not valid[2, 50:].any() and not valid[0, 10].any()
    # a shared [N] index with a per-example [B, N] mask broadcasts
    shared_idx, shared_valid = build_sparse_pairs(toks[0], 10, mask[:2])
    assert shared_idx.shape[:2] == (2, 70) and not shared_valid[0, 10].any() and shared_valid[1, 10].any()


def test_build_sparse_pairs_has_no_quadratic_intermediate() -> None:
    # 400k atoms: an N × N boolean would be 160 GB; the O(N·K) index is a few tens of MB.
    tok = torch.arange(400_000)
    idx, valid = build_sparse_pairs(tok, 32)
    assert idx.shape == (400_000, 31)
    assert valid.sum().item() == 400_000 * 31 - 2 * sum(range(1, 16))
    assert idx[1000].tolist() == list(range(985, 1016))


def test_build_sparse_pairs_rejects_float_tokens() -> None:
    with pytest.raises(TypeError):
        build_sparse_pairs(torch.zeros(4))


# ---------------------------------------------------------------------------- dense reference


def _dense_block(block: AtomTransformerBlock, q, c, p_dense, mask_dense):
    """The same block with an explicit [B, N, N] mask and a dense [B, N, N, c_p] pair tensor."""
    b, n, _ = q.shape
    h, d = block.n_heads, block.head_dim
    x = block.norm_q(q) + block.norm_c(c)
    qh = block.to_q(x).view(b, n, h, d)
    kh = block.to_k(x).view(b, n, h, d)
    vh = block.to_v(x).view(b, n, h, d)
    scores = torch.einsum("blhd,bmhd->blmh", qh, kh) / math.sqrt(d)
    scores = scores + block.pair_bias(block.norm_pair(p_dense))
    scores = scores.masked_fill(~mask_dense[..., None], float("-inf"))
    any_valid = mask_dense.any(-1)[..., None, None]
    weights = torch.softmax(torch.where(any_valid, scores, torch.zeros_like(scores)), dim=2)
    weights = torch.where(any_valid, weights, torch.zeros_like(weights))
    out = torch.einsum("blmh,bmhd->blhd", weights, vh).reshape(b, n, h * d)
    q = q + block.to_out(out)
    return q + block.ff2(torch.nn.functional.silu(block.ff1(block.norm_ff(q))))


def _scatter_dense(p_sparse, idx, valid, n):
    b, _, k, c = p_sparse.shape
    dense = torch.zeros(b, n, n, c, dtype=p_sparse.dtype)
    for bb in range(b):
        ii = idx if idx.dim() == 2 else idx[bb]
        vv = valid if valid.dim() == 2 else valid[bb]
        for l in range(n):  # noqa: E741
            for s in range(k):
                if vv[l, s]:
                    dense[bb, l, ii[l, s]] = p_sparse[bb, l, s]
    return dense


def _dense_mask(tok, live, half):
    return (tok[..., :, None] - tok[..., None, :]).abs().lt(half) & live[..., :, None] & live[..., None, :]


@pytest.mark.parametrize("batched_index", [False, True])
def test_sparse_attention_equals_dense_masked_reference(batched_index: bool) -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(2)
    b, c_atom, c_pair, window = 2, 16, 8, 6
    tok = _tokens(20, gen, 4)
    n = tok.shape[0]
    live = torch.ones(b, n, dtype=torch.bool)
    if batched_index:
        live[1, n - 9 :] = False
        live[0, 3] = False
        idx, valid = build_sparse_pairs(tok.expand(b, n), window, live)
    else:
        idx, valid = build_sparse_pairs(tok, window)
    p = torch.randn(b, n, idx.shape[-1], c_pair, dtype=torch.float64)
    q = torch.randn(b, n, c_atom, dtype=torch.float64)
    c = torch.randn(b, n, c_atom, dtype=torch.float64)
    block = AtomTransformerBlock(c_atom, c_pair, n_heads=4, window_size=window).double()
    for param in block.parameters():  # no zero-initialised projections: test every path
        torch.nn.init.normal_(param, std=0.3)
    sparse = block(q, c, p, idx, valid)
    dense = _dense_block(block, q, c, _scatter_dense(p, idx, valid, n), _dense_mask(tok, live, window // 2))
    torch.testing.assert_close(sparse, dense, rtol=1e-10, atol=1e-10)


def test_transformer_stack_equals_dense_stack() -> None:
    torch.manual_seed(3)
    gen = torch.Generator().manual_seed(3)
    tok = _tokens(15, gen, 3)
    n = tok.shape[0]
    idx, valid = build_sparse_pairs(tok, 8)
    model = AtomTransformer(8, 4, n_blocks=3, n_heads=2, window_size=8).double()
    for param in model.parameters():
        torch.nn.init.normal_(param, std=0.3)
    q, c = torch.randn(1, n, 8, dtype=torch.float64), torch.randn(1, n, 8, dtype=torch.float64)
    p = torch.randn(1, n, idx.shape[-1], 4, dtype=torch.float64)
    got = model(q, c, p, idx, valid.expand(1, *valid.shape))
    p_dense = _scatter_dense(p, idx, valid, n)
    mask = _dense_mask(tok, torch.ones(n, dtype=torch.bool), 4)[None]
    ref = q
    for block in model.blocks:
        ref = _dense_block(block, ref, c, p_dense, mask)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------ encoder / decoder shapes


def _in_out(layer: torch.nn.Linear) -> tuple[int, int]:
    assert layer.bias is None
    return layer.in_features, layer.out_features


def _encoder_inputs(b=2, n_res=12, e=5, c_token=16, c_pair=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    tok = _tokens(n_res, gen, 4)
    n = tok.shape[0]
    return dict(
        ref_pos=torch.randn(b, n, 3, generator=gen),
        ref_element=torch.nn.functional.one_hot(torch.randint(0, e, (b, n), generator=gen), e).float(),
        ref_space_uid=tok.expand(b, n).clone(),
        s_input=torch.randn(b, n_res, c_token, generator=gen),
        z_input=torch.randn(b, n_res, n_res, c_pair, generator=gen),
        r_scaled=torch.randn(b, n, 3, generator=gen),
        tok_idx=tok.expand(b, n).clone(),
    )


def test_block_weight_shapes() -> None:
    block = AtomTransformerBlock(32, 16, n_heads=4)
    assert block.window_size == 32 and block.head_dim == 8
    for name in ("to_q", "to_k", "to_v", "to_out"):
        assert _in_out(getattr(block, name)) == (32, 32)
    assert _in_out(block.pair_bias) == (16, 4)
    assert _in_out(block.ff1) == (32, 128) and _in_out(block.ff2) == (128, 32)
    assert len(AtomTransformer(32, 16).blocks) == 3
    with pytest.raises(ValueError):
        AtomTransformerBlock(30, 16, n_heads=4)


def test_encoder_shapes_weights_and_aggregation() -> None:
    f_ref_dim, c_token, c_pair, c, d, m = 8, 16, 8, 24, 12, 20
    enc = AtomFeatureEncoder(f_ref_dim, c_token, c_pair, c, d, m, n_blocks=2, n_heads=4)
    assert enc.window_size == 32 and enc.m == m
    expected = {
        "proj_fref_c": (f_ref_dim, m), "proj_d_vec": (3, d), "proj_inv_sq": (1, d), "proj_v": (1, d),
        "proj_cl_pair": (m, d), "proj_cm_pair": (m, d), "proj_r_scaled": (3, m),
        "proj_s_init": (c_token, m), "proj_z_init": (c_pair, d), "proj_agg": (m, c),
    }  # fmt: skip
    for name, shape in expected.items():
        assert _in_out(getattr(enc, name)) == shape, name
    mlp = [layer for layer in enc.mlp_p if isinstance(layer, torch.nn.Linear)]
    assert [_in_out(layer) for layer in mlp] == [(d, d)] * 3
    x = _encoder_inputs(c_token=c_token, c_pair=c_pair)
    b, n = x["tok_idx"].shape
    s_i, q_skip, c_skip, p_skip, c_l = enc(**x)
    k = build_sparse_pairs(x["tok_idx"][0])[0].shape[-1]
    assert s_i.shape == (b, 12, c) and p_skip.shape == (b, n, k, d)
    assert q_skip.shape == c_skip.shape == c_l.shape == (b, n, m)
    # s_i is the per-residue mean of relu(proj_agg(q)): loop reference
    a = torch.relu(enc.proj_agg(q_skip))
    for bb in range(b):
        for r in range(12):
            sel = x["tok_idx"][bb] == r
            torch.testing.assert_close(s_i[bb, r], a[bb, sel].mean(0))
    with pytest.raises(ValueError):
        enc(**{**x, "ref_element": x["ref_element"][..., :3]})


def test_encoder_without_trunk_and_masked_atoms() -> None:
    enc = AtomFeatureEncoder(8, 16, 8, 24, 12, 20, n_blocks=1, n_heads=2)
    x = _encoder_inputs()
    b, n = x["tok_idx"].shape
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[1, -4:] = False
    out = enc(**{**x, "s_input": None, "z_input": None, "r_scaled": None}, atom_mask=mask)
    assert out[0].shape == (b, 12, 24)
    # masked atoms do not change the valid atoms' outputs
    x2 = {k: v.clone() for k, v in x.items()}
    x2["ref_pos"][1, -4:] = 1e3
    out2 = enc(**x2, atom_mask=mask)
    out1 = enc(**x, atom_mask=mask)
    torch.testing.assert_close(out1[1][1, :-4], out2[1][1, :-4])


def test_decoder_shapes_weights_and_gradients() -> None:
    c_token, c_pair, c_atom, c_atompair = 16, 8, 20, 12
    enc = AtomFeatureEncoder(8, c_token, c_pair, 24, c_atompair, c_atom, n_blocks=1, n_heads=4)
    dec = AtomAttentionDecoder(c_token, c_pair, c_atom, c_atompair, n_blocks=2, n_heads=4)
    assert dec.window_size == 32 and len(dec.transformer.blocks) == 2
    assert _in_out(dec.proj_s_q) == _in_out(dec.proj_s_c) == (c_token, c_atom)
    assert _in_out(dec.proj_z) == (c_pair, c_atompair) and _in_out(dec.proj_r) == (c_atom, 3)
    assert [_in_out(x) for x in dec.mlp_p if isinstance(x, torch.nn.Linear)] == [(c_atompair,) * 2] * 3
    for name in ("norm_q_out", "norm_s_c", "norm_s_q", "norm_z"):
        assert isinstance(getattr(dec, name), torch.nn.LayerNorm)
    x = _encoder_inputs(c_token=c_token, c_pair=c_pair)
    x["ref_pos"] = torch.zeros_like(x["ref_pos"])  # degenerate: coincident reference atoms
    x["s_input"].requires_grad_(True)
    b, n = x["tok_idx"].shape
    s_i, q_skip, c_skip, p_skip, c_l = enc(**x)
    q, p, r_update, c_out = dec(q_skip, p_skip, c_skip, c_l, x["s_input"], x["z_input"], x["tok_idx"])
    assert q.shape == c_out.shape == (b, n, c_atom)
    assert p.shape == p_skip.shape and r_update.shape == (b, n, 3)
    # chained second decoder block
    q2, p2, r2, c2 = dec(q_skip, p_skip, c_skip, c_out, x["s_input"], x["z_input"], x["tok_idx"])
    (r_update.square().sum() + r2.sum() + s_i.sum()).backward()
    grads = [prm.grad for prm in list(enc.parameters()) + list(dec.parameters())] + [x["s_input"].grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    with pytest.raises(ValueError):
        dec(q_skip, p_skip[:, :, :-1], c_skip, c_l, x["s_input"], x["z_input"], x["tok_idx"])


def test_gather_neighbors_shared_and_batched() -> None:
    x = torch.arange(2 * 5 * 3).view(2, 5, 3)
    idx = torch.tensor([[0, 1], [2, 3], [4, 0], [1, 1], [3, 2]])
    shared = gather_neighbors(x, idx)
    batched = gather_neighbors(x, idx.expand(2, 5, 2))
    assert shared.shape == (2, 5, 2, 3)
    assert torch.equal(shared, batched) and torch.equal(shared[1, 2, 0], x[1, 4])


# --------------------------------------------------------------------------- the refiner's noise model
def _cath_like_batch(gen: torch.Generator) -> dict:
    """Two chains of real residue types (5 and 3 residues, the second padded), atoms scattered
    about an off-origin centre, a few present atoms dropped."""
    from ptk.residues import ATOM37, RESIDUE_HEAVY_ATOMS, RESTYPES_3

    aatype = torch.tensor([[0, 7, 13, 17, 19], [4, 10, 0, 0, 0]])  # ALA GLY PHE THR VAL / CYS LEU pad
    residue_mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    atoms = torch.randn(2, 5, 37, 3, generator=gen) * 5 + torch.tensor([30.0, -12.0, 4.0])
    atom_mask = torch.zeros(2, 5, 37, dtype=torch.bool)
    for b in range(2):
        for i in range(5):
            for name in RESIDUE_HEAVY_ATOMS[RESTYPES_3[int(aatype[b, i])]]:
                atom_mask[b, i, ATOM37.index(name)] = True
    atom_mask[0, 2, ATOM37.index("CZ")] = False
    atom_mask[1, 1, ATOM37.index("CD1")] = False
    atom_mask &= residue_mask[..., None]
    return {"aatype": aatype, "atoms": atoms * atom_mask[..., None], "atom_mask": atom_mask,
            "residue_mask": residue_mask}  # fmt: skip


def test_centred_atom14_puts_the_present_atoms_centroid_at_the_origin() -> None:
    from ptk.models.pallatom.refiner import centred_atom14

    batch = _cath_like_batch(torch.Generator().manual_seed(0))
    true, present, _ = centred_atom14(batch)
    for b in range(2):
        # brute force: the heavy atoms of the chain, centred by their own mean
        xyz = batch["atoms"][b][batch["atom_mask"][b]].double()
        centred = xyz - xyz.mean(0)
        got = true[b][present[b]].double()
        assert got.shape == centred.shape
        assert torch.allclose(got.sort(0).values, centred.sort(0).values, atol=1e-4)
        assert torch.all(true[b][~present[b]] == 0)


def test_noise_atoms_is_sigma_times_the_generators_normal_draws() -> None:
    from ptk.models.pallatom.refiner import centred_atom14, noise_atoms

    batch = _cath_like_batch(torch.Generator().manual_seed(1))
    true, present, _ = centred_atom14(batch)
    sigma = torch.tensor([0.5, 3.0])
    noisy = noise_atoms(true, present, sigma, torch.Generator().manual_seed(7))
    eps = torch.randn(true.shape, generator=torch.Generator().manual_seed(7))
    want = (true + sigma[:, None, None, None] * eps) * present[..., None]
    assert torch.equal(noisy, want)
    assert torch.all(noisy[~present] == 0)
    # many atoms at one σ: the sample std of the displacement is σ within sampling error
    big_true = torch.zeros(1, 400, 14, 3)
    big = noise_atoms(big_true, torch.ones(1, 400, 14, dtype=torch.bool), torch.tensor([2.0]),
                      torch.Generator().manual_seed(3))  # fmt: skip
    assert abs(float(big.std()) - 2.0) < 0.05  # 16,800 draws: se of the std ≈ 2/√(2·16800) ≈ 0.011


def test_refiner_loss_noises_with_noise_atoms() -> None:
    """The training loss and any evaluation that calls noise_atoms use one noise model: the
    loss's noisy-input lDDT equals the one of noise_atoms' draw at the σ the loss draws."""
    from ptk.models.losses import smooth_lddt_loss
    from ptk.models.pallatom.refiner import (
        AtomRefiner,
        RefinerConfig,
        centred_atom14,
        noise_atoms,
        refiner_loss,
    )

    batch = _cath_like_batch(torch.Generator().manual_seed(2))
    cfg = RefinerConfig(c_atom=16, c_atompair=4, c_token=16, c_pair=4, n_blocks=1, n_heads=2,
                        window_size=4, max_rel_pos=4)  # fmt: skip
    _, terms = refiner_loss(AtomRefiner(cfg), batch, generator=torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(5)
    sigma = cfg.noise_min + (cfg.noise_max - cfg.noise_min) * torch.rand(2, generator=gen)
    true, present, _ = centred_atom14(batch)
    noisy = noise_atoms(true, present, sigma, gen)
    want = smooth_lddt_loss(noisy.reshape(2, -1, 3), true.reshape(2, -1, 3), present.reshape(2, -1))
    assert torch.allclose(terms["noisy_lddt"], want)
