"""``ptk sample``: generate structures from a trained run's EMA weights.

For each reference chain of ``--data`` (the first ``--n``), the sampler draws a structure of the
reference's length and sequence with DDIM (``--steps``, ``--eta``, classifier-free ``--guidance``)
and writes ``OUT/<id>.pdb`` (N/Cα/C/O where the version predicts them, Cα otherwise), the
reference as ``OUT/ref/<id>.pdb``, the one-step x0 prediction as ``OUT/x0/<id>.pdb`` and the
scores as ``OUT/summary/samples.csv``, so ``ptk eval --pred OUT --ref OUT/ref`` scores the samples.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import click

from ptk import runs
from ptk.errors import ConfigError, PtkError
from ptk.models.runs import load_run_model

__all__ = ["sample", "run_sampling", "load_run_model"]

log = logging.getLogger("ptk.sample")


def run_sampling(
    run: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    checkpoint: str = "best",
    steps: int = 50,
    eta: float | None = None,
    guidance: float | None = None,
    n: int = 0,
    max_length: int | None = None,
    batch_size: int = 4,
    seed: int = 0,
    device: str = "auto",
) -> dict[str, Any]:
    """Sample the first ``n`` chains of ``data`` (all when 0) and write them to ``out``; ``eta`` and
    ``guidance`` default to the run's version's (``sample_eta``, ``sample_guidance``)."""
    import torch

    from ptk.models.runs import resolve_device

    dev = resolve_device(device)
    task, model, config = load_run_model(run, checkpoint, dev)
    if not task.can_sample:
        raise ConfigError(f"version {task.name} is not generative; ptk sample applies to Mini-Fold denoisers")
    length = max_length if max_length is not None else config["train"]["max_length"]
    dataset = task.dataset(Path(data), max_length=length, crop="first", seed=seed)
    if len(dataset) == 0:
        raise PtkError(f"{data}: no chains to sample")
    eta = float(config["train"]["sample_eta"]) if eta is None else eta
    guidance = float(config["train"]["sample_guidance"]) if guidance is None else guidance
    generator = torch.Generator(device=dev).manual_seed(seed)
    torch.manual_seed(seed)
    summary = task.sample_and_evaluate(
        model,
        dataset,
        Path(out),
        n=n,
        steps=steps,
        eta=eta,
        guidance=guidance,
        x0_t=config["train"].get("x0_t", 100),
        device=dev,
        generator=generator,
        batch_size=batch_size,
        layout="flat",
        eval_name=runs.FLAT_EVAL_NAME,
    )
    count = min(n, len(dataset)) if n > 0 else len(dataset)
    return {"n": count, "out": str(out), "version": task.name, "eta": eta, "guidance": guidance, **summary}


@click.command("sample")
@click.option("--run", "run", required=True, type=click.Path(file_okay=False), help="Run folder (ptk train).")
@click.option("--checkpoint", default="best", show_default=True, help="best, last, or a checkpoint path.")
@click.option("--data", required=True, type=click.Path(file_okay=False), help="Shard dataset of references.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder for the PDB files.")
@click.option("--steps", default=50, show_default=True, type=click.IntRange(min=1), help="DDIM steps.")
@click.option(
    "--eta", default=None, type=click.FloatRange(min=0.0), help="DDIM stochasticity (default: the version's)."
)
@click.option(
    "--guidance", default=None, type=float, help="Classifier-free guidance weight (default: the version's)."
)
@click.option("--n", "n", default=0, type=click.IntRange(min=0), help="Sample the first N chains (0: all).")
@click.option(
    "--max-length", default=None, type=click.IntRange(min=1), help="Crop references (default: the run's)."
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
def sample(run, checkpoint, data, out, steps, eta, guidance, n, max_length, seed, device) -> None:
    """Generate structures from a trained run (EMA weights), one per reference chain.

    \b
    ptk sample --run runs/v13 --data shards/cath --out samples/v13 --n 16
    ptk eval --pred samples/v13 --ref samples/v13/ref --out scores.csv
    """
    summary = run_sampling(
        run,
        data,
        out,
        checkpoint=checkpoint,
        steps=steps,
        eta=eta,
        guidance=guidance,
        n=n,
        max_length=max_length,
        seed=seed,
        device=device,
    )
    scores = ", ".join(f"{k} {summary[k]:.3f}" for k in ("tm", "rmsd", "gdt_ts") if k in summary)
    click.echo(f"{summary['version']}: {summary['n']} structures → {summary['out']} ({scores})")
