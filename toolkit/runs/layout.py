"""The names of the run folder's files and folders, and the paths built from them
(``docs/run-folder.md``)."""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = [
    "BEST_NAME",
    "CHECKPOINTS_DIR",
    "CONFIG_NAME",
    "EVAL_COLUMNS",
    "EVAL_NAME",
    "FLAT_EVAL_NAME",
    "GRAD_COSINE_NAME",
    "LAST_NAME",
    "LOG_NAME",
    "METRICS_NAME",
    "REPORT_DIR",
    "RESUME_KEYS",
    "SAMPLES_DIR",
    "checkpoint_path",
    "checkpoints_dir",
    "config_path",
    "epoch_of",
    "epoch_samples_dir",
    "grad_cosine_path",
    "log_path",
    "metrics_path",
    "report_dir",
    "sample_folders",
    "samples_dir",
]

PathLike = str | os.PathLike[str]

#: The run's config, rewritten whole at the start of every ``ptk train`` invocation.
CONFIG_NAME = "config.json"
#: The run's log (appended, INFO and up).
LOG_NAME = "train.log"
#: The per-epoch table.
METRICS_NAME = "metrics.csv"
#: The gradient-agreement table of ``grad_cosine_every``.
GRAD_COSINE_NAME = "grad_cosine.csv"
#: The folder of the two checkpoints.
CHECKPOINTS_DIR = "checkpoints"
#: The checkpoint after every epoch, and the one at the last new best.
LAST_NAME, BEST_NAME = "last.pt", "best.pt"
#: Samplings of the run: ``epoch_NNN`` during training, any name for ``ptk sample --out``.
SAMPLES_DIR = "samples"
#: ``ptk report``'s default output inside the run.
REPORT_DIR = "report"
#: The scores of a training-time sampling (layout ``run``), and of a ``ptk sample`` folder
#: (layout ``flat``: in a subfolder, so that ``ptk eval --pred OUT`` sees structures alone).
EVAL_NAME, FLAT_EVAL_NAME = "eval.csv", "summary/samples.csv"
#: The columns of both scores CSVs, one row per example and method (``ddim``, ``x0``).
EVAL_COLUMNS: tuple[str, ...] = ("id", "length", "method", "tm", "rmsd", "gdt_ts", "gdt_ha", "lddt")
#: The keys ``--resume`` needs in ``config.json``.
RESUME_KEYS: tuple[str, ...] = ("version", "size", "train", "data")

_EPOCH_DIR = re.compile(r"^epoch_(\d+)$")


def config_path(run: PathLike) -> Path:
    return Path(run) / CONFIG_NAME


def log_path(run: PathLike) -> Path:
    return Path(run) / LOG_NAME


def metrics_path(run: PathLike) -> Path:
    return Path(run) / METRICS_NAME


def grad_cosine_path(run: PathLike) -> Path:
    return Path(run) / GRAD_COSINE_NAME


def checkpoints_dir(run: PathLike) -> Path:
    return Path(run) / CHECKPOINTS_DIR


def checkpoint_path(run: PathLike, which: str) -> Path:
    """``RUN/checkpoints/last.pt`` or ``best.pt`` (``which`` is ``last`` or ``best``)."""
    names = {"last": LAST_NAME, "best": BEST_NAME}
    if which not in names:
        raise ValueError(f"checkpoint {which!r}: expected 'last' or 'best'")
    return checkpoints_dir(run) / names[which]


def samples_dir(run: PathLike) -> Path:
    return Path(run) / SAMPLES_DIR


def epoch_samples_dir(run: PathLike, epoch: int) -> Path:
    """``RUN/samples/epoch_NNN``, where training samples epoch ``epoch``."""
    return samples_dir(run) / f"epoch_{epoch:03d}"


def epoch_of(folder: PathLike) -> int | None:
    """The epoch of a training-time sampling folder ``epoch_NNN``; None for any other name."""
    match = _EPOCH_DIR.match(Path(folder).name)
    return int(match.group(1)) if match else None


def report_dir(run: PathLike) -> Path:
    return Path(run) / REPORT_DIR


def sample_folders(folder: PathLike, layout: str) -> dict[str, Path]:
    """The PDB folders of a sampling in ``folder``, method -> folder: layout ``run``
    (``ddim/ x0/ ref/``, training) or ``flat`` (the DDIM samples in ``folder`` itself,
    ``ptk sample``)."""
    folder = Path(folder)
    return {
        "ddim": folder / "ddim" if layout == "run" else folder,
        "x0": folder / "x0",
        "ref": folder / "ref",
    }
