"""Shared model blocks: rigid algebra, IPA, triangle updates, attention, transitions, RPE.

Properties (compose∘invert, invariance, equivariance, masking) in float64 to 1e-6 unless noted;
rotation conversions are cross-checked against scipy's independent implementation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from ptk.geometry import backbone_frames
from ptk.models.attention import (
    AxialAttention,
    ColumnAttention,
    RowAttention,
    SelfAttentionWithPairBias,
    attention,
)
from ptk.models.ipa import BackboneUpdate, InvariantPointAttention, IPABlock
from ptk.models.linear import Linear, LinearNoBias, init_linear
from ptk.models.rigid import (
    Rigid,
    axis_angle_to_rotation,
    quaternion_to_rotation,
    random_rigid,
    random_rotation,
    rotation_angle,
    rotation_to_axis_angle,
    rotation_to_quaternion,
    slerp,
)
from ptk.models.rpe import (
    LinearClippedRPE,
    LogScaledRPE,
    clipped_onehot,
    log_scaled_bin,
    relative_offsets,
)
from ptk.models.transition import OuterProductMean, StructureModuleTransition, Transition
from ptk.models.triangle import TriangleMultiplicationIncoming, TriangleMultiplicationOutgoing

F64 = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randomize(module: torch.nn.Module, seed: int = 0, std: float = 0.3) -> torch.nn.Module:
    """Random weights everywhere (zero-initialised output layers would make tests vacuous)."""
    g = gen(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(std * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def axis_rotation(axis: list[float], angle: float) -> torch.Tensor:
    a = np.asarray(axis, dtype=np.float64)
    return torch.tensor(Rotation.from_rotvec(angle * a / np.linalg.norm(a)).as_matrix())


# --------------------------------------------------------------------------- linear
def test_linear_inits() -> None:
    assert LinearNoBias(4, 3).bias is None
    gate = Linear(4, 3, init="gating")
    assert torch.all(gate.weight == 0) and torch.all(gate.bias == 1)
    assert torch.all(Linear(4, 3, init="final").weight == 0)
    w = Linear(1000, 500).weight
    assert abs(w.std().item() - math.sqrt(1 / 1000)) < 0.1 * math.sqrt(1 / 1000)
    from ptk.errors import ConfigError

    with pytest.raises(ConfigError, match="allowed"):
        init_linear(Linear(2, 2), "bogus")


# --------------------------------------------------------------------------- rigid
def test_compose_invert_identity() -> None:
    t = random_rigid((7,), gen(1), dtype=F64)
    eye = torch.eye(3, dtype=F64).expand(7, 3, 3)
    for r in (t.compose(t.invert()), t.invert() @ t):
        torch.testing.assert_close(r.rot, eye, atol=1e-12, rtol=0)
        torch.testing.assert_close(r.trans, torch.zeros(7, 3, dtype=F64), atol=1e-12, rtol=0)


def test_apply_invert_apply_and_composition() -> None:
    a, b = random_rigid((5,), gen(2), dtype=F64), random_rigid((5,), gen(3), dtype=F64)
    x = torch.randn(5, 3, generator=gen(4), dtype=F64)
    torch.testing.assert_close(a.invert_apply(a.apply(x)), x)
    torch.testing.assert_close(a.compose(b).apply(x), a.apply(b.apply(x)))
    torch.testing.assert_close(a.invert().apply(x), a.invert_apply(x))
    # broadcasting over extra point dims via indexing
    pts = torch.randn(5, 2, 4, 3, generator=gen(5), dtype=F64)
    torch.testing.assert_close(a[:, None, None].apply(pts)[:, 1, 2], a.apply(pts[:, 1, 2]))
    four = a.to_tensor_4x4()
    homog = torch.cat([x, torch.ones(5, 1, dtype=F64)], -1)
    torch.testing.assert_close((four @ homog[..., None])[..., :3, 0], a.apply(x))


def test_quaternion_matrix_round_trip_and_scipy() -> None:
    q = torch.randn(50, 4, generator=gen(6), dtype=F64)
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[:, :1] < 0, -q, q)
    rot = quaternion_to_rotation(q)
    expected = Rotation.from_quat(q[:, [1, 2, 3, 0]].numpy()).as_matrix()  # scipy: (x, y, z, w)
    torch.testing.assert_close(rot, torch.tensor(expected), atol=1e-12, rtol=0)
    torch.testing.assert_close(rotation_to_quaternion(rot), q, atol=1e-12, rtol=0)


@pytest.mark.parametrize("angle", [0.0, 1e-9, 1e-4, 1.0, math.pi - 1e-6, math.pi])
def test_round_trips_near_zero_and_pi(angle: float) -> None:
    axis = torch.tensor([0.3, -0.5, 0.8], dtype=F64)
    rotvec = angle * axis / axis.norm()
    rot = axis_angle_to_rotation(rotvec)
    torch.testing.assert_close(
        rot, torch.tensor(Rotation.from_rotvec(rotvec.numpy()).as_matrix()), atol=1e-12, rtol=0
    )
    torch.testing.assert_close(quaternion_to_rotation(rotation_to_quaternion(rot)), rot, atol=1e-12, rtol=0)
    torch.testing.assert_close(rotation_angle(rot), torch.tensor(angle, dtype=F64), atol=1e-7, rtol=0)
    back = rotation_to_axis_angle(rot)
    if angle < math.pi - 1e-3:  # at π, ±axis are the same rotation
        torch.testing.assert_close(back, rotvec, atol=1e-7, rtol=0)
    torch.testing.assert_close(axis_angle_to_rotation(back), rot, atol=1e-7, rtol=0)


def test_slerp_endpoints_and_midpoint() -> None:
    r0, r1 = random_rotation((6,), gen(7), dtype=F64), random_rotation((6,), gen(8), dtype=F64)
    torch.testing.assert_close(slerp(r0, r1, 0.0), r0, atol=1e-10, rtol=0)
    torch.testing.assert_close(slerp(r0, r1, 1.0), r1, atol=1e-10, rtol=0)
    # midpoint: R0 exp(½ log(R0ᵀR1)), from scipy's rotation vector
    rel = Rotation.from_matrix((r0.transpose(-1, -2) @ r1).numpy())
    half = torch.tensor(Rotation.from_rotvec(0.5 * rel.as_rotvec()).as_matrix())
    torch.testing.assert_close(slerp(r0, r1, 0.5), r0 @ half, atol=1e-10, rtol=0)
    # per-element weights
    w = torch.linspace(0, 1, 6, dtype=F64)
    out = slerp(r0, r1, w)
    torch.testing.assert_close(out[0], r0[0], atol=1e-10, rtol=0)
    torch.testing.assert_close(out[-1], r1[-1], atol=1e-10, rtol=0)


@pytest.mark.parametrize("angle", [0.0, 1e-7, 1e-3, math.pi - 1e-5])
def test_slerp_analytic_about_axis(angle: float) -> None:
    axis = [1.0, 2.0, -0.5]
    r1 = axis_rotation(axis, angle)
    eye = torch.eye(3, dtype=F64)
    for w in (0.25, 0.5, 0.9):
        torch.testing.assert_close(slerp(eye, r1, w), axis_rotation(axis, w * angle), atol=1e-9, rtol=0)


def test_slerp_gradients_finite_at_degenerate_angles() -> None:
    for angle in (0.0, math.pi):
        r1 = axis_rotation([0.0, 0.0, 1.0], angle).requires_grad_(True)
        w = torch.tensor(0.3, dtype=F64, requires_grad=True)
        slerp(torch.eye(3, dtype=F64), r1, w).sum().backward()
        assert torch.isfinite(r1.grad).all() and torch.isfinite(w.grad)


def test_fp32_under_autocast() -> None:
    assert random_rigid((4,), gen(9)).to(torch.bfloat16).rot.dtype == torch.float32  # cast up
    t = random_rigid((4,), gen(9))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = t.compose(t.invert())
        r = slerp(t.rot, t.rot, 0.5)
        p = t.apply(torch.ones(4, 3, dtype=torch.bfloat16))
    assert out.rot.dtype == r.dtype == p.dtype == torch.float32
    # bf16 matmuls would be off by ~1e-2; the island keeps fp32 accuracy
    torch.testing.assert_close(out.rot, torch.eye(3).expand(4, 3, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(r, t.rot, atol=1e-5, rtol=0)


def test_from_backbone_uses_geometry_and_degenerate_gradients() -> None:
    x = torch.randn(3, 6, 3, generator=gen(10), dtype=F64)
    rigid, valid = Rigid.from_backbone(x[0], x[1], x[2])
    rot, trans, valid2 = backbone_frames(x[0], x[1], x[2])
    torch.testing.assert_close(rigid.rot, rot)
    torch.testing.assert_close(rigid.trans, trans)
    assert torch.equal(valid, valid2)
    # coincident points: defined frame, finite gradient
    pts = torch.zeros(3, 2, 3, dtype=F64, requires_grad=True)
    r, v = Rigid.from_backbone(pts[0], pts[1], pts[2])
    (r.rot.sum() + r.apply(torch.ones(2, 3, dtype=F64)).sum()).backward()
    assert not v.any() and torch.isfinite(pts.grad).all()


def test_frame_updates_equivariant() -> None:
    t = random_rigid((2, 5), gen(11), dtype=F64)
    g = random_rigid((), gen(12), dtype=F64)
    u = torch.randn(2, 5, 6, generator=gen(13), dtype=F64)
    for method in ("compose_quaternion_update", "compose_axis_angle_update"):
        left = g.compose(getattr(t, method)(u))
        right = getattr(g.compose(t), method)(u)
        torch.testing.assert_close(left.rot, right.rot)
        torch.testing.assert_close(left.trans, right.trans)
    # AF2 Alg. 23: the update (b, c, d) = 0 is the identity rotation
    same = t.compose_quaternion_update(torch.zeros(2, 5, 6, dtype=F64))
    torch.testing.assert_close(same.rot, t.rot)
    # BackboneUpdate module: new frames move with the input frames
    module = randomize(BackboneUpdate(8, c_hidden=16), 14).double()
    s = torch.randn(2, 5, 8, generator=gen(15), dtype=F64)
    a, b = g.compose(module(s, t)), module(s, g.compose(t))
    torch.testing.assert_close(a.rot, b.rot)
    torch.testing.assert_close(a.trans, b.trans)


# --------------------------------------------------------------------------- IPA
def ipa_inputs(b: int = 2, n: int = 7, c_s: int = 16, c_z: int = 8, seed: int = 20):
    s = torch.randn(b, n, c_s, generator=gen(seed), dtype=F64)
    z = torch.randn(b, n, n, c_z, generator=gen(seed + 1), dtype=F64)
    frames = random_rigid((b, n), gen(seed + 2), dtype=F64)
    return s, z, frames


def test_ipa_invariant_under_global_rigid_motion() -> None:
    ipa = randomize(
        InvariantPointAttention(16, 8, c_hidden=4, n_heads=3, n_qk_points=4, n_v_points=5), 21
    ).double()
    s, z, frames = ipa_inputs()
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[1, 5:] = False
    out = ipa(s, z, frames, mask)
    assert out.shape == s.shape and out.abs().max() > 1e-3
    g = random_rigid((), gen(22), translation_scale=50.0, dtype=F64)
    torch.testing.assert_close(ipa(s, z, g.compose(frames), mask), out, atol=1e-6, rtol=0)
    # per-sample motions too
    g2 = random_rigid((2, 1), gen(23), dtype=F64)
    torch.testing.assert_close(ipa(s, z, g2.compose(frames), mask), out, atol=1e-6, rtol=0)
    # and it does depend on the frames (a relative change is not invisible)
    moved = Rigid(frames.rot, frames.trans + torch.randn(2, 7, 3, generator=gen(24), dtype=F64))
    assert (ipa(s, z, moved, mask) - out).abs().max() > 1e-3


def test_ipa_fp32_invariance_under_autocast() -> None:
    ipa = randomize(InvariantPointAttention(16, 8, c_hidden=4, n_heads=2), 25, std=0.1)
    s, z, frames = (x.float() if torch.is_tensor(x) else x.to(torch.float32) for x in ipa_inputs(seed=26))
    g = random_rigid((), gen(27))
    out = ipa(s, z, frames)
    torch.testing.assert_close(ipa(s, z, g.compose(frames)), out, atol=1e-4, rtol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(ipa(s, z, Rigid(frames.rot, 1e3 * frames.trans))).all()


def test_ipa_padding_changes_nothing() -> None:
    ipa = randomize(IPABlock(16, 8, c_hidden=4, n_heads=2, dropout=0.0), 28).double().eval()
    s, z, frames = ipa_inputs(b=1, n=9, seed=29)
    n = 6
    mask = torch.zeros(1, 9, dtype=torch.bool)
    mask[:, :n] = True
    full = ipa(s, z, frames, mask)
    short = ipa(s[:, :n], z[:, :n, :n], frames[:, :n])
    torch.testing.assert_close(full[:, :n], short, atol=1e-10, rtol=0)
    assert torch.all(full[:, n:] == 0)


def test_ipa_gradients_finite_on_coincident_points() -> None:
    ipa = randomize(InvariantPointAttention(8, 4, c_hidden=4, n_heads=2, n_qk_points=2, n_v_points=2), 30)
    with torch.no_grad():
        ipa.linear_v_points.weight.zero_()  # all value points at the frame origin → |o_pts| = 0
    s = torch.zeros(1, 4, 8, requires_grad=True)
    z = torch.zeros(1, 4, 4, 4)
    frames = Rigid.identity((1, 4))  # every frame at the same place
    ipa(s, z, frames).sum().backward()
    assert torch.isfinite(s.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in ipa.parameters() if p.grad is not None)


# --------------------------------------------------------------------------- triangle
def triangle_reference(module, z: torch.Tensor, outgoing: bool) -> torch.Tensor:
    """Loop-written Alg. 11/12 for one batch element."""
    x = module.norm_in(z)
    a = torch.sigmoid(module.linear_a_gate(x)) * module.linear_a(x)
    b = torch.sigmoid(module.linear_b_gate(x)) * module.linear_b(x)
    n = z.shape[0]
    u = torch.zeros(n, n, a.shape[-1], dtype=z.dtype)
    for i in range(n):
        for j in range(n):
            for k in range(n):
                u[i, j] += a[i, k] * b[j, k] if outgoing else a[k, i] * b[k, j]
    return torch.sigmoid(module.linear_gate(x)) * module.linear_out(module.norm_out(u))


@pytest.mark.parametrize(
    "cls,outgoing", [(TriangleMultiplicationOutgoing, True), (TriangleMultiplicationIncoming, False)]
)
def test_triangle_matches_loop_reference_and_masks(cls, outgoing: bool) -> None:
    tri = randomize(cls(6, c_hidden=5), 31).double()
    z = torch.randn(1, 5, 5, 6, generator=gen(32), dtype=F64)
    torch.testing.assert_close(tri(z)[0], triangle_reference(tri, z[0], outgoing))
    # padding: a padded 8-residue copy agrees on the real 5×5 block
    zp = torch.randn(1, 8, 8, 6, generator=gen(33), dtype=F64) * 100
    zp[:, :5, :5] = z
    m = torch.zeros(1, 8, dtype=torch.bool)
    m[:, :5] = True
    out = tri(zp, m[:, :, None] & m[:, None, :])
    torch.testing.assert_close(out[:, :5, :5], tri(z), atol=1e-10, rtol=0)
    assert torch.all(out[:, 5:] == 0) and torch.all(out[:, :, 5:] == 0)


def test_triangle_incoming_is_outgoing_transposed() -> None:
    """Incoming(z) = Outgoing'(zᵀ)ᵀ where Outgoing' has the a and b projections swapped."""
    out_mod = randomize(TriangleMultiplicationOutgoing(4, 3), 34).double()
    in_mod = TriangleMultiplicationIncoming(4, 3).double()
    state = out_mod.state_dict()
    swap = {
        "linear_a": "linear_b",
        "linear_b": "linear_a",
        "linear_a_gate": "linear_b_gate",
        "linear_b_gate": "linear_a_gate",
    }
    in_mod.load_state_dict(
        {
            (swap.get(k.rsplit(".", 1)[0], k.rsplit(".", 1)[0]) + "." + k.rsplit(".", 1)[1]): v
            for k, v in state.items()
        }
    )
    z = torch.randn(2, 6, 6, 4, generator=gen(35), dtype=F64)
    torch.testing.assert_close(in_mod(z), out_mod(z.transpose(1, 2)).transpose(1, 2))


def test_triangle_fp32_accumulation_under_autocast() -> None:
    tri = randomize(TriangleMultiplicationOutgoing(8, 8), 36)
    z = torch.randn(1, 64, 64, 8, generator=gen(37)) * 300  # products ~1e5·64 overflow fp16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = tri(z)
    assert torch.isfinite(out).all()
    zero = torch.zeros(1, 4, 4, 8, requires_grad=True)  # degenerate: LayerNorm of constant rows
    tri(zero).sum().backward()
    assert torch.isfinite(zero.grad).all()


# --------------------------------------------------------------------------- attention
def test_attention_matches_sdpa() -> None:
    q, k, v = (torch.randn(2, 3, 5, 4, generator=gen(s), dtype=F64) for s in (40, 41, 42))
    bias = torch.randn(2, 3, 5, 5, generator=gen(43), dtype=F64)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    ref = torch.nn.functional.scaled_dot_product_attention(
        q, k, v, attn_mask=bias.masked_fill(~mask[:, None, None, :], float("-inf"))
    )
    torch.testing.assert_close(attention(q, k, v, bias, mask), ref)


def test_attention_equals_the_written_out_softmax_over_axial_dims() -> None:
    """Two leading dims (axial attention's [b, n]) and a bias broadcast over one of them: the
    output and the gradients of q, k, v and the bias equal softmax(qkᵀ/√c + b)v written out with
    einsum. A row with every key masked (a padded query, which every caller zeroes) is finite."""
    q, k, v = (
        torch.randn(2, 3, 2, 5, 4, generator=gen(s), dtype=F64, requires_grad=True) for s in (50, 51, 52)
    )
    bias = torch.randn(2, 1, 2, 5, 5, generator=gen(53), dtype=F64, requires_grad=True)
    mask = torch.ones(2, 3, 5, dtype=torch.bool)
    mask[0, 1, 3:] = False
    mask[1, 2, :] = False
    logits = torch.einsum("abhic,abhjc->abhij", q, k) / 2.0 + bias
    logits = logits.masked_fill(~mask[:, :, None, None, :], float("-inf"))
    ref = torch.einsum("abhij,abhjc->abhic", torch.softmax(logits, -1), v)
    out = attention(q, k, v, bias, mask)
    some = mask.any(-1)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[some], ref[some])
    weights = torch.randn(ref.shape, generator=gen(54), dtype=F64) * some[..., None, None, None]
    grads = torch.autograd.grad((out * weights).sum(), (q, k, v, bias))
    ref_grads = torch.autograd.grad((ref.nan_to_num() * weights).sum(), (q, k, v, bias))
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want.nan_to_num())


@pytest.mark.parametrize("pair_bias", [False, True])
def test_axial_attention_padding_and_orientation(pair_bias: bool) -> None:
    row = randomize(RowAttention(6, c_head=3, n_heads=2, pair_bias=pair_bias), 44).double()
    col = ColumnAttention(6, c_head=3, n_heads=2, pair_bias=pair_bias).double()
    col.load_state_dict(row.state_dict())
    z = torch.randn(1, 5, 5, 6, generator=gen(45), dtype=F64)
    torch.testing.assert_close(col(z), row(z.transpose(1, 2)).transpose(1, 2))
    zp = torch.randn(1, 8, 8, 6, generator=gen(46), dtype=F64) * 10
    zp[:, :5, :5] = z
    m = torch.zeros(1, 8, dtype=torch.bool)
    m[:, :5] = True
    pm = m[:, :, None] & m[:, None, :]
    for mod in (row, col):
        out = mod(zp, pm)
        torch.testing.assert_close(out[:, :5, :5], mod(z), atol=1e-10, rtol=0)
        assert torch.all(out[~pm] == 0)
    assert isinstance(row, AxialAttention)


def test_sequence_attention_with_pair_bias_padding() -> None:
    att = randomize(SelfAttentionWithPairBias(8, 4, c_head=3, n_heads=2), 47).double()
    s = torch.randn(1, 9, 8, generator=gen(48), dtype=F64)
    z = torch.randn(1, 9, 9, 4, generator=gen(49), dtype=F64)
    m = torch.zeros(1, 9, dtype=torch.bool)
    m[:, :6] = True
    torch.testing.assert_close(att(s, z, m)[:, :6], att(s[:, :6], z[:, :6, :6]), atol=1e-10, rtol=0)
    with pytest.raises(ValueError, match="pair tensor"):
        att(s)
    assert SelfAttentionWithPairBias(8, None, 3, 2).double()(s).shape == s.shape


# --------------------------------------------------------------------------- transitions
def test_transitions() -> None:
    x = torch.randn(2, 5, 8, generator=gen(50))
    for act in ("relu", "swiglu"):
        t = Transition(8, 2, act)
        assert torch.all(t(x) == 0)  # zero-initialised output layer: starts as identity
        assert randomize(t, 51)(x).shape == x.shape
    assert StructureModuleTransition(8)(x).shape == x.shape
    from ptk.errors import ConfigError

    with pytest.raises(ConfigError):
        Transition(8, activation="gelu")


def test_outer_product_mean_matches_loop() -> None:
    opm = randomize(OuterProductMean(6, 5, c_hidden=3), 52).double()
    m = torch.randn(1, 4, 5, 6, generator=gen(53), dtype=F64)
    mask = torch.rand(1, 4, 5, generator=gen(54)) > 0.3
    out = opm(m, mask)
    x = opm.norm(m[0])
    a = opm.linear_a(x) * mask[0, ..., None]
    b = opm.linear_b(x) * mask[0, ..., None]
    for i in range(5):
        for j in range(5):
            o = sum(torch.outer(a[s, i], b[s, j]) for s in range(4))
            count = sum(float(mask[0, s, i] and mask[0, s, j]) for s in range(4))
            expected = opm.linear_out(o.flatten()) / (count + opm.eps)
            torch.testing.assert_close(out[0, i, j], expected)
    single = opm(m[:, 0])
    torch.testing.assert_close(single, opm(m[:, :1]))


# --------------------------------------------------------------------------- RPE
def test_clipped_rpe() -> None:
    idx = torch.arange(40)[None]
    d = relative_offsets(idx)
    assert d[0, 2, 5] == 3 and d[0, 5, 2] == -3
    oh = clipped_onehot(d, 32)
    assert oh.shape == (1, 40, 40, 65) and torch.all(oh.sum(-1) == 1)
    assert oh[0, 0, 39].argmax() == 64 and oh[0, 39, 0].argmax() == 0 and oh[0, 3, 3].argmax() == 32
    assert LinearClippedRPE(8)(idx).shape == (1, 40, 40, 8)


def test_log_scaled_rpe_bins() -> None:
    s = torch.tensor([0, 1, 3, 4, 7, 8, 9, 20, 100, 511, 512, 5000])
    b = log_scaled_bin(s)
    assert b[:5].tolist() == [0, 1, 3, 4, 7]  # 1-residue bins for helices (i+3, i+4)
    expected = [min(127, 8 + math.floor(math.log(x / 8) / math.log(64) * 120)) for x in s[5:].tolist()]
    assert b[5:].tolist() == expected
    assert b[-3:].tolist() == [127, 127, 127]
    assert torch.all(torch.diff(log_scaled_bin(torch.arange(600))) >= 0)
    assert log_scaled_bin(-s).tolist() == b.tolist()
    rpe = LogScaledRPE(4)
    idx = torch.arange(30)[None]
    out = rpe(idx)
    assert out.shape == (1, 30, 30, 4)
    assert not torch.allclose(out[0, 2, 7], out[0, 7, 2])  # sign-aware
    # only the sinusoidal part separates offsets in the same bin
    rpe_nosin = LogScaledRPE(4, n_sinusoidal=0)
    far = rpe_nosin(torch.tensor([[0, 600, 700]]))
    torch.testing.assert_close(far[0, 0, 1], far[0, 0, 2])
    assert not torch.allclose(
        rpe(torch.tensor([[0, 600, 700]]))[0, 0, 1], rpe(torch.tensor([[0, 600, 700]]))[0, 0, 2]
    )


@pytest.mark.gpu
def test_fp16_autocast_on_cuda_stays_finite() -> None:
    """The fp32 islands under CUDA fp16 autocast: far-apart points (IPA) and long sums (triangle)."""
    dev = torch.device("cuda")
    ipa = randomize(InvariantPointAttention(32, 16, c_hidden=8, n_heads=4), 60, std=0.2).to(dev)
    tri = randomize(TriangleMultiplicationOutgoing(16, 32), 61).to(dev)
    s = torch.randn(1, 256, 32, generator=gen(62)).to(dev)
    z = (100 * torch.randn(1, 256, 256, 16, generator=gen(63))).to(dev).requires_grad_(True)
    frames = random_rigid((1, 256), gen(64), translation_scale=500.0).to(dev)
    with torch.autocast("cuda", dtype=torch.float16):
        out = ipa(s, z, frames) + tri(z).sum(2)[..., :1]
    assert torch.isfinite(out).all()
    out.float().sum().backward()
    assert torch.isfinite(z.grad).all()
