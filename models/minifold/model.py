"""The Mini-Fold model: frozen ContactClassifier encoder → pair stack → denoiser, with the
auxiliary distance stack and the R_g predictor alongside (minifold_report_page.txt).

Module names are the ones training recipes address (LR groups, per-module clipping, the
tripwire): ``encoder`` (frozen), ``pair_stack``, ``aux_pair``, ``rg_pred``, ``denoiser`` and, in
v14, ``denoiser.backbone_head``.
"""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor, nn

from ptk.errors import ConfigError
from ptk.models.diffusion import NoiseSchedule
from ptk.models.minifold.config import MiniFoldConfig, VersionConfig
from ptk.models.minifold.contact_classifier import ContactClassifier
from ptk.models.minifold.denoisers import EGNNDenoiser, IPADenoiser
from ptk.models.minifold.frames import snr_confidence
from ptk.models.minifold.heads import RgPredictor
from ptk.models.minifold.pair_stack import AuxPairStack, PairStack, residue_index_of

__all__ = ["MiniFold", "Conditioning", "build_model", "load_encoder"]


class Conditioning(dict):
    """What the denoiser needs that does not depend on x_t or t (computed once per sample):
    ``single`` ``[b,n,c_s]``, ``pair`` ``[b,n,n,d_pair]``, ``aux_logits`` ``[b,n,n,bins]``,
    ``log_rg`` ``[b]``, ``mask`` ``[b,n]``."""


class MiniFold(nn.Module):
    """A Mini-Fold denoising model (v10 … v14); see the module docstring.

    The encoder is frozen: its parameters do not require grad and :meth:`train` keeps it in eval
    mode (no dropout), as in the page's "frozen ContactClassifier encoder".
    :meth:`unfreeze_encoder` makes it train with the rest (``ptk train --set encoder=train``).
    """

    def __init__(self, cfg: MiniFoldConfig, version: VersionConfig | None = None):
        super().__init__()
        self.cfg = cfg
        self.version = version
        enc = cfg.encoder
        self.encoder = ContactClassifier(enc)
        self.encoder.requires_grad_(False)
        self.encoder.eval()
        self.encoder_trainable = False
        self.pair_stack = PairStack(cfg.pair_stack, enc.dim, enc.d_pair)
        self.aux_pair = AuxPairStack(cfg.aux_pair, enc.dim, cfg.pair_stack.d_pair)
        self.rg_pred = RgPredictor(enc.dim, cfg.rg.hidden)
        denoiser_cls = IPADenoiser if cfg.denoiser.kind == "ipa" else EGNNDenoiser
        self.denoiser = denoiser_cls(cfg.denoiser, enc.dim, cfg.pair_stack.d_pair, cfg.diffusion.coord_scale)
        d = cfg.diffusion
        self.schedule = NoiseSchedule(d.T, d.schedule, snr_shift=d.snr_shift)

    def train(self, mode: bool = True) -> MiniFold:
        super().train(mode)
        if not self.encoder_trainable:
            self.encoder.eval()
        return self

    def unfreeze_encoder(self) -> None:
        """Train the encoder with the rest of the model (not the page's recipe, which freezes
        the trained stage-1 ContactClassifier)."""
        self.encoder_trainable = True
        self.encoder.requires_grad_(True)
        self.encoder.train(self.training)

    # --- pieces ---------------------------------------------------------------------------
    def condition(
        self, aatype: Int[Tensor, "b n"], mask: Bool[Tensor, "b n"], null: Bool[Tensor, " b"] | None = None
    ) -> Conditioning:
        """Encoder (frozen: no grad), pair stack, aux distance logits and log R_g. ``null``
        marks the unconditional (CFG) examples: their residue tokens become MASK."""
        mask = mask.bool()
        with torch.set_grad_enabled(self.encoder_trainable and torch.is_grad_enabled()):
            enc = self.encoder.encode(aatype, mask, null)
        single, enc_pair = enc["single"], enc["pair"]
        index = residue_index_of(mask)
        pair = self.pair_stack(single, enc_pair, index, mask)
        return Conditioning(
            single=single,
            pair=pair,
            aux_logits=self.aux_pair(single, pair, index, mask),
            log_rg=self.rg_pred(single, mask),
            mask=mask,
        )

    def frame_confidence(self, t: Int[Tensor, " b"]) -> Float[Tensor, " b"]:
        """conf(t) = clamp((SNR(t) − 0.2)/0.8, 0, 1) (the SNR gate of the initial frames)."""
        d = self.cfg.diffusion
        return snr_confidence(self.schedule.snr(t).to(t.device), d.snr_gate_low, d.snr_gate_high)

    def denoise(
        self,
        cond: Conditioning,
        x_t: Float[Tensor, "b n 3"],
        t: Int[Tensor, " b"],
        x_sc: Float[Tensor, "b n 3"] | None = None,
        bb_sc: Float[Tensor, "b n 4 3"] | None = None,
    ) -> dict[str, Tensor | None]:
        """x_0 estimate (model units) from x_t at timestep t; ``x_sc`` the self-conditioning x_0
        and ``bb_sc`` its backbone (v14: the N–Cα–C frames of a ``self_cond="frames"`` pass)."""
        kwargs = {}
        if self.cfg.denoiser.kind == "ipa":
            kwargs["skip"] = self.shrink(t, cond)
            kwargs["bb_sc"] = bb_sc
        return self.denoiser(
            cond["single"], cond["pair"], x_t, t, self.frame_confidence(t), cond["mask"], x_sc, **kwargs
        )

    def shrink(self, t: Int[Tensor, " b"], cond: Conditioning) -> Float[Tensor, " b"]:
        """c(t) of E[x_0 | x_t] = c x_t for x_0 ~ N(0, s² I) per axis:
        c = √ᾱ s² / (ᾱ s² + 1 − ᾱ), with s = R_g / √3 in model units (R_g from the R_g predictor,
        detached; 1/√3 for v10's R_g-normalised coordinates). ~1/√ᾱ at low noise, 0 at T."""
        ab = self.schedule.alpha_bar_at(t, cond["log_rg"].float())
        if self.cfg.diffusion.coord_norm == "rg":
            s2 = torch.full_like(ab, 1.0 / 3.0)
        else:
            s2 = (torch.exp(cond["log_rg"].detach().float()) / self.cfg.diffusion.coord_scale) ** 2 / 3.0
        return ab.sqrt() * s2 / (ab * s2 + 1 - ab)

    def forward(
        self,
        aatype: Int[Tensor, "b n"],
        mask: Bool[Tensor, "b n"],
        x_t: Float[Tensor, "b n 3"],
        t: Int[Tensor, " b"],
        x_sc: Float[Tensor, "b n 3"] | None = None,
        null: Bool[Tensor, " b"] | None = None,
    ) -> dict[str, Tensor | None]:
        """Condition and denoise in one call (``x0``, ``rot``, ``backbone``, ``aux_logits``,
        ``log_rg``)."""
        cond = self.condition(aatype, mask, null)
        out = self.denoise(cond, x_t, t, x_sc)
        out.update(aux_logits=cond["aux_logits"], log_rg=cond["log_rg"])
        return out


