"""Typed, frozen configs of the Mini-Fold family and its stage-1 ContactClassifier.

A version (``versions/<name>.toml``) is resolved by :mod:`ptk.models.minifold.registry` into a
:class:`VersionConfig`: the model architecture (:class:`MiniFoldConfig` or
:class:`ClassifierConfig`), the loss weights (:class:`MiniFoldLossConfig` /
:class:`ClassifierLossConfig`) and the training recipe (the ``[train]`` table, validated by
:class:`ptk.models.optim.TrainConfig`). Every block takes explicit arguments built from these
dataclasses; nothing splats a config dict into a module.

Numbers come from ``../shared/seeds/minifold_report_page.txt``; where the page is silent the
field's comment says so and the value is this package's choice.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, get_args, get_origin, get_type_hints

from ptk.errors import ConfigError, unknown_choice
from ptk.models.diffusion import SCHEDULES
from ptk.models.minifold.page import PAGE_DEVIATIONS, PageDeviation, page_deviations  # their old home

__all__ = [
    "FAMILIES",
    "EncoderConfig",
    "PairStackConfig",
    "AuxPairConfig",
    "RgConfig",
    "DenoiserConfig",
    "DiffusionConfig",
    "MiniFoldConfig",
    "ClassifierConfig",
    "MiniFoldLossConfig",
    "ClassifierLossConfig",
    "VersionConfig",
    "build_dataclass",
    "PageDeviation",
    "PAGE_DEVIATIONS",
    "page_deviations",
]

FAMILIES: tuple[str, ...] = ("minifold", "contact-classifier")


def _choice(kind: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise unknown_choice(kind, value, allowed)


def _positive(owner: str, **values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ConfigError(f"{owner}.{name} must be > 0, got {value}")


@dataclass(frozen=True)
class EncoderConfig:
    """The ContactClassifier encoder (stage 1): token embedding, two parallel transformer
    towers (classification, contact), outer-product-mean contact blocks.

    Page: dim 128, 2 towers, d_pair 64, 2 contact blocks with outer product mean, 1.2M params.
    Layers per tower, heads and the contact block's inner layout are not on the page.
    """

    dim: int = 128
    n_towers: int = 2
    layers_per_tower: int = 2
    n_heads: int = 8
    ffn_expansion: int = 4
    d_pair: int = 64
    opm_dim: int = 32
    n_contact_blocks: int = 2
    tri_mul_dim: int = 64
    max_rel_pos: int = 32
    dropout: float = 0.1

    def __post_init__(self) -> None:
        _positive("encoder", dim=self.dim, layers_per_tower=self.layers_per_tower, d_pair=self.d_pair,
                  n_heads=self.n_heads, opm_dim=self.opm_dim)  # fmt: skip
        if self.n_towers not in (1, 2):
            raise ConfigError(
                f"encoder.n_towers must be 1 (shared) or 2 (class + contact), got {self.n_towers}"
            )
        if self.dim % self.n_heads:
            raise ConfigError(f"encoder.dim {self.dim} is not divisible by n_heads {self.n_heads}")


@dataclass(frozen=True)
class PairStackConfig:
    """The main pair stack. ``triangle=False``: v10–v12's blocks (row + column axial attention +
    FFN) with linear-clipped RPE; ``triangle=True``: v13's EnhancedPairBlock (triangle
    multiplicative outgoing + incoming, then the same axial attention + FFN)."""

    n_blocks: int = 4
    d_pair: int = 128
    triangle: bool = False
    tri_mul_dim: int = 64
    n_heads: int = 4
    head_dim: int = 32
    ffn_expansion: int = 4
    rpe: str = "linear"
    max_rel_pos: int = 32
    rpe_bins: int = 128
    rpe_max_sep: int = 512
    rpe_linear_bins: int = 8
    rpe_sinusoidal: int = 32

    def __post_init__(self) -> None:
        _choice("pair_stack.rpe", self.rpe, ("linear", "log"))
        _positive("pair_stack", d_pair=self.d_pair, n_heads=self.n_heads, head_dim=self.head_dim)
        if self.n_blocks < 0:
            raise ConfigError(f"pair_stack.n_blocks must be >= 0, got {self.n_blocks}")


@dataclass(frozen=True)
class AuxPairConfig:
    """Auxiliary distance head. v11+: an independent lightweight pair stack (64-dim, ~500K) fed
    from the frozen encoder; v10: a head on the main pair stack read through ``detach()`` (the
    page's feature-drift lesson), 96 bins, disabled (weight 0)."""

    source: str = "independent"
    n_blocks: int = 2
    d_pair: int = 64
    n_heads: int = 4
    head_dim: int = 16
    ffn_expansion: int = 2
    n_bins: int = 32
    d_min: float = 2.0
    d_max: float = 40.0

    def __post_init__(self) -> None:
        _choice("aux_pair.source", self.source, ("independent", "main_detached"))
        if self.d_max <= self.d_min or self.n_bins < 2:
            raise ConfigError(f"aux_pair needs d_max > d_min and n_bins >= 2, got {self}")


@dataclass(frozen=True)
class RgConfig:
    """The radius-of-gyration predictor: MLP on the mask-pooled encoder embedding → log R_g (Å)."""

    hidden: int = 128


@dataclass(frozen=True)
class DenoiserConfig:
    """The coordinate denoiser. ``kind="egnn"`` (v10; ``d_single`` = node width, ``d_ffn`` =
    edge-message width) or ``kind="ipa"`` (v11+: IPA, transition MLP, frame update per layer).

    Page: v11 6 layers, 4 heads, 4 query points, IPA hidden 256; v12/v13 8 layers, 8 heads,
    8 query points, d_ipa_hidden 512, d_ipa_ffn 1024, 2-layer FrameUpdate MLP. ``c_hidden`` (per
    head), ``n_v_points`` and ``c_z`` are not on the page.
    """

    kind: str = "ipa"
    n_layers: int = 8
    d_single: int = 512
    d_ffn: int = 1024
    n_heads: int = 8
    c_hidden: int = 64
    n_qk_points: int = 8
    n_v_points: int = 8
    c_z: int = 128
    #: hidden width of the frame update MLP; 0 = AF2's single linear layer (v11).
    frame_update_hidden: int = 512
    d_time: int = 128
    n_rbf: int = 16
    #: largest RBF centre of the distance features, in model units (÷ coord_scale).
    rbf_max: float = 2.0
    dropout: float = 0.0
    #: v14: place N, Cα, C, O from the frames with ideal geometry and learned offsets.
    backbone_head: bool = False
    #: IPA: the initial rotations, "identity" or "snr_gated" (the page: slerp(I, R_GS(x_t), conf)).
    frame_init: str = "identity"
    #: IPA: the initial translations, "shrunk" (E[x0 | x_t] for a Gaussian of the predicted R_g)
    #: or "noised" (the page: x_t).
    trans_init: str = "shrunk"
    #: IPA: self-conditioning by "features" (the previous x0's distances and local coordinates)
    #: or "frames" (the page: the pass starts from the previous x0's frames).
    self_cond: str = "features"

    def __post_init__(self) -> None:
        _choice("denoiser.kind", self.kind, ("egnn", "ipa"))
        _choice("denoiser.frame_init", self.frame_init, ("identity", "snr_gated"))
        _choice("denoiser.trans_init", self.trans_init, ("noised", "shrunk"))
        _choice("denoiser.self_cond", self.self_cond, ("frames", "features"))
        _positive("denoiser", n_layers=self.n_layers, d_single=self.d_single, d_ffn=self.d_ffn,
                  n_heads=self.n_heads, c_hidden=self.c_hidden, c_z=self.c_z, d_time=self.d_time)  # fmt: skip
        if self.backbone_head and self.kind != "ipa":
            raise ConfigError("denoiser.backbone_head needs frames: use kind = 'ipa'")


@dataclass(frozen=True)
class DiffusionConfig:
    """Noise schedule and conditioning. ``coord_norm="fixed"``: coordinates ÷ ``coord_scale``
    (10 Å, v11+); ``"rg"``: ÷ each protein's R_g (v10), recovered at sampling from the R_g
    predictor. The SNR gate conf = clamp((SNR − low)/(high − low), 0, 1) slerps the initial
    frames from the identity (conf 0, high noise) to the Gram-Schmidt frames (conf 1)."""

    T: int = 1000
    #: ``cosine`` (the page's measured 57.7% frame confidence > 0.5 pins it) or
    #: ``shifted_cosine`` (SNR × ``snr_shift``: SNR < 1 from t ≈ 702, the page's "roughly
    #: t > 700"), or ``linear``; see :class:`ptk.models.diffusion.NoiseSchedule`.
    schedule: str = "cosine"
    snr_shift: float = 4.0
    coord_norm: str = "fixed"
    coord_scale: float = 10.0
    p_uncond: float = 0.0
    #: what ``p_uncond`` drops: a whole ``batch`` (the page: 10% of batches unconditioned) or
    #: each ``example`` of a batch on its own.
    p_uncond_unit: str = "batch"
    self_cond_prob: float = 0.25
    snr_gate_low: float = 0.2
    snr_gate_high: float = 1.0

    def __post_init__(self) -> None:
        _choice("diffusion.schedule", self.schedule, SCHEDULES)
        _choice("diffusion.coord_norm", self.coord_norm, ("fixed", "rg"))
        _choice("diffusion.p_uncond_unit", self.p_uncond_unit, ("batch", "example"))
        _positive("diffusion", T=self.T, coord_scale=self.coord_scale, snr_shift=self.snr_shift)
        for name in ("p_uncond", "self_cond_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"diffusion.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.snr_gate_high <= self.snr_gate_low:
            raise ConfigError("diffusion.snr_gate_high must exceed snr_gate_low")


@dataclass(frozen=True)
class MiniFoldConfig:
    """Architecture of a Mini-Fold denoising model (v10 … v14)."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    pair_stack: PairStackConfig = field(default_factory=PairStackConfig)
    aux_pair: AuxPairConfig = field(default_factory=AuxPairConfig)
    rg: RgConfig = field(default_factory=RgConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)


@dataclass(frozen=True)
class ClassifierConfig:
    """Architecture of the stage-1 ContactClassifier."""

    encoder: EncoderConfig = field(default_factory=EncoderConfig)


@dataclass(frozen=True)
class MiniFoldLossConfig:
    """Loss weights (the page's tables) and loss constants, Å where a length.

    Losses are computed in model units (÷ coord_scale); Å constants are converted there.
    ``fape_frames``: ``"learned"`` (v11b+: R_pred from the IPA) or ``"gram_schmidt"`` (v10/v11:
    frames rebuilt from the predicted Cα). Bond weight β(e) = min(bond_end, bond_start +
    (bond_end − bond_start)·min(e/bond_anneal_epochs, 1)). v14's backbone terms ramp in linearly
    over ``bb_ramp_epochs`` (page: "bb_ramp 0.4" at epoch 2).
    """

    fape: float = 1.0
    fape_frames: str = "learned"
    #: the page's FAPE values (random ≈ 1.31, untrained > 2) exceed 1, so the clamp is loose.
    fape_clamp: float = 30.0
    frame_rot: float = 0.5
    dist_mse: float = 1.0
    bond_start: float = 1.0
    bond_end: float = 3.0
    bond_anneal_epochs: float = 10.0
    bond_ideal: float = 3.8
    chirality: float = 0.1
    angle: float = 0.5
    rg: float = 0.5
    aux_dist: float = 0.03
    clash: float = 0.1
    clash_threshold: float = 3.0
    bb_fape: float = 0.0
    bb_bond: float = 0.0
    bb_angle: float = 0.0
    omega: float = 0.0
    bb_ramp_epochs: float = 5.0

    def __post_init__(self) -> None:
        _choice("loss.fape_frames", self.fape_frames, ("learned", "gram_schmidt"))
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and value < 0:
                raise ConfigError(f"loss.{f.name} must be >= 0, got {value}")


@dataclass(frozen=True)
class ClassifierLossConfig:
    """ContactClassifier loss weights: CE on CATH class and architecture, class-balanced BCE on
    the Cα < 8 Å contact map over pairs with |i − j| ≥ ``contact_min_sep`` (page: val total ≈
    class CE + arch CE + contact BCE, with BCE ≈ 0.69 at chance)."""

    class_ce: float = 1.0
    arch_ce: float = 1.0
    contact_bce: float = 1.0
    contact_min_sep: int = 1


# ---------------------------------------------------------------------------------------------
# Strict dict → dataclass


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(path: str, value: Any, tp: Any) -> Any:
    origin = get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() == "none"):
            return None
        return _coerce(path, value, args[0])
    if _is_dataclass_type(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path} must be a table, got {value!r}")
        return build_dataclass(tp, value, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        if isinstance(value, list | tuple):
            inner = get_args(tp)[0] if get_args(tp) else str
            return tuple(_coerce(path, v, inner) for v in value)
    elif origin is dict:
        if isinstance(value, Mapping):
            return dict(value)
    name = getattr(tp, "__name__", str(tp))
    raise ConfigError(f"{path} expects {name}, got {value!r}")


def build_dataclass(cls: type, values: Mapping[str, Any], path: str = "") -> Any:
    """``cls(**values)`` with every key checked (an unknown key is a :class:`ConfigError` that lists
    the allowed keys) and every value type-checked; nested dataclass fields take nested tables."""
    hints = get_type_hints(cls)
    allowed = [f.name for f in fields(cls)]
    kwargs = {}
    for key, value in values.items():
        where = f"{path}.{key}" if path else key
        if key not in allowed:
            raise unknown_choice(f"config key {where!r}; key", key, allowed)
        kwargs[key] = _coerce(where, value, hints[key])
    return cls(**kwargs)


def dataclass_to_dict(obj: Any) -> Any:
    """A JSON/TOML-able dict of a (nested) config dataclass."""
    if dataclasses.is_dataclass(obj):
        return {f.name: dataclass_to_dict(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, tuple):
        return [dataclass_to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: dataclass_to_dict(v) for k, v in obj.items()}
    return obj


@dataclass(frozen=True)
class VersionConfig:
    """One resolved version: what ``ptk train --version NAME`` trains.

    Attributes:
        name: version name (the TOML file stem).
        family: ``"minifold"`` or ``"contact-classifier"``.
        parent: the version this one derives from (None for a root).
        description: one line.
        changes: what changed relative to the parent, in words (from the TOML).
        size: ``"default"`` (the page's sizes), ``"small"`` (CPU minutes) or ``"tiny"`` (CPU tests).
        init_from: version whose (EMA) weights initialise this one, loaded with strict=False.
        init_fresh: top-level modules (``pair_stack``) that train from scratch even where
            ``init_from``'s tensors fit them.
        encoder_from: version whose trained encoder is frozen inside a denoiser.
        model: :class:`MiniFoldConfig` or :class:`ClassifierConfig`.
        loss: :class:`MiniFoldLossConfig` or :class:`ClassifierLossConfig`.
        train: the resolved recipe: the ``[train]`` tables along the chain over the defaults
            of :class:`ptk.models.optim.TrainConfig`, as a dict (:meth:`train_config` gives
            the typed object).
    """

    name: str
    family: str
    parent: str | None
    description: str
    changes: tuple[str, ...]
    size: str
    init_from: str | None
    encoder_from: str | None
    model: MiniFoldConfig | ClassifierConfig
    loss: MiniFoldLossConfig | ClassifierLossConfig
    train: Mapping[str, Any]
    init_fresh: tuple[str, ...] = ()

    def train_config(self) -> Any:
        """The typed :class:`ptk.models.optim.TrainConfig` of this version's recipe."""
        from ptk.models.optim import TrainConfig

        return TrainConfig.from_dict(dict(self.train))

    def to_dict(self) -> dict[str, Any]:
        """The resolved config as plain data (save it next to every output)."""
        return {
            "version": self.name,
            "family": self.family,
            "parent": self.parent,
            "description": self.description,
            "changes": list(self.changes),
            "size": self.size,
            "init_from": self.init_from,
            "init_fresh": list(self.init_fresh),
            "encoder_from": self.encoder_from,
            "model": dataclass_to_dict(self.model),
            "loss": dataclass_to_dict(self.loss),
            "train": dataclass_to_dict(dict(self.train)),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VersionConfig:
        """Rebuild a config saved by :meth:`to_dict` (strict: unknown keys raise)."""
        allowed = ("version", "family", "parent", "description", "changes", "size", "init_from",
                   "init_fresh", "encoder_from", "model", "loss", "train")  # fmt: skip
        for key in data:
            if key not in allowed:
                raise unknown_choice("version config key", key, allowed)
        family = data.get("family", "minifold")
        _choice("family", family, FAMILIES)
        model_cls, loss_cls = (
            (MiniFoldConfig, MiniFoldLossConfig)
            if family == "minifold"
            else (ClassifierConfig, ClassifierLossConfig)
        )
        from ptk.models.optim import TrainConfig

        # resolved in full (defaults included), so a saved config needs no defaults to re-read
        train = TrainConfig.from_dict(dict(data.get("train", {}))).to_dict()
        return cls(
            name=str(data["version"]),
            family=family,
            parent=data.get("parent"),
            description=str(data.get("description", "")),
            changes=tuple(data.get("changes", ())),
            size=str(data.get("size", "default")),
            init_from=data.get("init_from"),
            init_fresh=tuple(data.get("init_fresh", ())),
            encoder_from=data.get("encoder_from"),
            model=build_dataclass(model_cls, data.get("model", {}), "model"),
            loss=build_dataclass(loss_cls, data.get("loss", {}), "loss"),
            train=train,
        )
