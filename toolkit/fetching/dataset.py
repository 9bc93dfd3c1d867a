"""``fetch_dataset``: what one data set's fetch asks for (its fixed files, the files of the IDs
in an ID file or a named list, the list itself first where it is downloaded), then the fetch.
"""

from __future__ import annotations

from dataclasses import replace
from os import PathLike
from pathlib import Path

from ptk.errors import ConfigError, FetchError, unknown_choice
from ptk.fetching.destination import Failure
from ptk.fetching.download import FetchOptions, FetchReport, fetch
from ptk.fetching.manifest import DatasetManifest, RemoteFile, read_ids
from ptk.files import sha256_file

__all__ = ["fetch_dataset"]


def fetch_dataset(
    manifest: DatasetManifest,
    dest: str | PathLike[str],
    *,
    ids_file: str | PathLike[str] | None = None,
    list_name: str | None = None,
    fmt: str | None = None,
    limit: int | None = None,
    options: FetchOptions | None = None,
) -> FetchReport:
    """Fetch one data set: its fixed files and, for a per-ID data set, the files of the IDs in
    ``ids_file`` or in the manifest's list ``list_name`` (the first ``limit`` of them).

    Raises:
        ConfigError: IDs asked of a data set without them (or the other way round), an unknown
            list or format.
        FetchError: the ID list cannot be read or downloaded, or holds no valid ID.
    """
    options = options or FetchOptions()
    dest = Path(dest)
    files = list(manifest.files)
    rejected: list[Failure] = []
    pre = FetchReport(dest=dest)
    if manifest.takes_ids:
        if (ids_file is None) == (list_name is None):
            lists = ", ".join(manifest.lists) or "none"
            raise ConfigError(f"{manifest.name}: give either an ID file or a named list (lists: {lists})")
        if list_name is not None:
            if list_name not in manifest.lists:
                raise unknown_choice(f"ID list of {manifest.name}", list_name, list(manifest.lists))
            id_list = manifest.lists[list_name]
            if id_list.url is not None and id_list.path is not None:
                list_file = RemoteFile(id_list.path, id_list.url, id_list.path, id_list.sha256)
                pre = fetch(
                    [list_file], dest, replace(options, progress=False), label=f"{manifest.name} list"
                )
                if pre.failures:
                    raise FetchError(
                        f"ID list {list_name!r} could not be fetched from "
                        f"{pre.failures[0].url}: {pre.failures[0].reason}"
                    )
                ids_file = dest / id_list.path
            else:
                ids_file = id_list.file
                if id_list.sha256 and ids_file is not None and sha256_file(ids_file) != id_list.sha256:
                    raise ConfigError(f"{ids_file}: the shipped ID list {list_name!r} does not match "
                                      f"the sha256 in {manifest.source}")  # fmt: skip
        raw = read_ids(ids_file or "")
        if limit is not None:
            raw = raw[:limit]
        id_files, invalid = manifest.files_for_ids(raw, fmt)
        if raw and not id_files:
            example = f" such as {manifest.id_example!r}" if manifest.id_example else ""
            raise FetchError(
                f"{ids_file}: no valid {manifest.name} ID (expected IDs{example}; first entry {raw[0]!r})"
            )
        pattern = manifest.id_pattern.pattern if manifest.id_pattern else ""
        rejected = [
            Failure(i, "", "", f"not a valid {manifest.name} ID (pattern {pattern})") for i in invalid
        ]
        files += id_files
    elif ids_file is not None or list_name is not None:
        raise ConfigError(f"{manifest.name} is a fixed set of files; it takes no ID list")
    report = fetch(files, dest, options, rejected=rejected, label=manifest.name)
    report.fetched += pre.fetched
    report.present += pre.present
    return report
