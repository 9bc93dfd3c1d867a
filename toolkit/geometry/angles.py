"""Angles: the dihedral and bond-angle formulas, and the backbone (φ, ψ, ω), side-chain (χ1–χ4)
and Cα pseudo angles built on them."""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from ptk.geometry.vectors import EPS, _finite, safe_norm
from ptk.residues import CHI_ATOM37_INDEX, CHI_DEFINED, CHI_SYMMETRIC

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
