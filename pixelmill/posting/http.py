"""HTTP calls for targets: ``requests`` with timeouts, retries on 429/5xx honouring ``Retry-After``.

No retry on other 4xx. A timeout or dropped connection is retried only when the request is marked
``idempotent`` (the platform dedupes it); otherwise it surfaces as ``AmbiguousDelivery``. Error
messages name the target and the path's first segment only, never a URL that may hold a token.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import requests

from pixelmill.node import Cancelled
from pixelmill.retry_after import retry_after_seconds

from .base import AmbiguousDelivery, PostingError, RateLimited

log = logging.getLogger("pixelmill.posting")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

# Values that must never reach a log line (session tokens, webhook URL paths). urllib3 logs request
# paths at DEBUG level; a filter on its logger masks these.
_SENSITIVE: set[str] = set()
_SENSITIVE_LOCK = threading.Lock()


def mark_sensitive(*values: str | None) -> None:
    with _SENSITIVE_LOCK:
        _SENSITIVE.update(v for v in values if v and len(v) >= 6)


def mask(text: str) -> str:
    with _SENSITIVE_LOCK:
        values = sorted(_SENSITIVE, key=len, reverse=True)
    for v in values:
        if v in text:
            text = text.replace(v, "***")
    return text


class _MaskFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is not ours to fix
            return True
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


_FILTER = _MaskFilter()
for _name in ("urllib3.connectionpool", "urllib3.util.retry", "requests"):
    logging.getLogger(_name).addFilter(_FILTER)


@dataclass
class RetryPolicy:
    attempts: int = 4            # tries in all for one request
    backoff: float = 1.0         # seconds before the first retry, doubled each time
    max_backoff: float = 30.0
    max_retry_after: float = 60.0  # a Retry-After above this fails the request instead of waiting
    connect_timeout: float = 10.0
    read_timeout: float = 30.0


def rate_limit_wait(headers, now: float | None = None) -> float | None:
    """Seconds the server asks to wait: ``Retry-After``, else an exhausted ``RateLimit-Reset``.

    AT Protocol services answer a 429 with ``RateLimit-Limit/-Remaining/-Reset/-Policy`` headers, the
    reset as Unix seconds; the IETF draft form is seconds from now (a value below a day is read so)."""
    after = retry_after_seconds(headers.get("Retry-After"), now)
    if after is not None:
        return after
    reset, remaining = headers.get("RateLimit-Reset"), headers.get("RateLimit-Remaining")
    if reset is None or (remaining is not None and remaining.strip() not in ("0", "")):
        return None
    try:
        value = float(reset.strip())
    except ValueError:
        return None
    if value < 86_400:  # delta seconds
        return max(0.0, value)
    return max(0.0, value - (time.time() if now is None else now))


def _when(seconds: float) -> str:
    at = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    return f"{at:%Y-%m-%d %H:%M:%S} UTC (in {seconds:,.0f} s)"


def platform_message(resp: requests.Response) -> str:
    """The platform's own error text: Mastodon ``error``, XRPC ``error``+``message``, Discord ``message``."""
    try:
        body = resp.json()
    except ValueError:
        text = (resp.text or "").strip()
        if "html" in resp.headers.get("Content-Type", ""):
            text = " ".join(re.sub(r"<[^>]+>", " ", text).split())
        return text[:300] if text else (resp.reason or "")
    if isinstance(body, dict):
        err, msg = body.get("error"), body.get("message")
        desc = body.get("error_description")
        if isinstance(err, str) and isinstance(msg, str) and msg:
            return f"{err}: {msg}"
        for value in (desc, msg, err):
            if isinstance(value, str) and value:
                return value
    return str(body)[:300]


def where(url: str) -> str:
    """``host`` plus the API path for error messages; webhook URLs are cut to their host."""
    parts = urlsplit(url)
    path = parts.path
    if "/xrpc/" in path or "/api/v" in path:
        return f"{parts.netloc}{path}"
    return parts.netloc


