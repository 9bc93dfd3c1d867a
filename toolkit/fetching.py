"""Fetching the public data sets that ``data_manifests/*.toml`` describe.

A manifest is a small TOML file that says what a data set is and where its files come from
(see ``data_manifests/README.md`` for the format): fixed files with their URLs and, where the
source is fixed, their sha256; or a URL template per ID for data sets fetched by ID lists (PDB
entries, CATH domains), with named ID lists. Adding a data set is adding a manifest: the
``ptk fetch`` command grows a subcommand for every manifest it finds.

Downloads are

- **atomic**: bytes go to ``DEST/.ptk-fetch/partial/<path>.part`` and are renamed onto the final
  name only once complete and verified, so no half file ever sits under a final name;
- **verified**: against the manifest's sha256 where the source is fixed, else against the sha256
  recorded in ``DEST/.ptk-fetch/SHA256SUMS`` when the file was fetched (``sha256sum -c`` format,
  paths relative to DEST), so a later run catches a file corrupted on disk and fetches it again;
- **resumable**: a second run skips files that are present and verify, and continues an
  interrupted download with an HTTP ``Range`` request where the server allows it;
- **parallel** (a thread pool; the work is network-bound), with bounded retries and exponential
  back-off on 5xx, 408/425/429, timeouts and dropped connections. 4xx answers are not retried.

A file that still fails is a row of ``DEST/fetch_failures.tsv`` with its reason; it never stops
the others. Only the standard library speaks HTTP (:mod:`urllib.request`), so proxies from the
environment (``https_proxy``, ``no_proxy``) apply, except to loopback hosts.
"""

from __future__ import annotations

import csv
import errno
import http.client
import logging
import os
import random
import re
import socket
import ssl
import threading
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Final, Literal

from ptk import __version__
from ptk.errors import ConfigError, FetchError, unknown_choice
from ptk.files import atomic_write, atomic_writer, sha256_file

