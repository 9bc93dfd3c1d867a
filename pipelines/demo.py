"""``ptk demo``: the whole pipeline, offline, on the real structures ptk ships.

Steps (each is the real ``ptk`` command, invoked in-process, so the demo prints what each
command prints and leaves the same files a user would get by typing them):

1. ``ptk ingest cath`` the 30 shipped CATH-style chains, ``ptk ingest qfit`` the 4 shipped altloc
   entries (:func:`ptk.datasets.sample_data_dir`);
2. ``ptk train`` a tiny v13 (DDIM sampled every epoch) and a tiny qFitLatent; the demo sets
   ``ema_decay=0.9`` (the versions' 0.999 barely moves the EMA weights, which validation and
   sampling use, in a run of ~100 steps) and v13's ``lr=1e-3`` (its 2e-5 is for the full model
   over 60 epochs), so a minute of CPU shows curves that move; the report lists both overrides;
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

    ``quick``: fewer epochs and samples (the test suite's setting, well under a few minutes on
    two CPU cores).
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
    epochs_v13, epochs_qfit, n_samples, steps = (2, 2, 2, 5) if quick else (10, 10, 8, 20)
    timings: dict[str, float] = {}

    def step(title: str, command: click.Command, args: list[str], name: str) -> None:
        echo(f"\n== {title}\n$ ptk {name} {' '.join(args)}")
        t = time.perf_counter()
        _invoke(command, args, name)
        timings[title] = time.perf_counter() - t
        echo(f"({timings[title]:.1f} s)")

    step(
        "1/7 ingest the shipped CATH-style chains",
        ingest,
        ["cath", str(sample_data_dir("cath_style")), "--out", str(cath), "--scheduler", "synchronous"],
        "ingest",
    )
    step(
        "2/7 ingest the shipped altloc entries",
        ingest,
        ["qfit", str(sample_data_dir("altloc")), "--out", str(qfit), "--scheduler", "synchronous"],
        "ingest",
    )
    common = ["--size", "tiny", "--device", device, "--set", "ema_decay=0.9"]
    step(
        "3/7 train a tiny v13 (DDIM samples every epoch)",
        train,
        ["--version", "v13", "--data", str(cath), "--out", str(runs / "v13"), "--epochs", str(epochs_v13),
         "--set", "lr=1e-3", *common],
        "train",
    )  # fmt: skip
    step(
        "4/7 train a tiny qFitLatent",
        train,
        ["--version", "qfitlatent", "--data", str(qfit), "--out", str(runs / "qfitlatent"),
         "--epochs", str(epochs_qfit), *common],
        "train",
    )  # fmt: skip
    samples = runs / "v13" / "samples" / "demo"
    step(
        "5/7 sample from the v13 run (DDIM, EMA weights)",
        sample,
        ["--run", str(runs / "v13"), "--data", str(cath), "--out", str(samples), "--n", str(n_samples),
         "--steps", str(steps), "--device", device],
        "sample",
    )  # fmt: skip
    step(
        "6/7 score the samples against their references",
        eval_command,
        ["--pred", str(samples), "--ref", str(samples / "ref"), "--out", str(samples / "scores.csv")],
        "eval",
    )
    echo("\n== 7/7 write the reports")
    t = time.perf_counter()
    reports = {}
    for version in ("v13", "qfitlatent"):
        result = write_report(version, runs, out / "report" / version)
        reports[version] = result.html
        echo(f"$ ptk report --version {version} --runs {runs} --out {out / 'report' / version}")
        for item in result.missing:
            echo(f"  missing: {item.line()}")
        echo(f"report: {result.html} ({len(result.figures)} figures)")
    timings["7/7 reports"] = time.perf_counter() - t
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
@click.option("--quick", is_flag=True, help="Fewer epochs and samples (about half the time).")
@click.option("--device", type=click.Choice(["cpu", "auto", "cuda"]), default="cpu", show_default=True)
def demo(out: str, quick: bool, device: str) -> None:
    """Run the whole pipeline offline on the structures ptk ships: ingest both kinds, train a
    tiny v13 and a tiny qFitLatent, sample, evaluate, and write the HTML reports.

    \b
    ptk demo                 # ./ptk-demo, a few minutes on a laptop CPU
    ptk demo --out /tmp/d --quick
    """
    run_demo(out, quick=quick, device=device)
