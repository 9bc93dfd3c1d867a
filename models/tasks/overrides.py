"""``--set KEY=VALUE`` on a task's nested config dict: which keys name the training recipe
(:class:`~ptk.models.optim.TrainConfig`) and which a path of the model config, type-checked;
an unknown key is a :class:`~ptk.errors.ConfigError` that lists the allowed ones."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any

from ptk.errors import ConfigError, unknown_choice
from ptk.models.optim import TrainConfig, coerce


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value and not _is_leaf_mapping(path):
            out.update(_flatten(value, path + "."))
        else:
            out[path] = value
    return out


def _is_leaf_mapping(path: str) -> bool:
    """Dict-valued options that are set as a whole (``--set lr_groups='{"pair_stack": 3}'``)."""
    leaf = path.rsplit(".", 1)[-1]
    return leaf in {"lr_groups", "clip", "clip_modules"}


def _set_path(d: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    for key in keys[:-1]:
        d = d[key]
    d[keys[-1]] = value


#: the keys of a version config that name the version rather than set it, and what to use instead.
_IDENTITY_KEYS: dict[str, str] = {
    "version": "choose the version with --version",
    "size": "choose the size with --size",
    "init_from": "name the weights with --set init_checkpoint=PATH",
    "encoder_from": "name the stage-1 run with --set encoder_checkpoint=PATH",
    "family": "it describes the version",
    "parent": "it describes the version",
    "description": "it describes the version",
    "changes": "it describes the version",
}


def split_overrides(
    overrides: Mapping[str, Any], model_config: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sort ``--set`` pairs into (train recipe keys, model-config paths).

    ``train.lr`` and ``lr`` name the recipe; ``model.d_s`` / ``loss.w_fape`` (a dotted path of the
    model config) or a bare leaf name that occurs exactly once in it name the model config.
    """
    train_keys = TrainConfig.keys()
    flat = _flatten(model_config)
    for key in overrides:
        if key.removeprefix("model.") in _IDENTITY_KEYS:
            name = key.removeprefix("model.")
            raise ConfigError(f"--set {key}: not a setting ({_IDENTITY_KEYS[name]})")
    leaves: dict[str, list[str]] = {}
    for path in flat:
        leaves.setdefault(path.rsplit(".", 1)[-1], []).append(path)
    train: dict[str, Any] = {}
    model: dict[str, Any] = {}
    for key, value in overrides.items():
        if key.startswith("train.") and key[6:] in train_keys:
            train[key[6:]] = value
        elif key in train_keys:
            train[key] = value
        elif key in flat:
            model[key] = coerce(key, value, flat[key])
        elif key.startswith("model.") and key[6:] in flat:
            model[key[6:]] = coerce(key, value, flat[key[6:]])
        elif key in leaves and len(leaves[key]) == 1:
            path = leaves[key][0]
            model[path] = coerce(key, value, flat[path])
        elif key in leaves:
            raise ConfigError(f"--set {key} is ambiguous; use one of: {', '.join(leaves[key])}")
        else:
            allowed = [f"train.{k}" for k in train_keys] + sorted(flat)
            raise unknown_choice("--set key", key, allowed)
    return train, model


def _config_dict(obj: Any) -> dict[str, Any]:
    """A JSON-able dict of a config object (``to_dict``, dataclass, or mapping)."""
    if hasattr(obj, "to_dict"):
        return copy.deepcopy(obj.to_dict())
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    if isinstance(obj, Mapping):
        return copy.deepcopy(dict(obj))
    raise TypeError(f"cannot turn {type(obj).__name__} into a config dict")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
