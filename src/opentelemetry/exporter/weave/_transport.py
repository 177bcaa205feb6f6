"""One HTTP attempt at a time to the trace service: auth, a pooled client, a hard deadline.

Every request runs with OpenTelemetry instrumentation suppressed, so that exporting never
produces spans of its own (an instrumented httpx would otherwise trace each POST). Retrying is
not this layer's business (``_retry.py``); it only says whether an answer is worth retrying.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import json
import logging
import ssl
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpcore
import httpx
from opentelemetry import context

from opentelemetry.exporter.weave._config import AuthScheme, WeaveSettings
from opentelemetry.exporter.weave._version import __version__

__all__ = ["HttpAttempt", "PostResult", "is_retryable_status"]

logger = logging.getLogger(__package__)

_REASON_MAX_CHARS = 500
_MAX_CAUSE_DEPTH = 16
_REDACTED = "***"


@dataclass(frozen=True)
class PostResult:
    """How a request ended: its last attempt's answer, and how many attempts it took."""

    status_code: int | None
    """The last HTTP status, or None when no response came (connection error, deadline)."""
    reason: str = ""
    attempts: int = 1
    body: Any = None
    """The last response's JSON body, if it had one."""
    retryable: bool = False
    """Whether sending the same request again may succeed."""
    retry_after: float | None = None
    """Seconds the service asked to wait before the next attempt (``Retry-After``)."""

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


class HttpAttempt:
    """Posts one JSON body to the trace service, once; thread-safe, one connection pool."""

    def __init__(self, settings: WeaveSettings) -> None:
        self._settings = settings
        self._secret = settings.api_key.get_secret_value()
        self._client = self._new_client()
        if _sends_credentials_in_clear(settings.server_url):
            logger.warning(
                "Weave server_url %s is plain http:// to a non-loopback host: the API key "
                "crosses the network unencrypted; use https://",
                settings.server_url,
            )

    def __repr__(self) -> str:
        return f"HttpAttempt(server_url={self._settings.server_url!r})"

    def _new_client(self) -> httpx.Client:
        limits = httpx.Limits(
            max_connections=self._settings.max_concurrency,
            max_keepalive_connections=self._settings.max_concurrency,
        )
        transport = httpx.HTTPTransport(limits=limits, verify=_verifying_ssl_context())
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
        self._client = self._new_client()

    def close(self) -> None:
        self._client.close()

    def post(
        self, path: str, body: bytes, timeout: float, headers: Mapping[str, str]
    ) -> PostResult:
        """One POST, abandoned after ``timeout`` seconds (at most the HTTP timeout) in all."""
        timeout = min(timeout, self._settings.http_timeout_seconds)
        _attempt.deadline = time.monotonic() + timeout
        try:
            with suppressed_instrumentation():
                response = self._client.post(
                    path, content=body, headers=dict(headers), timeout=timeout
                )
        except httpx.HTTPError as exc:
            # Retrying cannot make a certificate trusted.
            return PostResult(
                None,
                f"{type(exc).__name__}: {self._redact(str(exc))}",
                retryable=not _is_certificate_error(exc),
            )
        except RuntimeError as exc:  # the client was closed under us by shutdown()
            return PostResult(None, f"client closed: {self._redact(str(exc))}")
        finally:
            _attempt.deadline = None
        return self._result_of(response)

    def _result_of(self, response: httpx.Response) -> PostResult:
        body: Any = None
        try:
            body = response.json()
        except ValueError:
            reason = response.text
        else:
            reason = _reason_from_json(body)
        reason = self._redact(reason.strip()[:_REASON_MAX_CHARS]) or response.reason_phrase
        retryable = is_retryable_status(response.status_code)
        return PostResult(
            response.status_code,
            reason,
            body=body,
            retryable=retryable,
            retry_after=_retry_after_seconds(response.headers.get("retry-after"))
            if retryable
            else None,
        )

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


@functools.cache
def _verifying_ssl_context() -> ssl.SSLContext:
    # httpx's default, built once per process: loading the CA store costs some 80 ms a client.
    return httpx.create_ssl_context()


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
