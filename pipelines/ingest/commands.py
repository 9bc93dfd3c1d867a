"""The Click commands ``ptk ingest cath`` and ``ptk ingest qfit``: options in, one call of
:func:`~ptk.pipelines.ingest.driver.run_ingest`, its notes and summary out on the terminal, and
its :class:`~ptk.errors.ConfigError` (bad arguments) shown as a usage error (exit status 2)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ptk.errors import ConfigError
from ptk.pipelines.ingest.driver import Summary, run_ingest
from ptk.pipelines.ingest.task import DEFAULT_SHARD_ROWS

__all__ = ["cath", "ingest", "qfit"]


def _common(fn: Callable) -> Callable:
    options = [
        click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=str), metavar="INPUT..."),
        click.option(
            "--out",
            required=True,
            type=click.Path(file_okay=False, path_type=Path),
            help="Shard dataset folder (created; an existing one is resumed).",
        ),
        click.option(
            "--scheduler",
            default=None,
            metavar="ADDRESS",
            help="Dask scheduler: tcp://HOST:PORT of an existing cluster, or 'synchronous' to run "
            "in this process. Default: a local cluster sized to this machine.",
        ),
        click.option(
            "--workers",
            type=click.IntRange(min=1),
            default=None,
            help="Worker processes of the local cluster (default: one per CPU core).",
        ),
        click.option(
            "--shard-rows",
            type=click.IntRange(min=1),
            default=DEFAULT_SHARD_ROWS,
            show_default=True,
            help="Most rows per part file. A part holds one task's rows (up to 32 files or 16 MB "
            "of input), so parts of small files are smaller.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _run(kind: str, inputs: tuple[str, ...], out: Path, **options: Any) -> None:
    try:
        summary = run_ingest(kind, inputs, out, command=_argv(), notify=_note, **options)
    except ConfigError as exc:  # as Click shows its own: the usage line, the message, exit 2
        raise click.UsageError(str(exc)) from exc
    _report(summary)


def _note(line: str) -> None:
    click.echo(f"ptk: {line}", err=True)


def _report(summary: Summary) -> None:
    if summary.kept_parts and not summary.processed_files:
        click.echo(f"ptk: {summary.out} is up to date ({summary.kept_parts} parts kept)", err=True)
    elif summary.kept_parts:
        click.echo(
            f"ptk: resumed: kept {summary.kept_parts} parts, processed {summary.processed_files} files",
            err=True,
        )
    click.echo(summary.line())


@click.group("ingest")
def ingest() -> None:
    """Parse structure files into Parquet shard datasets (cath, qfit).

    INPUT is any mix of files and folders (searched recursively): PDB, mmCIF, .gz of either,
    CATH dompdb files; for cath also chain_set.jsonl / TS50 JSON backbone sets. Files that
    cannot be used are listed in DIR/rejects.parquet; re-running resumes.
    """


@ingest.command("cath")
@_common
@click.option(
    "--splits",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Ingraham CATH 4.2 chain_set_splits.json: fills `split` by chain id.",
)
@click.option(
    "--cath-list",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="CATH domain list (CLF) file: class/architecture/topology/homology by domain id.",
)
@click.option(
    "--max-length",
    type=click.IntRange(min=1),
    default=None,
    help="Reject chains longer than this (stage 'filter').",
)
def cath(
    inputs: tuple[str, ...],
    out: Path,
    scheduler: str | None,
    workers: int | None,
    shard_rows: int,
    splits: str | None,
    cath_list: str | None,
    max_length: int | None,
) -> None:
    """CATH domains/chains → cath shards (backbone, atoms, frames, dihedrals, χ, contacts)."""
    _run(
        "cath",
        inputs,
        out,
        splits=splits,
        cath_list=cath_list,
        max_length=max_length,
        scheduler=scheduler,
        workers=workers,
        shard_rows=shard_rows,
    )


@ingest.command("qfit")
@_common
def qfit(
    inputs: tuple[str, ...], out: Path, scheduler: str | None, workers: int | None, shard_rows: int
) -> None:
    """qFit multiconformer models → qfit shards (frames, per-altloc χ and occupancies)."""
    _run("qfit", inputs, out, scheduler=scheduler, workers=workers, shard_rows=shard_rows)


def _argv() -> str:
    import shlex

    return " ".join(shlex.quote(a) for a in ["ptk", *sys.argv[1:]]) if sys.argv else "ptk"