__all__ = [
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

log = logging.getLogger(__name__)

USER_AGENT: Final = f"ptk/{__version__} (ptk fetch; Python urllib)"
FAILURES_NAME: Final = "fetch_failures.tsv"
STATE_DIR: Final = ".ptk-fetch"
LEDGER_NAME: Final = "SHA256SUMS"
CHUNK_BYTES: Final = 1 << 20
#: HTTP answers worth asking again: request timeout, too early, too many requests, and any 5xx.
RETRY_STATUS: Final = frozenset({408, 425, 429})
MANIFESTS_ENV: Final = "PTK_DATA_MANIFESTS"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


# --------------------------------------------------------------------------------------------
# Manifests


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
    if not isinstance(value, str) or not _SHA256.match(value):
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
        shipped = Path(__file__).resolve().parents[1] / "data_manifests"
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


# --------------------------------------------------------------------------------------------
# Downloading


def mirror_url(url: str, mirror: str | None) -> str:
    """``url`` with its scheme and host replaced by ``mirror``'s, and ``mirror``'s path put in
    front of its path: ``https://files.rcsb.org/download/1ABC.cif.gz`` with mirror
    ``http://127.0.0.1:8000/pdb`` → ``http://127.0.0.1:8000/pdb/download/1ABC.cif.gz``. A mirror
    laid out like the source (``wget --mirror --no-host-directories`` style) then just works.
    """
    if not mirror:
        return url
    src = urllib.parse.urlsplit(url)
    dst = urllib.parse.urlsplit(mirror)
    return urllib.parse.urlunsplit((dst.scheme, dst.netloc, dst.path.rstrip("/") + src.path, src.query, ""))


def retry_delay(
    attempt: int,
    base: float,
    cap: float = 60.0,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before retry number ``attempt + 1``: ``base · 2^attempt``, capped at ``cap``,
    scaled by a random factor in [0.5, 1] so parallel workers do not retry in lock step, and never
    shorter than a server's ``Retry-After`` (itself capped)."""
    delay = min(cap, base * 2.0**attempt) * (0.5 + 0.5 * (rng or random).random())
    if retry_after is not None:
        delay = max(delay, min(cap, retry_after))
    return delay


@dataclass(frozen=True)
class FetchOptions:
    """How to fetch: ``workers`` parallel downloads, up to ``retries`` retries per file with
    exponential back-off from ``backoff`` seconds (capped at ``backoff_cap``), ``timeout`` seconds
    per socket operation, every URL rewritten onto ``mirror`` when given."""

    workers: int = 8
    retries: int = 4
    backoff: float = 1.0
    backoff_cap: float = 60.0
    timeout: float = 60.0
    mirror: str | None = None
    progress: bool | None = None  # None: a bar only on a terminal

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"workers must be at least 1, got {self.workers}")
        if self.retries < 0:
            raise ConfigError(f"retries must be 0 or more, got {self.retries}")
        if self.backoff < 0 or self.timeout <= 0:
            raise ConfigError(f"backoff must be >= 0 and timeout > 0, got {self.backoff}, {self.timeout}")
        if self.mirror is not None:
            parts = urllib.parse.urlsplit(self.mirror)
            if parts.scheme not in ("http", "https", "ftp", "file") or (
                parts.scheme != "file" and not parts.netloc
            ):
                raise ConfigError(f"mirror {self.mirror!r} is not an http(s), ftp or file URL")


@dataclass(frozen=True)
class Failure:
    """A file that could not be fetched, and why."""

    key: str
    url: str
    path: str
    reason: str
    attempts: int = 0


@dataclass
class FetchReport:
    """What a fetch did: ``fetched`` new or replaced files, ``present`` files that were already
    there and verified, and the failures (also written to ``failures_path``)."""

    dest: Path
    fetched: int = 0
    present: int = 0
    failures: list[Failure] = field(default_factory=list)
    failures_path: Path | None = None

    @property
    def failed(self) -> int:
        return len(self.failures)

    def summary(self) -> str:
        """``1,204 fetched, 12 already present, 2 failed → DEST/fetch_failures.tsv``."""
        line = f"{self.fetched:,} fetched, {self.present:,} already present, {self.failed:,} failed"
        if self.failures_path is not None:
            line += f" → {self.failures_path}"
        return line


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Permanent(Exception):
    pass


class _Interrupted(Exception):
    pass


class _Unreachable(_Permanent):
    """The host cannot be reached at all: its name does not resolve, or nothing answers. Before
    any response of the run this stops the whole run (every file would fail the same way, each
    after its retries); once the host has answered it is retried like any dropped connection."""


#: socket errors that mean "no route to a server", as opposed to one that failed mid-transfer.
_UNREACHABLE_ERRNOS = frozenset({errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN})


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date; the exponential back-off applies


def _classify(exc: BaseException, timeout: float) -> Exception:
    """A network exception → _Retryable (worth another attempt) or _Permanent."""
    if isinstance(exc, urllib.error.HTTPError):
        text = f"HTTP {exc.code} {exc.reason}".rstrip()
        if exc.code >= 500 or exc.code in RETRY_STATUS:
            return _Retryable(text, _retry_after(exc.headers))
        return _Permanent(text)
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, FileNotFoundError):
            return _Permanent(f"not found ({reason.filename or reason})")
        if isinstance(reason, ssl.SSLCertVerificationError):
            return _Permanent(f"TLS certificate rejected ({reason.verify_message})")
        if isinstance(reason, BaseException):
            return _classify(reason, timeout)
        return _Retryable(str(reason))
    if isinstance(exc, socket.gaierror):
        return _Unreachable(f"cannot resolve the host name ({exc.strerror or exc})")
    if isinstance(exc, OSError) and exc.errno in _UNREACHABLE_ERRNOS:
        return _Unreachable(f"cannot connect ({exc.strerror or exc})")
    if isinstance(exc, TimeoutError):
        return _Retryable(f"timed out (no data for {timeout:g} s)")
    if isinstance(exc, http.client.HTTPException | ConnectionError | OSError):
        return _Retryable(f"{type(exc).__name__}: {exc}".rstrip(": "))
    return _Permanent(f"{type(exc).__name__}: {exc}")


