"""The receiver's HTTP side: routing, auth, validation, the request log, and the server."""

from __future__ import annotations

import base64
import hmac
import json
import logging
import re
import socketserver
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ValidationError

from opentelemetry.exporter.weave._call import (
    CALL_END_ROUTE,
    CALL_START_ROUTE,
    CALLS_COMPLETE_MODE_REQUIRED,
    UPSERT_BATCH_ROUTE,
)
from opentelemetry.exporter.weave._models import (
    CallBatchStartMode,
    CallEndReq,
    CallsCompleteReq,
    CallStartReq,
    CallStartRes,
    CompletedCallSchemaForInsert,
    EndedCallSchemaForInsert,
    StartedCallSchemaForInsert,
    UpsertBatchReq,
)
from opentelemetry.exporter.weave.testing._store import CallStore

__all__ = ["LocalWeaveServer", "ReceivedRequest"]

_logger = logging.getLogger(__name__)

# How often the serving thread checks for stop(); it bounds how long stop() takes.
_POLL_INTERVAL_S = 0.05
# A connection that sends nothing for this long is dropped, so stop() cannot hang on it.
_IDLE_TIMEOUT_S = 5.0
# Refused bodies are read and dropped in pieces of this size, never held whole.
_DISCARD_CHUNK_BYTES = 64 * 1024

# What a hosted 'calls_complete' project answers on the v1 write routes (WEAVE_WIRE §1).
_CALLS_COMPLETE_MODE_REQUIRED = {
    "reason": "This project requires the calls_complete write mode",
    "error_code": CALLS_COMPLETE_MODE_REQUIRED,
}

_Model = TypeVar("_Model", bound=BaseModel)


@dataclass(frozen=True)
class ReceivedRequest:
    """One request the receiver answered, as it arrived."""

    method: str
    path: str
    status: int
    # Kept out of the repr: it may carry the API key, and reprs land in test failure output.
    headers: dict[str, str] = field(repr=False)
    # Empty for a 413 refusal: an oversized body is dropped unread.
    body: bytes
    received_at: float


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    received_at: float
    # The named groups of the route's path pattern, filled in by the router.
    path_params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Response:
    status: int
    payload: Any
    headers: dict[str, str] = field(default_factory=dict)


