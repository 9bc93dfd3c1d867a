"""A run folder read back (``ptk report``): :class:`Run` (``config.json`` and ``metrics.csv``),
finding the run of a version under a runs folder, and its latest :class:`Sampling`."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptk.errors import PtkError
from ptk.runs.config import read_config
from ptk.runs.layout import (
    CONFIG_NAME,
    EVAL_NAME,
    FLAT_EVAL_NAME,
    PathLike,
    epoch_of,
    metrics_path,
    sample_folders,
    samples_dir,
)
from ptk.runs.tables import _read_csv

__all__ = ["Run", "Sampling", "find_runs", "latest_samples", "load_run", "pick_run"]


@dataclass
class Run:
    """One run folder: its ``config.json`` and ``metrics.csv`` (None before the first epoch)."""

    path: Path
    config: dict[str, Any]
    metrics: Any  # pandas.DataFrame | None

    @property
    def version(self) -> str:
        return str(self.config.get("version", self.path.name))

    @property
    def family(self) -> str:
        return str(self.config.get("family", ""))

    @property
    def n_epochs(self) -> int:
        return 0 if self.metrics is None else len(self.metrics)

    @property
    def best_index(self) -> int | None:
        """Row index of the best epoch: the last row whose status is ``NEW BEST``."""
        frame = self.metrics
        if frame is None or "status" not in frame or not len(frame):
            return None
        best = frame.index[frame["status"].astype(str).str.strip() == "NEW BEST"]
        return int(best[-1]) if len(best) else None

    @property
    def best_row(self) -> Mapping[str, Any] | None:
        i = self.best_index
        return None if i is None else self.metrics.loc[i]

    @property
    def created(self) -> str:
        return str(self.config.get("created") or "")


def load_run(path: PathLike) -> Run:
    """The run folder ``path`` (``config.json`` required, ``metrics.csv`` optional: None when
    missing, empty or not parseable).

    Raises:
        PtkError: no readable ``config.json``.
    """
    import pandas as pd

    path = Path(path)
    config = read_config(path)
    metrics = None
    table = metrics_path(path)
    if table.is_file() and table.stat().st_size > 0:
        try:
            metrics = _read_csv(table)
        except (pd.errors.EmptyDataError, pd.errors.ParserError):
            metrics = None
    return Run(path=path, config=config, metrics=metrics)


def find_runs(runs_dir: PathLike, max_depth: int = 3) -> list[Run]:
    """Every run folder (a folder with ``config.json`` holding a ``version``) at most
    ``max_depth`` levels under ``runs_dir`` (itself included), sorted by path. Unreadable
    folders are skipped."""
    root = Path(runs_dir)
    if not root.is_dir():
        return []
    found: list[Run] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        depth = len(here.relative_to(root).parts)
        # a run's own subfolders (checkpoints, samples, report) hold no runs
        dirnames[:] = [] if CONFIG_NAME in filenames or depth >= max_depth else sorted(dirnames)
        if CONFIG_NAME in filenames:
            try:
                run = load_run(here)
            except PtkError:
                continue
            if "version" in run.config:
                found.append(run)
    return sorted(found, key=lambda r: str(r.path))


def pick_run(version: str, runs_dir: PathLike, runs: Sequence[Run] | None = None) -> Run | None:
    """The run of ``version``: ``runs_dir/<version>/`` when it is one, else the most recently
    created run whose ``config.json`` names that version (None when there is none); runs with a
    finished epoch come before runs without one."""
    runs = find_runs(runs_dir) if runs is None else runs
    candidates = [r for r in runs if r.version == version]
    if not candidates:
        return None
    # an interrupted run with no finished epoch has nothing to show while another run does
    candidates = [r for r in candidates if r.n_epochs > 0] or candidates
    preferred = (Path(runs_dir) / version).resolve()
    for run in candidates:
        if run.path.resolve() == preferred:
            return run
    return max(candidates, key=lambda r: (r.created, r.n_epochs, str(r.path)))


@dataclass
class Sampling:
    """One sampling of a run: the folder, its scores CSV and the PDB folders."""

    path: Path
    csv: Path
    ddim: Path
    ref: Path
    x0: Path
    epoch: int | None

    @property
    def label(self) -> str:
        return f"epoch {self.epoch}" if self.epoch is not None else self.path.name


def _sampling(folder: Path) -> Sampling | None:
    epoch = epoch_of(folder)
    for layout, scores in (("run", EVAL_NAME), ("flat", FLAT_EVAL_NAME)):
        if (folder / scores).is_file():
            dirs = sample_folders(folder, layout)
            return Sampling(folder, folder / scores, dirs["ddim"], dirs["ref"], dirs["x0"], epoch)
    return None


def latest_samples(run: Run) -> Sampling | None:
    """The latest sampling of ``run`` under ``run/samples/``: training-time ``epoch_NNN/``
    folders and ``ptk sample --out run/samples/NAME`` folders alike, the most recently
    written scores CSV winning (ties: the higher epoch)."""
    root = samples_dir(run.path)
    if not root.is_dir():
        return None
    found = [s for s in (_sampling(p) for p in sorted(root.iterdir()) if p.is_dir()) if s is not None]
    if not found:
        return None
    return max(found, key=lambda s: (s.csv.stat().st_mtime, s.epoch or 0))
