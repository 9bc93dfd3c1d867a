"""Data-set manifests: the ``data_manifests/*.toml`` files that say what a data set is and where
its files come from (see ``data_manifests/README.md`` for the format), read and validated.

A manifest lists fixed files with their URLs and, where the source is fixed, their sha256; or a
URL template per ID for data sets fetched by ID lists (PDB entries, CATH domains), with named ID
lists. Unknown keys are errors.
"""

from __future__ import annotations

import os
import re
import tomllib
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Final, Literal

from ptk.errors import ConfigError, FetchError, unknown_choice
from ptk.fetching.destination import SHA256_HEX, STATE_DIR

__all__ = [
    "MANIFESTS_ENV",
    "DatasetManifest",
    "FileFormat",
    "IdList",
    "RemoteFile",
    "find_manifests",
    "load_manifest",
    "manifest_dirs",
    "read_ids",
]

MANIFESTS_ENV: Final = "PTK_DATA_MANIFESTS"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch.

    Attributes:
        key: what a failure row is named by: the ID for per-ID data sets, else the path.
        url: where it comes from (before any ``--mirror`` rewrite).
        path: where it goes, a relative POSIX path under the destination folder.
        sha256: the expected checksum where the source is fixed, else None.
    """

    key: str
    url: str
    path: str
    sha256: str | None = None


@dataclass(frozen=True)
class FileFormat:
    """How one ID becomes a URL and a local path (``{id}``, ``{id_upper}``, ``{id_lower}``, ``{mid}``)."""

    name: str
    url: str
    path: str
    description: str = ""


@dataclass(frozen=True)
class IdList:
    """A named ID list: shipped with the manifest (``file``) or downloaded first (``url``)."""

    name: str
    description: str = ""
    source: str = ""
    file: Path | None = None
    url: str | None = None
    path: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class DatasetManifest:
    """A data set as its manifest describes it (see ``data_manifests/README.md``)."""

    name: str
    title: str
    source: Path
    description: str = ""
    homepage: str = ""
    licence: str = ""
    citation: str = ""
    layout: str = ""
    ingest: str = ""
    files: tuple[RemoteFile, ...] = ()
    id_pattern: re.Pattern[str] | None = None
    id_case: Literal["keep", "lower", "upper"] = "keep"
    id_example: str = ""
    lists: Mapping[str, IdList] = field(default_factory=dict)
    formats: Mapping[str, FileFormat] = field(default_factory=dict)
    default_format: str | None = None

    @property
    def takes_ids(self) -> bool:
        return bool(self.formats)

    def normalise_id(self, raw: str) -> str | None:
        """``raw`` in this data set's case, or None when it is not a valid ID here."""
        ident = {"lower": raw.lower(), "upper": raw.upper()}.get(self.id_case, raw)
        if self.id_pattern is not None and not self.id_pattern.fullmatch(ident):
            return None
        return ident

    def files_for_ids(self, ids: Iterable[str], fmt: str | None = None) -> tuple[list[RemoteFile], list[str]]:
        """Remote files for ``ids`` in format ``fmt`` → (files, IDs that are not valid here)."""
        if not self.formats:
            raise ConfigError(f"{self.source}: data set {self.name!r} is not fetched by ID")
        fmt = fmt or self.default_format or next(iter(self.formats))
        if fmt not in self.formats:
            raise unknown_choice(f"format of {self.name}", fmt, list(self.formats))
        spec = self.formats[fmt]
        files: list[RemoteFile] = []
        invalid: list[str] = []
        seen: set[str] = set()
        for raw in ids:
            ident = self.normalise_id(raw)
            if ident is None:
                invalid.append(raw)
                continue
            if ident in seen:
                continue
            seen.add(ident)
            fields = {
                "id": ident,
                "id_upper": ident.upper(),
                "id_lower": ident.lower(),
                "mid": ident[1:3].lower(),
            }
            files.append(RemoteFile(ident, spec.url.format(**fields), spec.path.format(**fields)))
        return files, invalid


_DATASET_KEYS = {"name", "title", "description", "homepage", "licence", "citation", "layout", "ingest"}
_FILE_KEYS = {"url", "path", "sha256", "note"}
_IDS_KEYS = {"pattern", "case", "example", "default_format", "lists"}
_LIST_KEYS = {"description", "source", "file", "url", "path", "sha256"}
_FORMAT_KEYS = {"url", "path", "description"}
_TOP_KEYS = {"dataset", "files", "ids", "formats"}


def _check_keys(where: str, table: object, allowed: set[str], required: Iterable[str] = ()) -> dict:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table, got {type(table).__name__}")
    unknown = set(table) - allowed
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}"
        )
    missing = [k for k in required if k not in table]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(missing)}")
    return table


