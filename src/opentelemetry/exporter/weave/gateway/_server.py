"""The gateway's HTTP side: a small ASGI app served by uvicorn.

uvicorn (with its h11 protocol: pure Python, no build step) brings what an OTLP receiver needs
under load and that a stdlib server would have to reimplement: HTTP/1.1 keep-alive with an idle
timeout, strict request parsing, a bound on connections served at once (503 beyond it), and a
graceful shutdown of connections. The app decodes on the event loop (protobuf's C decoder; a
request is a few milliseconds) and hands the spans to :class:`Gateway`, which exports them on
its own threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from dataclasses import asdict, fields
from http import HTTPStatus
from types import FrameType
from typing import Any

import uvicorn
from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2

from opentelemetry.exporter.weave._stats import ExportStats
from opentelemetry.exporter.weave.gateway._gateway import GAUGES, Gateway, GatewayStats, Verdict
from opentelemetry.exporter.weave.gateway._otlp import (
    BodyTooLargeError,
    Encoding,
    UndecodableError,
    decode_request,
    decompressed,
    encode_response,
    encoding_of,
)

__all__ = ["GatewayApp", "GatewayServer", "prometheus_text"]

logger = logging.getLogger(__package__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

TRACES_PATH = "/v1/traces"
_IDLE_CONNECTION_SECONDS = 30
# After the drain: how long requests still being answered may take before their connections close.
_CLOSE_CONNECTIONS_SECONDS = 5


class GatewayApp:
    """The ASGI app: ``POST /v1/traces``, ``GET /healthz``, ``/metrics``, ``/stats``."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if path == TRACES_PATH:
            if method != "POST":
                await _answer(send, HTTPStatus.METHOD_NOT_ALLOWED, b"", "text/plain")
                return
            await self._traces(scope, receive, send)
        elif path in ("/healthz", "/metrics", "/stats") and method in ("GET", "HEAD"):
            await self._report(path, send)
        else:
            await _answer(send, HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

    async def _report(self, path: str, send: Send) -> None:
        if path == "/healthz":
            draining = self.gateway.draining
            status = HTTPStatus.SERVICE_UNAVAILABLE if draining else HTTPStatus.OK
            await _answer(send, status, b"draining\n" if draining else b"ok\n", "text/plain")
        elif path == "/metrics":
            text = prometheus_text(self.gateway.stats(), self.gateway.pipeline_stats())
            await _answer(send, HTTPStatus.OK, text.encode(), "text/plain; version=0.0.4")
        else:
            body = {
                "gateway": asdict(self.gateway.stats()),
                "projects": {
                    project: {**asdict(stats), "calls_failed": stats.calls_failed}
                    for project, stats in self.gateway.pipeline_stats().items()
                },
            }
            await _answer(send, HTTPStatus.OK, json.dumps(body).encode(), "application/json")

    async def _traces(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _headers(scope)
        encoding = encoding_of(headers.get("content-type"))
        if encoding is None:
            message = "Content-Type must be application/x-protobuf or application/json"
            await _status(send, HTTPStatus.UNSUPPORTED_MEDIA_TYPE, message, Encoding.JSON)
            return
        limit = self.gateway.settings.max_body_bytes
        try:
            body = await _read_body(receive, limit)
            plain = decompressed(body, headers.get("content-encoding"), limit)
            request = decode_request(plain, encoding)
        except BodyTooLargeError as error:
            self.gateway.count_undecodable()
            await _status(send, HTTPStatus.REQUEST_ENTITY_TOO_LARGE, str(error), encoding)
            return
        except UndecodableError as error:
            self.gateway.count_undecodable()
            await _status(send, HTTPStatus.BAD_REQUEST, str(error), encoding)
            return
        submission = self.gateway.submit(request, headers)
        if submission.verdict is Verdict.ACCEPTED:
            body = encode_response(submission.rejected, "; ".join(submission.errors), encoding)
            await _answer(send, HTTPStatus.OK, body, encoding.value)
        elif submission.verdict is Verdict.NO_API_KEY:
            await _status(send, HTTPStatus.UNAUTHORIZED, submission.message, encoding)
        else:  # queue full, or draining: the client's retry will find room, or another gateway
            retry_after = str(self.gateway.settings.retry_after_seconds)
            await _status(
                send, HTTPStatus.SERVICE_UNAVAILABLE, submission.message, encoding, retry_after
            )


def _headers(scope: Scope) -> dict[str, str]:
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise UndecodableError("the client went away")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(f"the body is over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


_RPC_CODES = {
    HTTPStatus.BAD_REQUEST: code_pb2.INVALID_ARGUMENT,
    HTTPStatus.UNAUTHORIZED: code_pb2.UNAUTHENTICATED,
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: code_pb2.RESOURCE_EXHAUSTED,
    HTTPStatus.UNSUPPORTED_MEDIA_TYPE: code_pb2.INVALID_ARGUMENT,
    HTTPStatus.SERVICE_UNAVAILABLE: code_pb2.UNAVAILABLE,
}


async def _status(
    send: Send,
    status: HTTPStatus,
    message: str,
    encoding: Encoding,
    retry_after: str | None = None,
) -> None:
    """An error answer as OTLP/HTTP has it: a ``google.rpc.Status`` in the request's encoding."""
    rpc = status_pb2.Status(code=_RPC_CODES[status], message=message)
    body = (
        rpc.SerializeToString()
        if encoding is Encoding.PROTOBUF
        else json_format.MessageToJson(rpc, indent=None).encode()
    )
    extra = {"retry-after": retry_after} if retry_after is not None else {}
    await _answer(send, status, body, encoding.value, extra)


async def _answer(
    send: Send,
    status: HTTPStatus,
    body: bytes,
    content_type: str,
    extra: Mapping[str, str] | None = None,
) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        *((name.encode(), value.encode()) for name, value in (extra or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status.value, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def prometheus_text(gateway: GatewayStats, projects: Mapping[str, ExportStats]) -> str:
    """The counters in Prometheus' text format: the gateway's, then each project's."""
    lines: list[str] = []
    for spec in fields(GatewayStats):
        kind = "gauge" if spec.name in GAUGES else "counter"
        name = f"weave_gateway_{spec.name}" + ("" if kind == "gauge" else "_total")
        lines += [f"# TYPE {name} {kind}", f"{name} {getattr(gateway, spec.name)}"]
    for spec in fields(ExportStats):
        name = f"weave_exporter_{spec.name}_total"
        lines.append(f"# TYPE {name} counter")
        lines += [
            f'{name}{{project="{_label(project)}"}} {getattr(stats, spec.name)}'
            for project, stats in sorted(projects.items())
        ]
    return "\n".join(lines) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class _Uvicorn(uvicorn.Server):
    """uvicorn, with the gateway's own handling of SIGTERM / SIGINT and start-up line."""

    def __init__(self, config: uvicorn.Config, on_signal: Callable[[], None], url: str) -> None:
        super().__init__(config)
        self._on_signal = on_signal
        self._url = url

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        print(f"listening on {self._url}", flush=True)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Not uvicorn's: a signal drains first (health 503, held traces exported), and then
        # the process exits normally instead of re-raising the signal.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self._signalled) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _signalled(self, signum: int, frame: FrameType | None) -> None:
        if self.should_exit or self._draining_started:
            self.force_exit = True  # a second signal: stop now
            self.should_exit = True
            return
        self._draining_started = True
        self._on_signal()

    _draining_started = False


_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class GatewayServer:
    """A :class:`Gateway` behind its HTTP app, on ``host:port`` (port 0: any free one)."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        settings = gateway.settings
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((settings.host, settings.port))
        self._socket.listen(1024)
        host, port = self._socket.getsockname()[:2]
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        self.url = f"http://{shown}:{port}"
        config = uvicorn.Config(
            GatewayApp(gateway),
            http="h11",
            lifespan="off",
            access_log=False,
            log_level="warning",
            limit_concurrency=settings.max_connections,
            timeout_keep_alive=_IDLE_CONNECTION_SECONDS,
            timeout_graceful_shutdown=_CLOSE_CONNECTIONS_SECONDS,
            h11_max_incomplete_event_size=64 * 1024,
        )
        self._server = _Uvicorn(config, self._drain_in_background, self.url)
        self._thread: threading.Thread | None = None
        self._drained = threading.Event()

    def serve_forever(self) -> None:
        """Serve on this thread until SIGTERM / SIGINT (on the main thread) or :meth:`stop`."""
        self.gateway.start()
        try:
            asyncio.run(self._server.serve(sockets=[self._socket]))
        finally:
            if not self._drained.is_set():
                self._drain()

    def start(self) -> GatewayServer:
        """Serve on a thread of its own; returns once the server answers."""
        self._thread = threading.Thread(target=self.serve_forever, name="weave-gateway-http")
        self._thread.daemon = True
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the gateway's server did not start")
            self._thread.join(0.01)
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Drain (health 503, requests 503, everything held exported), then stop serving."""
        self._drain(timeout)
        if self._thread is not None:
            self._thread.join()

    def _drain_in_background(self) -> None:
        threading.Thread(target=self._drain, name="weave-gateway-drain", daemon=True).start()

    def _drain(self, timeout: float | None = None) -> None:
        if self._drained.is_set():
            return
        self._drained.set()
        complete = self.gateway.drain(timeout)
        if not complete:
            stats = self.gateway.stats()
            logger.warning(
                "Weave gateway: drain deadline passed; %d spans not exported",
                stats.spans_dropped_at_drain,
            )
        self._server.should_exit = True

    def __enter__(self) -> GatewayServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve(gateway: Gateway) -> int:
    """Run until a signal, on the main thread; the exit status."""
    try:
        server = GatewayServer(gateway)
    except OSError as error:
        print(f"weave-otlp-gateway: cannot listen: {error}", file=sys.stderr)
        return 1
    server.serve_forever()
    return 0
