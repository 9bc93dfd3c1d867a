"""The one registry of trainable model versions: every family's versions are TOML files, and
this module answers list, describe, task, build and parameter count for all of them.

- Mini-Fold (the stage-1 ``contact-classifier`` and the denoisers v10 … v14):
  ``models/minifold/versions/*.toml``, resolved along their parent chains by
  :mod:`ptk.models.minifold.registry`;
- the other families, one file per version in ``models/versions/``: ``qfitlatent``
  (:mod:`ptk.models.qfitlatent`) and ``pallatom-refiner`` (:mod:`ptk.models.pallatom`). Layout::

      [version]            # family, description, changes
      [model]              # the family's config fields at the default size
      [train]              # ptk.models.optim.TrainConfig keys
      [small.model]        # overrides for size="small", merged key by key
      [small.train]
      [tiny.model]         # the same for size="tiny"
      [tiny.train]

``ptk versions``, ``ptk train``, ``ptk sample`` and ``ptk report`` all ask here.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from ptk.errors import ConfigError, unknown_choice
from ptk.models.minifold import registry as minifold_registry
from ptk.models.minifold.registry import SIZES

if TYPE_CHECKING:
    from torch import nn

    from ptk.models.tasks import Task

__all__ = [
    "SIZES",
    "VersionCard",
    "list_versions",
    "describe",
    "version_tables",
    "get_task",
    "build",
    "parameter_count",
]

#: The families of ``models/versions/``, in the order ``ptk versions`` lists them.
_FAMILY_ORDER: tuple[str, ...] = ("qfitlatent", "pallatom")
_TOP_KEYS = ("version", "model", "train", *SIZES[1:])
_META_KEYS = ("family", "description", "changes")
_SIZE_KEYS = ("model", "train")


@dataclass(frozen=True)
class VersionCard:
    """What a version is, without building it: its family, lineage, what changed, which config
    keys it sets itself, and (Mini-Fold) each default that differs from the reference page as
    ``(key, value, page value, why)``."""

    name: str
    family: str
    parent: str | None = None
    description: str = ""
    changes: tuple[str, ...] = ()
    changed_keys: tuple[str, ...] = ()
    ancestors: tuple[str, ...] = ()
    page_deviations: tuple[tuple[str, Any, Any, str], ...] = field(default=())


def _version_dir() -> Any:
    return resources.files("ptk.models") / "versions"


@cache
def _raw(name: str) -> dict[str, Any]:
    """The checked TOML of a ``models/versions/`` version."""
    path = _version_dir() / f"{name}.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"models/versions/{name}.toml: {exc}") from exc
    where = f"models/versions/{name}.toml"
    for key in data:
        if key not in _TOP_KEYS:
            raise unknown_choice(f"table in {where}; table", key, _TOP_KEYS)
    for key in data.get("version", {}):
        if key not in _META_KEYS:
            raise unknown_choice(f"[version] key in {where}; key", key, _META_KEYS)
    family = data.get("version", {}).get("family")
    if family not in _FAMILY_ORDER:
        raise unknown_choice(f"family in {where}; family", family, _FAMILY_ORDER)
    for size in SIZES[1:]:
        for key in data.get(size, {}):
            if key not in _SIZE_KEYS:
                raise unknown_choice(f"[{size}] table in {where}; table", key, _SIZE_KEYS)
    return data


@cache
def _family_versions() -> tuple[str, ...]:
    names = sorted(p.name[: -len(".toml")] for p in _version_dir().iterdir() if p.name.endswith(".toml"))
    return tuple(sorted(names, key=lambda n: (_FAMILY_ORDER.index(_raw(n)["version"]["family"]), n)))


def list_versions() -> list[str]:
    """Every version ``ptk train`` accepts: the Mini-Fold registry's, then the other families'."""
    return [*minifold_registry.list_versions(), *_family_versions()]


def _check(name: str) -> None:
    if name not in list_versions():
        raise unknown_choice("version", name, list_versions())


def version_tables(name: str, size: str = "default") -> dict[str, dict[str, Any]]:
    """``{"model": …, "train": …}`` of a ``models/versions/`` version at ``size``: the default
    tables with the size's overrides merged in key by key."""
    if size not in SIZES:
        raise unknown_choice("size", size, SIZES)
    if name not in _family_versions():
        raise unknown_choice("version of models/versions/", name, _family_versions())
    data = _raw(name)
    over: Mapping[str, Any] = data.get(size, {}) if size != "default" else {}
    return {key: {**data.get(key, {}), **over.get(key, {})} for key in _SIZE_KEYS}


def describe(name: str) -> VersionCard:
    """The :class:`VersionCard` of ``name``."""
    _check(name)
    if name in _family_versions():
        meta = _raw(name)["version"]
        return VersionCard(
            name=name,
            family=meta["family"],
            description=meta.get("description", ""),
            changes=tuple(meta.get("changes", ())),
        )
    from ptk.models.minifold.config import page_deviations

    cfg = minifold_registry.load_version(name)
    return VersionCard(
        name=name,
        family=cfg.family,
        parent=cfg.parent,
        description=cfg.description,
        changes=tuple(cfg.changes),
        changed_keys=tuple(minifold_registry.changed_keys(name)),
        ancestors=tuple(minifold_registry.version_chain(name)[:-1]),
        page_deviations=tuple((d.key, value, d.page, d.why) for d, value in page_deviations(cfg.to_dict())),
    )


def get_task(version: str, size: str = "default", overrides: Mapping[str, Any] | None = None) -> Task:
    """The task adapter of ``version`` at ``size`` with ``--set`` overrides applied."""
    from ptk.models.tasks import MiniFoldTask, PallatomTask, QFitLatentTask

    if size not in SIZES:
        raise unknown_choice("size", size, SIZES)
    _check(version)
    if version in minifold_registry.list_versions():
        return MiniFoldTask(version, size, overrides)
    family = _raw(version)["version"]["family"]
    return {"qfitlatent": QFitLatentTask, "pallatom": PallatomTask}[family](version, size, overrides)


def build(version: str, size: str = "default") -> nn.Module:
    """A freshly initialised model of ``version`` at ``size``."""
    return get_task(version, size).build_model()


@cache
def parameter_count(version: str, size: str = "default") -> tuple[int, int]:
    """(total, trainable) parameters of ``version`` at ``size``, built on the ``meta`` device (no
    memory, no weights; a model whose constructor needs real tensors is built for real)."""
    import torch

    from ptk.models.summary import count_parameters

    try:
        with torch.device("meta"):
            model = build(version, size)
    except Exception:
        model = build(version, size)
    return count_parameters(model), count_parameters(model, trainable_only=True)
