"""Rigid-body frames T = (R, t), acting on points as x ↦ R x + t: the one frame representation
of ``ptk.models``.

Rotations are stored as matrices ``[*b, 3, 3]`` and translations as ``[*b, 3]``, always in float32
or float64: half-precision inputs are cast up and every operation runs with autocast off (the
Mini-Fold report's fp16 underflow in Gram-Schmidt and slerp; ``models/precision.py``).

Conventions match :func:`ptk.geometry.backbone_frames`: the rotation's columns are the local axes
in global coordinates, so ``apply`` maps local → global and ``invert_apply`` global → local.
Updates are composed on the right, in the local frame (AF2 Alg. 20 line 10, Alg. 23), which makes
them equivariant: (G ∘ T) ∘ U = G ∘ (T ∘ U) for any global motion G.

Quaternions are ``(w, x, y, z)`` with the real part first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from ptk.geometry import backbone_frames, safe_norm
from ptk.models.precision import fp32_island, upcast

__all__ = [
    "Rigid",
    "quaternion_to_rotation",
    "rotation_to_quaternion",
    "axis_angle_to_rotation",
    "rotation_to_axis_angle",
    "rotation_angle",
    "slerp",
    "random_rotation",
    "random_rigid",
]

# Below this squared rotation angle (rad²) the series expansions replace sin(x)/x-type ratios.
_SMALL_ANGLE_SQ = 1e-6


def quaternion_to_rotation(q: Float[Tensor, "*b 4"], normalize: bool = True) -> Float[Tensor, "*b 3 3"]:
    """Rotation matrix of the quaternion ``(w, x, y, z)``, normalised first when ``normalize``
    (AF2 Alg. 23 line 2–3; a zero quaternion gives a finite, meaningless matrix)."""
    q = upcast(q)
    with fp32_island(q):
        if normalize:
            q = q / safe_norm(q, keepdim=True)
        w, x, y, z = q.unbind(-1)
        rows = [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ]  # fmt: skip
        return torch.stack(rows, dim=-1).unflatten(-1, (3, 3))


def rotation_to_quaternion(rot: Float[Tensor, "*b 3 3"]) -> Float[Tensor, "*b 4"]:
    """Unit quaternion ``(w, x, y, z)`` with w ≥ 0 of a rotation matrix.

    Shepperd's method: of the four algebraically equivalent formulas, the one dividing by the
    largest of |w|, |x|, |y|, |z| (≥ ½) is used, so the result is accurate at every angle,
    including near 0 and π, and its gradient is finite.
    """
    rot = upcast(rot)
    with fp32_island(rot):
        m = rot.flatten(-2).unbind(-1)
        m00, m01, m02, m10, m11, m12, m20, m21, m22 = m
        four_sq = torch.stack(
            [1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], dim=-1
        )  # 4 w², 4 x², 4 y², 4 z²
        q_abs = torch.sqrt(torch.clamp(four_sq, min=1e-12))  # 2|w|, 2|x|, 2|y|, 2|z|
        candidates = torch.stack(
            [
                torch.stack([four_sq[..., 0], m21 - m12, m02 - m20, m10 - m01], dim=-1),
                torch.stack([m21 - m12, four_sq[..., 1], m10 + m01, m02 + m20], dim=-1),
                torch.stack([m02 - m20, m10 + m01, four_sq[..., 2], m12 + m21], dim=-1),
                torch.stack([m10 - m01, m20 + m02, m21 + m12, four_sq[..., 3]], dim=-1),
            ],
            dim=-2,
        ) / (2 * torch.clamp(q_abs[..., None], min=0.1))
        best = q_abs.argmax(dim=-1)
        q = torch.gather(candidates, -2, best[..., None, None].expand(*best.shape, 1, 4))[..., 0, :]
        q = torch.where(q[..., :1] < 0, -q, q)
        return q / safe_norm(q, keepdim=True)


def _skew(v: Float[Tensor, "*b 3"]) -> Float[Tensor, "*b 3 3"]:
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).unflatten(-1, (3, 3))


def axis_angle_to_rotation(rotvec: Float[Tensor, "*b 3"]) -> Float[Tensor, "*b 3 3"]:
    """Rotation by angle |v| about v/|v| (Rodrigues): R = I + sinc θ [v]ₓ + (1 − cos θ)/θ² [v]ₓ².

    The two ratios switch to their Taylor series for θ² < 1e-6, so θ = 0 has an exact value and a
    finite gradient.
    """
    rotvec = upcast(rotvec)
    with fp32_island(rotvec):
        theta_sq = (rotvec * rotvec).sum(-1)
        small = theta_sq < _SMALL_ANGLE_SQ
        theta = torch.sqrt(torch.where(small, torch.ones_like(theta_sq), theta_sq))
        a = torch.where(small, 1 - theta_sq / 6, torch.sin(theta) / theta)
        b = torch.where(small, 0.5 - theta_sq / 24, (1 - torch.cos(theta)) / (theta * theta))
        k = _skew(rotvec)
        eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device)
        return eye + a[..., None, None] * k + b[..., None, None] * (k @ k)


def _quaternion_angle_axis_factor(q: Tensor) -> tuple[Tensor, Tensor]:
    """For a unit quaternion with w ≥ 0: (half-angle α ∈ [0, π/2], |xyz|)."""
    # a floor far below safe_norm's 1e-6 Å: angles of 1e-9 rad must survive (clamped → zero grad).
    v_norm = safe_norm(q[..., 1:], eps=1e-30)
    half = torch.atan2(v_norm, q[..., 0])
    return half, v_norm


def rotation_to_axis_angle(rot: Float[Tensor, "*b 3 3"]) -> Float[Tensor, "*b 3"]:
    """Rotation vector θ·axis with θ ∈ [0, π] (via the quaternion; stable near 0 and π)."""
    q = rotation_to_quaternion(rot)
    with fp32_island(q):
        half, v_norm = _quaternion_angle_axis_factor(q)
        small = v_norm < 1e-6
        # 2α/sin α → 2 as α → 0 (sin α = |xyz| for a unit quaternion).
        factor = torch.where(small, 2 + half * half / 3, 2 * half / torch.where(small, 1.0, v_norm))
        return q[..., 1:] * factor[..., None]


def rotation_angle(rot: Float[Tensor, "*b 3 3"]) -> Float[Tensor, "*b"]:
    """Rotation angle in [0, π] (atan2 form via the quaternion, accurate near 0 and π)."""
    half, _ = _quaternion_angle_axis_factor(rotation_to_quaternion(rot))
    return 2 * half


def slerp(
    rot0: Float[Tensor, "*b 3 3"], rot1: Float[Tensor, "*b 3 3"], weight: Float[Tensor, "*b"] | float
) -> Float[Tensor, "*b 3 3"]:
    """Geodesic interpolation on SO(3): R(w) = R₀ exp(w log(R₀ᵀ R₁)), so R(0) = R₀, R(1) = R₁.

    Computed on the relative quaternion (w ≥ 0, the shorter arc) as
    ``(cos wα, xyz · sin wα / sin α)`` with α the half-angle; the ratio uses its series
    w(1 + (1 − w²)α²/6) near α = 0, and near α = π/2 (a half-turn) nothing divides by a small
    number, so both ends are stable. Used by Mini-Fold's SNR-gated frame init,
    ``slerp(I, R_GS, conf)``.
    """
    rot0, rot1 = upcast(rot0), upcast(rot1)
    with fp32_island(rot0):
        weight = torch.as_tensor(weight, dtype=rot0.dtype, device=rot0.device)
        q = rotation_to_quaternion(rot0.transpose(-1, -2) @ rot1)
        half, v_norm = _quaternion_angle_axis_factor(q)
        small = v_norm < 1e-4
        safe_v = torch.where(small, torch.ones_like(v_norm), v_norm)
        ratio = torch.where(
            small, weight * (1 + (1 - weight * weight) * half * half / 6), torch.sin(weight * half) / safe_v
        )
        q_w = torch.cat([torch.cos(weight * half)[..., None], q[..., 1:] * ratio[..., None]], dim=-1)
        return rot0 @ quaternion_to_rotation(q_w)


def random_rotation(
    shape: tuple[int, ...] = (),
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Float[Tensor, "*b 3 3"]:
    """Rotations uniform on SO(3) (normalised Gaussian quaternions), for tests and augmentation."""
    q = torch.randn(*shape, 4, generator=generator, dtype=dtype, device=device)
    return quaternion_to_rotation(q)


def random_rigid(
    shape: tuple[int, ...] = (),
    generator: torch.Generator | None = None,
    translation_scale: float = 10.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Rigid:
    """A uniformly random rotation and a Gaussian translation (std ``translation_scale`` Å)."""
    rot = random_rotation(shape, generator, dtype, device)
    trans = translation_scale * torch.randn(*shape, 3, generator=generator, dtype=dtype, device=device)
    return Rigid(rot, trans)


@dataclass(frozen=True)
class Rigid:
    """A batch of rigid transforms x ↦ R x + t (``rot [*b, 3, 3]``, ``trans [*b, 3]``).

    Half-precision tensors are cast to float32 on construction. Index a Rigid over its batch
    dimensions (``rigid[..., None, None]`` to broadcast against ``[*b, h, p, 3]`` points).
    """

    rot: Float[Tensor, "*b 3 3"]
    trans: Float[Tensor, "*b 3"]

    def __post_init__(self) -> None:
        object.__setattr__(self, "rot", upcast(self.rot))
        object.__setattr__(self, "trans", upcast(self.trans))

    # --- construction -------------------------------------------------------------------
    @classmethod
    def identity(
        cls,
        shape: tuple[int, ...],
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Rigid:
        rot = torch.eye(3, dtype=dtype, device=device).expand(*shape, 3, 3).clone()
        return cls(rot, torch.zeros(*shape, 3, dtype=dtype, device=device))

    @classmethod
    def from_backbone(
        cls, n: Float[Tensor, "*b 3"], ca: Float[Tensor, "*b 3"], c: Float[Tensor, "*b 3"]
    ) -> tuple[Rigid, Bool[Tensor, "*b"]]:
        """Gram-Schmidt frames from N, Cα, C via :func:`ptk.geometry.backbone_frames` (the one
        implementation), in fp32. Returns (frames, valid); invalid frames are the identity
        rotation at Cα."""
        n, ca, c = upcast(n), upcast(ca), upcast(c)
        with fp32_island(ca):
            rot, trans, valid = backbone_frames(n, ca, c)
        return cls(rot, trans), valid

    @classmethod
    def from_quaternion(cls, q: Float[Tensor, "*b 4"], trans: Float[Tensor, "*b 3"]) -> Rigid:
        return cls(quaternion_to_rotation(q), trans)

    # --- shape helpers ------------------------------------------------------------------
    @property
    def shape(self) -> torch.Size:
        return self.trans.shape[:-1]

    @property
    def dtype(self) -> torch.dtype:
        return self.trans.dtype

    @property
    def device(self) -> torch.device:
        return self.trans.device

    def __getitem__(self, index: object) -> Rigid:
        index = index if isinstance(index, tuple) else (index,)
        return Rigid(self.rot[(*index, slice(None), slice(None))], self.trans[(*index, slice(None))])

    def to(self, *args: object, **kwargs: object) -> Rigid:
        return Rigid(self.rot.to(*args, **kwargs), self.trans.to(*args, **kwargs))

    def detach(self) -> Rigid:
        return Rigid(self.rot.detach(), self.trans.detach())

    def detach_rotation(self) -> Rigid:
        """Stop the rotation gradient between structure-module layers (AF2 Alg. 20 line 20)."""
        return Rigid(self.rot.detach(), self.trans)

    def to_tensor_4x4(self) -> Float[Tensor, "*b 4 4"]:
        bottom = torch.zeros(*self.shape, 1, 4, dtype=self.dtype, device=self.device)
        bottom[..., 0, 3] = 1
        return torch.cat([torch.cat([self.rot, self.trans[..., None]], dim=-1), bottom], dim=-2)

    # --- algebra ------------------------------------------------------------------------
    def compose(self, other: Rigid) -> Rigid:
        """``self ∘ other``: x ↦ R₁(R₂ x + t₂) + t₁."""
        with fp32_island(self.trans):
            rot = self.rot @ other.rot
            trans = (self.rot @ other.trans[..., None])[..., 0] + self.trans
        return Rigid(rot, trans)

    __matmul__ = compose

    def invert(self) -> Rigid:
        """T⁻¹ = (Rᵀ, −Rᵀ t)."""
        with fp32_island(self.trans):
            rot_t = self.rot.transpose(-1, -2)
            return Rigid(rot_t, -(rot_t @ self.trans[..., None])[..., 0])

    def apply(self, points: Float[Tensor, "*b 3"]) -> Float[Tensor, "*b 3"]:
        """R x + t (local → global); ``points`` broadcasts against the batch shape."""
        points = upcast(points)
        with fp32_island(points):
            return (self.rot @ points[..., None])[..., 0] + self.trans

    def invert_apply(self, points: Float[Tensor, "*b 3"]) -> Float[Tensor, "*b 3"]:
        """Rᵀ (x − t) (global → local)."""
        points = upcast(points)
        with fp32_island(points):
            return (self.rot.transpose(-1, -2) @ (points - self.trans)[..., None])[..., 0]

    def apply_rotation(self, vectors: Float[Tensor, "*b 3"]) -> Float[Tensor, "*b 3"]:
        """R x (directions, no translation)."""
        vectors = upcast(vectors)
        with fp32_island(vectors):
            return (self.rot @ vectors[..., None])[..., 0]

    def compose_quaternion_update(self, update: Float[Tensor, "*b 6"]) -> Rigid:
        """AF2 Alg. 23 (BackboneUpdate) applied on the right: ``update = (b, c, d, t_x, t_y, t_z)``
        gives the non-unit quaternion (1, b, c, d), normalised, and a local translation; returns
        ``self ∘ (R(q), t)``."""
        update = upcast(update)
        q = torch.cat([torch.ones_like(update[..., :1]), update[..., :3]], dim=-1)
        return self.compose(Rigid(quaternion_to_rotation(q), update[..., 3:]))

    def compose_axis_angle_update(self, update: Float[Tensor, "*b 6"]) -> Rigid:
        """Right update by a rotation vector and a local translation, ``update = (v, t)``."""
        update = upcast(update)
        return self.compose(Rigid(axis_angle_to_rotation(update[..., :3]), update[..., 3:]))