class Http:
    """One target's HTTP client. ``wait`` sleeps and returns True when the step was cancelled."""

    def __init__(self, label: str, policy: RetryPolicy, *, wait: Callable[[float], bool] | None = None,
                 session: requests.Session | None = None, logger: logging.Logger | logging.LoggerAdapter = log):
        self.label = label
        self.policy = policy
        self._wait = wait or (lambda s: threading.Event().wait(s))
        self.session = session or requests.Session()
        self.logger = logger
        self.waits: list[float] = []  # what it slept, for the step's record and for tests

    def request(self, method: str, url: str, *, idempotent: bool, safe_url: str | None = None,
                before_retry: Callable[[], requests.Response | None] | None = None, **kwargs) -> requests.Response:
        """Send with retries. ``before_retry`` may look up whether an earlier try already succeeded
        (Bluesky getRecord) and return that answer instead of sending again."""
        p = self.policy
        kwargs.setdefault("timeout", (p.connect_timeout, p.read_timeout))
        shown = safe_url or where(url)
        attempt = 0
        while True:
            attempt += 1
            if attempt > 1 and before_retry is not None:
                found = before_retry()
                if found is not None:
                    return found
            try:
                resp = self.session.request(method, url, **kwargs)
            except requests.ConnectTimeout:
                failure, maybe_sent = "could not connect (timeout)", False
            except requests.Timeout:
                failure, maybe_sent = f"no answer within {p.read_timeout:g} s", True
            except requests.ConnectionError as exc:
                maybe_sent = not _refused(exc)
                failure = "connection refused" if not maybe_sent else "connection dropped"
            else:
                if resp.status_code < 400:
                    self.logger.info("%s: %s %s -> %d", self.label, method, shown, resp.status_code)
                    return resp
                message = platform_message(resp)
                if resp.status_code not in RETRY_STATUSES:
                    raise PostingError(f"{self.label} refused {method} {shown}: HTTP {resp.status_code}: {message}",
                                       status=resp.status_code)
                asked = rate_limit_wait(resp.headers)
                if asked is not None and asked > p.max_retry_after:
                    # Waiting that long is not this request's job, and an immediate retry (here or by the
                    # step's retry) would be refused again: fail for good and say when to try again.
                    raise RateLimited(f"{self.label} answered {method} {shown} with HTTP {resp.status_code}: "
                                      f"{message}; it asks to wait {asked:,.0f} s, above max_retry_wait "
                                      f"{p.max_retry_after:g} s, so it is not retried now. "
                                      f"Try again after {_when(asked)}", status=resp.status_code, wait_s=asked)
                delay = asked if asked is not None else self._backoff(attempt)
                if attempt >= p.attempts:
                    later = f"; try again after {_when(asked)}" if asked else ""
                    raise PostingError(f"{self.label} answered {method} {shown} with HTTP {resp.status_code}: "
                                       f"{message}; gave up after {attempt} tries{later}", status=resp.status_code)
                self.logger.warning("%s: %s %s -> HTTP %d (%s); retrying in %.1f s", self.label, method, shown,
                                    resp.status_code, message, delay)
                self._sleep(delay)
                continue
            # transport failure
            if maybe_sent and not idempotent:
                raise AmbiguousDelivery(f"{self.label}: {method} {shown}: {failure}; the request may have been "
                                        "delivered, so it is not sent again")
            if attempt >= p.attempts:
                cls = AmbiguousDelivery if maybe_sent else PostingError
                raise cls(f"{self.label}: {method} {shown}: {failure}; gave up after {attempt} tries")
            delay = self._backoff(attempt)
            self.logger.warning("%s: %s %s: %s; retrying in %.1f s", self.label, method, shown, failure, delay)
            self._sleep(delay)

    def _backoff(self, attempt: int) -> float:
        return min(self.policy.max_backoff, self.policy.backoff * 2 ** (attempt - 1))

    def _sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self._wait(seconds):
            raise Cancelled(f"{self.label}: cancelled while waiting to retry")


def _refused(exc: Exception) -> bool:
    text = repr(exc)
    return "Connection refused" in text or "NewConnectionError" in text or "Name or service" in text
