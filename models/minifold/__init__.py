"""Mini-Fold: backbone diffusion models (v10 … v14) and the stage-1 ContactClassifier.

A version is a config (``versions/<name>.toml``), not a copy of the code:
:func:`load_version` resolves it, :func:`build_model` builds it, :func:`training_step_loss`
scores a ``collate_cath`` batch, :func:`sample` runs DDIM. ``ptk versions`` lists
the versions and where their defaults differ from the page; ``docs/learning.md`` what they learn.
"""

from ptk.models.minifold.config import ClassifierConfig, MiniFoldConfig, VersionConfig
from ptk.models.minifold.contact_classifier import (
    CATH_ARCHITECTURES,
    ContactClassifier,
    arch_index,
    class_index,
)
from ptk.models.minifold.model import MiniFold, build_model, load_encoder
from ptk.models.minifold.registry import changed_keys, list_versions, load_version
from ptk.models.minifold.training import compute_loss, predict_x0, sample, training_step_loss

__all__ = [
    "CATH_ARCHITECTURES",
    "ClassifierConfig",
    "ContactClassifier",
    "MiniFold",
    "MiniFoldConfig",
    "VersionConfig",
    "arch_index",
    "build_model",
    "changed_keys",
    "class_index",
    "compute_loss",
    "list_versions",
    "load_encoder",
    "load_version",
    "predict_x0",
    "sample",
    "training_step_loss",
]
