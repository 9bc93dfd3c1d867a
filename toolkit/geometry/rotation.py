"""The proper rotation R maximising tr(Rᵀ C) for a 3×3 cross-covariance C, the core of the
Kabsch fit: by SVD with the sign fix, or by Horn's quaternion with Theobald's QCP root search."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def _rotation_svd(cov: Tensor) -> Tensor:
    """Proper rotation R maximising tr(Rᵀ C) for the cross-covariance C (SVD with sign fix)."""
    u, _, vh = torch.linalg.svd(cov)
    d = torch.sign(torch.linalg.det(u @ vh))
    d = torch.where(d == 0, torch.ones_like(d), d)
    fix = torch.ones_like(u[..., 0, :])
    fix = torch.cat([fix[..., :2], d[..., None]], dim=-1)
    return u @ torch.diag_embed(fix) @ vh


#: QCP: the adjugate's largest row must exceed this fraction of (2‖C‖_F)³, else SVD.
_QCP_SEPARATION = 1e-3
#: QCP: Newton steps on the largest root before the SVD takes over.
_QCP_NEWTON = 40


def _rotation_qcp(cov: Tensor) -> Tensor:
    """:func:`_rotation_svd` by Horn's quaternion method in batched elementwise ops (float64).

    With S = Cᵀ, the unit quaternion of the rotation is the eigenvector of the top eigenvalue
    λ of Horn's traceless symmetric key matrix N; λ is the largest root of det(N − λI) =
    λ⁴ + c₂λ² + c₁λ + c₀ (c₂ = −2‖C‖², c₁ = −8 det C), reached by Newton from the upper bound
    (Σλᵢ⁴)^¼; the eigenvector is the largest row of adj(N − λI) = ∏(λ − λᵢ) q qᵀ. Where that
    row is small (λ not well separated) the SVD decides."""
    shape = cov.shape[:-2]
    c = cov.reshape(-1, 9)
    # S = Cᵀ: s_ab = Σ x_a y_b = C[b, a]; one contiguous row per entry.
    sxx, syx, szx, sxy, syy, szy, sxz, syz, szz = c.T.contiguous().unbind(0)
    n00 = sxx + syy + szz
    n01, n02, n03 = syz - szy, szx - sxz, sxy - syx
    n11 = sxx - syy - szz
    n12, n13 = sxy + syx, szx + sxz
    n22 = syy - sxx - szz
    n23 = syz + szy
    n33 = szz - sxx - syy
    norm_sq = (c * c).sum(-1)
    c2 = -2.0 * norm_sq
    det_c = sxx * (syy * szz - syz * szy) - sxy * (syx * szz - syz * szx) + sxz * (syx * szy - syy * szx)
    c1 = -8.0 * det_c
    rows = (
        (n00, n01, n02, n03),
        (n01, n11, n12, n13),
        (n02, n12, n22, n23),
        (n03, n13, n23, n33),
    )
    c0 = _det4(rows)
    # Newton from above converges monotonically to the largest root, here from (Σλᵢ⁴)^¼: a few
    # steps for all, then on the ones still moving; those left after _QCP_NEWTON steps (a
    # multiple root: λ ill-determined) go to the SVD.
    lam = (2.0 * c2 * c2 - 4.0 * c0).clamp(min=0.0).sqrt().sqrt()
    active = torch.arange(lam.shape[0], device=cov.device)
    l_a, c2_a, c1_a, c0_a = lam, c2, c1, c0
    for iteration in range(_QCP_NEWTON):
        l_sq = l_a * l_a
        value = (l_sq + c2_a) * l_sq + c1_a * l_a + c0_a
        slope = (4.0 * l_sq + 2.0 * c2_a) * l_a + c1_a
        step = torch.where(slope > 0, value / torch.where(slope > 0, slope, 1.0), 0.0)
        l_a = l_a - step
        if iteration < 4:  # nearly every root needs these
            continue
        moving = step.abs() > 1e-14 * l_a.abs()
        lam = l_a if iteration == 4 else lam.index_put((active,), l_a)
        active, l_a, c2_a, c1_a, c0_a = (t[moving] for t in (active, l_a, c2_a, c1_a, c0_a))
        if active.numel() == 0:
            break
    a = [[rows[i][j] - lam if i == j else rows[i][j] for j in range(4)] for i in range(4)]
    adj = _adjugate4(a)  # [4 rows][4 cols]; symmetric
    adj_rows = torch.stack([torch.stack(r, -1) for r in adj], -2)  # [m, 4, 4]
    row_sq = (adj_rows * adj_rows).sum(-1)
    best = row_sq.argmax(-1)
    q = adj_rows[torch.arange(adj_rows.shape[0], device=cov.device), best]
    q_sq = row_sq.gather(-1, best[:, None])[:, 0]
    scale = 4.0 * norm_sq  # (2‖C‖_F)²
    good = q_sq > (_QCP_SEPARATION**2) * scale * scale * scale
    good[active] = False
    q = q / torch.where(good, q_sq, 1.0).sqrt()[:, None]
    w, x, y, z = q.unbind(-1)
    ww, xx, yy, zz = w * w, x * x, y * y, z * z
    xy, xz, yz, wx, wy, wz = x * y, x * z, y * z, w * x, w * y, w * z
    rot = torch.stack(
        [
            ww + xx - yy - zz, 2 * (xy - wz), 2 * (xz + wy),
            2 * (xy + wz), ww - xx + yy - zz, 2 * (yz - wx),
            2 * (xz - wy), 2 * (yz + wx), ww - xx - yy + zz,
        ],
        dim=-1,
    ).unflatten(-1, (3, 3))  # fmt: skip
    bad = torch.nonzero(~good)[:, 0]
    if bad.numel():
        rot[bad] = _rotation_svd(c[bad].unflatten(-1, (3, 3)))
    return rot.reshape(*shape, 3, 3)


def _minors2(rows: Sequence[Sequence[Tensor]], i: int, k: int) -> list[Tensor]:
    """The six 2×2 minors of rows i, k (column pairs 01, 02, 03, 12, 13, 23)."""
    r, t = rows[i], rows[k]
    return [r[a] * t[b] - t[a] * r[b] for a, b in ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))]


def _det4(m: Sequence[Sequence[Tensor]]) -> Tensor:
    """Determinant of 4×4 matrices given as nested rows of tensors (Laplace on rows 01 / 23)."""
    s0, s1, s2, s3, s4, s5 = _minors2(m, 0, 1)
    c0, c1, c2, c3, c4, c5 = _minors2(m, 2, 3)
    return s0 * c5 - s1 * c4 + s2 * c3 + s3 * c2 - s4 * c1 + s5 * c0


def _adjugate4(m: Sequence[Sequence[Tensor]]) -> list[list[Tensor]]:
    """Adjugate of 4×4 matrices given as nested rows of tensors."""
    s0, s1, s2, s3, s4, s5 = _minors2(m, 0, 1)
    c0, c1, c2, c3, c4, c5 = _minors2(m, 2, 3)
    a = m
    return [
        [
            a[1][1] * c5 - a[1][2] * c4 + a[1][3] * c3,
            -a[0][1] * c5 + a[0][2] * c4 - a[0][3] * c3,
            a[3][1] * s5 - a[3][2] * s4 + a[3][3] * s3,
            -a[2][1] * s5 + a[2][2] * s4 - a[2][3] * s3,
        ],
        [
            -a[1][0] * c5 + a[1][2] * c2 - a[1][3] * c1,
            a[0][0] * c5 - a[0][2] * c2 + a[0][3] * c1,
            -a[3][0] * s5 + a[3][2] * s2 - a[3][3] * s1,
            a[2][0] * s5 - a[2][2] * s2 + a[2][3] * s1,
        ],
        [
            a[1][0] * c4 - a[1][1] * c2 + a[1][3] * c0,
            -a[0][0] * c4 + a[0][1] * c2 - a[0][3] * c0,
            a[3][0] * s4 - a[3][1] * s2 + a[3][3] * s0,
            -a[2][0] * s4 + a[2][1] * s2 - a[2][3] * s0,
        ],
        [
            -a[1][0] * c3 + a[1][1] * c1 - a[1][2] * c0,
            a[0][0] * c3 - a[0][1] * c1 + a[0][2] * c0,
            -a[3][0] * s3 + a[3][1] * s1 - a[3][2] * s0,
            a[2][0] * s3 - a[2][1] * s1 + a[2][2] * s0,
        ],
    ]
