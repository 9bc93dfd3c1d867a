"""Protein geometry in torch, batched over leading dimensions: one implementation of each formula.

Everything here is called by ingest, the models, the losses and the evaluators alike. Units are
Å and radians. Every function that can meet degenerate input (coincident or collinear atoms,
missing atoms) returns finite values plus a validity mask, and has finite gradients there: the
unsafe operand of ``sqrt``/``atan2``/division is replaced *before* the operation, not after.

Shape letters: ``*b`` leading batch dims, ``n`` residues, ``a`` atoms (37 in atom37), ``k``
χ index (4).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ptk.residues import CHI_ATOM37_INDEX, CHI_DEFINED, CHI_SYMMETRIC

__all__ = [
    "EPS",
    "safe_norm",
    "normalize",
    "pairwise_distances",
    "dihedral",
    "bond_angle",
    "backbone_frames",
    "shift_residues",
    "backbone_dihedrals",
    "chi_angles",
    "torsion_angles",
    "chi_symmetric",
    "pseudo_bond_angles",
    "pseudo_torsions",
    "contact_map",
    "kabsch",
    "apply_transform",
    "superpose",
    "rmsd",
]

#: Squared-length floor below which a vector counts as zero (1e-6 Å, squared).
EPS: float = 1e-12


def safe_norm(
    x: Float[Tensor, "*b d"], dim: int = -1, keepdim: bool = False, eps: float = EPS
) -> Float[Tensor, "*b"]:
    """Euclidean norm with a finite gradient at zero (``sqrt(max(|x|², eps))``)."""
    return torch.sqrt(torch.clamp((x * x).sum(dim=dim, keepdim=keepdim), min=eps))


def normalize(x: Float[Tensor, "*b d"], eps: float = EPS) -> Float[Tensor, "*b d"]:
    """``x / |x|`` with the safe norm (a zero vector stays finite)."""
    return x / safe_norm(x, keepdim=True, eps=eps)


def pairwise_distances(
    x: Float[Tensor, "*b n 3"], y: Float[Tensor, "*b m 3"] | None = None, eps: float = EPS
) -> Float[Tensor, "*b n m"]:
    """All pairwise distances with finite gradients at zero distance (never ``torch.cdist``'s
    backward, which is NaN on the diagonal)."""
    y = x if y is None else y
    # |x − y|² summed coordinate by coordinate, in safe_norm's order (bitwise the same), without
    # the [*b, n, m, 3] difference tensor (3× faster on CPU).
    sq = None
    for k in range(3):
        diff = x[..., :, None, k] - y[..., None, :, k]
        sq = diff * diff if sq is None else sq + diff * diff
    return torch.sqrt(torch.clamp(sq, min=eps))


_TABLES: dict[tuple[str, torch.device], Tensor] = {}


def _table(name: str, device: torch.device) -> Tensor:
    """The residue table ``name`` as a tensor on ``device`` (built once per device)."""
    key = (name, device)
    if key not in _TABLES:
        source = {"chi_index": CHI_ATOM37_INDEX, "chi_defined": CHI_DEFINED, "chi_symmetric": CHI_SYMMETRIC}[
            name
        ]
        # A normal tensor even when first asked for under torch.inference_mode (the ingest): a
        # cached inference tensor would be refused by later autograd-tracked uses.
        with torch.inference_mode(False):
            _TABLES[key] = torch.tensor(source, device=device)
    return _TABLES[key]


def _finite(*xs: Tensor) -> Tensor:
    ok = torch.ones((), dtype=torch.bool, device=xs[0].device)
    for x in xs:
        ok = ok & torch.isfinite(x).all(dim=-1)
    return ok


def dihedral(
    p0: Float[Tensor, "*b 3"],
    p1: Float[Tensor, "*b 3"],
    p2: Float[Tensor, "*b 3"],
    p3: Float[Tensor, "*b 3"],
    eps: float = 1e-8,
) -> tuple[Float[Tensor, "*b"], Bool[Tensor, "*b"]]:
    """Dihedral angle p0-p1-p2-p3 in (−π, π], IUPAC sign (clockwise looking down p1→p2 is +).

    ``atan2(|b2| b1·(b2×b3), (b1×b2)·(b2×b3))`` with b1 = p1−p0, b2 = p2−p1, b3 = p3−p2.

    Returns:
        (angle, valid): angle is 0 where invalid (a NaN atom, coincident or collinear atoms).
    """
    # Coordinates first ([4 points, 3 xyz, *b], contiguous): every product, cross product and
    # dot product below is then a plain elementwise op on [*b] arrays, where the [*b, 3] form
    # spent most of its time in reductions and broadcasts over the short last axis.
    pts = torch.stack([p0, p1, p2, p3]).movedim(-1, 1).contiguous()
    finite = torch.isfinite(pts).flatten(0, 1).all(0)
    pts = torch.where(finite, pts, torch.zeros((), dtype=pts.dtype, device=pts.device))
    b1, b2, b3 = (pts[1:] - pts[:-1]).unbind(0)  # each [3, *b]

    def cross(u: Tensor, v: Tensor) -> Tensor:
        return torch.stack([u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]])

    def dot(u: Tensor, v: Tensor) -> Tensor:
        return u[0] * v[0] + u[1] * v[1] + u[2] * v[2]

    n1, n2 = cross(b1, b2), cross(b2, b3)
    l1, l2, l3 = dot(b1, b1), dot(b2, b2), dot(b3, b3)
    y = torch.sqrt(torch.clamp(l2, min=EPS)) * dot(b1, n2)  # |b2| as safe_norm takes it
    x = dot(n1, n2)
    # Coincident atoms or collinear triples make n1 or n2 vanish and the angle undefined:
    # require every bond to have length and sin² of both bond angles above ``eps``.
    valid = finite & (l1 > EPS) & (l2 > EPS) & (l3 > EPS)
    valid = valid & (dot(n1, n1) > eps * l1 * l2) & (dot(n2, n2) > eps * l2 * l3)
    x = torch.where(valid, x, torch.ones_like(x))
    y = torch.where(valid, y, torch.zeros_like(y))
    return torch.atan2(y, x) * valid, valid


def bond_angle(
    p0: Float[Tensor, "*b 3"], p1: Float[Tensor, "*b 3"], p2: Float[Tensor, "*b 3"]
) -> tuple[Float[Tensor, "*b"], Bool[Tensor, "*b"]]:
    """Angle p0-p1-p2 at p1 in [0, π] (atan2 form, stable near 0 and π); 0 where invalid."""
    finite = _finite(p0, p1, p2)
    zero = torch.zeros_like(p0)
    p0, p1, p2 = (torch.where(finite[..., None], p, zero) for p in (p0, p1, p2))
    u, v = p0 - p1, p2 - p1
    valid = finite & ((u * u).sum(-1) > EPS) & ((v * v).sum(-1) > EPS)
    cross = safe_norm(torch.cross(u, v, dim=-1))
    dot = (u * v).sum(-1)
    dot = torch.where(valid, dot, torch.ones_like(dot))
    return torch.atan2(cross, dot) * valid, valid


def backbone_frames(
    n: Float[Tensor, "*b 3"], ca: Float[Tensor, "*b 3"], c: Float[Tensor, "*b 3"]
) -> tuple[Float[Tensor, "*b 3 3"], Float[Tensor, "*b 3"], Bool[Tensor, "*b"]]:
    """Backbone frames in the qFitLatent convention (``../shared/seeds/qfitlatent_readme.txt``).

    x̂ = (C−Cα)/|C−Cα|, ẑ = x̂×(N−Cα)/|x̂×(N−Cα)|, ŷ = ẑ×x̂; the rotation's *columns* are
    (x̂, ŷ, ẑ) and the origin is Cα, so a global point is ``R @ local + t`` and the local
    coordinates of a point p are ``Rᵀ (p − t)``: Cα at the origin, C on +x, N in the xy-plane
    with y > 0.

    Returns:
        (rot, trans, valid): identity rotation where N, Cα, C are missing or collinear.
    """
    finite = _finite(n, ca, c)
    zero = torch.zeros_like(ca)
    n, ca, c = (torch.where(finite[..., None], p, zero) for p in (n, ca, c))
    e0 = c - ca
    v = n - ca
    cross = torch.cross(e0, v, dim=-1)
    len0 = (e0 * e0).sum(-1)
    valid = finite & (len0 > EPS) & ((cross * cross).sum(-1) > 1e-6 * len0 * (v * v).sum(-1))
    x_hat = normalize(e0)
    z_hat = normalize(torch.cross(x_hat, v, dim=-1))
    y_hat = torch.cross(z_hat, x_hat, dim=-1)
    rot = torch.stack([x_hat, y_hat, z_hat], dim=-1)
    eye = torch.eye(3, dtype=rot.dtype, device=rot.device).expand_as(rot)
    rot = torch.where(valid[..., None, None], rot, eye)
    return rot, ca, valid


def shift_residues(x: Float[Tensor, "*b n 3"], offset: int) -> Float[Tensor, "*b n 3"]:
    """``x[i + offset]`` along the residue axis (dim −2), NaN past the chain ends, so every
    quantity built from a neighbour that is not there comes out masked."""
    dim = -2
    pad = torch.full_like(x.narrow(dim, 0, abs(offset)), float("nan"))
    if offset > 0:
        return torch.cat([x.narrow(dim, offset, x.shape[dim] - offset), pad], dim=dim)
    return torch.cat([pad, x.narrow(dim, 0, x.shape[dim] + offset)], dim=dim)


def _backbone_quadruples(n: Tensor, ca: Tensor, c: Tensor) -> list[Tensor]:
    """p0…p3 of (φ, ψ, ω), each ``[*b, n, 3 angles, 3]``."""
    c_prev, n_next, ca_next = shift_residues(c, -1), shift_residues(n, 1), shift_residues(ca, 1)
    atoms = ((c_prev, n, ca), (n, ca, c), (ca, c, n_next), (c, n_next, ca_next))
    return [torch.stack(p, dim=-2) for p in atoms]


def _chi_quadruples(positions: Tensor, mask: Tensor, aatype: Tensor) -> tuple[list[Tensor], Tensor]:
    """p0…p3 of χ1–χ4, each ``[*b, n, 4 chi, 3]`` (NaN where an atom is absent), and ``[*b, n, 4]``
    whether the residue type has that χ."""
    device = positions.device
    aatype = aatype.long().clamp(0, CHI_ATOM37_INDEX.shape[0] - 1)
    index = _table("chi_index", device)[aatype]  # [*b, n, 4, 4]
    defined = _table("chi_defined", device)[aatype]  # [*b, n, 4]
    flat_index = index.flatten(-2)  # [*b, n, 16]
    # Gather the 16 χ atoms first, then blank the absent ones (the same values as masking all 37).
    gathered = torch.gather(positions, -2, flat_index[..., None].expand(*flat_index.shape, 3))
    present = torch.gather(mask, -1, flat_index)
    masked = torch.where(present[..., None], gathered, torch.full_like(gathered, float("nan")))
    return list(masked.unflatten(-2, (4, 4)).unbind(-2)), defined  # each [*b, n, 4 chi, 3]


def _backbone_dict(angle: Tensor, valid: Tensor) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for k, name in enumerate(("phi", "psi", "omega")):
        out[name], out[f"{name}_mask"] = angle[..., k], valid[..., k]
    return out


def backbone_dihedrals(
    n: Float[Tensor, "*b n 3"], ca: Float[Tensor, "*b n 3"], c: Float[Tensor, "*b n 3"]
) -> dict[str, Tensor]:
    """φ, ψ, ω per residue, as ``biotite.structure.dihedral_backbone`` defines them.

    φᵢ = (Cᵢ₋₁, Nᵢ, Cαᵢ, Cᵢ), ψᵢ = (Nᵢ, Cαᵢ, Cᵢ, Nᵢ₊₁), ωᵢ = (Cαᵢ, Cᵢ, Nᵢ₊₁, Cαᵢ₊₁), between
    consecutive residues of the array (a chain break is flagged by the caller, not here).
    Missing atoms are NaN in the input.

    Returns:
        ``{"phi", "psi", "omega"}`` each ``[*b, n]`` and ``{"phi_mask", ...}`` validity masks.
    """
    return _backbone_dict(*dihedral(*_backbone_quadruples(n, ca, c)))


def chi_angles(
    positions: Float[Tensor, "*b n 37 3"],
    mask: Bool[Tensor, "*b n 37"],
    aatype: Int[Tensor, "*b n"],
) -> tuple[Float[Tensor, "*b n 4"], Bool[Tensor, "*b n 4"]]:
    """χ1–χ4 per residue (IUPAC atoms of :data:`ptk.residues.CHI_ATOMS`).

    Returns:
        (chi, chi_mask): chi is 0 where the χ is undefined for the residue type, an atom is
        missing, or the atoms are degenerate.
    """
    quads, defined = _chi_quadruples(positions, mask, aatype)
    chi, valid = dihedral(*quads)
    valid = valid & defined
    return chi * valid, valid


def torsion_angles(
    positions: Float[Tensor, "*b n 37 3"],
    mask: Bool[Tensor, "*b n 37"],
    aatype: Int[Tensor, "*b n"],
) -> dict[str, Tensor]:
    """φ, ψ, ω and χ1–χ4 together: :func:`backbone_dihedrals` plus :func:`chi_angles` from one
    :func:`dihedral` evaluation (the same quadruples stacked; torch's per-call overhead dominates
    on single chains, which is what ingest processes).

    Returns:
        ``phi``/``psi``/``omega`` ``[*b, n]`` with ``_mask``, and ``chi``/``chi_mask`` ``[*b, n, 4]``.
    """
    backbone = positions[..., :3, :]  # atom37 slots of N, CA, C
    masked = torch.where(mask[..., :3, None], backbone, torch.full_like(backbone, float("nan")))
    n, ca, c = masked.unbind(-2)
    chi_quads, defined = _chi_quadruples(positions, mask, aatype)
    quads = [
        torch.cat([bb, chi], dim=-2)
        for bb, chi in zip(_backbone_quadruples(n, ca, c), chi_quads, strict=True)
    ]
    angle, valid = dihedral(*quads)
    out = _backbone_dict(angle[..., :3], valid[..., :3])
    chi_mask = valid[..., 3:] & defined
    out["chi"], out["chi_mask"] = angle[..., 3:] * chi_mask, chi_mask
    return out


def chi_symmetric(aatype: Int[Tensor, "*b n"]) -> Bool[Tensor, "*b n 4"]:
    """Whether each χ is π-periodic for the residue type (ASP χ2, GLU χ3, PHE χ2, TYR χ2)."""
    table = _table("chi_symmetric", aatype.device)
    return table[aatype.long().clamp(0, table.shape[0] - 1)]


def pseudo_bond_angles(ca: Float[Tensor, "*b n 3"]) -> tuple[Float[Tensor, "*b n"], Bool[Tensor, "*b n"]]:
    """Cα pseudo-bond angle θᵢ = ∠(Cαᵢ₋₁, Cαᵢ, Cαᵢ₊₁); undefined at both chain ends."""
    return bond_angle(shift_residues(ca, -1), ca, shift_residues(ca, 1))


def pseudo_torsions(ca: Float[Tensor, "*b n 3"]) -> tuple[Float[Tensor, "*b n"], Bool[Tensor, "*b n"]]:
    """Cα pseudo-torsion τᵢ = dihedral(Cαᵢ₋₁, Cαᵢ, Cαᵢ₊₁, Cαᵢ₊₂), aligned with θᵢ at index i
    (the pair (θᵢ, τᵢ) is the pseudo-Ramachandran point of residue i)."""
    return dihedral(shift_residues(ca, -1), ca, shift_residues(ca, 1), shift_residues(ca, 2))


def contact_map(
    ca: Float[Tensor, "*b n 3"], mask: Bool[Tensor, "*b n"] | None = None, cutoff: float = 8.0
) -> Bool[Tensor, "*b n n"]:
    """Cα–Cα distance below ``cutoff`` Å (8 Å default), False where either residue is masked or
    missing. The diagonal is included (a residue contacts itself)."""
    finite = torch.isfinite(ca).all(-1)
    mask = finite if mask is None else mask & finite
    ca = torch.where(mask[..., None], ca, torch.zeros_like(ca))
    d = pairwise_distances(ca)
    return (d < cutoff) & mask[..., :, None] & mask[..., None, :]


def kabsch(
    mobile: Float[Tensor, "*b n 3"],
    target: Float[Tensor, "*b n 3"],
    weights: Float[Tensor, "*b n"] | Bool[Tensor, "*b n"] | None = None,
    method: str = "svd",
) -> tuple[Float[Tensor, "*b 3 3"], Float[Tensor, "*b 3"]]:
    """Weighted least-squares rigid fit (Kabsch 1976): ``R @ mobile + t ≈ target``.

    Computed in float64 for accuracy and returned in the input dtype. Points with zero weight
    (or non-finite coordinates) take no part; with fewer than one weighted point the result is
    the identity. The SVD sign fix keeps det R = +1 (no reflections).

    ``method``: ``"svd"`` (default) takes the rotation from the SVD of the cross-covariance
    (LAPACK, one call per 3×3 matrix); ``"qcp"`` from Horn's quaternion, the top eigenvector of
    the 4×4 key matrix, its eigenvalue found by Newton on the characteristic polynomial
    (Theobald's QCP) and the eigenvector from the adjugate, all in batched elementwise float64
    ops: many times faster on large batches, the same rotation to ~1e-12. Matrices whose top
    eigenvalue is not well separated (the rotation ill-determined: collinear or coincident
    points, no points) are handed to the SVD path, so both agree there too.

    Returns:
        (rot ``[*b, 3, 3]``, trans ``[*b, 3]``).
    """
    dtype = mobile.dtype
    finite = torch.isfinite(mobile).all(-1) & torch.isfinite(target).all(-1)
    w = finite.to(torch.float64) if weights is None else weights.to(torch.float64) * finite
    x = torch.where(finite[..., None], mobile, torch.zeros_like(mobile)).to(torch.float64)
    y = torch.where(finite[..., None], target, torch.zeros_like(target)).to(torch.float64)
    total = w.sum(-1, keepdim=True)
    has_points = total > 0
    total = torch.where(has_points, total, torch.ones_like(total))
    x_mean = (w[..., None] * x).sum(-2) / total
    y_mean = (w[..., None] * y).sum(-2) / total
    xc, yc = x - x_mean[..., None, :], y - y_mean[..., None, :]
    cov = torch.einsum("...n,...ni,...nj->...ij", w, yc, xc)  # Σ w yᵢ xⱼᵀ
    if method == "svd":
        rot = _rotation_svd(cov)
    elif method == "qcp":
        rot = _rotation_qcp(cov)
    else:
        raise ValueError(f"kabsch: unknown method {method!r} (svd, qcp)")
    eye = torch.eye(3, dtype=rot.dtype, device=rot.device).expand_as(rot)
    rot = torch.where(has_points[..., None], rot, eye)
    trans = y_mean - (rot @ x_mean[..., None])[..., 0]
    return rot.to(dtype), trans.to(dtype)


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


def apply_transform(
    rot: Float[Tensor, "*b 3 3"], trans: Float[Tensor, "*b 3"], points: Float[Tensor, "*b n 3"]
) -> Float[Tensor, "*b n 3"]:
    """``R @ p + t`` for every point."""
    return torch.einsum("...ij,...nj->...ni", rot, points) + trans[..., None, :]


def superpose(
    mobile: Float[Tensor, "*b n 3"],
    target: Float[Tensor, "*b n 3"],
    weights: Float[Tensor, "*b n"] | Bool[Tensor, "*b n"] | None = None,
) -> Float[Tensor, "*b n 3"]:
    """``mobile`` moved onto ``target`` by the weighted Kabsch fit."""
    rot, trans = kabsch(mobile, target, weights)
    return apply_transform(rot, trans, mobile)


def rmsd(
    a: Float[Tensor, "*b n 3"],
    b: Float[Tensor, "*b n 3"],
    mask: Bool[Tensor, "*b n"] | None = None,
    align: bool = True,
) -> Float[Tensor, "*b"]:
    """Root-mean-square deviation over the masked points, after optimal superposition of ``a``
    onto ``b`` when ``align`` (default). NaN coordinates count as masked; no points → 0."""
    finite = torch.isfinite(a).all(-1) & torch.isfinite(b).all(-1)
    m = finite if mask is None else mask.bool() & finite
    if align:
        # The fit is detached: at the optimal superposition the RMSD is stationary in R and t
        # (envelope theorem), so this is the exact gradient, and it avoids the SVD backward,
        # which is NaN for degenerate (e.g. collinear) point sets.
        rot, trans = kabsch(a.detach(), b.detach(), m)
        a = apply_transform(rot, trans, a)
    diff = torch.where(m[..., None], a - b, torch.zeros_like(a))
    count = m.sum(-1).clamp(min=1).to(a.dtype)
    return torch.sqrt(torch.clamp((diff * diff).sum((-1, -2)) / count, min=EPS))


def deg(x: Tensor) -> Tensor:
    """Radians → degrees (for display; every API takes radians)."""
    return x * (180.0 / math.pi)
