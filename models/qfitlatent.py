"""qFitLatent: an SE(3)-invariant IPA trunk over (aatype, R, t) → per-residue von Mises mixture
over χ1–χ4, trained on qFit multiconformer structures (``../shared/seeds/qfitlatent_readme.txt``).

Architecture (defaults = the README's table: d_s 128, d_z 32, 8 IPA blocks, 4 heads of dim 8,
4 query/key and 8 value points, k = 5 components, κ_min 0.01, dropout 0.2):

- single init: Embedding(aatype) → d_s;
- pair init from invariant quantities only: clipped relative sequence position (±32), an RBF of
  the Cα–Cα distance, the direction of Cα_j in frame i (R_iᵀ(t_j − t_i)/|·|), the relative rotation
  R_iᵀR_j, and an outer sum of the residue embeddings, then LayerNorm;
- L × :class:`~ptk.models.ipa.IPABlock` with the input frames held fixed;
- head: π = softmax(W_π s), μ = π·tanh(W_μ s), κ = softplus(W_κ s) + κ_min.

Every input to the trunk is invariant to a global rigid motion of all frames (the RBF and the
relative features are, and IPA is), so the mixture is too.

Loss (README "Loss"): L_i = −Σ_a o_a log Σ_k π_k Π_{d defined} VM(χ_ad; μ_kd, κ_kd), residuals on
the circle, folded to (−π/2, π/2] for the π-symmetric χ, log I₀ = log i0e + κ, averaged over the
valid residues (n_obs ≥ 2 and d_eff ≥ 1; the batch's ``valid``). An empty valid set gives 0.

Masks: residues with ``residue_mask & frame_mask`` take part in attention; the others, padded
altlocs (``altloc_mask``/``occupancy`` 0) and undefined χ (``chi_mask``) change nothing.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from ptk.errors import ConfigError
from ptk.geometry import safe_norm
from ptk.models.ipa import IPABlock
from ptk.models.linear import Linear, LinearNoBias
from ptk.models.precision import upcast
from ptk.models.rigid import Rigid
from ptk.models.rpe import LinearClippedRPE, distance_rbf
from ptk.models.summary import count_parameters, parameter_table
from ptk.models.vonmises import VonMisesMixture, circular_residual

__all__ = [
    "QFitLatentConfig",
    "QFitLatent",
    "build_model",
    "compute_loss",
    "qfit_nll",
    "chi_accuracy",
    "mixture_from_outputs",
    "count_parameters",
    "parameter_table",
]

#: Tolerance of the top-mode χ accuracy (README-style evaluation: within 20°).
CHI_ACC_TOL_DEG: float = 20.0


@dataclass(frozen=True)
class QFitLatentConfig:
    """qFitLatent sizes; the defaults are the README's "Default hyperparameters"."""

    d_s: int = 128  #: single representation
    d_z: int = 32  #: pair representation
    n_blocks: int = 8  #: IPA blocks L
    n_heads: int = 4  #: attention heads H
    c_head: int = 8  #: head dim c
    n_qk_points: int = 4  #: query/key points
    n_v_points: int = 8  #: value points
    n_components: int = 5  #: von Mises components k
    n_chi: int = 4  #: χ dimensions D_χ
    kappa_min: float = 0.01  #: concentration floor
    dropout: float = 0.2
    # pair features (not in the README's table; ptk's choice of invariant features)
    max_rel_pos: int = 32  #: clip of the relative sequence position
    n_rbf: int = 16  #: Gaussian RBFs of the Cα–Cα distance
    rbf_min: float = 2.0  #: Å, first RBF centre
    rbf_max: float = 22.0  #: Å, last RBF centre
    n_transition_layers: int = 3  #: ReLU MLP depth in each IPA block (AF2 structure module)
    n_aatype: int = 21  #: residue types (20 + unknown)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in ("kappa_min", "rbf_min", "rbf_max"):
                if not (isinstance(value, int | float) and value > 0):
                    raise ConfigError(f"qfitlatent {f.name} must be > 0, got {value!r}")
            elif f.name == "dropout":
                if not (isinstance(value, int | float) and 0 <= value < 1):
                    raise ConfigError(f"qfitlatent dropout must be in [0, 1), got {value!r}")
            elif not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
                raise ConfigError(f"qfitlatent {f.name} must be a positive integer, got {value!r}")
        if self.rbf_max <= self.rbf_min:
            raise ConfigError(f"qfitlatent rbf_max {self.rbf_max} must exceed rbf_min {self.rbf_min}")

    @classmethod
    def tiny(cls) -> QFitLatentConfig:
        """A config that trains a step on a CPU in well under a second (tests, demo):
        ``models/versions/qfitlatent.toml``'s tiny size."""
        from ptk.models.registry import version_tables

        return cls.from_dict(version_tables("qfitlatent", "tiny")["model"])

    @classmethod
    def small(cls) -> QFitLatentConfig:
        """A config that memorises a few qFit chains in CPU minutes (``benchmarks/learning.py``):
        ``models/versions/qfitlatent.toml``'s small size."""
        from ptk.models.registry import version_tables

        return cls.from_dict(version_tables("qfitlatent", "small")["model"])

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> QFitLatentConfig:
        """Strict construction: an unknown key is a ConfigError naming the allowed ones."""
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - allowed)
        if unknown:
            raise ConfigError(f"unknown qfitlatent key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class PairFeatures(nn.Module):
    """Invariant pair features of fixed frames → ``[b, n, n, d_z]`` (see the module docstring)."""

    def __init__(self, d_s: int, d_z: int, max_rel_pos: int, n_rbf: int, rbf_min: float, rbf_max: float):
        super().__init__()
        self.relpos = LinearClippedRPE(d_z, max_rel_pos)
        self.n_rbf, self.rbf_min, self.rbf_max = n_rbf, rbf_min, rbf_max
        self.linear_rbf = LinearNoBias(n_rbf, d_z)
        self.linear_geometry = LinearNoBias(3 + 9, d_z)  # direction in frame i, R_iᵀR_j
        self.linear_left = LinearNoBias(d_s, d_z)
        self.linear_right = LinearNoBias(d_s, d_z)
        self.norm = nn.LayerNorm(d_z)

    def forward(
        self, s: Float[Tensor, "b n d_s"], rigid: Rigid, mask: Bool[Tensor, "b n"]
    ) -> Float[Tensor, "b n n d_z"]:
        b, n = mask.shape
        index = torch.arange(n, device=mask.device).expand(b, n)
        rel = rigid[:, :, None].invert_apply(rigid.trans[:, None, :, :])  # t_j in frame i: [b, i, j, 3]
        dist = safe_norm(rel)  # finite gradient at i = j
        direction = rel / dist[..., None]
        rel_rot = rigid.rot.transpose(-1, -2)[:, :, None] @ rigid.rot[:, None, :]  # R_iᵀ R_j
        rbf = distance_rbf(dist, self.n_rbf, self.rbf_min, self.rbf_max)
        geometry = torch.cat([direction, rel_rot.flatten(-2)], dim=-1).to(s.dtype)
        z = (
            self.relpos(index)
            + self.linear_rbf(rbf.to(s.dtype))
            + self.linear_geometry(geometry)
            + self.linear_left(s)[:, :, None]
            + self.linear_right(s)[:, None, :]
        )
        pair_mask = (mask[:, :, None] & mask[:, None, :])[..., None]
        return self.norm(z) * pair_mask.to(z.dtype)


class QFitLatent(nn.Module):
    """SE(3)-invariant IPA trunk + von Mises mixture head (README "Architecture").

    ``forward(batch)`` takes a ``collate_qfit`` batch and returns ``{"log_pi" [b,n,k],
    "mu" [b,n,k,D], "kappa" [b,n,k,D], "single" [b,n,d_s], "mask" [b,n]}``.
    """

    def __init__(self, config: QFitLatentConfig):
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.n_aatype, c.d_s)
        self.pair = PairFeatures(c.d_s, c.d_z, c.max_rel_pos, c.n_rbf, c.rbf_min, c.rbf_max)
        self.blocks = nn.ModuleList(
            IPABlock(
                c.d_s,
                c.d_z,
                c.c_head,
                c.n_heads,
                c.n_qk_points,
                c.n_v_points,
                c.dropout,
                c.n_transition_layers,
            )  # fmt: skip
            for _ in range(c.n_blocks)
        )
        self.linear_pi = Linear(c.d_s, c.n_components)
        self.linear_mu = Linear(c.d_s, c.n_components * c.n_chi)
        self.linear_kappa = Linear(c.d_s, c.n_components * c.n_chi)

    def predict(
        self,
        aatype: Int[Tensor, "b n"],
        rot: Float[Tensor, "b n 3 3"],
        trans: Float[Tensor, "b n 3"],
        mask: Bool[Tensor, "b n"],
    ) -> dict[str, Tensor]:
        """The mixture parameters from residue types and frames (``mask``: residues that take part)."""
        c = self.config
        finite = torch.isfinite(rot).flatten(-2).all(-1) & torch.isfinite(trans).all(-1)
        mask = mask.bool() & finite
        eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
        rot = torch.where(mask[..., None, None], rot, eye)
        trans = torch.where(mask[..., None], trans, torch.zeros_like(trans))
        rigid = Rigid(rot, trans)
        aatype = aatype.long().clamp(0, c.n_aatype - 1)
        s = self.embed(aatype) * mask[..., None].to(self.embed.weight.dtype)
        z = self.pair(s, rigid, mask)
        for block in self.blocks:
            s = block(s, z, rigid, mask)
        b, n = mask.shape
        log_pi = F.log_softmax(upcast(self.linear_pi(s)), dim=-1)
        mu = math.pi * torch.tanh(upcast(self.linear_mu(s))).view(b, n, c.n_components, c.n_chi)
        kappa = F.softplus(upcast(self.linear_kappa(s))).view(b, n, c.n_components, c.n_chi) + c.kappa_min
        return {"log_pi": log_pi, "mu": mu, "kappa": kappa, "single": s, "mask": mask}

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        mask = batch["residue_mask"].bool()
        if "frame_mask" in batch:
            mask = mask & batch["frame_mask"].bool()
        return self.predict(batch["aatype"], batch["frame_rot"], batch["frame_trans"], mask)


