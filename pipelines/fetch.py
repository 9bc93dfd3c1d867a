"""``ptk fetch``: download a public data set that a manifest in ``data_manifests/`` describes.

Every manifest is a subcommand (``ptk fetch cath42``, ``ptk fetch cath-domains``, ``ptk fetch
pdb``, and any manifest a user adds, also from folders in ``$PTK_DATA_MANIFESTS``). The work is
:func:`ptk.fetching.fetch_dataset`; this module only turns options into its arguments.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ptk.fetching import DatasetManifest, FetchOptions, fetch_dataset, find_manifests, load_manifest


def _common_options(command: click.Command, manifest: DatasetManifest) -> None:
    params = [
        click.Option(["--dest"], type=click.Path(file_okay=False, path_type=Path), default=None,
                     help=f"Folder to fetch into  [default: ./{manifest.name}]"),
        click.Option(["--mirror"], metavar="URL", default=None,
                     help="Fetch every URL from this base instead (scheme and host replaced, its path "
                          "put in front): a mirror laid out like the source, http(s):// or file://."),
        click.Option(["--workers"], type=click.IntRange(1, 64), default=8, show_default=True,
                     help="Parallel downloads."),
        click.Option(["--retries"], type=click.IntRange(0, 20), default=4, show_default=True,
                     help="Retries per file on 5xx answers, timeouts and dropped connections."),
        click.Option(["--backoff"], type=click.FloatRange(0), default=1.0, show_default=True,
                     envvar="PTK_FETCH_BACKOFF", show_envvar=True,
                     help="First retry delay in seconds; it doubles per retry (capped at 60 s)."),
        click.Option(["--timeout"], type=click.FloatRange(0, min_open=True), default=60.0, show_default=True,
                     help="Seconds without data before a download counts as stalled."),
    ]  # fmt: skip
    if manifest.takes_ids:
        params[1:1] = [
            click.Option(["--ids", "ids_file"], type=click.Path(exists=True, dir_okay=False, path_type=Path),
                         help=f"File of IDs, one per line (first column; '#' comments), e.g. "
                              f"{manifest.id_example or 'one ID'}."),
            click.Option(["--list", "list_name"], type=click.Choice(list(manifest.lists)),
                         help="A named ID list from the manifest instead of --ids."),
            click.Option(["--limit"], type=click.IntRange(0), default=None,
                         help="Only the first N IDs of the list."),
        ]  # fmt: skip
        if len(manifest.formats) > 1:
            fmt_option = click.Option(["--format", "fmt"], type=click.Choice(list(manifest.formats)),
                                      default=manifest.default_format, show_default=True,
                                      help="File format to fetch.")  # fmt: skip
            params.insert(4, fmt_option)
    command.params.extend(params)


def _epilog(manifest: DatasetManifest) -> str:
    parts = []
    for title, text in (("Layout", manifest.layout), ("Licence", manifest.licence),
                        ("Citation", manifest.citation),
                        ("Then", manifest.ingest.format(dest="DEST", format="FORMAT"))):  # fmt: skip
        if text:
            parts.append(f"\b\n{title}:\n" + "\n".join("  " + line for line in text.splitlines()))
    if manifest.lists:
        parts.append(
            "\b\nID lists:\n" + "\n".join(f"  {n}: {lst.description}" for n, lst in manifest.lists.items())
        )
    parts.append(f"Manifest: {manifest.source}")
    return "\n\n".join(parts)


def _dataset_command(manifest: DatasetManifest) -> click.Command:
    def run(dest: Path | None, mirror: str | None, workers: int, retries: int, backoff: float, timeout: float,
            ids_file: Path | None = None, list_name: str | None = None, limit: int | None = None,
            fmt: str | None = None) -> None:  # fmt: skip
        if manifest.takes_ids and (ids_file is None) == (list_name is None):
            raise click.UsageError("give exactly one of --ids FILE or --list NAME")
        dest = dest or Path(manifest.name)
        options = FetchOptions(
            workers=workers, retries=retries, backoff=backoff, timeout=timeout, mirror=mirror
        )
        from tqdm.contrib.logging import logging_redirect_tqdm

        with logging_redirect_tqdm():
            report = fetch_dataset(manifest, dest, ids_file=ids_file, list_name=list_name, fmt=fmt,
                                   limit=limit, options=options)  # fmt: skip
        click.echo(report.summary())
        if manifest.ingest and report.fetched + report.present:
            fmt_used = fmt or manifest.default_format or ""
            click.echo("next: " + manifest.ingest.format(dest=dest, format=fmt_used))
        if report.failures:
            sys.exit(1)  # not ctx.exit: the console script's main() runs Click non-standalone

    command = click.Command(manifest.name, callback=run, help=_help(manifest), epilog=_epilog(manifest),
                            short_help=manifest.title)  # fmt: skip
    _common_options(command, manifest)
    return command


def _help(manifest: DatasetManifest) -> str:
    text = manifest.title
    if manifest.description:
        text += "\n\n" + manifest.description
    if manifest.homepage:
        text += f"\n\nSource: {manifest.homepage}"
    return text


class ManifestGroup(click.Group):
    """One subcommand per data-set manifest, built when asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(find_manifests())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        path = find_manifests().get(cmd_name)
        return _dataset_command(load_manifest(path)) if path is not None else None


@click.group(cls=ManifestGroup)
def fetch() -> None:
    """Download a public data set named in data_manifests/: checksummed, atomic, resumable.

    \b
    ptk fetch cath42 --dest data/cath42
    ptk fetch cath-domains --list cath-dataset-nonredundant-S40 --dest data/cath-s40
    ptk fetch pdb --list qfit-xray --format cif --dest data/qfit-xray

    A second run fetches only what is missing or fails its checksum. Failed files are listed
    with their reason in DEST/fetch_failures.tsv (exit status 1); the others are fetched.
    """
