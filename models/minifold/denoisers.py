"""The two Mini-Fold coordinate denoisers. Both predict x_0 (model units, ÷ coord scale) from
the noised Cα cloud x_t, the timestep, the frozen encoder's single embedding and the pair stack.

- :class:`EGNNDenoiser` (v10): an E(n)-equivariant graph network (Satorras et al. 2021) on the
  dense residue graph; messages from node states, distance RBFs and the pair representation;
  coordinates move along x_i − x_j. No frames: FAPE has to rebuild them (the page's v10 ceiling).
- :class:`IPADenoiser` (v11+): AF2-style structure module; each layer is IPA → transition → frame
  update (composed on the right, in the local frame). x_0 is the final frame translations, and the
  final rotations are returned for FAPE and the frame-rotation loss (v11b's fix: learned R is
  used). v14 adds the backbone head on the final frames. Where the frames start
  (:class:`~ptk.models.minifold.config.DenoiserConfig`, ``page.PAGE_DEVIATIONS`` says why):

  - rotations: ``frame_init="identity"`` (ptk's default, AF2's start) or ``"snr_gated"`` (the
    page: the Gram-Schmidt rotations of the noised Cα triplets slerped from the identity by the
    SNR gate);
  - translations: ``trans_init="shrunk"`` (ptk's default: E[x_0 | x_t] = c(t)·x_t about the
    centre, c from a Gaussian of the predicted R_g: the centre at high noise, x_t at low noise)
    or ``"noised"`` (the page: x_t);
  - self-conditioning: ``self_cond="features"`` (ptk's default: the previous x_0 enters as its
    pair-distance RBFs and its coordinates in the initial frames) or ``"frames"`` (the page: the
    pass starts from the frames of the previous x_0, "treated as t = 0": its Gram-Schmidt
    Cα-triplet frames, or for v14 the N–Cα–C frames of its predicted backbone, the convention
    v14's frame targets and the page's v14 use).

  v14 has one frame convention wherever its frames come from a structure: N–Cα–C. The one
  exception is ``frame_init="snr_gated"`` from x_t itself, which holds noised Cα only (the page
  noises the Cα and derives N, C and O from the frames), so its only frames are Cα triplets.

Inputs that carry geometry enter invariantly (pairwise-distance RBFs, coordinates expressed in
the local frame), so the IPA denoiser follows a translation of x_t always, and a rotation
whenever its initial rotations do (``snr_gated`` at conf = 1, or ``self_cond="frames"``); the
EGNN is E(3)-equivariant always.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from ptk.geometry import safe_norm
from ptk.models.diffusion import center_of_mass
from ptk.models.ipa import BackboneUpdate, InvariantPointAttention
from ptk.models.linear import Linear, LinearNoBias
from ptk.models.minifold.config import DenoiserConfig
from ptk.models.minifold.frames import backbone_residue_frames, ca_frames, gated_frames
from ptk.models.minifold.heads import BackboneAtomHead, TimestepEmbedding, rbf
from ptk.models.precision import fp32_island, upcast
from ptk.models.rigid import Rigid
from ptk.models.transition import Transition

__all__ = ["IPALayer", "IPADenoiser", "EGNNLayer", "EGNNDenoiser"]


class IPALayer(nn.Module):
    """``s ← LN(s + IPA(s, z, T))``; ``s ← s + FFN(s)``; ``T ← T ∘ update(s)``."""

    def __init__(self, cfg: DenoiserConfig):
        super().__init__()
        c = cfg.d_single
        self.ipa = InvariantPointAttention(
            c, cfg.c_z, cfg.c_hidden, cfg.n_heads, cfg.n_qk_points, cfg.n_v_points
        )
        self.norm = nn.LayerNorm(c)
        self.dropout = nn.Dropout(cfg.dropout)
        self.ffn = Transition(c, max(1, cfg.d_ffn // c))
        self.frame_update = BackboneUpdate(c, cfg.frame_update_hidden or None)

    def forward(
        self,
        s: Float[Tensor, "b n c"],
        z: Float[Tensor, "b n n c_z"],
        frames: Rigid,
        mask: Bool[Tensor, "b n"],
    ) -> tuple[Float[Tensor, "b n c"], Rigid]:
        s = self.norm(s + self.dropout(self.ipa(s, z, frames, mask)))
        s = s + self.dropout(self.ffn(s, mask))
        return s, self.frame_update(s, frames, mask)


class IPADenoiser(nn.Module):
    """IPA structure module over noised Cα (see the module docstring).

    Args:
        cfg: the denoiser config; c_single: encoder single channels; c_pair: pair-stack channels;
        coord_scale: Å per model unit (for the v14 backbone head's ideal geometry).
    """

    def __init__(self, cfg: DenoiserConfig, c_single: int, c_pair: int, coord_scale: float):
        super().__init__()
        self.cfg = cfg
        c = cfg.d_single
        self.time = TimestepEmbedding(cfg.d_time, c)
        self.linear_s = Linear(c_single, c)
        # [self-conditioning flag, x_t in the initial local frame (3)]
        self.linear_geom = Linear(4, c)
        self.norm_s = nn.LayerNorm(c)
        self.linear_z = Linear(c_pair, cfg.c_z)
        self.linear_rbf = LinearNoBias(cfg.n_rbf, cfg.c_z)
        self.linear_rbf_sc = LinearNoBias(cfg.n_rbf, cfg.c_z)
        self.norm_z = nn.LayerNorm(cfg.c_z)
        self.layers = nn.ModuleList(IPALayer(cfg) for _ in range(cfg.n_layers))
        self.backbone_head = BackboneAtomHead(c, coord_scale) if cfg.backbone_head else None

    def initial_frames(
        self,
        x_t: Float[Tensor, "b n 3"],
        conf: Float[Tensor, " b"],
        mask: Bool[Tensor, "b n"],
        x_sc: Float[Tensor, "b n 3"] | None,
        skip: Float[Tensor, " b"] | None = None,
        bb_sc: Float[Tensor, "b n 4 3"] | None = None,
    ) -> Rigid:
        """The frames the layers start from (see the module docstring); ``skip`` is c(t) of the
        shrunk translations (:meth:`ptk.models.minifold.model.MiniFold.shrink`); ``bb_sc`` the
        previous pass's backbone (v14), whose N–Cα–C frames a ``"frames"`` pass starts from."""
        if x_sc is not None and self.cfg.self_cond == "frames":
            if bb_sc is not None:
                frames, _ = backbone_residue_frames(bb_sc, mask)
                return Rigid(frames.rot, upcast(x_sc))
            frames, _ = ca_frames(x_sc, mask)
            return frames
        if self.cfg.frame_init == "identity":
            conf = torch.zeros_like(conf)
        frames = gated_frames(x_t, conf, mask)
        if skip is not None and self.cfg.trans_init == "shrunk":
            x = upcast(x_t)
            com = center_of_mass(x, mask)
            frames = Rigid(frames.rot, (com + (x - com) * skip[:, None, None]) * mask[..., None])
        return frames

    def forward(
        self,
        single: Float[Tensor, "b n c_s"],
        pair: Float[Tensor, "b n n c_p"],
        x_t: Float[Tensor, "b n 3"],
        t: Int[Tensor, " b"],
        conf: Float[Tensor, " b"],
        mask: Bool[Tensor, "b n"],
        x_sc: Float[Tensor, "b n 3"] | None = None,
        skip: Float[Tensor, " b"] | None = None,
        bb_sc: Float[Tensor, "b n 4 3"] | None = None,
    ) -> dict[str, Tensor | None]:
        """Returns ``x0`` ``[b, n, 3]``, ``rot`` ``[b, n, 3, 3]`` (learned R), ``backbone``
        ``[b, n, 4, 3]`` (v14) or None — model units, padding zero."""
        mf = mask[..., None].float()
        frames = self.initial_frames(x_t, conf, mask, x_sc, skip, bb_sc)
        seen = x_sc if (x_sc is not None and self.cfg.self_cond == "features") else x_t
        local = frames.invert_apply(upcast(seen)) * mf
        flag = torch.full_like(local[..., :1], 1.0 if x_sc is not None else 0.0)
        s = (
            self.linear_s(single)
            + self.time(t)[:, None]
            + self.linear_geom(torch.cat([flag, local], -1).to(single.dtype))
        )
        s = self.norm_s(s) * mask[..., None].to(s.dtype)

        pm = (mask[:, :, None] & mask[:, None, :])[..., None]
        z = self.linear_z(pair) + self.linear_rbf(rbf(x_t, self.cfg.n_rbf, self.cfg.rbf_max).to(pair.dtype))
        if x_sc is not None:
            z = z + self.linear_rbf_sc(rbf(x_sc, self.cfg.n_rbf, self.cfg.rbf_max).to(pair.dtype))
        z = self.norm_z(z) * pm.to(z.dtype)

        for layer in self.layers:
            s, frames = layer(s, z, frames, mask)
        x0 = frames.trans * mf
        backbone = None
        if self.backbone_head is not None:
            backbone = self.backbone_head(s, frames) * mf[..., None]
        return {"x0": x0, "rot": frames.rot, "backbone": backbone}


class EGNNLayer(nn.Module):
    """One E(n)-equivariant layer (Satorras et al. 2021, eqs. 3–6) on the dense masked graph.

    m_ij = φ_e(h_i, h_j, RBF(|x_i − x_j|), z_ij); x_i += Σ_j (x_i − x_j)/(|x_i − x_j| + 1) φ_x(m_ij) / N_i;
    h_i += φ_h(LN h_i, Σ_j m_ij / N_i). The first edge linear layer is applied per node and
    summed (the same parameters as one layer on the concatenation, without the [b, n, n, 2c]
    intermediate). Coordinates are updated in fp32.
    """

    def __init__(self, c_h: int, c_e: int, c_z: int, n_rbf: int):
        super().__init__()
        self.edge_i = Linear(c_h, c_e, init="relu")
        self.edge_j = LinearNoBias(c_h, c_e, init="relu")
        self.edge_rbf = LinearNoBias(n_rbf, c_e, init="relu")
        self.edge_z = LinearNoBias(c_z, c_e, init="relu")
        self.edge_out = nn.Sequential(nn.SiLU(), Linear(c_e, c_e, init="relu"), nn.SiLU())
        self.coord = nn.Sequential(Linear(c_e, c_e, init="relu"), nn.SiLU(), Linear(c_e, 1, init="final"))
        self.norm = nn.LayerNorm(c_h)
        self.node = nn.Sequential(
            Linear(c_h + c_e, c_h, init="relu"), nn.SiLU(), Linear(c_h, c_h, init="final")
        )

    def forward(
        self,
        h: Float[Tensor, "b n c_h"],
        x: Float[Tensor, "b n 3"],
        z: Float[Tensor, "b n n c_z"],
        edge_mask: Bool[Tensor, "b n n"],
        n_rbf: int,
        rbf_max: float,
    ) -> tuple[Float[Tensor, "b n c_h"], Float[Tensor, "b n 3"]]:
        em = edge_mask[..., None]
        count = edge_mask.sum(-1, keepdim=True).clamp(min=1)
        feats = rbf(x, n_rbf, rbf_max).to(h.dtype)
        m = self.edge_i(h)[:, :, None] + self.edge_j(h)[:, None, :] + self.edge_rbf(feats) + self.edge_z(z)
        m = self.edge_out(m) * em.to(h.dtype)
        w = self.coord(m)
        with fp32_island(x):
            diff = x[:, :, None] - x[:, None, :]
            step = diff / (safe_norm(diff, keepdim=True) + 1.0) * upcast(w) * em
            x = x + step.sum(2) / count
        agg = m.sum(2) / count.to(m.dtype)
        h = h + self.node(torch.cat([self.norm(h), agg], -1))
        return h, x


class EGNNDenoiser(nn.Module):
    """v10's 8-layer EGNN denoiser. Node width ``d_single``, message width ``d_ffn``."""

    def __init__(self, cfg: DenoiserConfig, c_single: int, c_pair: int, coord_scale: float):
        super().__init__()
        self.cfg = cfg
        c = cfg.d_single
        self.time = TimestepEmbedding(cfg.d_time, c)
        self.linear_s = Linear(c_single, c)
        self.sc_flag = Linear(1, c)
        self.norm_s = nn.LayerNorm(c)
        self.linear_z = Linear(c_pair, cfg.c_z)
        self.linear_rbf_sc = LinearNoBias(cfg.n_rbf, cfg.c_z)
        self.norm_z = nn.LayerNorm(cfg.c_z)
        self.layers = nn.ModuleList(EGNNLayer(c, cfg.d_ffn, cfg.c_z, cfg.n_rbf) for _ in range(cfg.n_layers))

    def forward(
        self,
        single: Float[Tensor, "b n c_s"],
        pair: Float[Tensor, "b n n c_p"],
        x_t: Float[Tensor, "b n 3"],
        t: Int[Tensor, " b"],
        conf: Float[Tensor, " b"],
        mask: Bool[Tensor, "b n"],
        x_sc: Float[Tensor, "b n 3"] | None = None,
    ) -> dict[str, Tensor | None]:
        """Returns ``x0`` ``[b, n, 3]`` (model units), ``rot`` None, ``backbone`` None."""
        b, n = mask.shape
        flag = torch.full((b, 1), 1.0 if x_sc is not None else 0.0, device=x_t.device)
        h = self.linear_s(single) + self.time(t)[:, None] + self.sc_flag(flag.to(single.dtype))[:, None]
        h = self.norm_s(h) * mask[..., None].to(h.dtype)
        z = self.linear_z(pair)
        if x_sc is not None:
            z = z + self.linear_rbf_sc(rbf(x_sc, self.cfg.n_rbf, self.cfg.rbf_max).to(pair.dtype))
        z = self.norm_z(z)
        eye = torch.eye(n, dtype=torch.bool, device=mask.device)
        edge_mask = mask[:, :, None] & mask[:, None, :] & ~eye
        x = upcast(x_t)
        for layer in self.layers:
            h, x = layer(h, x, z, edge_mask, self.cfg.n_rbf, self.cfg.rbf_max)
        return {"x0": x * mask[..., None].float(), "rot": None, "backbone": None}
