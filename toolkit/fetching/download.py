"""The download engine: fetch a list of remote files into a destination folder.

Downloads are

- **atomic**: bytes go to ``DEST/.ptk-fetch/partial/<path>.part`` and are renamed onto the final
  name only once complete and verified, so no half file ever sits under a final name;
- **verified**: against the manifest's sha256 where the source is fixed, else against the sha256
  recorded in ``DEST/.ptk-fetch/SHA256SUMS`` when the file was fetched (see
  :mod:`ptk.fetching.destination`), so a later run catches a file corrupted on disk and fetches it
  again;
- **resumable**: a second run skips files that are present and verify, and continues an
  interrupted download with an HTTP ``Range`` request where the server allows it;
- **parallel** (a thread pool; the work is network-bound), with bounded retries and exponential
  back-off on 5xx, 408/425/429, timeouts and dropped connections (see :mod:`ptk.fetching.retry`).
  4xx answers are not retried.

A file that still fails is a row of ``DEST/fetch_failures.tsv`` with its reason; it never stops
the others. Only the standard library speaks HTTP (:mod:`urllib.request`), so proxies from the
environment (``https_proxy``, ``no_proxy``) apply, except to loopback hosts.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Final

from ptk import __version__
from ptk.errors import ConfigError, FetchError
from ptk.fetching.destination import (
    FAILURES_NAME,
    LEDGER_NAME,
    STATE_DIR,
    DestLock,
    Failure,
    Ledger,
    write_failures,
)
from ptk.fetching.manifest import RemoteFile
from ptk.fetching.retry import Permanent, Retryable, Unreachable, classify, retry_delay
from ptk.files import sha256_file

__all__ = ["CHUNK_BYTES", "USER_AGENT", "FetchOptions", "FetchReport", "fetch", "mirror_url"]

log = logging.getLogger(__name__)

USER_AGENT: Final = f"ptk/{__version__} (ptk fetch; Python urllib)"
CHUNK_BYTES: Final = 1 << 20
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


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


class _Interrupted(Exception):
    pass


class _Fetcher:
    def __init__(self, dest: Path, options: FetchOptions) -> None:
        self.dest = dest
        self.options = options
        self.state = dest / STATE_DIR
        self.partial = self.state / "partial"
        self.ledger = Ledger(self.state / LEDGER_NAME)
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
            except Unreachable as exc:
                if not self.answered:
                    self.unreachable = f"{urllib.parse.urlsplit(url).hostname}: {exc}"
                    return Failure(rf.key, url, rf.path, str(exc), attempt + 1)
                last = str(exc)  # it answered before: a transient outage, retried below
                if attempt < self.options.retries:
                    if self.stop.wait(retry_delay(attempt, self.options.backoff, self.options.backoff_cap)):
                        raise _Interrupted from None
                continue
            except Permanent as exc:
                part.unlink(missing_ok=True)
                return Failure(rf.key, url, rf.path, str(exc), attempt + 1)
            except Retryable as exc:
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
                raise Retryable("server would not resume the partial download (HTTP 416)") from None
            raise classify(exc, self.options.timeout) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise classify(exc, self.options.timeout) from None

        with response:
            status = getattr(response, "status", None) or 200
            if offset and status == 206:
                start = _content_range_start(response.headers.get("Content-Range", ""))
                if start != offset:
                    part.unlink(missing_ok=True)
                    raise Retryable(f"server resumed at byte {start}, not {offset}")
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
                        raise classify(exc, self.options.timeout) from None
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
            raise Retryable(f"connection closed after {size:,} of {expected_size:,} bytes")
        digest = sha256_file(part)
        if rf.sha256 and digest != rf.sha256:
            part.unlink(missing_ok=True)
            raise Retryable(
                f"sha256 {digest[:12]}… of the download does not match the manifest's {rf.sha256[:12]}…"
            )
        if rf.path.endswith(".gz"):
            with open(part, "rb") as fh:
                magic = fh.read(2)
            if magic != b"\x1f\x8b":
                raise Permanent(f"not gzip data (starts with {magic!r}); the server sent something else")
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
    with DestLock(dest / STATE_DIR):
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
        write_failures(failures_path, report.failures)
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