def build_model(config: QFitLatentConfig | Mapping[str, Any] | None = None) -> QFitLatent:
    """A fresh :class:`QFitLatent` (default config when ``config`` is None)."""
    if config is None:
        config = QFitLatentConfig()
    elif isinstance(config, Mapping):
        config = QFitLatentConfig.from_dict(config)
    return QFitLatent(config)


def mixture_from_outputs(outputs: Mapping[str, Tensor]) -> VonMisesMixture:
    """The per-residue :class:`~ptk.models.vonmises.VonMisesMixture` of a forward pass."""
    return VonMisesMixture(outputs["log_pi"], outputs["mu"], outputs["kappa"])


def qfit_nll(
    mixture: VonMisesMixture,
    chi: Float[Tensor, "b n a d"],
    chi_mask: Bool[Tensor, "b n a d"],
    occupancy: Float[Tensor, "b n a"],
    chi_symmetric: Bool[Tensor, "b n d"],
    valid: Bool[Tensor, "b n"],
    altloc_mask: Bool[Tensor, "b n a"] | None = None,
) -> tuple[Float[Tensor, ""], Float[Tensor, "b n"]]:
    """The README loss: (mean over valid residues of L_i, per-residue L_i [b, n] (0 off ``valid``)).

    L_i = −Σ_a o_a log Σ_k π_k Π_{d: chi_mask} VM(χ_ad; μ_kd, κ_kd), symmetric χ folded.
    """
    chi_mask = chi_mask.bool()
    occ = upcast(occupancy)
    present = occ > 0 if altloc_mask is None else altloc_mask.bool() & (occ > 0)
    occ = torch.where(present & torch.isfinite(occ), occ, torch.zeros_like(occ))
    chi_mask = chi_mask & present[..., None] & torch.isfinite(chi)
    log_p = mixture.log_prob(upcast(chi), chi_mask, chi_symmetric.bool())  # [b, n, a]
    per_residue = -(occ * log_p).sum(-1)
    valid = valid.bool()
    per_residue = torch.where(valid, per_residue, torch.zeros_like(per_residue))
    count = valid.sum().clamp(min=1).to(per_residue.dtype)
    return per_residue.sum() / count, per_residue


