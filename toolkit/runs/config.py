"""``RUN/config.json``: written whole at the start of every ``ptk train`` invocation, read by
``--resume``, ``ptk sample``, the report and the plots (``docs/run-folder.md``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ptk.errors import PtkError
from ptk.files import atomic_write
from ptk.runs.layout import CONFIG_NAME, RESUME_KEYS, PathLike, config_path

__all__ = ["read_config", "read_resume_config", "write_config"]


def write_config(run: PathLike, config: Mapping[str, Any]) -> None:
    """``RUN/config.json``: JSON, indent 2, keys in ``config``'s order, rewritten whole."""
    atomic_write(config_path(run), json.dumps(config, indent=2, sort_keys=False) + "\n")


def read_config(run: PathLike) -> dict[str, Any]:
    """``RUN/config.json`` as plain JSON.

    Raises:
        PtkError: no such file (not a run folder), or not readable as JSON.
    """
    path = config_path(run)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise PtkError(f"{run}: not a run folder (no {CONFIG_NAME})") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise PtkError(f"{path}: unreadable ({exc})") from exc


def read_resume_config(run: PathLike) -> dict[str, Any]:
    """``RUN/config.json`` for ``--resume``: holding :data:`RESUME_KEYS`, or one line saying why
    the run cannot be resumed from it."""
    path = config_path(run)
    try:
        saved = json.loads(path.read_text())
    except FileNotFoundError:
        raise PtkError(f"{path}: missing; --resume needs the run's {CONFIG_NAME}") from None
    except (OSError, ValueError) as exc:
        raise PtkError(
            f"{path}: not readable as JSON ({exc}); --resume needs the run's {CONFIG_NAME}"
        ) from None
    if not isinstance(saved, dict) or any(k not in saved for k in RESUME_KEYS):
        raise PtkError(f"{path}: not a ptk run config (needs the keys {', '.join(RESUME_KEYS)})")
    return saved
