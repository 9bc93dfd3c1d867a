"""The training recipe of one run: :class:`TrainConfig`, its allowed values and the
``--set key=value`` parsing (:func:`parse_value`, :func:`coerce`).

The recipes are the Mini-Fold report page's (``../shared/seeds/minifold_report_page.txt``) and
qFitLatent's (``qfitlatent_readme.txt``); every key is set in a version's ``[train]`` table or on
the command line, and an unknown key or a value out of range is a :class:`ConfigError`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ptk.errors import ConfigError, unknown_choice

__all__ = ["AMP_MODES", "ENCODER_MODES", "SCHEDULES", "TrainConfig", "coerce", "parse_value"]

#: what a Mini-Fold denoiser does with its sequence encoder (:attr:`TrainConfig.encoder`).
ENCODER_MODES: tuple[str, ...] = ("stage1", "train", "random")

SCHEDULES: tuple[str, ...] = (
    "constant",
    "cosine",
    "warmup_cosine",
    "warmup_constant_cosine",
    "cosine_restarts",
)


#: Mixed-precision modes of :attr:`TrainConfig.amp`.
AMP_MODES: tuple[str, ...] = ("auto", "bf16", "fp16", "off")


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe of one run. Every key can be set in a version's ``[train]`` table
    or with ``ptk train --set key=value``; an unknown key is a :class:`ConfigError`.

    Epoch-valued schedule lengths (``warmup_epochs`` …) are converted to optimizer steps with
    the run's steps per epoch, so a recipe reads like the report page's tables.
    """

    epochs: int = 60
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 1e-4
    min_lr: float = 1e-6
    #: where the cosine ends: ``absolute`` = every group at ``min_lr`` (the page's eta_min);
    #: ``relative`` = each group at its share, min_lr × (group LR / lr).
    lr_floor: str = "absolute"
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    warmup_start_factor: float = 0.01
    constant_epochs: float = 0.0
    restart_epochs: float = 15.0
    #: module name → LR multiplier (e.g. ``{"pair_stack": 3.0}``); the rest trains at ``lr``.
    lr_groups: dict[str, float] = field(default_factory=dict)
    #: module name → max grad norm; ``"*"`` is every parameter no other entry claims
    #: (so ``{"*": 1.0}`` alone is global clipping). Empty: no clipping.
    clip: dict[str, float] = field(default_factory=lambda: {"*": 1.0})
    ema_decay: float = 0.999
    #: warm the EMA decay up as min(ema_decay, (1+n)/(10+n)) over the first updates (ptk); the
    #: page averages at ema_decay from the first step (``--set ema_warmup=false``).
    ema_warmup: bool = True
    #: ``auto`` = bf16 autocast on CUDA, off on CPU; ``bf16``; ``fp16`` (the page's: fp16
    #: autocast with a dynamic loss scale, torch's GradScaler; a step whose scaled gradients
    #: overflow is skipped, counted in ``skipped_batches``, and the scale halves); ``off``.
    amp: str = "auto"
    #: the first loss scale of ``amp = fp16`` (GradScaler's init_scale).
    fp16_init_scale: float = 65536.0
    patience: int = 15
    #: every N optimizer steps, the cosine similarity between the gradients of the weighted loss
    #: terms (the page's gradient-competition diagnostic) goes to grad_cosine.csv; 0 = never.
    grad_cosine_every: int = 0
    #: the loss weights of the validation total (early stopping, best.pt): ``final`` = as at the
    #: end of every anneal (bond β, v14's backbone ramp), the same each epoch; ``epoch`` = the
    #: epoch's own, as the page's Val Total.
    val_weights: str = "final"
    #: sample the validation set every N epochs with DDIM (diffusion versions); 0 = never.
    sample_every: int = 5
    #: the first N validation chains (0: all); 64 keeps the standard error of the mean TM
    #: (metrics.csv ddim_tm_se) near 0.01, below the page's epoch-to-epoch differences.
    sample_n: int = 64
    sample_steps: int = 50
    sample_eta: float = 0.3
    sample_guidance: float = 1.5
    x0_t: int = 100
    max_length: int = 125
    crop: str = "random"
    seed: int = 0
    #: fraction of the training shards held out when there is neither --val-data nor a split column.
    val_fraction: float = 0.1
    num_workers: int = 0
    #: v12b pair-stack tripwire: module watched ("" = off); skip the step (and log) when its grad
    #: norm exceeds ``tripwire_max_norm`` or is not finite; inject N(0, tripwire_noise²) into its
    #: gradient after ``tripwire_min_steps`` consecutive steps below ``tripwire_min_norm``; halt the
    #: run after ``halt_steps`` steps (in total) below ``halt_min_norm``.
    tripwire_module: str = ""
    tripwire_max_norm: float = 1e3
    tripwire_min_norm: float = 0.01
    tripwire_min_steps: int = 50
    tripwire_noise: float = 0.01
    halt_min_norm: float = 0.001
    halt_steps: int = 500
    #: stop this invocation after N epochs as if the job were pre-empted (0 = run to the end);
    #: ``--resume`` continues. For time-limited allocations and the resume test.
    halt_after: int = 0
    progress: bool = True
    #: checkpoint (or run folder) whose EMA weights initialise the model, loaded with strict=False
    #: (report page: v13 from v12b b30, v14 from v13). "" = the version's ``init_from`` run next to
    #: this run folder (``runs/<init_from>/checkpoints/best.pt``) when it exists, else from scratch.
    init_checkpoint: str = ""
    #: checkpoint (or run folder) of the trained stage-1 ContactClassifier whose encoder a denoiser
    #: freezes; "" = ``runs/<encoder_from>/`` next to this run when it exists.
    encoder_checkpoint: str = ""
    #: the sequence encoder of a version with ``encoder_from`` (Mini-Fold v10 … v14). "stage1"
    #: (the page's recipe): the trained stage-1 ContactClassifier's, frozen; a fresh run without
    #: one is refused. "train": trained with the rest, unfrozen (from the stage-1 weights when a
    #: run is found, else from scratch). "random": its random initialisation, frozen (smoke tests
    #: only: the model then conditions on an untrained function of the sequence).
    encoder: str = "stage1"

    #: keys that may change when a run is resumed (everything else is fixed by config.json).
    RUNTIME_KEYS = ("epochs", "halt_after", "num_workers", "progress", "patience", "sample_every")

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], base: TrainConfig | None = None) -> TrainConfig:
        """A config from ``base`` (defaults when None) with ``values`` applied, each value
        type-checked against the field's default. Unknown keys raise, listing the allowed ones."""
        base = base if base is not None else cls()
        allowed = cls.keys()
        changes: dict[str, Any] = {}
        for key, value in values.items():
            if key not in allowed:
                raise unknown_choice("train config key", key, allowed)
            changes[key] = coerce(key, value, getattr(base, key))
        cfg = dataclasses.replace(base, **changes)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.schedule not in SCHEDULES:
            raise unknown_choice("LR schedule", self.schedule, SCHEDULES)
        if self.lr_floor not in ("absolute", "relative"):
            raise unknown_choice("lr_floor", self.lr_floor, ("absolute", "relative"))
        if self.val_weights not in ("final", "epoch"):
            raise unknown_choice("val_weights", self.val_weights, ("final", "epoch"))
        if self.amp not in AMP_MODES:
            raise unknown_choice("amp mode", self.amp, AMP_MODES)
        if self.encoder not in ENCODER_MODES:
            raise unknown_choice("encoder mode", self.encoder, ENCODER_MODES)
        if self.crop not in ("random", "first", "center"):
            raise unknown_choice("crop", self.crop, ("random", "first", "center"))
        for name, (low, high, closed) in _RANGES.items():
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= low and (value <= high if closed else value < high)):
                bounds = (
                    f"[{low:g}, {high:g}{']' if closed else ')'}" if math.isfinite(high) else f">= {low:g}"
                )
                raise ConfigError(
                    f"train config {name} must be {'in ' if math.isfinite(high) else ''}{bounds}, got {value}"
                )
        for name in ("lr", "restart_epochs"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"train config {name} must be > 0, got {getattr(self, name)}")
        for table in ("lr_groups", "clip"):
            for module, value in getattr(self, table).items():
                if not (isinstance(value, float) and math.isfinite(value) and value > 0):
                    raise ConfigError(f"train config {table}[{module!r}] must be a number > 0, got {value!r}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"train config betas must be in [0, 1), got {list(self.betas)}")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


#: key -> (lowest, highest, highest allowed): the range of every numeric recipe key.
_RANGES: dict[str, tuple[float, float, bool]] = {
    "epochs": (1, math.inf, False),
    "batch_size": (1, math.inf, False),
    "grad_accum": (1, math.inf, False),
    # three residues: the fewest with a backbone frame (and a Cα triplet) per residue
    "max_length": (3, math.inf, False),
    "lr": (0.0, math.inf, False),
    "min_lr": (0.0, math.inf, False),
    "weight_decay": (0.0, math.inf, False),
    "warmup_epochs": (0.0, math.inf, False),
    "warmup_start_factor": (0.0, 1.0, True),
    "constant_epochs": (0.0, math.inf, False),
    "restart_epochs": (0.0, math.inf, False),
    "ema_decay": (0.0, 1.0, False),
    "fp16_init_scale": (0.0, math.inf, False),
    "grad_cosine_every": (0, math.inf, False),
    "patience": (0, math.inf, False),  # 0: no early stop
    "sample_every": (0, math.inf, False),
    "sample_n": (0, math.inf, False),  # 0: the whole validation set
    "sample_steps": (1, math.inf, False),
    "sample_eta": (0.0, math.inf, False),
    "sample_guidance": (0.0, math.inf, False),
    "x0_t": (0, math.inf, False),
    "seed": (0, math.inf, False),
    "val_fraction": (0.0, 1.0, False),
    "num_workers": (0, math.inf, False),
    "tripwire_max_norm": (0.0, math.inf, False),
    "tripwire_min_norm": (0.0, math.inf, False),
    "tripwire_min_steps": (1, math.inf, False),
    "tripwire_noise": (0.0, math.inf, False),
    "halt_min_norm": (0.0, math.inf, False),
    "halt_steps": (1, math.inf, False),
    "halt_after": (0, math.inf, False),
}


def parse_value(text: str) -> Any:
    """A ``--set`` value as written on the command line: JSON when it parses (numbers, true/false,
    lists, objects), else the plain string."""
    lowered = text.strip().lower()
    if lowered in ("true", "yes", "on"):
        return True
    if lowered in ("false", "no", "off"):
        return False
    try:
        return json.loads(text)
    except ValueError:
        return text


def coerce(key: str, value: Any, default: Any) -> Any:
    """``value`` converted to the type of ``default``, or a ConfigError naming both."""
    if isinstance(value, str) and not isinstance(default, str):
        value = parse_value(value)
    want = type(default)
    if default is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif isinstance(default, float):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, tuple | list):
        if isinstance(value, list | tuple):
            if default and len(value) != len(default) and isinstance(default, tuple):
                raise ConfigError(f"{key} needs {len(default)} values, got {list(value)!r}")
            if default:
                value = [coerce(key, v, default[0]) for v in value]
            return want(value)
    elif isinstance(default, dict):
        if isinstance(value, dict):
            return {str(k): float(v) if isinstance(v, int | float) else v for k, v in value.items()}
    raise ConfigError(f"{key} expects a {want.__name__} (default {default!r}), got {value!r}")