class _RefusalError(Exception):
    """Raised by an endpoint to answer with an error instead of going on."""

    def __init__(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        super().__init__(status)
        self.response = _Response(status, payload)


_Endpoint = Callable[[_Request], _Response]


def _literal(path: str) -> re.Pattern[str]:
    return re.compile(re.escape(path))


@dataclass(frozen=True)
class _Route:
    method: str
    # A pattern rather than a literal path, for routes such as /v2/{entity}/{project}/...
    path: re.Pattern[str]
    endpoint: _Endpoint
    authenticated: bool = True
    # A v1 write route, which 'calls_complete' projects refuse.
    v1_write: bool = False


class _Receiver:
    """What the service does with a request, independent of the HTTP plumbing."""

    def __init__(self, store: CallStore, api_key: str | None) -> None:
        self._store = store
        self._api_key = None if api_key is None else api_key.encode()
        self._log: list[ReceivedRequest] = []
        self._log_lock = threading.Lock()
        # Plain attributes, each read once per request, so a test can flip them while serving.
        self.calls_complete_only = False
        self.max_body_bytes: int | None = None
        self._routes = (
            _Route("POST", _literal(CALL_START_ROUTE), self._call_start, v1_write=True),
            _Route("POST", _literal(CALL_END_ROUTE), self._call_end, v1_write=True),
            _Route("POST", _literal(UPSERT_BATCH_ROUTE), self._upsert_batch, v1_write=True),
            _Route(
                "POST",
                re.compile(r"/v2/(?P<entity>[^/]+)/(?P<project>[^/]+)/calls/complete"),
                self._calls_complete,
            ),
            _Route("GET", re.compile(r"/calls"), self._list_calls),
            _Route("GET", re.compile(r"/health"), _health, authenticated=False),
        )

    def requests(self) -> list[ReceivedRequest]:
        with self._log_lock:
            # Entries are appended as requests finish; concurrent ones may finish out of order.
            return sorted(self._log, key=lambda entry: entry.received_at)

    def handle(self, request: _Request) -> _Response:
        try:
            response = self._route(request)
        except _RefusalError as refusal:
            response = refusal.response
        except Exception:
            _logger.exception("local Weave receiver failed on %s %s", request.method, request.path)
            response = _Response(HTTPStatus.INTERNAL_SERVER_ERROR, {"reason": "Internal error"})
        return self._logged(request, response)

    def refuse_too_large(self, request: _Request, size: int, limit: int) -> _Response:
        """Answer a request whose body (not read, so not in ``request``) is over the limit."""
        reason = f"Request body too large: {size} bytes > {limit}"
        return self._logged(
            request, _Response(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"reason": reason})
        )

    def _logged(self, request: _Request, response: _Response) -> _Response:
        entry = ReceivedRequest(
            method=request.method,
            path=request.path,
            status=int(response.status),
            headers=request.headers,
            body=request.body,
            received_at=request.received_at,
        )
        # Logged before the response is sent, so a client that has its answer finds it here.
        with self._log_lock:
            self._log.append(entry)
        return response

    def _route(self, request: _Request) -> _Response:
        matching = [
            (route, match)
            for route in self._routes
            if (match := route.path.fullmatch(request.path)) is not None
        ]
        if not matching:
            return _Response(HTTPStatus.NOT_FOUND, {"detail": "Not Found"})
        chosen = next(((r, m) for r, m in matching if r.method == request.method), None)
        if chosen is None:
            allow = ", ".join(r.method for r, _ in matching)
            return _Response(
                HTTPStatus.METHOD_NOT_ALLOWED, {"detail": "Method Not Allowed"}, {"Allow": allow}
            )
        route, match = chosen
        if route.authenticated and not self._authorized(request.headers.get("authorization")):
            return _Response(
                HTTPStatus.UNAUTHORIZED,
                {"reason": "Missing or invalid API key"},
                {"WWW-Authenticate": 'Basic realm="weave"'},
            )
        if route.v1_write and self.calls_complete_only:
            return _Response(HTTPStatus.BAD_REQUEST, _CALLS_COMPLETE_MODE_REQUIRED)
        return route.endpoint(replace(request, path_params=match.groupdict()))

    def _authorized(self, header: str | None) -> bool:
        if self._api_key is None:
            return True
        if header is None:
            return False
        scheme, _, credentials = header.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            try:
                presented = base64.b64decode(credentials.strip(), validate=True)
            except ValueError:
                return False
            expected = b"api:" + self._api_key
        elif scheme == "bearer":
            # http.server decodes header bytes as Latin-1; this recovers the bytes sent.
            presented = credentials.strip().encode("latin-1")
            expected = self._api_key
        else:
            return False
        return hmac.compare_digest(presented, expected)

    def _call_start(self, request: _Request) -> _Response:
        start = _validated(CallStartReq, request.body).start
        _require_lowercase_ids(start)
        return _Response(HTTPStatus.OK, self._put_start(start, _as_sent(request.body)["start"]))

    def _call_end(self, request: _Request) -> _Response:
        end = _validated(CallEndReq, request.body).end
        _require_lowercase_ids(end)
        return _Response(HTTPStatus.OK, self._put_end(end, _as_sent(request.body)["end"]))

    def _upsert_batch(self, request: _Request) -> _Response:
        batch = _validated(UpsertBatchReq, request.body).batch
        halves = [
            item.req.start if isinstance(item, CallBatchStartMode) else item.req.end
            for item in batch
        ]
        # Every item is checked before any is stored, so a refused batch leaves no trace.
        for half in halves:
            _require_lowercase_ids(half)
        results = [
            self._put_start(half, sent["req"]["start"])
            if isinstance(half, StartedCallSchemaForInsert)
            else self._put_end(half, sent["req"]["end"])
            for half, sent in zip(halves, _as_sent(request.body)["batch"], strict=True)
        ]
        return _Response(HTTPStatus.OK, {"res": results})

    def _calls_complete(self, request: _Request) -> _Response:
        project_id = f"{request.path_params['entity']}/{request.path_params['project']}"
        batch = _validated(CallsCompleteReq, request.body).batch
        for call in batch:
            if call.project_id != project_id:
                reason = f"project_id {call.project_id!r} does not match the URL's {project_id!r}"
                raise _RefusalError(HTTPStatus.BAD_REQUEST, {"reason": reason})
            _require_lowercase_ids(call)
        for call, sent in zip(batch, _as_sent(request.body)["batch"], strict=True):
            self._store.put_complete(call.project_id, call.id, sent)
        return _Response(HTTPStatus.OK, {})

    def _put_start(self, start: StartedCallSchemaForInsert, sent: dict[str, Any]) -> dict[str, str]:
        self._store.put_start(start.project_id, start.id, sent)
        return CallStartRes(id=start.id, trace_id=start.trace_id).model_dump()

    def _put_end(self, end: EndedCallSchemaForInsert, sent: dict[str, Any]) -> dict[str, str]:
        self._store.put_end(end.project_id, end.id, sent)
        return {}

    def _list_calls(self, request: _Request) -> _Response:
        values = parse_qs(request.query).get("project_id")
        project_id = values[-1] if values else None
        return _Response(HTTPStatus.OK, {"calls": self._store.calls(project_id)})


