"""A minimal loopback HTTP sink for both pipelines, run in a process of its own.

It answers ``200`` to any POST on any path (HTTP/1.1, keep-alive), and counts what each
pipeline delivered:

- ``/call/end`` requests (``call_end`` mode: a call is delivered once its end is);
- ``"mode": "end"`` items of ``/call/upsert_batch`` bodies;
- items of ``/v2/{entity}/{project}/calls/complete`` bodies;
- spans of OTLP ``.../v1/traces`` protobuf requests (an empty 200 body is a success for the
  OTLP exporter: it reads no response).

Weave's op routes (``/objs/query``, ``/files/create``, ``/obj/create``) get the answers the
service gives when no op exists yet, so that op refs, on by default, run as in production:
each call then goes out with its op's ref. Logfire's token check (``GET /v1/info``) gets a
project. Gzipped bodies (both peers') are counted as sent and decoded to be counted; Logfire's
pending spans (sent at a span's start, its end following as a span of its own) are not counted.

The time a delivery is counted is taken when the body has been read, before the answer is
sent and the body decoded, with ``time.monotonic()`` (CLOCK_MONOTONIC: comparable across
processes on one machine).

Control routes, for the driver and the measured process:

- ``POST /_reset`` with ``{"expected": N}``: zero the counters; with ``"answer_after_ms": D``
  too, answer every request D ms after it came (a service across a network), else at once;
- ``GET /_wait?timeout=S``: answer once ``N`` items were counted (or ``S`` seconds passed),
  with the counters as JSON;
- ``GET /_stats``: the counters now.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import socket
import time
from multiprocessing.connection import Connection
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit


def _ok(payload: bytes, content_type: bytes = b"application/json") -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: "
        + content_type
        + b"\r\nContent-Length: "
        + str(len(payload)).encode()
        + b"\r\n\r\n"
        + payload
    )


_OK_JSON = _ok(b"{}")
_OK_EMPTY = _ok(b"", b"application/x-protobuf")


OP_ANSWERS: dict[str, dict[str, Any]] = {
    "/objs/query": {"objs": []},
    "/files/create": {"digest": "benchmarkfile"},
    "/obj/create": {"digest": "benchmarkop"},
}
"""Weave's op routes answered as the service answers them, so that a Weave pipeline runs as it
does in production (op refs on by default): no op exists yet, each one made gets a digest."""
# Logfire checks its token at start-up (GET /v1/info), on a thread of its own.
_REPLIES = {
    path: _ok(json.dumps(answer).encode())
    for path, answer in {
        **OP_ANSWERS,
        "/v1/info": {"project_name": "benchmark", "project_url": "http://127.0.0.1/benchmark"},
    }.items()
}


class _Counters:
    def __init__(self) -> None:
        self.reset(0)

    def reset(self, expected: int) -> None:
        self.expected = expected
        self.delivered = 0
        self.requests = 0
        self.body_bytes = 0
        self.undecodable = 0
        self.first_at: float | None = None
        self.done_at: float | None = None
        self.done = asyncio.Event()
        if expected <= 0:
            self.done.set()

    def record(self, received_at: float, path: str, body: bytes, gzipped: bool) -> None:
        self.requests += 1
        self.body_bytes += len(body)  # as sent (Logfire's gzipped)
        if self.first_at is None:
            self.first_at = received_at
        try:
            items = _delivered_items(path, gzip.decompress(body) if gzipped else body)
        except Exception:  # a body this sink cannot count: answered all the same
            self.undecodable += 1
            return
        if items:
            self.delivered += items
            if self.done_at is None and self.delivered >= self.expected:
                self.done_at = received_at
                self.done.set()

    def as_dict(self) -> dict[str, Any]:
        return {
            "expected": self.expected,
            "delivered": self.delivered,
            "requests": self.requests,
            "body_bytes": self.body_bytes,
            "undecodable": self.undecodable,
            "first_at": self.first_at,
            "done_at": self.done_at,
        }


def _delivered_items(path: str, body: bytes) -> int:
    if path == "/call/end":
        return 1
    if path == "/call/upsert_batch":
        batch = json.loads(body)["batch"]
        return sum(1 for item in batch if item.get("mode") == "end")
    if path.endswith("/calls/complete"):
        return len(json.loads(body)["batch"])
    if path.endswith("/v1/traces"):  # Langfuse's is /api/public/otel/v1/traces
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        request = ExportTraceServiceRequest.FromString(body)
        return sum(
            not _is_pending(span)
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        )
    return 0


def _is_pending(span: Any) -> bool:
    """A span Logfire sends at a span's start (its end comes later, as a span of its own)."""
    return any(
        attribute.key == "logfire.span_type" and attribute.value.string_value == "pending_span"
        for attribute in span.attributes
    )


