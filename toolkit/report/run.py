"""The run folders the report reads (``docs/run-folder.md``). Reading them is :mod:`ptk.runs`'s
(:class:`Run`, :func:`load_run`, :func:`find_runs`, :func:`pick_run`, :class:`Sampling`,
:func:`latest_samples`, re-exported here); this module adds what only the report asks of a run."""

from __future__ import annotations

from ptk.runs import Run, Sampling, find_runs, latest_samples, load_run, pick_run

__all__ = [
    "DIFFUSION_FAMILIES",
    "Run",
    "Sampling",
    "data_hint",
    "find_runs",
    "latest_samples",
    "load_run",
    "pick_run",
]

#: Families whose runs write DDIM samples (``samples/epoch_NNN/``).
DIFFUSION_FAMILIES = ("minifold",)


def data_hint(run: Run) -> str:
    """The run's training shards (``config.json``'s ``data.train``), for the commands the page
    suggests."""
    return str((run.config.get("data") or {}).get("train") or "SHARDS")
