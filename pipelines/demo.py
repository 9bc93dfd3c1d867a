"""``ptk demo``: the whole pipeline, offline, on the real structures ptk ships.

Steps (each is the real ``ptk`` command, invoked in-process, so the demo prints what each
command prints and leaves the same files a user would get by typing them):

1. ``ptk ingest cath`` the 30 shipped CATH-style chains, ``ptk ingest qfit`` the 4 shipped altloc
   entries (:func:`ptk.datasets.sample_data_dir`), and the four shipped chains of at most 90
   residues (:data:`MEMORISE`) as their own shard dataset;
2. ``ptk train`` the stage-1 ContactClassifier, then v13 on its frozen encoder (the page's order),
   both at the ``small`` size on the four chains with validation on the same chains: a
   memorisation run, so the DDIM TM-score sampled every few epochs rises as the model learns
   (``benchmarks/learning.py`` measures the same at length); and a tiny qFitLatent;
3. ``ptk sample`` from the v13 run into ``runs/v13/samples/demo`` and ``ptk eval`` those samples;
4. ``ptk report`` for v13 and qfitlatent.

Everything lands under ``--out`` (default ``./ptk-demo``). Re-running into a folder the demo
wrote starts over; any other non-empty folder is refused.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from ptk.errors import PtkError

__all__ = ["demo", "run_demo"]

_MARKER = ".ptk-demo"
_PARTS = ("shards", "runs", "report")
#: The shipped chains of at most 90 residues: v13 memorises them (whole chains).
MEMORISE: tuple[str, ...] = ("2cviA.pdb.gz", "2xcjA.pdb.gz", "1i8nA.pdb.gz", "2xdgA.pdb.gz")


def _prepare(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise PtkError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / _MARKER).is_file():
            raise PtkError(f"--out {out} is not empty and was not written by ptk demo; choose another folder")
        for part in _PARTS:  # only what an earlier demo wrote
            if (out / part).exists():
                shutil.rmtree(out / part)
    out.mkdir(parents=True, exist_ok=True)
    (out / _MARKER).write_text(
        "written by `ptk demo`; re-running the demo here replaces shards/ runs/ report/\n"
    )


def _invoke(command: click.Command, args: Sequence[str], name: str) -> Any:
    """Run a ``ptk`` Click command in-process exactly as the shell would (its output included)."""
    return command.main(args=list(args), prog_name=f"ptk {name}", standalone_mode=False)


def run_demo(
    out: str | Path = "ptk-demo",
    *,
    quick: bool = False,
    device: str = "cpu",
    echo: Callable[[str], None] = click.echo,
) -> dict[str, Any]:
    """Run the demo into ``out``; returns the report paths and timings.

    ``quick``: fewer epochs and samples (the test suite's setting, about a minute on two CPU
    cores; too short for the model to learn much).
    """
    from ptk.datasets import sample_data_dir
    from ptk.pipelines.evaluate import eval_command
    from ptk.pipelines.ingest import ingest
    from ptk.pipelines.report import write_report
    from ptk.pipelines.sample import sample
    from ptk.pipelines.train import train

    started = time.perf_counter()
    out = Path(out)
    _prepare(out)
    cath, qfit, runs = out / "shards" / "cath", out / "shards" / "qfit", out / "runs"
    memorise = out / "shards" / "memorise"
    # (stage-1 epochs, v13 epochs, DDIM every, qFitLatent epochs, samples, sampling steps)
    stage1_epochs, epochs_v13, every, epochs_qfit, n_samples, steps = (
        (20, 6, 3, 2, 2, 5) if quick else (60, 150, 15, 10, 4, 50)
    )
    timings: dict[str, float] = {}
    total_steps = 9

    def step(title: str, command: click.Command, args: list[str], name: str) -> None:
        echo(f"\n== {title}\n$ ptk {name} {' '.join(args)}")
        t = time.perf_counter()
        _invoke(command, args, name)
        timings[title] = time.perf_counter() - t
        echo(f"({timings[title]:.1f} s)")

    shipped = sample_data_dir("cath_style")
    step(
        f"1/{total_steps} ingest the shipped CATH-style chains",
        ingest,
        ["cath", str(shipped), "--out", str(cath), "--scheduler", "synchronous"],
        "ingest",
    )
    step(
        f"2/{total_steps} ingest the shipped altloc entries",
        ingest,
        ["qfit", str(sample_data_dir("altloc")), "--out", str(qfit), "--scheduler", "synchronous"],
        "ingest",
    )
    step(
        f"3/{total_steps} ingest the four shipped chains of at most 90 residues (the memorisation set)",
        ingest,
        ["cath", *[str(shipped / name) for name in MEMORISE], "--out", str(memorise), "--scheduler",
         "synchronous"],
        "ingest",
    )  # fmt: skip
    common = ["--device", device, "--set", "progress=false"]
    whole = ["--set", f"batch_size={len(MEMORISE)}", "--set", "patience=0"]
    step(
        f"4/{total_steps} train the stage-1 ContactClassifier (contact map from sequence)",
        train,
        ["--version", "contact-classifier", "--size", "small", "--data", str(memorise), "--val-data",
         str(memorise), "--out", str(runs / "contact-classifier"), "--epochs", str(stage1_epochs), *whole,
         *common],
        "train",
    )  # fmt: skip
    step(
        f"5/{total_steps} train v13 on the frozen stage-1 encoder (DDIM TM every {every} epochs)",
        train,
        ["--version", "v13", "--size", "small", "--data", str(memorise), "--val-data", str(memorise),
         "--out", str(runs / "v13"), "--epochs", str(epochs_v13), "--set", f"sample_every={every}",
         "--set", f"sample_n={len(MEMORISE)}", *whole, *common],
        "train",
    )  # fmt: skip
    step(
        f"6/{total_steps} train a tiny qFitLatent",
        train,
        ["--version", "qfitlatent", "--size", "tiny", "--data", str(qfit), "--out", str(runs / "qfitlatent"),
         "--epochs", str(epochs_qfit), "--set", "ema_decay=0.9", *common],
        "train",
    )  # fmt: skip
    samples = runs / "v13" / "samples" / "demo"
    step(
        f"7/{total_steps} sample from the v13 run (DDIM, EMA weights)",
        sample,
        ["--run", str(runs / "v13"), "--data", str(memorise), "--out", str(samples), "--n", str(n_samples),
         "--steps", str(steps), "--device", device],
        "sample",
    )  # fmt: skip
    step(
        f"8/{total_steps} score the samples against their references",
        eval_command,
        ["--pred", str(samples), "--ref", str(samples / "ref"), "--out", str(samples / "scores.csv")],
        "eval",
    )
    echo(f"\n== {total_steps}/{total_steps} write the reports")
    t = time.perf_counter()
    reports = {}
    for version in ("v13", "qfitlatent"):
        result = write_report(version, runs, out / "report" / version)
        reports[version] = result.html
        echo(f"$ ptk report --version {version} --runs {runs} --out {out / 'report' / version}")
        for item in result.missing:
            echo(f"  missing: {item.line()}")
        echo(f"report: {result.html} ({len(result.figures)} figures)")
    timings[f"{total_steps}/{total_steps} reports"] = time.perf_counter() - t
    total = time.perf_counter() - started
    echo(f"\nptk demo: done in {total:.0f} s. Open the report: {reports['v13'].resolve()}")
    echo(f"(qFitLatent: {reports['qfitlatent'].resolve()}; runs in {runs}, shards in {out / 'shards'})")
    return {"reports": reports, "seconds": total, "timings": timings, "out": out}


@click.command("demo")
@click.option(
    "--out",
    default="ptk-demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the shards, runs and reports (re-running replaces what an earlier demo wrote).",
)
@click.option("--quick", is_flag=True, help="A few epochs only (a smoke run: too short to learn much).")
@click.option("--device", type=click.Choice(["cpu", "auto", "cuda"]), default="cpu", show_default=True)
def demo(out: str, quick: bool, device: str) -> None:
    """Run the whole pipeline offline on the structures ptk ships: ingest both kinds, train the
    stage-1 ContactClassifier and then v13 on four shipped chains until it memorises them (its
    DDIM TM-score rises over the epochs), a tiny qFitLatent, sample, evaluate, and write the
    HTML reports.

    \b
    ptk demo                 # ./ptk-demo, a few minutes on a laptop CPU
    ptk demo --out /tmp/d --quick
    """
    run_demo(out, quick=quick, device=device)