def _check_sha(where: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not SHA256_HEX.match(value):
        raise ConfigError(f"{where}: sha256 must be 64 lower-case hex digits, got {value!r}")
    return value


def _check_relpath(where: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: path must be a non-empty string")
    pure = PurePosixPath(value.replace("{", "").replace("}", ""))
    if pure.is_absolute() or ".." in pure.parts or pure.parts[:1] == (STATE_DIR,):
        raise ConfigError(f"{where}: path {value!r} must stay inside the destination folder")
    return value


def load_manifest(path: str | PathLike[str]) -> DatasetManifest:
    """Read and validate one data-set manifest (unknown keys are errors).

    Raises:
        ConfigError: unreadable TOML, a missing or unknown key, a bad sha256, URL or path.
    """
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable TOML manifest ({exc})") from exc
    _check_keys(str(path), doc, _TOP_KEYS, ["dataset"])
    ds = _check_keys(f"{path} [dataset]", doc["dataset"], _DATASET_KEYS, ["name", "title"])
    name = ds["name"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{path}: dataset name {name!r} must be lower-case letters, digits and '-'")

    files = []
    for i, entry in enumerate(doc.get("files", [])):
        where = f"{path} [[files]] #{i + 1}"
        _check_keys(where, entry, _FILE_KEYS, ["url", "path"])
        rel = _check_relpath(where, entry["path"])
        files.append(
            RemoteFile(rel, _check_url(where, entry["url"]), rel, _check_sha(where, entry.get("sha256")))
        )

    formats = {}
    for fmt_name, entry in doc.get("formats", {}).items():
        where = f"{path} [formats.{fmt_name}]"
        _check_keys(where, entry, _FORMAT_KEYS, ["url", "path"])
        formats[fmt_name] = FileFormat(
            fmt_name,
            _check_url(where, entry["url"]),
            _check_relpath(where, entry["path"]),
            entry.get("description", ""),
        )

    ids = _check_keys(f"{path} [ids]", doc.get("ids", {}), _IDS_KEYS)
    if formats and not ids.get("pattern"):
        raise ConfigError(f"{path}: a data set with [formats] needs [ids] pattern")
    if ids and not formats:
        raise ConfigError(f"{path}: [ids] without any [formats.NAME] URL template")
    case = ids.get("case", "keep")
    if case not in ("keep", "lower", "upper"):
        raise unknown_choice(f"{path} [ids] case", case, ["keep", "lower", "upper"])
    default_format = ids.get("default_format")
    if default_format is not None and default_format not in formats:
        raise unknown_choice(f"{path} [ids] default_format", default_format, list(formats))
    try:
        pattern = re.compile(ids["pattern"]) if ids.get("pattern") else None
    except re.error as exc:
        raise ConfigError(f"{path} [ids] pattern: {exc}") from exc

    lists = {}
    for list_name, entry in ids.get("lists", {}).items():
        where = f"{path} [ids.lists.{list_name}]"
        _check_keys(where, entry, _LIST_KEYS)
        if ("file" in entry) == ("url" in entry):
            raise ConfigError(f"{where}: give exactly one of file (shipped) or url (downloaded)")
        url = _check_url(where, entry["url"]) if "url" in entry else None
        list_path = entry.get("path") or (
            PurePosixPath(urllib.parse.urlsplit(url).path).name if url else None
        )
        lists[list_name] = IdList(
            name=list_name,
            description=entry.get("description", ""),
            source=entry.get("source", ""),
            file=(path.parent / entry["file"]) if "file" in entry else None,
            url=url,
            path=_check_relpath(where, list_path) if url else None,
            sha256=_check_sha(where, entry.get("sha256")),
        )

    if not files and not formats:
        raise ConfigError(f"{path}: a data set needs [[files]] or [formats.NAME]")
    return DatasetManifest(
        name=name,
        title=ds["title"],
        source=path,
        description=ds.get("description", "").strip(),
        homepage=ds.get("homepage", ""),
        licence=ds.get("licence", "").strip(),
        citation=ds.get("citation", "").strip(),
        layout=ds.get("layout", "").strip(),
        ingest=ds.get("ingest", "").strip(),
        files=tuple(files),
        id_pattern=pattern,
        id_case=case,
        id_example=ids.get("example", ""),
        lists=MappingProxyType(lists),
        formats=MappingProxyType(formats),
        default_format=default_format,
    )


def _check_url(where: str, url: object) -> str:
    if not isinstance(url, str):
        raise ConfigError(f"{where}: url must be a string")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https", "ftp", "file") or (parts.scheme != "file" and not parts.netloc):
        raise ConfigError(f"{where}: {url!r} is not an http(s), ftp or file URL")
    return url


def manifest_dirs() -> list[Path]:
    """Folders searched for manifests: ``$PTK_DATA_MANIFESTS`` (``os.pathsep``-separated) first,
    then the ``data_manifests/`` that ships with ptk."""
    dirs = [Path(p) for p in os.environ.get(MANIFESTS_ENV, "").split(os.pathsep) if p]
    try:
        from importlib import resources

        shipped = resources.files("ptk.data_manifests")
    except ModuleNotFoundError:
        # An editable install made before data_manifests/ became the package ptk.data_manifests
        # does not map it; the source tree has it next to toolkit/.
        shipped = Path(__file__).resolve().parents[2] / "data_manifests"
    if isinstance(shipped, Path):
        dirs.append(shipped)
    return dirs


def find_manifests() -> dict[str, Path]:
    """Data-set name → manifest path, over :func:`manifest_dirs` (earlier folders win).

    A ``*.toml`` file is a data-set manifest when it has a ``[dataset]`` table; other TOML files
    in those folders are left alone.
    """
    found: dict[str, Path] = {}
    for folder in manifest_dirs():
        for path in sorted(folder.glob("*.toml")):
            try:
                doc = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"{path}: not a readable TOML manifest ({exc})") from exc
            name = doc.get("dataset", {}).get("name") if isinstance(doc.get("dataset"), dict) else None
            if isinstance(name, str):
                found.setdefault(name, path)
    return found


def read_ids(path: str | PathLike[str]) -> list[str]:
    """IDs from a list file: the first token of each line; ``#`` starts a comment; order kept,
    duplicates dropped.

    Raises:
        FetchError: the file cannot be read.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise FetchError(f"{path}: cannot read the ID list ({exc.strerror or exc})") from exc
    ids: dict[str, None] = {}
    for line in text.splitlines():
        tokens = line.split("#", 1)[0].replace(",", " ").split()
        if tokens:
            ids.setdefault(tokens[0], None)
    return list(ids)
