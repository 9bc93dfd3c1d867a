"""The ``ptk`` command line.

Each command lives in its own module and is imported only when it runs, so ``ptk --help``
stays fast (no torch, no dask import). Library errors (:class:`ptk.errors.PtkError`) become a
one-line message on stderr and exit status 1.
"""

from __future__ import annotations

import importlib
import sys

import click

from ptk import __version__
from ptk.errors import PtkError

# name -> (module:attribute, one-line help). Keeping the help here lets `ptk --help` list the
# commands without importing them.
COMMANDS: dict[str, tuple[str, str]] = {
    "ingest": ("ptk.pipelines.ingest:ingest", "Parse structure files into Parquet shard datasets."),
    "fetch": ("ptk.pipelines.fetch:fetch", "Download the public data sets named in data_manifests/."),
    "eval": ("ptk.pipelines.evaluate:eval_command", "Score predicted structures against references."),
    "plot": ("ptk.pipelines.evaluate:plot", "Write pseudo-Ramachandran, contact-map and loss-curve PNGs."),
    "versions": ("ptk.pipelines.versions:versions", "List every model version and its size."),
    "train": ("ptk.pipelines.train:train", "Train a model version on shard datasets."),
    "sample": ("ptk.pipelines.sample:sample", "Generate structures from a trained run."),
    "report": ("ptk.pipelines.report:report", "Write the HTML training report of a version."),
    "demo": ("ptk.pipelines.demo:demo", "Run the whole pipeline offline on the data ptk ships."),
    "upgrade-checkpoint": (
        "ptk.pipelines.train:upgrade_checkpoint_command",
        "Rewrite ptk 0.1 checkpoints so that they load without pickle.",
    ),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        target, _ = COMMANDS[cmd_name]
        module_name, attr = target.split(":")
        return getattr(importlib.import_module(module_name), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_, help_text) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ptk")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """ptk: protein-structure machine learning, from structure files to trained models.

    \b
    ptk ingest cath DOMAINS/ --out shards/cath        structures -> Parquet shards
    ptk train --version v13 --data shards/cath --out runs/v13
    ptk sample --run runs/v13 --data shards/cath --out samples/
    ptk eval --pred samples/ --ref refs/ --out scores.csv
    ptk report --version v13 --runs runs/             HTML training report
    ptk demo                                          all of it, offline, on shipped data
    """
    import logging

    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the CLI, turning PtkError into exit status 1."""
    try:
        # With standalone_mode=False, Click returns the code given to ``ctx.exit(code)``.
        code = cli.main(args=argv, prog_name="ptk", standalone_mode=False)
        if isinstance(code, int) and code != 0:
            sys.exit(code)
    except PtkError as exc:
        click.echo(f"ptk: error: {exc}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("ptk: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
