"""The state of every RNG a training step draws from, as tensors and plain values only, so
that a checkpoint holding it loads with ``weights_only=True``."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["capture_rng", "plain_rng", "restore_rng"]


def capture_rng() -> dict[str, Any]:
    """Every RNG a training step draws from: torch (CPU and CUDA), numpy and python, as tensors
    and plain values only, so a checkpoint that holds them loads with ``weights_only=True``
    (numpy's own state is an ndarray, which would need an unpickled global)."""
    state = plain_rng(
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


def plain_rng(rng: Mapping[str, Any]) -> dict[str, Any]:
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
