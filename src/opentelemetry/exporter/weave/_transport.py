"""One pooled HTTP client to the trace service: auth, retries with backoff, deadlines.

Every request runs with OpenTelemetry instrumentation suppressed, so that exporting never
produces spans of its own (an instrumented httpx would otherwise trace each POST).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import random
import ssl
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpcore
import httpx
from opentelemetry import context

from opentelemetry.exporter.weave._config import AuthScheme, WeaveSettings
from opentelemetry.exporter.weave._version import __version__

__all__ = ["PostResult", "RetryPolicy", "WeaveTransport", "is_retryable_status"]

logger = logging.getLogger("opentelemetry.exporter.weave")

RETRY_ID_HEADER = "X-Weave-Retry-Id"
_REASON_MAX_CHARS = 500
_MAX_CAUSE_DEPTH = 16
_REDACTED = "***"


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, as Weave's own SDK retries."""

    initial_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 8.0
    max_retry_after_seconds: float = 60.0

    def backoff(self, attempt: int) -> float:
        ceiling = min(self.max_backoff_seconds, self.initial_backoff_seconds * 2**attempt)
        return random.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class PostResult:
    """How one request ended after its retries."""

    status_code: int | None
    """The last HTTP status, or None when no response came (connection error, deadline)."""
    reason: str = ""
    attempts: int = 1
    body: Any = None
    """The last response's JSON body, if it had one."""

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def error_code(self) -> str | None:
        """The service's machine-readable ``error_code``, when its answer has one."""
        code = self.body.get("error_code") if isinstance(self.body, dict) else None
        return code if isinstance(code, str) else None


def is_retryable_status(status_code: int) -> bool:
    return status_code in (408, 409, 429) or status_code >= 500


@contextmanager
def suppressed_instrumentation() -> Iterator[None]:
    token = context.attach(context.set_value(context._SUPPRESS_INSTRUMENTATION_KEY, True))
    try:
        yield
    finally:
        context.detach(token)


class WeaveTransport:
    """Posts JSON bodies to the trace service; thread-safe, one connection pool."""

    def __init__(self, settings: WeaveSettings, retry_policy: RetryPolicy | None = None) -> None:
        self._settings = settings
        self._retry_policy = retry_policy or RetryPolicy()
        self._secret = settings.api_key.get_secret_value()
        self._closed = threading.Event()
        self._client = self._new_client()
        if _sends_credentials_in_clear(settings.server_url):
            logger.warning(
                "Weave server_url %s is plain http:// to a non-loopback host: the API key "
                "crosses the network unencrypted; use https://",
                settings.server_url,
            )

    def __repr__(self) -> str:
        return f"WeaveTransport(server_url={self._settings.server_url!r})"

    def _new_client(self) -> httpx.Client:
        limits = httpx.Limits(
            max_connections=self._settings.max_concurrency,
            max_keepalive_connections=self._settings.max_concurrency,
        )
        transport = httpx.HTTPTransport(limits=limits)
        _bound_every_io_by_the_attempt_deadline(transport)
        return httpx.Client(
            transport=transport,
            base_url=self._settings.server_url,
            headers={
                "Authorization": _authorization(self._settings.auth_scheme, self._secret),
                "Content-Type": "application/json",
                "User-Agent": f"opentelemetry-exporter-weave/{__version__}",
            },
            timeout=self._settings.http_timeout_seconds,
        )

    def reset_after_fork(self) -> None:
        """Give a forked child its own pool; the parent's sockets are not the child's to use."""
        self._closed = threading.Event()
        self._client = self._new_client()

    def close(self) -> None:
        self._closed.set()
        self._client.close()

    def post(self, path: str, body: bytes, deadline: float) -> PostResult:
        """POST with retries until success, a final answer, or ``deadline`` (monotonic)."""
        attempt = 0
        retry_headers: dict[str, str] = {}
        result = PostResult(None, "export deadline reached before a try", 0)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closed.is_set():
                return result  # the last answer is the reason that matters
            attempt += 1
            if attempt == 2:  # the same id on every retry lets the service drop duplicates
                retry_headers = {RETRY_ID_HEADER: uuid.uuid4().hex}
            retry_after = None
            _attempt.deadline = min(
                time.monotonic() + self._settings.http_timeout_seconds, deadline
            )
            try:
                with suppressed_instrumentation():
                    response = self._client.post(
                        path,
                        content=body,
                        headers=retry_headers,
                        timeout=min(self._settings.http_timeout_seconds, remaining),
                    )
            except httpx.HTTPError as exc:
                result = PostResult(
                    None, f"{type(exc).__name__}: {self._redact(str(exc))}", attempt
                )
                if _is_certificate_error(exc):  # retrying cannot make a certificate trusted
                    return result
            except RuntimeError as exc:  # the client was closed under us by shutdown()
                return PostResult(None, f"client closed: {self._redact(str(exc))}", attempt)
            else:
                result = self._result_of(response, attempt)
                if result.ok or not is_retryable_status(response.status_code):
                    return result
                retry_after = _retry_after_seconds(response.headers.get("retry-after"))
            finally:
                _attempt.deadline = None
            if retry_after is None:
                delay = self._retry_policy.backoff(attempt - 1)
            else:
                delay = min(retry_after, self._retry_policy.max_retry_after_seconds)
            if time.monotonic() + delay >= deadline or self._closed.wait(delay):
                return result

    def _result_of(self, response: httpx.Response, attempt: int) -> PostResult:
        body: Any = None
        try:
            body = response.json()
        except ValueError:
            reason = response.text
        else:
            reason = _reason_from_json(body)
        reason = self._redact(reason.strip()[:_REASON_MAX_CHARS]) or response.reason_phrase
        return PostResult(response.status_code, reason, attempt, body)

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, _REDACTED) if self._secret in text else text