class _Request(NamedTuple):
    method: str
    target: str
    body: bytes
    close: bool
    gzipped: bool


class _Connection(asyncio.Protocol):
    """HTTP/1.1 with keep-alive, parsed straight off the socket's bytes (no streams: fast)."""

    def __init__(self, sink: _Sink) -> None:
        self._sink = sink
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None
        self._head: tuple[str, str, int, int, bool, bool] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        assert self._transport is not None
        while (request := self._next_request()) is not None:
            self._sink.answer(self._transport, request)

    def _next_request(self) -> _Request | None:
        buffer = self._buffer
        if self._head is None:
            head_end = buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return None
            request_line, *header_lines = bytes(buffer[:head_end]).decode("latin-1").split("\r\n")
            headers = {}
            for line in header_lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if headers.get("transfer-encoding", "").lower() == "chunked":
                raise ValueError("chunked request bodies are not supported by this sink")
            method, target, _ = request_line.split(" ", 2)
            close = headers.get("connection", "").lower() == "close"
            gzipped = headers.get("content-encoding", "").lower() == "gzip"
            body_end = head_end + 4 + int(headers.get("content-length", "0"))
            self._head = (method, target, head_end + 4, body_end, close, gzipped)
        method, target, body_start, body_end, close, gzipped = self._head
        if len(buffer) < body_end:
            return None
        body = bytes(buffer[body_start:body_end])
        del buffer[:body_end]
        self._head = None
        return _Request(method, target, body, close, gzipped)


class _Sink:
    def __init__(self) -> None:
        self.counters = _Counters()
        self.answer_after_seconds = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    def answer(self, transport: asyncio.Transport, request: _Request) -> None:
        received_at = time.monotonic()
        method, target, body, close, gzipped = request
        url = urlsplit(target)
        if url.path.startswith("/_"):
            task = asyncio.ensure_future(
                self._control(transport, method, url.path, url.query, body)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        # Answer first, then decode to count: the client never waits for our counting.
        reply = _OK_EMPTY if url.path.endswith("/v1/traces") else _REPLIES.get(url.path, _OK_JSON)
        if self.answer_after_seconds:
            loop = asyncio.get_running_loop()
            loop.call_later(self.answer_after_seconds, _send, transport, reply, close)
        else:
            _send(transport, reply, close)
        if method == "POST":
            self.counters.record(received_at, url.path, body, gzipped)

    async def _control(
        self, transport: asyncio.Transport, method: str, path: str, query: str, body: bytes
    ) -> None:
        if path == "/_reset" and method == "POST":
            settings = json.loads(body)
            self.counters.reset(int(settings["expected"]))
            self.answer_after_seconds = float(settings.get("answer_after_ms", 0)) / 1000
        elif path == "/_wait":
            timeout = float(parse_qs(query).get("timeout", ["60"])[0])
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.counters.done.wait(), timeout)
        payload = json.dumps(self.counters.as_dict()).encode()
        transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(payload)).encode() + b"\r\n\r\n" + payload
        )
        transport.close()


def _send(transport: asyncio.Transport, reply: bytes, close: bool) -> None:
    if transport.is_closing():  # the client gave up meanwhile
        return
    transport.write(reply)
    if close:
        transport.close()


async def _serve(sock: socket.socket) -> None:
    sink = _Sink()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(sink), sock=sock, backlog=256)
    async with server:
        await server.serve_forever()


def serve(conn: Connection) -> None:
    """The sink process: bind a loopback port, send it on ``conn``, serve until killed."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    conn.send(sock.getsockname()[1])
    conn.close()
    asyncio.run(_serve(sock))


def control(port: int, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
    """One control request to the sink; its JSON answer."""
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        body = json.dumps(payload).encode() if payload is not None else None
        connection.request(method, path, body=body)
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()
