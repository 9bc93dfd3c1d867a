"""Fetching the public data sets that ``data_manifests/*.toml`` describe.

A manifest is a small TOML file that says what a data set is and where its files come from
(see ``data_manifests/README.md`` for the format): fixed files with their URLs and, where the
source is fixed, their sha256; or a URL template per ID for data sets fetched by ID lists (PDB
entries, CATH domains), with named ID lists. Adding a data set is adding a manifest: the
``ptk fetch`` command grows a subcommand for every manifest it finds.

Downloads are atomic, verified, resumable and parallel, with bounded retries; a file that still
fails is a row of ``DEST/fetch_failures.tsv`` and never stops the others.

Modules:

- :mod:`~ptk.fetching.manifest`: the manifest schema, read and validated; ID list files;
- :mod:`~ptk.fetching.dataset`: :func:`fetch_dataset`, one data set's files from its manifest;
- :mod:`~ptk.fetching.download`: the download engine, :func:`fetch`;
- :mod:`~ptk.fetching.retry`: which failures are worth another attempt, and the back-off;
- :mod:`~ptk.fetching.destination`: the fetch state a destination folder holds (checksum ledger,
  lock, partial downloads, failure table).
"""

from ptk.fetching.dataset import fetch_dataset
from ptk.fetching.destination import FAILURES_NAME, LEDGER_NAME, STATE_DIR, Failure
from ptk.fetching.download import CHUNK_BYTES, USER_AGENT, FetchOptions, FetchReport, fetch, mirror_url
from ptk.fetching.manifest import (
    MANIFESTS_ENV,
    DatasetManifest,
    FileFormat,
    IdList,
    RemoteFile,
    find_manifests,
    load_manifest,
    manifest_dirs,
    read_ids,
)
from ptk.fetching.retry import RETRY_STATUS, retry_delay

__all__ = [
    "CHUNK_BYTES",
    "FAILURES_NAME",
    "LEDGER_NAME",
    "MANIFESTS_ENV",
    "RETRY_STATUS",
    "STATE_DIR",
    "USER_AGENT",
    "DatasetManifest",
    "FetchOptions",
    "FetchReport",
    "Failure",
    "IdList",
    "FileFormat",
    "RemoteFile",
    "fetch",
    "fetch_dataset",
    "find_manifests",
    "load_manifest",
    "manifest_dirs",
    "mirror_url",
    "read_ids",
    "retry_delay",
]
