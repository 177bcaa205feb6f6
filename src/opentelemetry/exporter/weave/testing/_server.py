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
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydantic import ValidationError

from opentelemetry.exporter.weave._models import CallEndReq, CallStartReq, CallStartRes
from opentelemetry.exporter.weave.testing._store import CallStore

__all__ = ["LocalWeaveServer", "ReceivedRequest"]

_logger = logging.getLogger(__name__)

# How often the serving thread checks for stop(); it bounds how long stop() takes.
_POLL_INTERVAL_S = 0.05
# A connection that sends nothing for this long is dropped, so stop() cannot hang on it.
_IDLE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ReceivedRequest:
    """One request the receiver answered, as it arrived."""

    method: str
    path: str
    status: int
    # Kept out of the repr: it may carry the API key, and reprs land in test failure output.
    headers: dict[str, str] = field(repr=False)
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


@dataclass(frozen=True)
class _Response:
    status: int
    payload: Any
    headers: dict[str, str] = field(default_factory=dict)


_Endpoint = Callable[[_Request], _Response]


@dataclass(frozen=True)
class _Route:
    method: str
    # A pattern rather than a literal path, for routes such as /v2/{entity}/{project}/...
    path: re.Pattern[str]
    endpoint: _Endpoint
    authenticated: bool = True


class _Receiver:
    """What the service does with a request, independent of the HTTP plumbing."""

    def __init__(self, store: CallStore, api_key: str | None) -> None:
        self._store = store
        self._api_key = None if api_key is None else api_key.encode()
        self._log: list[ReceivedRequest] = []
        self._log_lock = threading.Lock()
        self._routes = (
            _Route("POST", re.compile(r"/call/start"), self._call_start),
            _Route("POST", re.compile(r"/call/end"), self._call_end),
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
        except Exception:
            _logger.exception("local Weave receiver failed on %s %s", request.method, request.path)
            response = _Response(HTTPStatus.INTERNAL_SERVER_ERROR, {"reason": "Internal error"})
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
        matching = [route for route in self._routes if route.path.fullmatch(request.path)]
        if not matching:
            return _Response(HTTPStatus.NOT_FOUND, {"detail": "Not Found"})
        route = next((r for r in matching if r.method == request.method), None)
        if route is None:
            allow = ", ".join(r.method for r in matching)
            return _Response(
                HTTPStatus.METHOD_NOT_ALLOWED, {"detail": "Method Not Allowed"}, {"Allow": allow}
            )
        if route.authenticated and not self._authorized(request.headers.get("authorization")):
            return _Response(
                HTTPStatus.UNAUTHORIZED,
                {"reason": "Missing or invalid API key"},
                {"WWW-Authenticate": 'Basic realm="weave"'},
            )
        return route.endpoint(request)

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
        try:
            start = CallStartReq.model_validate_json(request.body).start
        except ValidationError as exc:
            return _unprocessable(exc)
        refused = _refuse_uppercase_ids(
            id=start.id, trace_id=start.trace_id, parent_id=start.parent_id
        )
        if refused is not None:
            return refused
        self._store.put_start(start.project_id, start.id, _as_sent(request.body, "start"))
        return _Response(
            HTTPStatus.OK, CallStartRes(id=start.id, trace_id=start.trace_id).model_dump()
        )

    def _call_end(self, request: _Request) -> _Response:
        try:
            end = CallEndReq.model_validate_json(request.body).end
        except ValidationError as exc:
            return _unprocessable(exc)
        refused = _refuse_uppercase_ids(id=end.id)
        if refused is not None:
            return refused
        self._store.put_end(end.project_id, end.id, _as_sent(request.body, "end"))
        return _Response(HTTPStatus.OK, {})

    def _list_calls(self, request: _Request) -> _Response:
        values = parse_qs(request.query).get("project_id")
        project_id = values[-1] if values else None
        return _Response(HTTPStatus.OK, {"calls": self._store.calls(project_id)})


def _health(request: _Request) -> _Response:
    return _Response(HTTPStatus.OK, {"status": "ok"})


def _as_sent(body: bytes, key: str) -> dict[str, Any]:
    # The client's own JSON, not the model's re-serialisation: tests of a client must see
    # exactly what it wrote (omitted keys, timestamp offsets, extra summary keys).
    half: dict[str, Any] = json.loads(body)[key]
    return half


def _unprocessable(exc: ValidationError) -> _Response:
    # ValidationError.json() makes inputs and error contexts of any type JSON-safe.
    errors: list[dict[str, Any]] = json.loads(exc.json(include_url=False))
    detail = [{**error, "loc": ["body", *error["loc"]]} for error in errors]
    return _Response(HTTPStatus.UNPROCESSABLE_ENTITY, {"detail": detail})


def _refuse_uppercase_ids(**ids: str | None) -> _Response | None:
    for name, value in ids.items():
        if value is not None and value != value.lower():
            reason = f"{name} must be lowercase, got {value!r}"
            return _Response(HTTPStatus.BAD_REQUEST, {"reason": reason})
    return None


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
        body = self.rfile.read(int(length))
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        target = urlsplit(self.path)
        request = _Request(self.command, target.path, target.query, headers, body, received_at)
        response = self.server.receiver.handle(request)
        encoded = json.dumps(response.payload).encode()
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(encoded)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(encoded)


class LocalWeaveServer:
    """A local stand-in for Weave's trace service, for demos and tests.

    Serves ``POST /call/start`` and ``POST /call/end`` (validated as the service does),
    ``GET /calls?project_id=entity/project`` and ``GET /health`` on a daemon thread, and keeps
    the calls in SQLite (``db_path``, in memory by default). With ``api_key`` set, requests
    other than ``/health`` need ``Authorization: Basic base64("api:<key>")`` or
    ``Bearer <key>``. Received calls and requests stay readable after ``stop()``, and a
    restarted server listens on the same port.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_key: str | None = None,
        db_path: str = ":memory:",
    ) -> None:
        self._address = (host, port)
        self._store = CallStore(db_path)
        self._receiver = _Receiver(self._store, api_key)
        self._lock = threading.Lock()
        self._running: tuple[_HTTPServer, threading.Thread] | None = None

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

    def requests(self) -> list[ReceivedRequest]:
        """Every request answered so far, in arrival order."""
        return self._receiver.requests()