# The deadline of the request attempt running on this thread. httpx's timeouts bound each
# network operation, not the request: a server trickling its answer a byte at a time would
# hold an export far past its deadline. Every connect, read and write checks this instead.
_attempt = threading.local()


def _within_attempt(timeout: float | None, timed_out: type[Exception]) -> float | None:
    deadline: float | None = getattr(_attempt, "deadline", None)
    if deadline is None:
        return timeout
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise timed_out("the request's deadline passed")
    return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _within_attempt(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _within_attempt(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _within_attempt(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _within_attempt(timeout, httpcore.ConnectTimeout)
        stream = self._backend.connect_tcp(host, port, bounded, local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _within_attempt(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._backend.connect_unix_socket(path, bounded, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def _bound_every_io_by_the_attempt_deadline(transport: httpx.HTTPTransport) -> None:
    # httpx offers no hook for this; its pool (an httpcore pool) takes a network backend.
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore.NetworkBackend):
        pool._network_backend = _DeadlineBackend(backend)  # type: ignore[union-attr]
    else:
        logger.debug("httpx internals changed: request deadlines are per operation only")


def _sends_credentials_in_clear(url: str) -> bool:
    parsed = httpx.URL(url)
    if parsed.scheme != "http":
        return False
    host = parsed.host.strip("[]")
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost
        return True


def _is_certificate_error(exc: BaseException) -> bool:
    cause: BaseException | None = exc
    for _ in range(_MAX_CAUSE_DEPTH):  # bounded: exception chains can loop
        if cause is None:
            return False
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _authorization(scheme: AuthScheme, api_key: str) -> str:
    if scheme is AuthScheme.BEARER:
        return f"Bearer {api_key}"
    return "Basic " + base64.b64encode(f"api:{api_key}".encode()).decode("ascii")


def _reason_from_json(body: Any) -> str:
    if isinstance(body, dict):
        for key in ("reason", "detail", "message", "error"):
            if key in body:
                value = body[key]
                return value if isinstance(value, str) else json.dumps(value, default=str)
    return json.dumps(body, default=str)


def _retry_after_seconds(header: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not header:
        return None
    header = header.strip()
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(header)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())
