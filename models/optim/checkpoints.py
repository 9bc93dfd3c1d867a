"""Checkpoint files: written atomically, read with ``weights_only=True`` (tensors and plain
values, never code), and the one-time upgrade of a ptk 0.1 file you wrote yourself."""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from ptk.files import atomic_writer
from ptk.models.optim.rng_state import plain_rng

__all__ = ["atomic_save", "load_checkpoint", "upgrade_checkpoint"]


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
        state["rng"] = plain_rng(state["rng"])
    if "config" in state:  # the run's config.json: its torch version was a TorchVersion object
        state["config"] = json.loads(json.dumps(state["config"], default=str))
    if "rng_by_rank" in state:
        state["rng_by_rank"] = [plain_rng(rng) for rng in state["rng_by_rank"]]
    atomic_save(state, path)
    load_checkpoint(path)  # what was written loads safely, or this raises
    return True