def _health(request: _Request) -> _Response:
    return _Response(HTTPStatus.OK, {"status": "ok"})


def _as_sent(body: bytes) -> dict[str, Any]:
    # The client's own JSON, not the model's re-serialisation: tests of a client must see
    # exactly what it wrote (omitted keys, timestamp offsets, extra summary keys).
    sent: dict[str, Any] = json.loads(body)
    return sent


def _validated(model: type[_Model], body: bytes) -> _Model:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        # ValidationError.json() makes inputs and error contexts of any type JSON-safe.
        errors: list[dict[str, Any]] = json.loads(exc.json(include_url=False))
        detail = [{**error, "loc": ["body", *error["loc"]]} for error in errors]
        raise _RefusalError(HTTPStatus.UNPROCESSABLE_ENTITY, {"detail": detail}) from None


def _require_lowercase_ids(
    call: StartedCallSchemaForInsert | EndedCallSchemaForInsert | CompletedCallSchemaForInsert,
) -> None:
    ids: dict[str, str | None] = {"id": call.id}
    if not isinstance(call, EndedCallSchemaForInsert):
        ids |= {"trace_id": call.trace_id, "parent_id": call.parent_id}
    for name, value in ids.items():
        if value is not None and value != value.lower():
            reason = f"{name} must be lowercase, got {value!r}"
            raise _RefusalError(HTTPStatus.BAD_REQUEST, {"reason": reason})


