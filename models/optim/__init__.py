"""Training recipe pieces: the typed recipe, LR schedules, parameter groups, per-module gradient
clipping, EMA of weights, RNG state capture and atomic checkpoints.

The recipes are the Mini-Fold report page's (``../shared/seeds/minifold_report_page.txt``):
AdamW; cosine decay (v11b/v12), cosine with warm restarts (v10, T0 = 15), warmup → constant →
cosine (v13: 3 epochs 0.01x → 1x, 20 epochs flat, cosine to 1e-6); per-module LR groups
(pair_stack 3x, aux_pair 2x) and per-module clipping (denoiser 1.0, pair_stack 0.5) from v12b
on; EMA decay 0.999; and qFitLatent's cosine to lr/100 (``qfitlatent_readme.txt``).
No Click, no Dask: the CLI lives in :mod:`ptk.pipelines.train`.

One concept per module:

- :mod:`~ptk.models.optim.recipe`: :class:`TrainConfig` and the ``--set`` value parsing;
- :mod:`~ptk.models.optim.schedules`: the LR schedules;
- :mod:`~ptk.models.optim.modules`: which ``lr_groups`` / ``clip`` entry owns a parameter;
- :mod:`~ptk.models.optim.optimizer`: AdamW and its parameter groups;
- :mod:`~ptk.models.optim.gradients`: per-module gradient norms and clipping, and the
  gradient agreement of the loss terms;
- :mod:`~ptk.models.optim.ema`: the EMA of the weights;
- :mod:`~ptk.models.optim.rng_state`: RNG state as tensors and plain values;
- :mod:`~ptk.models.optim.checkpoints`: atomic writes and weights-only reads of checkpoints.
"""

from ptk.models.optim.checkpoints import atomic_save, load_checkpoint, upgrade_checkpoint
from ptk.models.optim.ema import EMA
from ptk.models.optim.gradients import clip_by_module, gradient_cosines, module_grad_norm
from ptk.models.optim.modules import check_modules, module_matches
from ptk.models.optim.optimizer import build_optimizer
from ptk.models.optim.recipe import AMP_MODES, ENCODER_MODES, SCHEDULES, TrainConfig, coerce, parse_value
from ptk.models.optim.rng_state import capture_rng, restore_rng
from ptk.models.optim.schedules import build_scheduler, lr_factor

__all__ = [
    "AMP_MODES",
    "ENCODER_MODES",
    "SCHEDULES",
    "TrainConfig",
    "lr_factor",
    "build_optimizer",
    "build_scheduler",
    "module_matches",
    "check_modules",
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
    "coerce",
]
