"""The registry of Mini-Fold versions: one TOML file per version in ``versions/``.

A version file names its parent and states what changed; everything it does not set is
inherited. Layout of ``versions/<name>.toml``::

    [version]                 # metadata (not inherited, except family and encoder_from)
    parent = "v12b"
    family = "minifold"       # or "contact-classifier"
    description = "one line"
    changes = ["what changed relative to the parent, in words", ...]
    init_from = "v12b"        # weights that initialise it (strict=False), optional
    init_fresh = ["pair_stack"]  # modules that train from scratch all the same, optional
    encoder_from = "contact-classifier"

    [model.<block>]           # MiniFoldConfig / ClassifierConfig fields, merged key by key
    [loss]                    # MiniFoldLossConfig / ClassifierLossConfig fields
    [train]                   # ptk.models.optim.TrainConfig keys; a table value (lr_groups,
                              # clip) replaces the parent's table as a whole
    [small.model.<block>]     # overrides applied for size="small" (inherited along the chain)
    [small.train]
    [tiny.model.<block>]      # the same for size="tiny"
    [tiny.train]

Resolution: default = parent's default ⊕ own tables; small (tiny) = default ⊕ (parent's small
(tiny) overrides ⊕ own small (tiny) overrides). A key a dataclass does not have is a
:class:`ptk.errors.ConfigError`.

Sizes: ``default`` is the page's; ``small`` memorises a handful of chains in minutes on two CPU
cores (``benchmarks/learning.py``); ``tiny`` runs a training step in seconds (tests, smoke runs).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

from ptk.errors import ConfigError, unknown_choice
from ptk.models.minifold.config import FAMILIES, VersionConfig, dataclass_to_dict

__all__ = ["SIZES", "list_versions", "load_version", "version_chain", "changed_keys", "raw_version"]

SIZES: tuple[str, ...] = ("default", "small", "tiny")
_SIZE_TABLES = SIZES[1:]
_TOP_KEYS = ("version", "model", "loss", "train", *_SIZE_TABLES)
_META_KEYS = ("parent", "family", "description", "changes", "init_from", "init_fresh", "encoder_from")
_SIZE_KEYS = ("model", "loss", "train")


def _version_dir() -> Any:
    return resources.files("ptk.models.minifold") / "versions"


@cache
def list_versions() -> list[str]:
    """Every registered version, the ContactClassifier first, then v10 … v14 in order."""
    names = [p.name[: -len(".toml")] for p in _version_dir().iterdir() if p.name.endswith(".toml")]

    def key(name: str) -> tuple[int, int, str]:
        if not name.startswith("v"):
            return (0, 0, name)
        digits = "".join(ch for ch in name[1:] if ch.isdigit())
        return (1, int(digits) if digits else 0, name)

    return sorted(names, key=key)


@cache
def raw_version(name: str) -> dict[str, Any]:
    """The parsed TOML of version ``name`` (top-level keys checked)."""
    if name not in list_versions():
        raise unknown_choice("Mini-Fold version", name, list_versions())
    text = (_version_dir() / f"{name}.toml").read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"versions/{name}.toml: {exc}") from exc
    for key in data:
        if key not in _TOP_KEYS:
            raise unknown_choice(f"table in versions/{name}.toml; table", key, _TOP_KEYS)
    for key in data.get("version", {}):
        if key not in _META_KEYS:
            raise unknown_choice(f"[version] key in versions/{name}.toml; key", key, _META_KEYS)
    for size in _SIZE_TABLES:
        for key in data.get(size, {}):
            if key not in _SIZE_KEYS:
                raise unknown_choice(f"[{size}] table in versions/{name}.toml; table", key, _SIZE_KEYS)
    return data


def version_chain(name: str) -> list[str]:
    """``name`` and its ancestors, root first."""
    chain: list[str] = []
    current: str | None = name
    while current is not None:
        if current in chain:
            raise ConfigError(f"version {name!r} has a parent cycle: {' -> '.join([*chain, current])}")
        chain.append(current)
        current = raw_version(current).get("version", {}).get("parent")
    return chain[::-1]


def _merge(base: Mapping[str, Any], over: Mapping[str, Any], replace_tables: bool = False) -> dict[str, Any]:
    """Recursive merge of ``over`` into ``base``; under ``train`` table values replace."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and not replace_tables:
            out[key] = _merge(out[key], value, replace_tables=(key == "train"))
        else:
            out[key] = dict(value) if isinstance(value, Mapping) else value
    return out


def _tables(data: Mapping[str, Any]) -> dict[str, Any]:
    return {key: data[key] for key in ("model", "loss", "train") if key in data}


@cache
def _default_tree(name: str) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for ancestor in version_chain(name):
        tree = _merge(tree, _tables(raw_version(ancestor)))
    return tree


@cache
def _size_overrides(name: str, size: str) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for ancestor in version_chain(name):
        tree = _merge(tree, raw_version(ancestor).get(size, {}))
    return tree


def _inherited_meta(name: str, key: str) -> Any:
    value = None
    for ancestor in version_chain(name):
        value = raw_version(ancestor).get("version", {}).get(key, value)
    return value


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and not path.startswith("train."):
            flat.update(_flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def changed_keys(name: str) -> list[str]:
    """The resolved default-size keys whose value differs from the parent's, as
    ``"model.denoiser.n_layers: 6 -> 8"`` (empty for a root)."""
    parent = raw_version(name).get("version", {}).get("parent")
    if parent is None:
        return []
    mine = _flatten(load_version(name).to_dict())
    theirs = _flatten(load_version(parent).to_dict())
    skip = {"version", "parent", "description", "changes", "init_from", "init_fresh"}
    out = []
    for key in sorted(set(mine) | set(theirs)):
        if key in skip:
            continue
        if mine.get(key) != theirs.get(key):
            out.append(f"{key}: {theirs.get(key)!r} -> {mine.get(key)!r}")
    return out


@cache
def load_version(name: str, size: str = "default") -> VersionConfig:
    """The resolved, validated config of version ``name`` at ``size`` (``"default"``: the page's
    sizes; ``"small"``: CPU minutes to memorise a few chains; ``"tiny"``: a CPU-seconds step)."""
    if size not in SIZES:
        raise unknown_choice("model size", size, SIZES)
    meta = raw_version(name).get("version", {})
    family = _inherited_meta(name, "family") or "minifold"
    if family not in FAMILIES:
        raise unknown_choice(f"family of version {name!r}; family", family, FAMILIES)
    tree = _default_tree(name)
    if size != "default":
        tree = _merge(tree, _size_overrides(name, size))
    encoder_from = _inherited_meta(name, "encoder_from")
    if encoder_from is not None:
        # the frozen encoder is the stage-1 model's, at the same size: one place for its sizes
        if "encoder" in tree.get("model", {}):
            raise ConfigError(
                f"versions/{name}.toml: [model.encoder] is set by encoder_from = {encoder_from!r}; "
                f"change it in versions/{encoder_from}.toml"
            )
        stage1 = load_version(encoder_from, size).model
        tree = _merge(tree, {"model": {"encoder": dataclass_to_dict(stage1.encoder)}})
    data = {
        "version": name,
        "family": family,
        "parent": meta.get("parent"),
        "description": meta.get("description", ""),
        "changes": list(meta.get("changes", [])),
        "size": size,
        "init_from": meta.get("init_from"),
        "init_fresh": list(meta.get("init_fresh", [])),
        "encoder_from": _inherited_meta(name, "encoder_from"),
        **tree,
    }
    try:
        return VersionConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"version {name!r} ({size}): {exc}") from exc