class _HTTPServer(ThreadingHTTPServer):
    # socketserver's default backlog of 5 drops or resets connections when many exporter
    # threads send at once.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], receiver: _Receiver) -> None:
        self.receiver = receiver
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, a reverse DNS query that can take
        # seconds on some machines; the bound address is all this server needs.
        socketserver.TCPServer.server_bind(self)
        host, port = self.socket.getsockname()[:2]
        self.server_name = host
        self.server_port = port


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    timeout = _IDLE_TIMEOUT_S

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: requests() is the log; a line per request on stderr is noise in tests."""

    def _serve(self) -> None:
        received_at = time.monotonic()
        length = self.headers.get("Content-Length", "0")
        if not (length.isascii() and length.isdigit()):
            self.send_error(HTTPStatus.BAD_REQUEST, "Invalid Content-Length")
            return
        size = int(length)
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        target = urlsplit(self.path)
        request = _Request(self.command, target.path, target.query, headers, b"", received_at)
        receiver = self.server.receiver
        # Checked from Content-Length, before auth or routing, as a proxy in front of the
        # service would; the body is never held in memory.
        limit = receiver.max_body_bytes
        if limit is not None and size > limit:
            self._discard(size)
            response = receiver.refuse_too_large(request, size, limit)
        else:
            response = receiver.handle(replace(request, body=self.rfile.read(size)))
        encoded = json.dumps(response.payload).encode()
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(encoded)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(encoded)

    def _discard(self, size: int) -> None:
        # Closing the socket with the body unread would reset the connection, and the client
        # would see a connection error instead of the 413.
        while size > 0:
            chunk = self.rfile.read(min(size, _DISCARD_CHUNK_BYTES))
            if not chunk:
                return
            size -= len(chunk)


class LocalWeaveServer:
    """A local stand-in for Weave's trace service, for demos and tests.

    Serves the write routes ``POST /call/start``, ``POST /call/end``,
    ``POST /call/upsert_batch`` and ``POST /v2/{entity}/{project}/calls/complete`` (validated
    as the service does), ``GET /calls?project_id=entity/project`` and ``GET /health`` on a
    daemon thread, and keeps the calls in SQLite (``db_path``, in memory by default). With
    ``api_key`` set, requests other than ``/health`` need
    ``Authorization: Basic base64("api:<key>")`` or ``Bearer <key>``. Received calls and
    requests stay readable after ``stop()``, and a restarted server listens on the same port.

    ``calls_complete_only`` makes it a new hosted 'calls_complete' project: the v1 write
    routes answer 400 with ``error_code`` ``CALLS_COMPLETE_MODE_REQUIRED`` (after auth, before
    validation). ``max_body_bytes`` answers 413 to any request with a larger body, before
    auth and routing, and stores nothing of it. Both can be changed while serving.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | None = None,
        db_path: str = ":memory:",
        calls_complete_only: bool = False,
        max_body_bytes: int | None = None,
    ) -> None:
        self._address = (host, port)
        self._store = CallStore(db_path)
        self._receiver = _Receiver(self._store, api_key)
        self.calls_complete_only = calls_complete_only
        self.max_body_bytes = max_body_bytes
        self._lock = threading.Lock()
        self._running: tuple[_HTTPServer, threading.Thread] | None = None

    @property
    def calls_complete_only(self) -> bool:
        """Whether the v1 write routes refuse with ``CALLS_COMPLETE_MODE_REQUIRED``."""
        return self._receiver.calls_complete_only

    @calls_complete_only.setter
    def calls_complete_only(self, value: bool) -> None:
        self._receiver.calls_complete_only = value

    @property
    def max_body_bytes(self) -> int | None:
        """The largest body accepted, in bytes; ``None`` for no limit."""
        return self._receiver.max_body_bytes

    @max_body_bytes.setter
    def max_body_bytes(self, value: int | None) -> None:
        if value is not None and value < 0:
            raise ValueError(f"max_body_bytes must be None or at least 0, got {value}")
        self._receiver.max_body_bytes = value

    @property
    def url(self) -> str:
        with self._lock:
            if self._running is None:
                raise RuntimeError("LocalWeaveServer is not running; call start() first")
            host, port = self._running[0].server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> LocalWeaveServer:
        with self._lock:
            if self._running is not None:
                raise RuntimeError("LocalWeaveServer is already running")
            httpd = _HTTPServer(self._address, self._receiver)
            # A port chosen by the OS (port 0) is kept, so a restart keeps the URL clients use.
            self._address = (self._address[0], httpd.server_port)
            thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": _POLL_INTERVAL_S},
                name=f"LocalWeaveServer:{httpd.server_port}",
                daemon=True,
            )
            thread.start()
            self._running = (httpd, thread)
        return self

    def stop(self) -> None:
        # The lock is held throughout so that a concurrent start() cannot bind the port
        # before it is released.
        with self._lock:
            if self._running is None:
                return
            httpd, thread = self._running
            self._running = None
            httpd.shutdown()
            # Waits for requests in flight, so everything answered is in calls() and requests().
            httpd.server_close()
            thread.join()

    def __enter__(self) -> LocalWeaveServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def calls(self, project_id: str | None = None) -> list[dict[str, Any]]:
        """Calls that have a start, in start order: start fields merged with end fields.

        Values are the JSON the client sent. Start fields it left out, and end fields until
        the end arrives, are ``None``; ``summary`` is ``{}`` until then.
        """
        return self._store.calls(project_id)

    def orphan_ends(self, project_id: str | None = None) -> list[dict[str, Any]]:
        """Ends whose start never arrived, which Weave stores but never shows."""
        return self._store.orphan_ends(project_id)

    def start_writes(self, project_id: str | None = None) -> dict[str, int]:
        """How many times each call id's start was stored, by any route.

        A retried or re-sent start replaces the stored one, so ``calls()`` cannot show it; a
        count above 1 here can. Without ``project_id``, counts of one id in several projects
        are added up.
        """
        return self._store.start_writes(project_id)

    def end_writes(self, project_id: str | None = None) -> dict[str, int]:
        """How many times each call id's end was stored, by any route (as ``start_writes``)."""
        return self._store.end_writes(project_id)

    def requests(self) -> list[ReceivedRequest]:
        """Every request answered so far, in arrival order."""
        return self._receiver.requests()
