"""One HTTP attempt at a time to the trace service: auth, a connection pool, a hard deadline.

Every request runs with OpenTelemetry instrumentation suppressed, so that exporting never
produces spans of its own (an instrumented httpx would otherwise trace each POST). Retrying is
not this layer's business (``_retry.py``); it only says whether an answer is worth retrying.

Requests go to httpx's transport, not through an ``httpx.Client``: the client's per-request
work (parsing the route against the base URL, merging headers, cookie bookkeeping that builds
a ``urllib`` request for every answer) cost more CPU than the HTTP exchange itself. What of it
matters here is done once per route or only when needed: the same URL, the same headers in the
same order, cookies kept, redirects not followed, httpx's ``HTTP Request:`` log line.

Answers are untrusted input: a 2xx is a success whatever its body, an error body is read up to
a bound, and no part of an answer (body, reason phrase, ``Retry-After``) is used unbounded.
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import json
import logging
import math
import queue
import re
import ssl
import threading
import time
import urllib.request
import weakref
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpcore
import httpx
from opentelemetry import context

from opentelemetry.exporter.weave._config import AuthScheme, ConfigError, WeaveSettings
from opentelemetry.exporter.weave._secrets import (
    ACTIVE,
    CredentialForms,
    install_log_redaction,
)
from opentelemetry.exporter.weave._version import __version__

__all__ = ["HttpAttempt", "PostResult", "is_retryable_status"]

logger = logging.getLogger(__package__)
_httpx_logger = logging.getLogger("httpx")

_REASON_MAX_CHARS = 500
_BODY_MAX_BYTES = 64 * 1024
"""An answer's body is read this far, no further: enough for any error the service gives."""
_RETRY_AFTER_MAX_CHARS = 64
_MAX_CAUSE_DEPTH = 16
CLIENT_CAPABILITIES_HEADER = "X-Weave-Client-Capabilities"
CLIENT_CAPABILITIES = "trace_id_on_end"
"""Every end we send carries its call's ``trace_id``; a server-side sampler may rely on it."""
_ROUTES_CACHED = 64
"""Routes whose URL is kept: the package posts to a handful per project."""
_CLOSED_REASON = "client closed: the exporter was shut down"


@dataclass(frozen=True)
class PostResult:
    """How a request ended: its last attempt's answer, and how many attempts it took."""

    status_code: int | None
    """The last HTTP status, or None when no response came (connection error, deadline)."""
    reason: str = ""
    attempts: int = 1
    body: Any = None
    """The last error response's JSON body, if it had one; a success's only when asked for
    (``post_for_answer``)."""
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


