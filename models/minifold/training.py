"""What the trainer and the sampler call: one training step's loss, DDIM sampling, and the
one-step x_0 prediction (minifold_report_page.txt, "Loss Functions", "Frame-Aware
Self-Conditioning", "Classifier-Free Guidance", "DDIM Evaluation Metrics").

Units. The model works in *model units*: Å ÷ 10 (fixed scale, v11+) or Å ÷ R_g of each protein
(v10). Every loss is computed in *loss units*, Å ÷ ``coord_scale`` (10 Å) for all versions, so
loss values compare across versions and Å constants convert once (3.8 Å → 0.38).
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Bool, Int
from torch import Tensor, nn

from ptk.errors import ConfigError
from ptk.models import losses as L
from ptk.models.diffusion import centered_noise, cfg_combine, ddim_sample
from ptk.models.minifold.config import MiniFoldLossConfig, VersionConfig
from ptk.models.minifold.contact_classifier import ContactClassifier, classifier_loss
from ptk.models.minifold.frames import ca_frames
from ptk.models.minifold.heads import IDEAL_BOND_LENGTHS
from ptk.models.minifold.model import MiniFold
from ptk.models.precision import fp32_island, upcast
from ptk.models.rigid import Rigid

__all__ = ["MINIFOLD_TERMS", "BACKBONE_TERMS", "training_step_loss", "compute_loss", "sample", "predict_x0"]

#: Loss terms every denoiser returns (the metrics.csv columns), plus ``bond_weight``.
MINIFOLD_TERMS: tuple[str, ...] = (
    "fape", "frame_rot", "dist_mse", "bond", "chirality", "angle", "rg", "aux_dist", "clash",
)  # fmt: skip
#: Extra terms of versions with the backbone head (v14), plus ``bb_ramp``.
BACKBONE_TERMS: tuple[str, ...] = ("bb_fape", "bb_bond", "bb_angle", "omega")


def _uniform(generator: torch.Generator | None, size: int = 1) -> Tensor:
    device = generator.device if generator is not None else "cpu"
    return torch.rand(size, generator=generator, device=device).cpu()


def _structure(batch: dict[str, Any], coord_scale: float) -> dict[str, Tensor]:
    """Centred reference coordinates: Cα and backbone in Å, the residue mask (Cα present)."""
    backbone = batch["backbone"].float()
    mask = batch["residue_mask"].bool()
    bb_mask = batch.get("backbone_mask")
    bb_mask = mask[..., None].expand(*mask.shape, 4) if bb_mask is None else bb_mask.bool() & mask[..., None]
    mask = mask & bb_mask[..., 1]
    ca = backbone[:, :, 1]
    w = mask[..., None].float()
    com = (ca * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp(min=1)
    ca = (ca - com) * w
    backbone = (backbone - com[:, :, None]) * bb_mask[..., None].float()
    return {"ca": ca, "backbone": backbone, "mask": mask, "bb_mask": bb_mask}


def _scale(model: MiniFold, rg: Tensor) -> Tensor:
    """Å per model unit, per example: the fixed scale, or R_g (v10)."""
    d = model.cfg.diffusion
    if d.coord_norm == "rg":
        return rg.clamp(min=1.0)
    return torch.full_like(rg, d.coord_scale)


def bond_weight(epoch: int, cfg: MiniFoldLossConfig) -> float:
    """β(e) = min(end, start + (end − start)·min(e/anneal, 1)) (the page's bond anneal)."""
    return L.bond_weight(epoch, start=cfg.bond_start, end=cfg.bond_end, anneal_epochs=cfg.bond_anneal_epochs)


def _mean(x: Tensor) -> Tensor:
    return x.float().mean()


def _denoiser_loss(
    model: MiniFold,
    batch: dict[str, Any],
    cfg: VersionConfig,
    epoch: int,
    generator: torch.Generator | None,
    graph_terms: bool = False,
) -> tuple[Tensor, dict[str, Tensor]]:
    lcfg: MiniFoldLossConfig = cfg.loss  # type: ignore[assignment]
    d = model.cfg.diffusion
    unit = d.coord_scale  # Å per loss unit
    ref = _structure(batch, unit)
    mask, ca = ref["mask"], ref["ca"]
    b, n = mask.shape
    device = ca.device
    if not mask.any():
        raise ConfigError("training batch has no residue with a Cα")

    rg_true = L.radius_of_gyration(ca, mask).float()  # Å
    scale = _scale(model, rg_true)  # Å per model unit, [b]
    x0 = ca / scale[:, None, None]
    t = model.schedule.sample_t(b, generator, device)
    noise = centered_noise(x0.shape, mask, generator)
    x_t = model.schedule.q_sample(x0, t, noise) * mask[..., None].float()

    null = None
    if model.training and d.p_uncond > 0:
        draws = _uniform(generator, 1 if d.p_uncond_unit == "batch" else b)
        null = (draws < d.p_uncond).expand(b).to(device)
    cond = model.condition(batch["aatype"], mask, null)
    x_sc = bb_sc = None
    if d.self_cond_prob > 0 and float(_uniform(generator)) < d.self_cond_prob:
        with torch.no_grad():
            previous = model.denoise(cond, x_t, t)
        x_sc, bb_sc = previous["x0"].detach(), previous["backbone"]
        bb_sc = None if bb_sc is None else bb_sc.detach()
    out = model.denoise(cond, x_t, t, x_sc, bb_sc)

    to_loss = (scale / unit)[:, None, None]
    with fp32_island(ca):
        x_pred = upcast(out["x0"]) * to_loss
        x_true = ca / unit
        if model.cfg.denoiser.backbone_head:
            bb_true = ref["backbone"] / unit
            frames_true, valid_true = Rigid.from_backbone(bb_true[:, :, 0], x_true, bb_true[:, :, 2])
            valid_true = valid_true & ref["bb_mask"][..., :3].all(-1)
            frames_true = Rigid(frames_true.rot, x_true)
        else:
            frames_true, valid_true = ca_frames(x_true, mask)
        learned = out["rot"] is not None and lcfg.fape_frames == "learned"
        if learned:
            rot_pred, frame_mask = upcast(out["rot"]), valid_true
        else:
            gs, valid_pred = ca_frames(x_pred, mask)
            rot_pred, frame_mask = gs.rot, valid_true & valid_pred
        clamp = lcfg.fape_clamp / unit
        # consecutive-residue terms skip chain gaps when the batch carries residue numbers
        rix = batch.get("resnum")
        rix = None if rix is None else rix.to(device)
        terms: dict[str, Tensor] = {}
        terms["fape"] = _mean(
            L.fape_loss(
                rot_pred, x_pred, x_pred, frames_true.rot, x_true, x_true,
                frame_mask=frame_mask, point_mask=mask, clamp_distance=clamp, length_scale=1.0,
            )
        )  # fmt: skip
        if out["rot"] is not None:
            terms["frame_rot"] = _mean(L.frame_rotation_loss(upcast(out["rot"]), frames_true.rot, valid_true))
        else:
            terms["frame_rot"] = x_pred.new_zeros(())
        terms["dist_mse"] = _mean(L.distance_mse_loss(x_pred, x_true, mask))
        terms["bond"] = _mean(L.ca_bond_loss(x_pred, mask, rix, ideal=lcfg.bond_ideal / unit))
        terms["chirality"] = _mean(L.chirality_loss(x_pred, x_true, mask, rix))
        terms["angle"] = _mean(L.bond_angle_loss(x_pred, x_true, mask, rix))
        terms["rg"] = _mean(L.log_rg_loss(torch.exp(upcast(cond["log_rg"])), rg_true))
        aux, aux_cfg = upcast(cond["aux_logits"]), model.cfg.aux_pair
        terms["aux_dist"] = _mean(
            L.aux_distance_ce_loss(
                aux, ca, mask, n_bins=aux.shape[-1], d_min=aux_cfg.d_min, d_max=aux_cfg.d_max
            )
        )
        contacts = batch.get("contacts")
        contacts = None if contacts is None else contacts.to(device).float()
        threshold = lcfg.clash_threshold / unit
        terms["clash"] = _mean(L.clash_loss(x_pred, mask, threshold, contacts, residue_index=rix))
        beta = bond_weight(epoch, lcfg)
        weights = {name: getattr(lcfg, name) for name in MINIFOLD_TERMS if name != "bond"}
        weights["bond"] = beta
        extra = {"bond_weight": torch.tensor(float(beta))}
        if model.cfg.denoiser.kind == "ipa" and model.cfg.denoiser.frame_init == "snr_gated":
            extra["frame_conf_gt_half"] = _confident_frames(model, t, mask, frames_mode_sc=x_sc is not None)
        if model.cfg.denoiser.backbone_head:
            bb_pred = upcast(out["backbone"]) * to_loss[..., None]
            bb_mask = ref["bb_mask"]
            ideal = tuple(v / unit for v in IDEAL_BOND_LENGTHS)
            terms["bb_fape"] = _mean(
                L.backbone_fape_loss(
                    rot_pred, x_pred, bb_pred, frames_true.rot, x_true, bb_true,
                    frame_mask=frame_mask, atom_mask=bb_mask, clamp_distance=clamp, length_scale=1.0,
                )
            )  # fmt: skip
            terms["bb_bond"] = _mean(L.backbone_bond_loss(bb_pred, bb_mask, rix, ideal=ideal))
            terms["bb_angle"] = _mean(L.backbone_angle_loss(bb_pred, bb_mask, rix))
            terms["omega"] = _mean(L.omega_loss(bb_pred, bb_mask, rix))
            ramp = min(1.0, epoch / lcfg.bb_ramp_epochs) if lcfg.bb_ramp_epochs > 0 else 1.0
            weights.update({name: ramp * getattr(lcfg, name) for name in BACKBONE_TERMS})
            extra["bb_ramp"] = torch.tensor(ramp)
        total = sum(weights[name] * value for name, value in terms.items())
    if graph_terms:  # the weighted terms themselves, still in the graph (gradient diagnostics)
        return total, {name: weights[name] * value for name, value in terms.items() if weights[name] != 0}
    out_terms = {k: v.detach() for k, v in terms.items()}
    out_terms.update(extra)
    return total, out_terms


def _confident_frames(model: nn.Module, t: Tensor, mask: Tensor, frames_mode_sc: bool) -> Tensor:
    """The page's frame-confidence diagnostic ("57.7% conf > 0.5"): the share of the batch's
    frames whose initial rotation has SNR-gate confidence above 0.5. A pass that starts from
    self-conditioning frames (``self_cond="frames"``) counts as confidence 1 (t = 0)."""
    conf = model.frame_confidence(t).float()
    if frames_mode_sc and model.cfg.denoiser.self_cond == "frames":
        conf = torch.ones_like(conf)
    residues = mask.sum(-1).float()
    return ((conf > 0.5).float() * residues).sum().cpu() / residues.sum().cpu()


def training_step_loss(
    model: nn.Module,
    batch: dict[str, Any],
    cfg: VersionConfig,
    epoch: int,
    generator: torch.Generator | None = None,
    graph_terms: bool = False,
) -> tuple[Tensor, dict[str, Tensor]]:
    """One step's weighted loss and its detached terms, for a ``collate_cath`` batch
    (``graph_terms``: the weighted terms with their graph instead, those of non-zero weight,
    which sum to the loss; denoisers only).

    Denoisers: sample t ~ U{0…T−1} and centred noise, noise the centred Cα trace, (training
    mode) drop the sequence to MASK tokens with ``p_uncond``, self-condition with
    ``self_cond_prob`` (a no-grad pass whose x_0 seeds the frames of the graded pass), and score
    the x_0 prediction with the version's weighted losses. ``epoch`` (1-based) drives the bond
    anneal and v14's backbone ramp. Randomness comes from ``generator`` (global RNG when None).
    Classifier: :func:`classifier_loss`.
    """
    if cfg.family == "contact-classifier":
        if not isinstance(model, ContactClassifier):
            raise ConfigError(f"version {cfg.name} needs a ContactClassifier, got {type(model).__name__}")
        return classifier_loss(model(batch), batch, cfg.loss)  # type: ignore[arg-type]
    if not isinstance(model, MiniFold):
        raise ConfigError(f"version {cfg.name} needs a MiniFold model, got {type(model).__name__}")
    return _denoiser_loss(model, batch, cfg, epoch, generator, graph_terms)


def compute_loss(
    model: nn.Module, batch: dict[str, Any], step_info: dict[str, Any]
) -> tuple[Tensor, dict[str, Tensor]]:
    """``training_step_loss`` with the version config the model was built from
    (``step_info = {"epoch": int, ...}``)."""
    version = getattr(model, "version", None)
    if version is None:
        raise ConfigError("compute_loss needs a model built by build_model(VersionConfig)")
    return training_step_loss(
        model, batch, version, int(step_info.get("epoch", 1)), step_info.get("generator")
    )


@torch.no_grad()
def sample(
    model: MiniFold,
    cfg: VersionConfig,
    aatype: Int[Tensor, "b n"],
    residue_mask: Bool[Tensor, "b n"],
    steps: int = 50,
    eta: float = 0.3,
    guidance: float = 1.5,
    generator: torch.Generator | None = None,
    return_traj: bool = False,
) -> dict[str, Any]:
    """Generate backbones for the sequences ``aatype`` by DDIM from pure noise.

    Self-conditioning feeds each step's x_0 estimate into the next; guidance ``w`` mixes the
    conditional and the MASK-token unconditional predictions (w = 1 skips the latter). v10
    rescales by the predicted R_g.

    Returns:
        ``ca`` ``[b, n, 3]`` Å (centred; 0 on padding), ``backbone`` ``[b, n, 4, 3]`` Å for
        versions with the backbone head else None, ``x0_traj`` (list of ``[b, n, 3]`` Å, one per
        step) when ``return_traj`` else None.
    """
    if not isinstance(model, MiniFold):
        raise ConfigError(f"version {cfg.name} is not a generative model; nothing to sample")
    mask = residue_mask.bool()
    b, n = mask.shape
    cond_c = model.condition(aatype, mask)
    cond_u = (
        model.condition(aatype, mask, torch.ones(b, dtype=torch.bool, device=mask.device))
        if guidance != 1.0
        else None
    )
    last: dict[bool, Tensor | None] = {True: None, False: None}

    def predict(x_t: Tensor, t: Tensor, x_sc: Tensor | None, conditional: bool) -> Tensor:
        bb_sc = last[conditional] if x_sc is not None else None  # the branch's previous backbone
        out = model.denoise(cond_c if conditional else cond_u, x_t, t, x_sc, bb_sc)
        last[conditional] = out["backbone"]
        return upcast(out["x0"])

    x_T = centered_noise((b, n, 3), mask, generator)
    x0, traj = ddim_sample(model.schedule, predict, x_T, mask, steps, eta, guidance, generator,
                           self_condition=True, return_traj=return_traj)  # fmt: skip
    scale = _scale(model, torch.exp(upcast(cond_c["log_rg"])))[:, None, None]
    backbone = None
    if last[True] is not None:
        bb = (
            upcast(last[True])
            if last[False] is None
            else cfg_combine(upcast(last[False]), upcast(last[True]), guidance)
        )
        backbone = bb * scale[..., None] * mask[..., None, None].float()
    return {
        "ca": x0 * scale,
        "backbone": backbone,
        "x0_traj": [x * scale for x in traj] if traj is not None else None,
    }


@torch.no_grad()
def predict_x0(
    model: MiniFold,
    cfg: VersionConfig,
    batch: dict[str, Any],
    t: int = 100,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor | None]:
    """One-step x_0 prediction from the reference noised to timestep ``t`` (the page's
    "x0-prediction, single-step denoising from t=100"): ``ca`` Å, ``backbone`` Å or None."""
    if not isinstance(model, MiniFold):
        raise ConfigError(f"version {cfg.name} is not a generative model; nothing to predict")
    ref = _structure(batch, model.cfg.diffusion.coord_scale)
    mask, ca = ref["mask"], ref["ca"]
    b = mask.shape[0]
    rg = L.radius_of_gyration(ca, mask).float()
    scale = _scale(model, rg)[:, None, None]
    t_vec = torch.full((b,), int(t), dtype=torch.long, device=ca.device)
    x_t = model.schedule.q_sample(ca / scale, t_vec, centered_noise(ca.shape, mask, generator))
    x_t = x_t * mask[..., None].float()
    out = model.denoise(model.condition(batch["aatype"], mask), x_t, t_vec)
    backbone = None if out["backbone"] is None else upcast(out["backbone"]) * scale[..., None]
    return {"ca": upcast(out["x0"]) * scale, "backbone": backbone}
