"""What the canned provider APIs share: a server on 127.0.0.1, its request log, JSON and SSE.

Standard library only: the canned servers run inside the framework environments
(``tests/venvs.py``), which install no test dependencies. A provider module subclasses
:class:`CannedHandler` (its routes, its error body, its answers) and :class:`CannedServer`.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, TypeVar

_POLL_INTERVAL_S = 0.05
_Server = TypeVar("_Server", bound="CannedServer")


class CannedServer:
    """A canned API on a free port of 127.0.0.1: ``start()``/``stop()`` or a ``with`` block.

    ``requests`` logs the (path, JSON body) of each request on a served route, in arrival
    order; ``next_id`` hands out the answers' ids, one of its own for each.
    """

    def __init__(self, handler: type[CannedHandler], *, name: str, id_format: str) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._id_format = id_format
        self._ids = itertools.count(1)
        self._server = _OwnedServer(self, handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL_S},
            name=name,
            daemon=True,
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def next_id(self) -> str:
        return self._id_format.format(next(self._ids))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        # shutdown() waits for serve_forever to return: it would wait forever if it never ran.
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def __enter__(self: _Server) -> _Server:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class _OwnedServer(ThreadingHTTPServer):
    """The HTTP server, knowing the :class:`CannedServer` its handlers log into."""

    daemon_threads = True

    def __init__(self, owner: CannedServer, handler: type[CannedHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.owner = owner


def sse_event(data: object, *, event: str | None = None, newline: str = "\n") -> str:
    """One server-sent event: an optional ``event:`` line, one ``data:`` line of JSON."""
    lines = ([f"event: {event}"] if event else []) + [f"data: {json.dumps(data)}"]
    return newline.join(lines) + newline * 2


class CannedHandler(BaseHTTPRequestHandler):
    """Reads each POST's JSON body, logs it on the server and hands it to ``answer``.

    A body that is no JSON gets HTTP 400, a route the API does not serve (or a body that is
    no object) HTTP 404, each with ``error_body``.
    """

    server: _OwnedServer
    json_content_type = "application/json"
    reply_headers: ClassVar[Mapping[str, str]] = {}
    """Sent with every reply, JSON or stream."""

    def serves(self, route: str) -> bool:
        raise NotImplementedError

    def error_body(self, status: HTTPStatus, message: str) -> dict[str, Any]:
        raise NotImplementedError

    def answer(self, route: str, body: dict[str, Any]) -> None:
        raise NotImplementedError

    @property
    def canned(self) -> CannedServer:
        return self.server.owner

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self.send_error_body(HTTPStatus.BAD_REQUEST, "the request body is not JSON")
            return
        route = self.path.split("?")[0]
        if not isinstance(body, dict) or not self.serves(route):
            self.send_error_body(HTTPStatus.NOT_FOUND, f"no route {route}")
            return
        self.canned.requests.append((self.path, body))
        self.answer(route, body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the scenarios print what they mean to."""

    def send_error_body(self, status: HTTPStatus, message: str) -> None:
        self.send_json(status, self.error_body(status, message))

    def send_json(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", self.json_content_type)
        self.send_header("Content-Length", str(len(data)))
        self._send_reply_headers()
        self.wfile.write(data)

    def send_events(self, events: Iterable[str]) -> None:
        """Streams ``events`` (see :func:`sse_event`) as ``text/event-stream``."""
        # HTTP/1.0 without Content-Length: the body ends when the connection closes.
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self._send_reply_headers()
        for event in events:
            self.wfile.write(event.encode())
            self.wfile.flush()
        self.close_connection = True

    def _send_reply_headers(self) -> None:
        for name, value in self.reply_headers.items():
            self.send_header(name, value)
        self.end_headers()
