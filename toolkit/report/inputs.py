"""What the caller hands the report: the registry's view of a version and the arrays that need
a model to compute (this package imports no model code)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class VersionInfo:
    """What the model registry says about a version (filled by the caller; all optional)."""

    name: str
    family: str = ""
    parent: str | None = None
    description: str = ""
    changes: list[str] = field(default_factory=list)
    changed_keys: list[str] = field(default_factory=list)
    ancestors: list[str] = field(default_factory=list)  # root first, without ``name``
    default_params: int | None = None
    #: (config key, this run's value, the page's value, why) where ptk's default differs from
    #: the reference page and the run kept ptk's default.
    page_deviations: list[tuple[str, str, str, str]] = field(default_factory=list)


@dataclass
class ContactPrediction:
    """One chain's predicted contact probabilities ``[n, n]`` and its true Cα ``[n, 3]``."""

    id: str
    prob: np.ndarray
    ca: np.ndarray


@dataclass
class ChiPanel:
    """χ angles for a density figure: ``sets`` label → (chi [..., 4] rad, chi_mask [..., 4])."""

    title: str
    sets: dict[str, tuple[np.ndarray, np.ndarray]]
    caption: str = ""
