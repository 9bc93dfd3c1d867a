"""Warm starts: the checkpoint a version initialises from and a partial, shape-checked load."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from torch import Tensor, nn

from ptk import runs
from ptk.errors import ConfigError


def _resolve_checkpoint(explicit: str, run_dir: Path, version: str | None) -> Path | None:
    """An explicit checkpoint/run folder, else ``<runs>/<version>/checkpoints/best.pt`` beside
    ``run_dir`` when that exists."""
    if explicit:
        path = Path(explicit)
        if path.is_dir():
            path = runs.checkpoint_path(path, "best")
        if not path.is_file():
            raise ConfigError(f"checkpoint {explicit!r} not found")
        return path
    if version:
        path = runs.checkpoint_path(run_dir.parent / version, "best")
        if path.is_file() and path.resolve() != runs.checkpoint_path(run_dir, "best").resolve():
            return path
    return None


def _ema_state(path: Path) -> dict[str, Tensor]:
    from ptk.models.optim import load_checkpoint

    state = load_checkpoint(path)
    return state["ema"]["module"] if "ema" in state else state.get("model", state)


def load_partial(model: nn.Module, state: Mapping[str, Tensor], fresh: Sequence[str] = ()) -> str:
    """``load_state_dict(strict=False)`` that also skips tensors whose shape changed (a new
    architecture block of the same name trains from scratch) and those of the modules named in
    ``fresh`` (``"pair_stack"``: every ``pair_stack.*`` tensor). Returns a one-line account."""
    own = model.state_dict()
    unknown = [m for m in fresh if not any(k == m or k.startswith(m + ".") for k in own)]
    if unknown:
        raise ConfigError(f"init_fresh names {unknown}, which the model does not have")
    usable = {
        k: v
        for k, v in state.items()
        if k in own and own[k].shape == v.shape and not any(k == m or k.startswith(m + ".") for m in fresh)
    }
    model.load_state_dict(usable, strict=False)
    kept = f" ({', '.join(fresh)} by the version)" if fresh else ""
    return f"warm start: {len(usable)}/{len(own)} tensors loaded, {len(own) - len(usable)} from scratch{kept}"