class _Ledger:
    """``DEST/.ptk-fetch/SHA256SUMS``: the checksum of every file this tool put in DEST."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.sums: dict[str, str] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                digest, _, rel = line.partition(" ")
                rel = rel.lstrip(" *")
                if _SHA256.match(digest) and rel:
                    self.sums[rel] = digest

    def get(self, rel: str) -> str | None:
        with self.lock:
            return self.sums.get(rel)

    def record(self, rel: str, digest: str) -> None:
        with self.lock:
            self.sums[rel] = digest
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(f"{digest}  {rel}\n")

    def compact(self, dest: Path) -> None:
        """Rewrite with one line per file that still exists (atomically)."""
        with self.lock:
            lines = [f"{d}  {rel}\n" for rel, d in sorted(self.sums.items()) if (dest / rel).is_file()]
            atomic_write(self.path, "".join(lines))


class _DestLock:
    """One ``ptk fetch`` at a time per destination folder (a pid file, taken over when stale)."""

    def __init__(self, state: Path) -> None:
        self.path = state / "lock"

    def __enter__(self) -> _DestLock:
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if pid and pid != os.getpid() and _alive(pid):
                    raise FetchError(
                        f"{self.path.parent.parent}: another ptk fetch (pid {pid}) is "
                        f"writing here; wait for it or remove {self.path}"
                    ) from None
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as fh:
                fh.write(str(os.getpid()))
            return self
        raise FetchError(f"could not take the lock {self.path}")

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Fetcher:
    def __init__(self, dest: Path, options: FetchOptions) -> None:
        self.dest = dest
        self.options = options
        self.state = dest / STATE_DIR
        self.partial = self.state / "partial"
        self.ledger = _Ledger(self.state / LEDGER_NAME)
        self.stop = threading.Event()
        self.direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self.proxied = urllib.request.build_opener()
        self.bytes_done = 0
        self.bytes_lock = threading.Lock()
        self.answered = False  # a server has responded in this run
        self.unreachable: str | None = None  # why no server could be reached (stops the run)
        self.on_bytes: Callable[[int], None] | None = None  # called with the running total
        self._last_tick = 0.0

    def _count(self, n: int) -> None:
        with self.bytes_lock:
            self.bytes_done += n
            now = time.monotonic()
            if self.on_bytes is None or now - self._last_tick < 0.5:
                return
            self._last_tick = now
            total = self.bytes_done
        self.on_bytes(total)

    def _opener(self, url: str) -> urllib.request.OpenerDirector:
        host = urllib.parse.urlsplit(url).hostname or ""
        return self.direct if host in _LOOPBACK else self.proxied

    def fetch_one(self, rf: RemoteFile) -> str | Failure:
        """Fetch ``rf`` unless present and verified → ``"fetched"``, ``"present"`` or a Failure."""
        final = self.dest / rf.path
        part = self.partial / (rf.path + ".part")
        if final.is_file():
            known = rf.sha256 or self.ledger.get(rf.path)
            actual = sha256_file(final) if known else None
            if known and actual == known:
                if self.ledger.get(rf.path) != actual:
                    self.ledger.record(rf.path, actual)
                part.unlink(missing_ok=True)  # a stale partial from an older run
                return "present"
            if known:
                # a corrupt file must not stay under the final name, even if the refetch fails
                log.warning("%s: sha256 %s… is not the expected %s…; fetching it again",
                            final, (actual or "")[:12], known[:12])  # fmt: skip
                final.unlink()
            else:
                log.info("%s: no recorded checksum; fetching it again", final)

        url = mirror_url(rf.url, self.options.mirror)
        part.parent.mkdir(parents=True, exist_ok=True)
        last = ""
        for attempt in range(self.options.retries + 1):
            try:
                digest = self._download(rf, url, part)
            except _Unreachable as exc:
                if not self.answered:
                    self.unreachable = f"{urllib.parse.urlsplit(url).hostname}: {exc}"
                    return Failure(rf.key, url, rf.path, str(exc), attempt + 1)
                last = str(exc)  # it answered before: a transient outage, retried below
                if attempt < self.options.retries:
                    if self.stop.wait(retry_delay(attempt, self.options.backoff, self.options.backoff_cap)):
                        raise _Interrupted from None
                continue
            except _Permanent as exc:
                part.unlink(missing_ok=True)
                return Failure(rf.key, url, rf.path, str(exc), attempt + 1)
            except _Retryable as exc:
                last = str(exc)
                if attempt < self.options.retries:
                    delay = retry_delay(
                        attempt, self.options.backoff, self.options.backoff_cap, exc.retry_after
                    )
                    log.info("%s: %s; retry %d in %.2f s", url, last, attempt + 1, delay)
                    if self.stop.wait(delay):
                        raise _Interrupted from None
                continue
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(part, final)
            self.ledger.record(rf.path, digest)
            return "fetched"
        attempts = self.options.retries + 1
        return Failure(rf.key, url, rf.path, f"{last} (gave up after {attempts} attempts)", attempts)

    def _download(self, rf: RemoteFile, url: str, part: Path) -> str:
        """One attempt: download (resuming ``part`` if it has bytes) and verify → sha256."""
        offset = part.stat().st_size if part.is_file() else 0
        headers = {"User-Agent": USER_AGENT}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        request = urllib.request.Request(url, headers=headers)
        try:
            response = self._opener(url).open(request, timeout=self.options.timeout)
            self.answered = True
        except urllib.error.HTTPError as exc:
            self.answered = True
            exc.close()
            if exc.code == 416 and offset:
                part.unlink(missing_ok=True)
                raise _Retryable("server would not resume the partial download (HTTP 416)") from None
            raise _classify(exc, self.options.timeout) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise _classify(exc, self.options.timeout) from None

        with response:
            status = getattr(response, "status", None) or 200
            if offset and status == 206:
                start = _content_range_start(response.headers.get("Content-Range", ""))
                if start != offset:
                    part.unlink(missing_ok=True)
                    raise _Retryable(f"server resumed at byte {start}, not {offset}")
                mode = "ab"
            else:
                offset, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            expected_size = offset + int(length) if length and length.isdigit() else None
            try:
                fh = open(part, mode)
            except OSError as exc:
                raise FetchError(f"{part}: cannot write ({exc.strerror or exc})") from exc
            with fh:
                while True:
                    try:
                        chunk = response.read(CHUNK_BYTES)
                    except (OSError, http.client.HTTPException) as exc:
                        raise _classify(exc, self.options.timeout) from None
                    if not chunk:
                        break
                    if self.stop.is_set():
                        raise _Interrupted
                    try:
                        fh.write(chunk)
                    except OSError as exc:
                        raise FetchError(f"{part}: cannot write ({exc.strerror or exc})") from exc
                    self._count(len(chunk))
        size = part.stat().st_size
        if expected_size is not None and size != expected_size:
            raise _Retryable(f"connection closed after {size:,} of {expected_size:,} bytes")
        digest = sha256_file(part)
        if rf.sha256 and digest != rf.sha256:
            part.unlink(missing_ok=True)
            raise _Retryable(
                f"sha256 {digest[:12]}… of the download does not match the manifest's {rf.sha256[:12]}…"
            )
        if rf.path.endswith(".gz"):
            with open(part, "rb") as fh:
                magic = fh.read(2)
            if magic != b"\x1f\x8b":
                raise _Permanent(f"not gzip data (starts with {magic!r}); the server sent something else")
        return digest


def _content_range_start(value: str) -> int | None:
    match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", value.strip())
    return int(match.group(1)) if match else None


def fetch(
    files: Sequence[RemoteFile],
    dest: str | PathLike[str],
    options: FetchOptions | None = None,
    rejected: Sequence[Failure] = (),
    label: str = "fetch",
) -> FetchReport:
    """Fetch ``files`` into ``dest`` (parallel, verified, atomic, resumable).

    Args:
        files: what to fetch; paths are relative to ``dest``.
        dest: destination folder (created).
        options: workers, retries, back-off, timeout, mirror.
        rejected: failures found before fetching (invalid IDs), reported with the others.
        label: the progress bar's label.

    Returns:
        The account; ``DEST/fetch_failures.tsv`` lists the failures (a stale one is removed when
        nothing failed).

    Raises:
        FetchError: another fetch holds ``dest``, or a file cannot be written there.
        KeyboardInterrupt: passed on after the running downloads stop (their partial files are
            kept for the next run to resume).
    """
    from tqdm.auto import tqdm

    options = options or FetchOptions()
    dest = Path(dest)
    (dest / STATE_DIR).mkdir(parents=True, exist_ok=True)
    report = FetchReport(dest=dest, failures=list(rejected))
    fetcher = _Fetcher(dest, options)
    unique = list({rf.path: rf for rf in files}.values())
    with _DestLock(dest / STATE_DIR):
        bar = tqdm(
            total=len(unique),
            desc=label,
            unit="file",
            disable=None if options.progress is None else not options.progress,
            dynamic_ncols=True,
        )
        status = lambda total: bar.set_postfix_str(f"{total / 1e6:,.1f} MB, {report.failed} failed")
        fetcher.on_bytes = status
        pool = ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="ptk-fetch")
        try:
            futures = {pool.submit(fetcher.fetch_one, rf): rf for rf in unique}
            accounted = set()
            for future in as_completed(futures):
                _account(report, future.result())
                accounted.add(future)
                status(fetcher.bytes_done)
                bar.update(1)
                if fetcher.unreachable is not None:
                    fetcher.stop.set()
                    pool.shutdown(wait=True, cancel_futures=True)
                    rest = {f: rf for f, rf in futures.items() if f not in accounted}
                    _untried(report, rest, fetcher.unreachable, options.mirror)
                    break
        except BaseException:
            fetcher.stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=True)
            bar.close()
            fetcher.ledger.compact(dest)
    order = {rf.key: i for i, rf in enumerate(files)}
    report.failures.sort(key=lambda f: order.get(f.key, -1))
    failures_path = dest / FAILURES_NAME
    if report.failures:
        _write_failures(failures_path, report.failures)
        report.failures_path = failures_path
    else:
        failures_path.unlink(missing_ok=True)
    if fetcher.unreachable is not None:
        raise FetchError(
            f"{fetcher.unreachable}; stopped before fetching anything (no network, or a wrong --mirror?): "
            f"{report.failed} file(s) listed in {failures_path}"
        )
    return report


def _account(report: FetchReport, outcome: str | Failure) -> None:
    if outcome == "fetched":
        report.fetched += 1
    elif outcome == "present":
        report.present += 1
    else:
        report.failures.append(outcome)
        log.warning("%s: %s", outcome.key, outcome.reason)


def _untried(report: FetchReport, futures: Mapping, reason: str, mirror: str | None) -> None:
    """Account the files of a run stopped because no server could be reached: those that
    finished as they did, the others as failures that were not tried."""
    for future, rf in futures.items():
        if future.done() and not future.cancelled() and future.exception() is None:
            _account(report, future.result())
            continue
        report.failures.append(
            Failure(rf.key, mirror_url(rf.url, mirror), rf.path, f"not tried ({reason})", 0)
        )


def _write_failures(path: Path, failures: Sequence[Failure]) -> None:
    with atomic_writer(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(["id", "url", "path", "reason", "attempts"])
        for f in failures:
            writer.writerow(
                [f.key, f.url, f.path, f.reason.replace("\t", " ").replace("\n", " "), f.attempts]
            )


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