def build_model(cfg: VersionConfig | MiniFoldConfig | Any) -> nn.Module:
    """The model of a version: :class:`ContactClassifier` for the classifier family, else
    :class:`MiniFold`. Accepts a :class:`VersionConfig` or a bare model config."""
    from ptk.models.minifold.config import ClassifierConfig

    version = cfg if isinstance(cfg, VersionConfig) else None
    model_cfg = cfg.model if isinstance(cfg, VersionConfig) else cfg
    if isinstance(model_cfg, ClassifierConfig):
        model = ContactClassifier(model_cfg.encoder)
        model.version = version  # type: ignore[assignment]
        return model
    if isinstance(model_cfg, MiniFoldConfig):
        return MiniFold(model_cfg, version)
    raise ConfigError(
        f"build_model needs a VersionConfig or a Mini-Fold model config, got {type(cfg).__name__}"
    )


def load_encoder(model: MiniFold, state: Mapping[str, Tensor] | str | PathLike[str]) -> str:
    """Put trained stage-1 ContactClassifier weights into ``model.encoder`` (kept frozen).

    ``state`` is a ContactClassifier state dict (keys as the classifier's own, or prefixed
    ``encoder.``), or the path of a checkpoint holding one (its ``ema`` weights preferred).
    Returns a one-line account. Raises ConfigError when the shapes do not match."""
    if isinstance(state, str | PathLike):
        from ptk.models.optim import load_checkpoint

        ckpt = load_checkpoint(state)
        state = ckpt["ema"]["module"] if "ema" in ckpt else ckpt.get("model", ckpt)
    own = model.encoder.state_dict()
    cleaned = {k.removeprefix("encoder."): v for k, v in state.items()}
    cleaned = {k: v for k, v in cleaned.items() if k in own}
    missing = [k for k in own if k not in cleaned]
    if missing:
        raise ConfigError(f"encoder weights lack {len(missing)} tensors (first: {missing[0]!r})")
    for key, value in cleaned.items():
        if value.shape != own[key].shape:
            raise ConfigError(
                f"encoder tensor {key!r} has shape {tuple(value.shape)}, model wants {tuple(own[key].shape)}"
            )
    model.encoder.load_state_dict(cleaned)
    model.encoder.requires_grad_(False)
    model.encoder.eval()
    return f"frozen encoder: {len(cleaned)} tensors loaded"