class HttpAttempt:
    """Posts one JSON body to the trace service, once; thread-safe, one connection pool."""

    def __init__(self, settings: WeaveSettings) -> None:
        self._settings = settings
        secret = settings.api_key.get_secret_value()
        self._secret = CredentialForms(secret)
        # The log filter redacts this key for as long as this attempt lives (and not longer:
        # the registry holds the keys of live attempts only).
        ACTIVE.add(secret)
        weakref.finalize(self, ACTIVE.release, secret)
        # Header by header as httpx.Client sent them: those of its defaults we keep, then
        # ours (a header given replaces a default by moving to the end).
        self._headers: list[tuple[bytes, bytes]] = [
            (b"Accept", b"*/*"),
            (b"Connection", b"keep-alive"),
            (b"Authorization", _authorization(settings.auth_scheme, secret).encode("ascii")),
            # Raw bytes only: a compressed answer would expand past the body's bound.
            (b"Accept-Encoding", b"identity"),
            (b"Content-Type", b"application/json"),
            (b"User-Agent", f"opentelemetry-exporter-weave/{__version__}".encode("ascii")),
            # A promise about every request's ends, which WeaveCall keeps (_call.py).
            (CLIENT_CAPABILITIES_HEADER.encode("ascii"), CLIENT_CAPABILITIES.encode("ascii")),
        ]
        base_url = httpx.URL(settings.server_url)
        if not base_url.raw_path.endswith(b"/"):  # routes are appended to the path after a "/"
            base_url = base_url.copy_with(raw_path=base_url.raw_path + b"/")
        self._base_url = base_url
        self._routes: dict[str, tuple[httpx.URL, bytes]] = {}
        try:
            self._proxy = _proxy_for(settings.server_url, settings.proxy)
            self._new_pool()
        except (ValueError, ImportError, httpx.InvalidURL) as exc:  # a proxy httpx cannot use
            raise ConfigError(
                f"proxy (or HTTPS_PROXY / HTTP_PROXY / ALL_PROXY): cannot use it: {exc}"
            ) from None
        if self._proxy is not None:
            proxy_password = self._proxy.auth[1] if self._proxy.auth else ""
            if proxy_password:  # redacted from the logs like the key, for as long
                ACTIVE.add(proxy_password)
                weakref.finalize(self, ACTIVE.release, proxy_password)
            self._warn_if_the_proxy_sees_the_key(self._proxy)
        if _sends_credentials_in_clear(settings.server_url):
            logger.warning(
                "Weave server_url %s is plain http:// to a non-loopback host: the API key "
                "crosses the network unencrypted; use https://",
                settings.server_url,
            )

    def __repr__(self) -> str:
        return f"HttpAttempt(server_url={self._settings.server_url!r})"

    def _new_pool(self) -> None:
        self._connections = _Connections(self._settings.max_concurrency, self._new_transport)
        # The service's cookies (a load balancer's session affinity), per pool as a client's.
        self._cookies = httpx.Cookies()

    def _new_transport(self) -> httpx.HTTPTransport:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        transport = httpx.HTTPTransport(
            limits=limits, verify=_verifying_ssl_context(), proxy=self._proxy
        )
        # Through a proxy too: its pool makes the tunnel's connections with the same backend.
        _bound_every_io_by_the_attempt_deadline(transport)
        return transport

    def _warn_if_the_proxy_sees_the_key(self, proxy: httpx.Proxy) -> None:
        # An https:// server is reached through a CONNECT tunnel: the proxy sees only TLS.
        if httpx.URL(self._settings.server_url).scheme == "http" and not _is_loopback(
            proxy.url.host
        ):
            logger.warning(
                "Weave server_url %s is plain http:// through the proxy %s: the proxy, and "
                "the network to it, see the API key; use https://",
                self._settings.server_url,
                _shown(proxy),
            )

    def reset_after_fork(self) -> None:
        """Give a forked child its own pool; the parent's sockets are not the child's to use."""
        self._new_pool()

    def close(self) -> None:
        """Close the pool; from now on every post fails at once, without a retry."""
        self._connections.close()

    def post(
        self, path: str, body: bytes, timeout: float, headers: Mapping[str, str]
    ) -> PostResult:
        """One POST, abandoned after ``timeout`` seconds (at most the HTTP timeout) in all."""
        return self._exchange(path, body, timeout, headers, read_success=False)

    def post_for_answer(
        self, path: str, body: bytes, timeout: float, headers: Mapping[str, str]
    ) -> PostResult:
        """As :meth:`post`, but a success's JSON body is read too (up to the same bound).

        For the routes whose answer is the point (``/objs/query``, ``/obj/create``): the
        ``body`` is None when the answer is not JSON, and is untrusted input either way.
        ``headers`` may replace the JSON ``Content-Type`` (a multipart upload's).
        """
        return self._exchange(path, body, timeout, headers, read_success=True)

    def _exchange(
        self,
        path: str,
        body: bytes,
        timeout: float,
        headers: Mapping[str, str],
        *,
        read_success: bool,
    ) -> PostResult:
        if self._connections.closed:
            return PostResult(None, _CLOSED_REASON)
        timeout = min(timeout, self._settings.http_timeout_seconds)
        _attempt.deadline = time.monotonic() + timeout
        suppressed = context.attach(context.set_value(context._SUPPRESS_INSTRUMENTATION_KEY, True))
        connections = self._connections
        try:
            request = self._request(path, body, timeout, headers)
            transport = connections.take(timeout)
            try:
                response = transport.handle_request(request)
                try:
                    self._received(request, response)
                    start = _bounded_read(response)
                finally:
                    response.close()
            finally:
                connections.give_back(transport)
        except httpx.HTTPError as exc:
            # Retrying cannot make a certificate trusted.
            return PostResult(
                None,
                f"{type(exc).__name__}: {self._redact(str(exc))}",
                retryable=not _is_certificate_error(exc),
            )
        except RuntimeError as exc:  # the pool was closed under us by shutdown()
            return PostResult(None, f"client closed: {self._redact(str(exc))}")
        finally:
            context.detach(suppressed)
            _attempt.deadline = None
        return self._result_of(response, start, read_success)

    def _request(
        self, path: str, body: bytes, timeout: float, headers: Mapping[str, str]
    ) -> httpx.Request:
        url, host = self._routes.get(path) or self._route(path)
        fields = self._headers
        if headers:  # merged as httpx.Client merges a request's headers into its own
            merged = httpx.Headers(fields)
            merged.update(headers)
            fields = merged.raw
        request = httpx.Request(
            "POST",
            url,
            # Given whole (with the Host and Content-Length that httpx would add, where it
            # would add them), the headers are not searched and rebuilt on every request.
            headers=[(b"Host", host), *fields, (b"Content-Length", b"%d" % len(body))],
            stream=httpx.ByteStream(body),
            # httpcore's timeout extension: httpx.Timeout(timeout).as_dict(), without building it.
            extensions={
                "timeout": {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
            },
        )
        if self._cookies:
            self._cookies.set_cookie_header(request)
        return request

    def _route(self, path: str) -> tuple[httpx.URL, bytes]:
        """The URL of ``path`` under the server URL, as httpx.Client's ``base_url`` joins them."""
        base = self._base_url
        url = base.copy_with(raw_path=base.raw_path + httpx.URL(path).raw_path.lstrip(b"/"))
        route = (url, url.netloc)
        if len(self._routes) < _ROUTES_CACHED:
            self._routes[path] = route
        return route

    def _received(self, request: httpx.Request, response: httpx.Response) -> None:
        response.request = request
        # Checked first: the cookie jar builds a urllib request to look for cookies.
        if "set-cookie" in response.headers:
            self._cookies.extract_cookies(response)
        _httpx_logger.info(  # the line httpx.Client logs for each request, for whoever reads it
            'HTTP Request: %s %s "%s %d %s"',
            request.method,
            request.url,
            response.http_version,
            response.status_code,
            response.reason_phrase,
        )

    def _result_of(self, response: httpx.Response, start: bytes, read_success: bool) -> PostResult:
        if response.is_success:  # whatever its body says: the service took the request
            return PostResult(
                response.status_code, body=_json_or_none(start) if read_success else None
            )
        text = start.decode("utf-8", errors="replace")
        body: Any
        try:
            body = json.loads(text)
            reason = _reason_from_json(body)
        except (ValueError, RecursionError):  # not JSON, or nested past what json can take
            body, reason = None, text
        # Redacted first: a cut could otherwise keep the start of a key and drop its end.
        reason = self._redact(reason.strip()) or self._redact(response.reason_phrase)
        retryable = is_retryable_status(response.status_code)
        return PostResult(
            response.status_code,
            reason[:_REASON_MAX_CHARS],
            body=body,
            retryable=retryable,
            retry_after=_retry_after_seconds(response.headers.get("retry-after"))
            if retryable
            else None,
        )

    def _redact(self, text: str) -> str:
        return self._secret.redact(text)


class _Connections:
    """At most ``size`` transports of one connection each, lent out one request at a time.

    Not one httpx pool of ``size`` connections: on every request it looks at each of its
    connections (a ``poll()`` of every idle socket, whether it has expired), which costs a
    request O(size) work under the pool's lock; a transport of one connection looks at its
    own only. Transports are made as requests need them, and a request finding none free
    waits up to its timeout, as for a pool's connection.
    """

    def __init__(self, size: int, new_transport: Callable[[], httpx.HTTPTransport]) -> None:
        self._size = size
        self._new_transport = new_transport
        self._free: queue.SimpleQueue[httpx.HTTPTransport] = queue.SimpleQueue()
        # One made now: settings it cannot work with (a proxy's) fail at construction.
        self._made = [new_transport()]
        self._free.put(self._made[0])
        self._making = threading.Lock()
        self.closed = False
        """Set by :meth:`close`, for good: a pool closed is never lent from again."""

    def take(self, timeout: float) -> httpx.HTTPTransport:
        """A free transport; raises ``httpx.PoolTimeout`` if none is within ``timeout``, and
        ``RuntimeError`` once closed (as a closed httpx pool does)."""
        if self.closed:
            raise RuntimeError("the connection pool is closed")
        with suppress(queue.Empty):
            return self._free.get_nowait()
        with self._making:
            if len(self._made) < self._size and not self.closed:
                transport = self._new_transport()
                self._made.append(transport)
                return transport
        try:
            return self._free.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            raise httpx.PoolTimeout(
                f"no connection free within {timeout:.3g} s ({self._size} in use)"
            ) from None

    def give_back(self, transport: httpx.HTTPTransport) -> None:
        self._free.put(transport)

    def close(self) -> None:
        with self._making:
            self.closed = True
        for transport in self._made:
            transport.close()


def _json_or_none(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # not JSON (or cut at the bound), or nested too deep
        return None


def _bounded_read(response: httpx.Response) -> bytes:
    """The body's first ``_BODY_MAX_BYTES``; a longer body's connection is closed, not reused."""
    received = bytearray()
    for chunk in response.iter_raw():
        received += chunk
        if len(received) >= _BODY_MAX_BYTES:
            break
    return bytes(received[:_BODY_MAX_BYTES])


# The deadline of the request attempt running on this thread. httpx's timeouts bound each
# network operation, not the request: a server trickling its answer a byte at a time would
# hold an export far past its deadline. Every connect, read and write checks this instead.
_attempt = threading.local()


def _in_attempt() -> bool:
    return getattr(_attempt, "deadline", None) is not None


install_log_redaction(__package__, _in_attempt)


def _within_attempt(timeout: float | None, timed_out: type[Exception]) -> float | None:
    deadline: float | None = getattr(_attempt, "deadline", None)
    if deadline is None:
        return timeout
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise timed_out("the request's deadline passed")
    return remaining if timeout is None else min(timeout, remaining)


_HELD_WRITE_MAX_BYTES = 16 * 1024
"""A write this small waits to go out with the next: a request's head is well under it."""
_JOINED_WRITE_MAX_BYTES = 64 * 1024
"""Two writes are joined up to this size; a larger body goes out in a send of its own, as it
is, rather than copied behind a head of a few hundred bytes."""


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every operation ends by the attempt's deadline.

    It also sends a request's head and body in one ``send``: httpcore writes them apart, which
    costs a second system call and TCP segment per request (on loopback, a second wake-up of
    the server), and lets Nagle's algorithm hold the body until the head is acknowledged. A
    small write is held until the next write, or the next read, and goes out with it.
    """

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream
        self._held = b""
        self._held_timeout: float | None = None

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        if self._held:
            # What httpcore does with a failed write of a request: read the answer, for a
            # server may refuse a request (413) and close before it has read all of it.
            with suppress(httpcore.WriteError):
                self._send_held()
        return self._stream.read(max_bytes, _within_attempt(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:  # an end of message without a chunk to close
            return
        if self._held:
            if len(self._held) + len(buffer) <= _JOINED_WRITE_MAX_BYTES:
                buffer = self._held + buffer
                self._held = b""
            else:
                self._send_held()
        elif len(buffer) <= _HELD_WRITE_MAX_BYTES:
            self._held, self._held_timeout = buffer, timeout
            return
        self._stream.write(buffer, _within_attempt(timeout, httpcore.WriteTimeout))

    def _send_held(self) -> None:
        held, self._held = self._held, b""
        self._stream.write(held, _within_attempt(self._held_timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        if self._held:  # what was written before the handshake goes out before it
            self._send_held()
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


def _proxy_for(server_url: str, explicit: str | None) -> httpx.Proxy | None:
    """The proxy to reach ``server_url`` through: the ``proxy`` setting, else the environment.

    The environment is read as httpx reads it (with ``urllib``): ``HTTPS_PROXY`` or
    ``HTTP_PROXY`` by the server URL's scheme, else ``ALL_PROXY``, lowercase names first,
    unless ``NO_PROXY`` names the server's host.
    """
    if explicit is None:
        server = httpx.URL(server_url)
        proxies = urllib.request.getproxies_environment()
        explicit = proxies.get(server.scheme) or proxies.get("all")
        if not explicit or _bypassed(server, proxies.get("no", "")):
            return None
        if "://" not in explicit:  # "proxy.corp:3128", as httpx takes it
            explicit = f"http://{explicit}"
    url = httpx.URL(explicit)
    if url.scheme != "https":
        return httpx.Proxy(url)
    # Our context, not httpx's per-connection default: the same trust for proxy and server.
    return httpx.Proxy(url, ssl_context=_verifying_ssl_context())


def _bypassed(url: httpx.URL, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` names the host, as httpx reads it.

    ``*`` is every host; ``example.com`` is it and its subdomains; ``.example.com`` its
    subdomains only; an address or network (``10.0.0.0/8``) the addresses in it.
    """
    host = url.host.lower()
    for entry in (entry.strip().lower() for entry in no_proxy.split(",")):
        if entry == "*":
            return True
        if not entry:
            continue
        if entry.startswith("."):
            if host.endswith(entry):
                return True
        elif host == entry or host.endswith(f".{entry}") or _in_network(host, entry):
            return True
    return False


def _in_network(host: str, entry: str) -> bool:
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False)
    except ValueError:  # a host name, or an entry that is not an address
        return False


def _shown(proxy: httpx.Proxy) -> str:
    """A proxy's URL without its credentials, fit for a log line."""
    return str(proxy.url.copy_with(username=None, password=None))


def _sends_credentials_in_clear(url: str) -> bool:
    parsed = httpx.URL(url)
    return parsed.scheme == "http" and not _is_loopback(parsed.host)


def _is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost
        return False


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


_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def _retry_after_seconds(header: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date).

    None unless the wait is positive and finite: ``-1``, ``nan``, ``inf``, ``0``, a date gone by
    or garbage must not replace the backoff (they would make retries come at once).
    """
    if not header or len(header) > _RETRY_AFTER_MAX_CHARS:
        return None
    header = header.strip()
    if _DELTA_SECONDS.fullmatch(header):
        seconds = float(header)
    else:
        try:
            seconds = parsedate_to_datetime(header).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None