def chi_accuracy(
    mixture: VonMisesMixture, batch: Mapping[str, Tensor], tol_deg: float = CHI_ACC_TOL_DEG
) -> tuple[Float[Tensor, " d"], Float[Tensor, " d"]]:
    """Top-mode χ accuracy, per χ: (hits [D], counts [D]) over valid residues whose
    highest-occupancy altloc defines that χ; a hit is the top component's μ within ``tol_deg`` of
    that altloc's χ (π-folded for the symmetric χ)."""
    mode = mixture.modes()  # [b, n, D]
    primary = batch["occupancy"].argmax(-1)  # [b, n]
    d = mode.shape[-1]
    idx = primary[..., None, None].expand(*primary.shape, 1, d)
    chi = torch.gather(upcast(batch["chi"]), -2, idx)[..., 0, :]
    ok = torch.gather(batch["chi_mask"].bool(), -2, idx)[..., 0, :] & batch["valid"].bool()[..., None]
    chi = torch.where(ok, chi, torch.zeros_like(chi))
    residual = circular_residual(mode.detach() - chi, batch["chi_symmetric"].bool())
    hit = (residual.abs() <= math.radians(tol_deg)) & ok
    return hit.sum((0, 1)).float(), ok.sum((0, 1)).float()


def compute_loss(
    model: QFitLatent, batch: Mapping[str, Any], step_info: Mapping[str, Any] | None = None
) -> tuple[Tensor, dict[str, Tensor]]:
    """Trainer adapter: (loss, {"nll", "chi_acc_1".."chi_acc_D"}).

    ``chi_acc_d`` is the fraction of this batch's valid residues (defining χ_d in their
    highest-occupancy altloc) whose top mode is within 20°; it is left out of the dict when no such
    residue exists, so the trainer's running mean only counts batches where it is defined. Valid
    residues without a usable frame (``frame_mask`` False) take no part in the loss.
    ``step_info`` (epoch, step, …) is accepted for the trainer's signature and unused.
    """
    outputs = model(batch)
    mixture = mixture_from_outputs(outputs)
    loss, _ = qfit_nll(
        mixture, batch["chi"], batch["chi_mask"], batch["occupancy"], batch["chi_symmetric"],
        batch["valid"] & outputs["mask"], batch.get("altloc_mask"),
    )  # fmt: skip
    terms: dict[str, Tensor] = {"nll": loss.detach()}
    with torch.no_grad():
        hits, counts = chi_accuracy(mixture, batch)
        for i in range(hits.shape[0]):
            if counts[i] > 0:
                terms[f"chi_acc_{i + 1}"] = hits[i] / counts[i]
    return loss, terms
