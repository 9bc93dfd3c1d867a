"""Training recipe pieces: the typed recipe, LR schedules, parameter groups, per-module gradient
clipping, EMA of weights, RNG state capture and atomic checkpoints.

The recipes are the Mini-Fold report page's (``../shared/seeds/minifold_report_page.txt``):
AdamW; cosine decay (v11b/v12), cosine with warm restarts (v10, T0 = 15), warmup → constant →
cosine (v13: 3 epochs 0.01x → 1x, 20 epochs flat, cosine to 1e-6); per-module LR groups
(pair_stack 3x, aux_pair 2x) and per-module clipping (denoiser 1.0, pair_stack 0.5) from v12b
on; EMA decay 0.999; and qFitLatent's cosine to lr/100 (``qfitlatent_readme.txt``).
No Click, no Dask: the CLI lives in :mod:`ptk.pipelines.train`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import pickle
import random
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ptk.errors import ConfigError, unknown_choice
from ptk.files import atomic_writer

__all__ = [
    "SCHEDULES",
    "TrainConfig",
    "lr_factor",
    "build_optimizer",
    "build_scheduler",
    "module_matches",
    "clip_by_module",
    "gradient_cosines",
    "module_grad_norm",
    "EMA",
    "capture_rng",
    "restore_rng",
    "atomic_save",
    "load_checkpoint",
    "upgrade_checkpoint",
    "parse_value",
]

log = logging.getLogger(__name__)

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


# ---------------------------------------------------------------------------------------------
# LR schedules


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int, group_lr: float | None = None) -> float:
    """Multiplier of a group's peak LR (``group_lr``; default ``cfg.lr``) at optimizer step
    ``step`` (0-based). The cosine ends at ``min_lr`` for every group (``lr_floor = absolute``)
    or at ``min_lr / lr`` of each group's peak (``relative``).
    """
    spe = max(1, steps_per_epoch)
    total = max(1, cfg.epochs * spe)
    peak = cfg.lr if group_lr is None or cfg.lr_floor == "relative" else group_lr
    floor = min(1.0, cfg.min_lr / peak) if peak > 0 else 1.0
    warm = int(round(cfg.warmup_epochs * spe)) if cfg.schedule.startswith("warmup") else 0
    const = int(round(cfg.constant_epochs * spe)) if cfg.schedule == "warmup_constant_cosine" else 0

    def cosine(pos: int, length: int) -> float:
        frac = min(1.0, max(0.0, pos / max(1, length)))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * frac))

    if cfg.schedule == "constant":
        return 1.0
    if step < warm:
        # linear warmup start_factor → 1 over `warm` steps (report page: 0.01x → 1x)
        return cfg.warmup_start_factor + (1.0 - cfg.warmup_start_factor) * step / max(1, warm)
    if cfg.schedule == "cosine_restarts":
        period = max(1, int(round(cfg.restart_epochs * spe)))
        return cosine(step % period, period)
    if step < warm + const:
        return 1.0
    return cosine(step - warm - const, total - warm - const)


class _Factor:
    """Picklable LR lambda (LambdaLR stores callable objects' state in its state_dict)."""

    def __init__(self, cfg: TrainConfig, steps_per_epoch: int, group_lr: float | None = None) -> None:
        self.cfg_dict = cfg.to_dict()
        self.steps_per_epoch = steps_per_epoch
        self.group_lr = group_lr
        self._cfg = cfg

    def __call__(self, step: int) -> float:
        return lr_factor(self._cfg, step, self.steps_per_epoch, self.group_lr)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-optimizer-step LambdaLR following ``cfg.schedule``, one factor per parameter
    group (each group's floor depends on its peak LR under ``lr_floor = absolute``)."""
    factors = [_Factor(cfg, steps_per_epoch, group["lr"]) for group in optimizer.param_groups]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, [_lambda(f) for f in factors])


def _lambda(factor: _Factor) -> Callable[[int], float]:
    """A plain function around ``factor``: LambdaLR leaves functions out of its state_dict, so a
    checkpoint holds no object that would need unpickling."""
    return lambda step: factor(step)


# ---------------------------------------------------------------------------------------------
# Parameter groups and per-module clipping


def module_matches(param_name: str, module: str) -> bool:
    """True when ``module`` (a dotted module path such as ``pair_stack`` or
    ``denoiser.backbone_head``) names a module that owns ``param_name``, at any depth.

    Matching at any depth is deliberate: the report page's v14 bug was an LR group keyed on
    ``model.backbone_head`` while the head lived at ``model.denoiser.backbone_head``.
    """
    if module == "*":
        return True
    return f".{param_name}".find(f".{module}.") >= 0


def _group_of(name: str, modules: Iterable[str]) -> str:
    """The most specific (longest) module entry owning ``name``, or ``"*"``."""
    best = "*"
    for module in modules:
        if module != "*" and module_matches(name, module) and len(module) > len(best if best != "*" else ""):
            best = module
    return best


def _top_level_modules(model: nn.Module) -> list[str]:
    return sorted({name.split(".")[0] for name, _ in model.named_parameters()})


def check_modules(model: nn.Module, modules: Iterable[str], what: str) -> None:
    """ConfigError when a recipe names a module that owns no trainable parameter."""
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    for module in modules:
        if module != "*" and not any(module_matches(n, module) for n in names):
            raise ConfigError(
                f"{what} names module {module!r}, which owns no trainable parameter; "
                f"top-level modules: {', '.join(_top_level_modules(model))}"
            )


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with one parameter group per ``lr_groups`` entry (LR = lr × multiplier) plus the
    rest; within each, biases and norm weights (1-D tensors) get no weight decay."""
    check_modules(model, cfg.lr_groups, "lr_groups")
    buckets: dict[tuple[str, bool], list[Tensor]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        group = _group_of(name, cfg.lr_groups)
        buckets.setdefault((group, param.ndim <= 1), []).append(param)
    groups = []
    for (group, no_decay), params in sorted(buckets.items(), key=lambda kv: (kv[0][0] != "*", kv[0])):
        mult = 1.0 if group == "*" else float(cfg.lr_groups[group])
        groups.append(
            {
                "params": params,
                "lr": cfg.lr * mult,
                "weight_decay": 0.0 if no_decay else cfg.weight_decay,
                "name": f"{group}{'/no_decay' if no_decay else ''}",
            }
        )
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)


def _grads(params: Iterable[nn.Parameter]) -> list[Tensor]:
    return [p.grad for p in params if p.grad is not None]


def module_grad_norm(model: nn.Module, module: str) -> float:
    """L2 norm of the gradients of every parameter ``module`` owns (``inf``/``nan`` propagate)."""
    grads = _grads(p for n, p in model.named_parameters() if module_matches(n, module))
    if not grads:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))


def clip_by_module(model: nn.Module, clip: Mapping[str, float]) -> dict[str, float]:
    """Clip each module's gradient to its own max norm (v12b: global clipping let the denoiser
    take the whole gradient budget and starve the pair stack). ``"*"`` covers every parameter no
    other entry claims. Returns the pre-clip norm per entry."""
    if not clip:
        return {}
    owned: dict[str, list[nn.Parameter]] = {key: [] for key in clip}
    for name, param in model.named_parameters():
        if param.grad is None:
            continue
        group = _group_of(name, [k for k in clip if k != "*"])
        if group == "*" and "*" not in clip:
            continue
        owned[group].append(param)
    norms = {}
    for key, params in owned.items():
        if params:
            norms[key] = float(torch.nn.utils.clip_grad_norm_(params, float(clip[key])))
    return norms


def gradient_cosines(
    terms: Mapping[str, Tensor], params: list[nn.Parameter]
) -> tuple[list[str], Tensor, Tensor]:
    """Agreement of the loss terms' gradients: each term's gradient over ``params`` (one
    backward each, the graph kept), then the cosine similarity of every pair.

    Returns:
        ``(names, cosine [k, k], norm [k])``; a term with no gradient (norm 0) has NaN cosines.
    """
    names = list(terms)
    flat = []
    for name in names:
        grads = torch.autograd.grad(terms[name], params, retain_graph=True, allow_unused=True)
        flat.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float()
                               for g, p in zip(grads, params, strict=True)]))  # fmt: skip
    stacked = torch.stack(flat)
    norms = stacked.norm(dim=1)
    unit = stacked / norms.clamp(min=1e-30)[:, None]
    cosine = unit @ unit.T
    dead = norms == 0
    cosine[dead, :] = math.nan
    cosine[:, dead] = math.nan
    return names, cosine, norms


# ---------------------------------------------------------------------------------------------
# EMA


class EMA:
    """Exponential moving average of a model's parameters (decay 0.999 on the report page),
    kept as a full copy of the module so evaluation and sampling run on it directly.

    Buffers are copied, not averaged. The shadow is updated after every optimizer step.
    """

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True) -> None:
        self.decay = decay
        self.warmup = warmup
        self.module = copy.deepcopy(model)
        self.module.eval()
        self.module.requires_grad_(False)
        self.num_updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.num_updates += 1
        # TF-style warm-up of the decay, min(decay, (1+n)/(10+n)): with a fixed 0.999 the EMA of
        # a short run (tests, the demo, the first epochs) would still be the random initialisation.
        decay = self.decay
        if self.warmup:
            decay = min(decay, (1.0 + self.num_updates) / (10.0 + self.num_updates))
        ema_params = list(self.module.parameters())
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)
        for ema_b, b in zip(self.module.buffers(), model.buffers(), strict=True):
            ema_b.copy_(b)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "decay": self.decay, "num_updates": self.num_updates}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.decay = float(state.get("decay", self.decay))
        self.num_updates = int(state.get("num_updates", 0))


# ---------------------------------------------------------------------------------------------
# RNG state and checkpoints


def capture_rng() -> dict[str, Any]:
    """Every RNG a training step draws from: torch (CPU and CUDA), numpy and python, as tensors
    and plain values only, so a checkpoint that holds them loads with ``weights_only=True``
    (numpy's own state is an ndarray, which would need an unpickled global)."""
    state = _plain_rng(
        {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    )
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Undo :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    keys = numpy["keys"].numpy().astype(np.uint32)
    np.random.set_state((numpy["kind"], keys, numpy["pos"], numpy["has_gauss"], numpy["cached_gaussian"]))
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` that never leaves a half-written file under ``path``: write a temporary
    file in the same folder, flush and fsync it, then ``os.replace`` (atomic on POSIX) and fsync
    the folder. A process killed mid-save leaves the previous complete file plus a stray
    ``.tmp`` file, which :func:`load_checkpoint` never reads."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path, "wb") as handle:
        torch.save(obj, handle)
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint written by :func:`atomic_save`, loaded with ``weights_only=True``: tensors,
    numbers, strings and containers of them, never code. A file that needs anything else (a
    crafted file, or one written by ptk 0.1, whose numpy RNG state was an ndarray) is refused
    with one line that names it; :func:`upgrade_checkpoint` rewrites a file you wrote yourself."""
    from ptk.errors import PtkError

    path = Path(path)
    if not path.is_file():
        raise PtkError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _unsafe_global(str(exc))
        raise PtkError(
            f"{path}: refused: loading it would run code from the file ({found}); ptk checkpoints "
            "hold only tensors and plain values. If you wrote it with an earlier ptk, rewrite it "
            f"once with `ptk upgrade-checkpoint --trust {path}`"
        ) from exc
    except Exception as exc:  # a truncated or foreign file: say which
        raise PtkError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from exc


def _unsafe_global(message: str) -> str:
    """The global a weights-only load refused, from torch's message (or a generic phrase)."""
    match = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", message)
    return f"it asks for {match.group(1)}" if match else "it is not a weights-only file"


def upgrade_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Rewrite a checkpoint of ptk 0.1 (numpy RNG state pickled as an ndarray) in the
    weights-only format, atomically. This loads ``path`` with pickle once: call it only on files
    you wrote. Returns whether the file changed (False: it already loads safely)."""
    from ptk.errors import PtkError

    path = Path(path)
    try:
        load_checkpoint(path)
        return False
    except PtkError:
        if not path.is_file():
            raise
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise PtkError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or "model" not in state:
        raise PtkError(f"{path}: not a ptk checkpoint (no model state)")
    if "rng" in state:
        state["rng"] = _plain_rng(state["rng"])
    if "config" in state:  # the run's config.json: its torch version was a TorchVersion object
        state["config"] = json.loads(json.dumps(state["config"], default=str))
    if "rng_by_rank" in state:
        state["rng_by_rank"] = [_plain_rng(rng) for rng in state["rng_by_rank"]]
    atomic_save(state, path)
    load_checkpoint(path)  # what was written loads safely, or this raises
    return True


def _plain_rng(rng: Mapping[str, Any]) -> dict[str, Any]:
    """An RNG capture whose numpy and python states are their native tuples (as ptk 0.1 saved
    them) with those states as tensors and plain values."""
    out = dict(rng)
    if isinstance(rng.get("numpy"), tuple):
        kind, keys, pos, has_gauss, cached = rng["numpy"]
        out["numpy"] = {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        }
    if isinstance(rng.get("python"), tuple):
        version, state, gauss = rng["python"]
        out["python"] = {"version": int(version), "state": list(state), "gauss": gauss}
    return out
