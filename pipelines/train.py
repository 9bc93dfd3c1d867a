"""``ptk train``: resolve a version's config, split the shards, set up the run folder and hand
over to the training engine (:class:`ptk.models.trainer.Trainer`).

Run folder layout: ``docs/run-folder.md`` (config.json, metrics.csv, checkpoints/, samples/,
train.log), its names and formats :mod:`ptk.runs`'s. Validation data: ``--val-data`` when given;
else the shards' ``split`` column when it names both ``train`` and ``validation`` rows; else a
deterministic hash split of the ids (``val_fraction`` of them, at least one).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from ptk import runs
from ptk.errors import ConfigError, PtkError
from ptk.models.runs import build_datasets, resolve_device, split_indices

__all__ = ["train", "run_training", "resolve_device", "parse_overrides", "split_indices"]

log = logging.getLogger("ptk.train")


def parse_overrides(pairs: Sequence[str]) -> dict[str, str]:
    """``["lr=1e-4", "model.d_s=64"]`` → ``{"lr": "1e-4", ...}``; values stay strings until the
    config they land in type-checks them."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


class _Below(logging.Filter):
    """Drops records under ``level`` (keeps the console at the ``-v`` level the user chose)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level


def _log_to_file(path: Path) -> tuple[logging.Handler, list[tuple[logging.Handler, logging.Filter]]]:
    """train.log gets INFO and up whatever ``-v`` says; the console keeps its own level."""
    handler = logging.FileHandler(path, mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    logger = logging.getLogger("ptk")
    console_level = logger.getEffectiveLevel()
    filters = []
    if console_level > logging.INFO:
        for console in logging.getLogger().handlers:
            quiet = _Below(console_level)
            console.addFilter(quiet)
            filters.append((console, quiet))
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    return handler, filters


def read_run_config(path: Path) -> dict[str, Any]:
    """The ``config.json`` at ``path``, or one line saying why the run cannot be resumed from it
    (:func:`ptk.runs.read_resume_config` of its folder)."""
    return runs.read_resume_config(Path(path).parent)


def _same_setting(saved: Mapping[str, Any], key: str, value: str) -> bool:
    """Whether ``--set key=value`` on resume restates what the run already uses."""
    from ptk.models.optim import parse_value

    before = saved.get("overrides", {}).get(key)
    if before is not None:
        return parse_value(str(before)) == parse_value(value)
    name = key.removeprefix("train.")
    return name in saved["train"] and saved["train"][name] == parse_value(value)


def run_training(
    version: str | None,
    data: str | os.PathLike[str] | None,
    out: str | os.PathLike[str],
    *,
    val_data: str | os.PathLike[str] | None = None,
    epochs: int | None = None,
    size: str = "default",
    device: str = "auto",
    resume: bool = False,
    overrides: Mapping[str, str] | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Train ``version`` into the run folder ``out`` (or continue it with ``resume``)."""
    import torch

    from ptk import __version__
    from ptk.models.summary import count_parameters
    from ptk.models.tasks import get_task
    from ptk.models.trainer import Trainer, setup_distributed

    run_dir = Path(out)
    overrides = dict(overrides or {})
    if resume:
        if not any(runs.checkpoint_path(run_dir, which).is_file() for which in ("last", "best")):
            raise PtkError(f"{run_dir}: nothing to resume (no checkpoints/last.pt)")
        saved = runs.read_resume_config(run_dir)
        if version is not None and version != saved["version"]:
            raise ConfigError(f"{run_dir} is a {saved['version']} run, not {version}")
        from ptk.models.optim import TrainConfig

        fixed = {
            k
            for k, v in overrides.items()
            if k.removeprefix("train.") not in TrainConfig.RUNTIME_KEYS and not _same_setting(saved, k, v)
        }
        if fixed:
            raise ConfigError(
                f"--resume cannot change {', '.join(sorted(fixed))}; allowed on resume: "
                f"{', '.join(TrainConfig.RUNTIME_KEYS)}"
            )
        version, size = saved["version"], saved["size"]
        # halt_after is about one invocation (a pre-emption drill), not the run: never inherited
        kept = {
            k: v for k, v in saved.get("overrides", {}).items() if k.removeprefix("train.") != "halt_after"
        }
        merged = {**kept, **overrides}
        data = data if data is not None else saved["data"]["train"]
        val_data = val_data if val_data is not None else saved["data"].get("val")
        overrides = merged
        if epochs is None:
            epochs = saved["train"]["epochs"]
    else:
        if version is None or data is None:
            raise ConfigError("ptk train needs --version and --data (or --resume on an existing run)")
        if runs.checkpoint_path(run_dir, "last").exists():
            raise PtkError(
                f"{run_dir} already holds a run; pass --resume to continue it or choose another --out"
            )
    if epochs is not None:
        overrides["epochs"] = str(epochs)

    task = get_task(version, size, overrides)
    dev = resolve_device(device)
    info = setup_distributed(dev)
    data_path = Path(data)
    if not data_path.is_dir():
        raise PtkError(f"--data {data_path}: not a folder")
    val_path = Path(val_data) if val_data is not None else None
    train_set, val_set, split_rule = build_datasets(task, data_path, val_path)
    if len(train_set) == 0:
        raise PtkError(f"{data_path}: no training examples")

    torch.manual_seed(task.train.seed)  # the same initial weights on every rank and every run
    model = task.build_model()
    warm_notes = [] if resume else task.initialize(model, run_dir)
    n_params, n_trainable = count_parameters(model), count_parameters(model, trainable_only=True)

    run_dir.mkdir(parents=True, exist_ok=True)
    config = task.describe()
    now = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    config.update(
        {
            "data": {
                "train": str(data_path),
                "val": str(val_path) if val_path else None,
                "split": split_rule,
            },
            "n_train": len(train_set),
            "n_val": len(val_set) if val_set is not None else 0,
            "n_params": n_params,
            "n_trainable_params": n_trainable,
            "ptk_version": __version__,
            "torch_version": str(torch.__version__),
            "command": command or shlex.join(sys.argv),
            "device": str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""),
            "world_size": info.world_size,
        }
    )
    if resume:
        saved = runs.read_resume_config(run_dir)
        config["created"] = saved.get("created", now)
        config["resumed_at"] = list(saved.get("resumed_at", [])) + [now]
    else:
        config["created"], config["resumed_at"] = now, []
    handler, filters = None, []
    if info.main:
        runs.write_config(run_dir, config)
        handler, filters = _log_to_file(runs.log_path(run_dir))
    try:
        log.info(
            "%s %s (%s): %d params, %d train / %d val examples (%s split), device %s, world size %d",
            "resuming" if resume else "training",
            version,
            size,
            n_params,
            len(train_set),
            config["n_val"],
            split_rule,
            config["device"],
            info.world_size,
        )
        for note in warm_notes:
            log.info("%s", note)
        trainer = Trainer(
            task,
            model,
            task.train,
            run_dir,
            train_set,
            val_set,
            dev,
            dist_info=info,
            resume=resume,
            config=config,
        )
        summary = trainer.fit()
    finally:
        if handler is not None:
            logging.getLogger("ptk").removeHandler(handler)
            handler.close()
        for console, quiet in filters:
            console.removeFilter(quiet)
    summary.update(
        {
            "run_dir": str(run_dir),
            "version": version,
            "n_params": n_params,
            "rank": info.rank,
            "lr": task.train.lr,
        }
    )
    return summary


