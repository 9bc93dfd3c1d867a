"""Task adapters: how each trainable VERSION is built, fed, scored and sampled.

``ptk train --version V`` and ``ptk sample`` resolve V here, so the trainer
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

from collections.abc import Mapping
from typing import Any

from ptk.errors import unknown_choice
from ptk.models.minifold.registry import SIZES
from ptk.models.tasks.minifold import MiniFoldTask
from ptk.models.tasks.overrides import split_overrides
from ptk.models.tasks.pallatom import PALLATOM_VERSIONS, PallatomTask
from ptk.models.tasks.qfitlatent import QFitLatentTask
from ptk.models.tasks.samples import _score, _standard_error, write_and_score, write_structures
from ptk.models.tasks.task import Task
from ptk.models.tasks.warm_start import load_partial

__all__ = [
    "Task",
    "MiniFoldTask",
    "QFitLatentTask",
    "PallatomTask",
    "PALLATOM_VERSIONS",
    "list_versions",
    "extra_versions",
    "get_task",
    "split_overrides",
    "load_partial",
    "write_structures",
    "write_and_score",
    "_score",
    "_standard_error",
]


def _minifold_versions() -> list[str]:
    try:
        from ptk.models import minifold
    except ImportError:  # pragma: no cover - during development only
        return []
    if not hasattr(minifold, "list_versions"):
        return []
    return list(minifold.list_versions())


def list_versions() -> list[str]:
    """Every VERSION ``ptk train`` accepts."""
    return _minifold_versions() + ["qfitlatent"] + sorted(PALLATOM_VERSIONS)


def extra_versions() -> list[dict[str, Any]]:
    """The trainable versions outside the Mini-Fold registry, for ``ptk versions``."""
    rows = [{"name": "qfitlatent", "family": "qfitlatent", "description": QFitLatentTask.changes[0]}]
    for name, spec in sorted(PALLATOM_VERSIONS.items()):
        rows.append({"name": name, "family": "pallatom", "description": spec["description"]})
    return rows


def get_task(version: str, size: str = "default", overrides: Mapping[str, Any] | None = None) -> Task:
    """The adapter of ``version`` at ``size`` with ``--set`` overrides applied."""
    if size not in SIZES:
        raise unknown_choice("size", size, SIZES)
    if version == "qfitlatent":
        return QFitLatentTask(size, overrides)
    if version in PALLATOM_VERSIONS:
        return PallatomTask(version, size, overrides)
    if version in _minifold_versions():
        return MiniFoldTask(version, size, overrides)
    raise unknown_choice("version", version, list_versions())
