"""Task adapters: how each trainable VERSION is built, fed, scored and sampled.

``ptk train --version V`` and ``ptk sample`` resolve V through the registry
(:mod:`ptk.models.registry`: ``get_task``, re-exported here), so the trainer
(:mod:`ptk.models.trainer`) never imports a model family itself. VERSION is

- a Mini-Fold version from :mod:`ptk.models.minifold` (v10 … v14, and ``contact-classifier``),
- ``qfitlatent`` (:mod:`ptk.models.qfitlatent`, trained on ``qfit`` shards),
- a Pallatom configuration: ``pallatom-refiner``, an all-atom refiner that denoises the ``cath``
  shards' heavy atoms with the Pallatom atom transformer, trained with Kabsch-aligned atom MSE +
  smooth lDDT (:mod:`ptk.models.pallatom`, :mod:`ptk.models.losses`).

Every task resolves to one nested config dict (saved as ``config.json``'s ``model``) plus a
:class:`~ptk.models.optim.TrainConfig`; ``--set key=value`` edits either, type-checked, and an
unknown key is a :class:`~ptk.errors.ConfigError` that lists the allowed ones.
"""

from __future__ import annotations

from ptk.models.registry import get_task, list_versions
from ptk.models.tasks.minifold import MiniFoldTask
from ptk.models.tasks.overrides import split_overrides
from ptk.models.tasks.pallatom import PallatomTask
from ptk.models.tasks.qfitlatent import QFitLatentTask
from ptk.models.tasks.samples import _score, _standard_error, write_and_score, write_structures
from ptk.models.tasks.task import RegisteredTask, Task
from ptk.models.tasks.warm_start import load_partial

__all__ = [
    "Task",
    "MiniFoldTask",
    "QFitLatentTask",
    "PallatomTask",
    "RegisteredTask",
    "list_versions",
    "get_task",
    "split_overrides",
    "load_partial",
    "write_structures",
    "write_and_score",
    "_score",
    "_standard_error",
]