@click.command("train")
@click.option("--version", "version", default=None, help="Model version (see `ptk versions`).")
@click.option(
    "--data", type=click.Path(file_okay=False), default=None, help="Shard dataset folder (ptk ingest)."
)
@click.option("--val-data", type=click.Path(file_okay=False), default=None, help="Validation shard dataset.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder to write.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Epochs (default: the version's).")
@click.option(
    "--size",
    type=click.Choice(["default", "small", "tiny"]),
    default="default",
    show_default=True,
    help="default: the reference sizes; small: memorises a few chains in CPU minutes; tiny: seconds a step.",
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--resume", is_flag=True, help="Continue the run in --out from checkpoints/last.pt.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config key (repeatable).")
def train(version, data, val_data, out, epochs, size, device, resume, sets) -> None:
    """Train a model version on shard datasets, writing a run folder.

    Mini-Fold versions (v10 ... v14) condition on the encoder of a trained stage-1
    ContactClassifier, frozen: train it first into RUNS/contact-classifier beside the run
    (or name it with --set encoder_checkpoint=PATH); without one the run is refused
    (--set encoder=train trains the encoder with the rest). A version's init_from weights
    (v13 from v12b, v14 from v13) are read from RUNS/<init_from>/checkpoints/best.pt beside
    the run when it exists (or --set init_checkpoint=PATH), else it starts from scratch.

    \b
    ptk train --version contact-classifier --data shards/cath --out runs/contact-classifier
    ptk train --version v13 --data shards/cath --out runs/v13
    ptk train --version qfitlatent --data shards/qfit --out runs/qfit --size tiny --epochs 2
    ptk train --out runs/v13 --resume
    torchrun --nproc_per_node=4 -m ptk.pipelines.cli train --version v13 --data ... --out ...
    """
    summary = run_training(
        version,
        data,
        out,
        val_data=val_data,
        epochs=epochs,
        size=size,
        device=device,
        resume=resume,
        overrides=parse_overrides(sets),
    )
    if (summary["halted"] or "").startswith("diverged"):
        raise PtkError(
            f"{summary['run_dir']}: {summary['halted']} at lr {summary['lr']:.3g}; lower lr (--set lr=...) "
            "or check the data"
        )
    if summary["rank"] == 0:
        halted = f", stopped: {summary['halted']}" if summary["halted"] else ""
        click.echo(
            f"{summary['version']}: {summary['epochs']} epochs, {summary['steps']} steps, best val "
            f"{summary['best_val']:.4f} at epoch {summary['best_epoch']}{halted} → {summary['run_dir']}"
        )


@click.command("upgrade-checkpoint")
@click.argument("paths", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--trust",
    is_flag=True,
    help="Confirm that you wrote these files: each is loaded once with pickle, which runs any code it holds.",
)
def upgrade_checkpoint_command(paths: tuple[str, ...], trust: bool) -> None:
    """Rewrite checkpoints of ptk 0.1 so that they load without pickle.

    ptk reads checkpoints with torch's weights-only loader, which refuses files that need code
    to load. ptk 0.1 saved its numpy RNG state as an ndarray, so its best.pt and last.pt are
    refused too; this rewrites them (atomically, in place) with that state as tensors. Only
    for files you wrote: a crafted file would run its code here.

    \b
    ptk upgrade-checkpoint --trust runs/v13/checkpoints/best.pt runs/v13/checkpoints/last.pt
    """
    from ptk.models.optim import upgrade_checkpoint

    if not trust:
        raise click.UsageError("pass --trust to confirm you wrote these files (they are loaded with pickle)")
    for path in paths:
        changed = upgrade_checkpoint(path)
        click.echo(f"{path}: {'rewritten' if changed else 'already loads without pickle'}")
