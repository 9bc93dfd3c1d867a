"""What a failed download attempt means and when to try again.

A network exception or HTTP answer is judged worth another attempt (5xx, 408/425/429, timeouts,
dropped connections), permanent (other 4xx, a missing file, a rejected certificate), or a sign that
no server can be reached at all; retries wait an exponentially growing, jittered delay.
"""

from __future__ import annotations

import errno
import http.client
import random
import socket
import ssl
import urllib.error
from collections.abc import Mapping
from typing import Final

__all__ = ["RETRY_STATUS", "Permanent", "Retryable", "Unreachable", "classify", "retry_delay"]

#: HTTP answers worth asking again: request timeout, too early, too many requests, and any 5xx.
RETRY_STATUS: Final = frozenset({408, 425, 429})


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


class Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Permanent(Exception):
    pass


class Unreachable(Permanent):
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


def classify(exc: BaseException, timeout: float) -> Exception:
    """A network exception → Retryable (worth another attempt) or Permanent."""
    if isinstance(exc, urllib.error.HTTPError):
        text = f"HTTP {exc.code} {exc.reason}".rstrip()
        if exc.code >= 500 or exc.code in RETRY_STATUS:
            return Retryable(text, _retry_after(exc.headers))
        return Permanent(text)
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, FileNotFoundError):
            return Permanent(f"not found ({reason.filename or reason})")
        if isinstance(reason, ssl.SSLCertVerificationError):
            return Permanent(f"TLS certificate rejected ({reason.verify_message})")
        if isinstance(reason, BaseException):
            return classify(reason, timeout)
        return Retryable(str(reason))
    if isinstance(exc, socket.gaierror):
        return Unreachable(f"cannot resolve the host name ({exc.strerror or exc})")
    if isinstance(exc, OSError) and exc.errno in _UNREACHABLE_ERRNOS:
        return Unreachable(f"cannot connect ({exc.strerror or exc})")
    if isinstance(exc, TimeoutError):
        return Retryable(f"timed out (no data for {timeout:g} s)")
    if isinstance(exc, http.client.HTTPException | ConnectionError | OSError):
        return Retryable(f"{type(exc).__name__}: {exc}".rstrip(": "))
    return Permanent(f"{type(exc).__name__}: {exc}")
