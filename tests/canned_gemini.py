"""A canned Gemini API (``generativelanguage``) on 127.0.0.1, for the framework tests.

It answers ``POST /{version}/models/{model}:generateContent`` and
``:streamGenerateContent?alt=sse`` the way Google's API does, so the real ``google-genai``
client (and the instrumentation wrapped around it) runs with no network:

- a request that declares functions and holds no ``functionResponse`` yet gets a
  ``functionCall`` of the first function with ``FUNCTION_ARGS`` (``CALL_USAGE``);
- any other request gets ``REPLY`` (``REPLY_USAGE``);
- the streaming route sends the same answer as server-sent events, the text a few words a chunk,
  usage and ``finishReason`` on the last;
- a request whose text holds ``FAIL_TRIGGER`` gets HTTP 400 with Google's error body.

Each answer has its own ``responseId`` (``canned-gemini-<n>``).
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

RESPONSE_MODEL = "gemini-2.5-flash-001"
REPLY = "It is sunny and 21 degrees in Paris."
FUNCTION_ARGS = {"city": "Paris"}
CALL_USAGE = {"promptTokenCount": 24, "candidatesTokenCount": 6, "totalTokenCount": 30}
REPLY_USAGE = {"promptTokenCount": 41, "candidatesTokenCount": 11, "totalTokenCount": 52}
FAIL_TRIGGER = "FAIL"
ERROR_MESSAGE = "The canned Gemini server refuses this request on purpose."
_POLL_INTERVAL_S = 0.05


class CannedGemini:
    """The server: a ``with`` block; ``requests`` logs (path, body) in arrival order."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._ids = itertools.count(1)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.canned = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL_S},
            name="canned-gemini",
            daemon=True,
        )

    @property
    def base_url(self) -> str:
        """What to pass as ``genai.Client(http_options={"base_url": ...})``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def next_response_id(self) -> str:
        return f"canned-gemini-{next(self._ids):04d}"

    def __enter__(self) -> CannedGemini:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()


def _parts(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for content in body.get("contents") or []:
        for part in content.get("parts") or [] if isinstance(content, dict) else []:
            if isinstance(part, dict):
                yield part


def _declared_functions(body: dict[str, Any]) -> list[str]:
    return [
        declaration["name"]
        for tool in body.get("tools") or []
        for declaration in tool.get("functionDeclarations") or []
    ]


def answer_parts(body: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The parts of the model's answer to ``body`` and the usage they cost."""
    functions = _declared_functions(body)
    if functions and not any("functionResponse" in part for part in _parts(body)):
        return [{"functionCall": {"name": functions[0], "args": FUNCTION_ARGS}}], CALL_USAGE
    return [{"text": REPLY}], REPLY_USAGE


def response(
    parts: list[dict[str, Any]], usage: dict[str, int] | None, response_id: str, done: bool
) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if done:
        candidate["finishReason"] = "STOP"
    body: dict[str, Any] = {
        "candidates": [candidate],
        "modelVersion": RESPONSE_MODEL,
        "responseId": response_id,
    }
    if usage is not None:
        body["usageMetadata"] = usage
    return body


def stream_responses(
    parts: list[dict[str, Any]], usage: dict[str, int], response_id: str
) -> Iterator[dict[str, Any]]:
    """The answer as Gemini streams it: text a few words a chunk, usage on the last."""
    text = "".join(part.get("text", "") for part in parts)
    if not text:
        yield response(parts, usage, response_id, done=True)
        return
    words = text.split(" ")
    for index, word in enumerate(words):
        last = index == len(words) - 1
        piece = word if index == 0 else f" {word}"
        yield response([{"text": piece}], usage if last else None, response_id, done=last)


def error_body() -> dict[str, Any]:
    return {"error": {"code": 400, "message": ERROR_MESSAGE, "status": "INVALID_ARGUMENT"}}


class _Handler(BaseHTTPRequestHandler):
    server_version = "CannedGemini/1.0"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._send_json(HTTPStatus.BAD_REQUEST, error_body())
            return
        route = self.path.split("?")[0]
        streaming = route.endswith(":streamGenerateContent")
        if not (streaming or route.endswith(":generateContent")) or not isinstance(body, dict):
            self._send_json(HTTPStatus.NOT_FOUND, {"error": {"code": 404, "message": route}})
            return
        canned: CannedGemini = self.server.canned  # type: ignore[attr-defined]
        canned.requests.append((self.path, body))
        if any(FAIL_TRIGGER in str(part.get("text", "")) for part in _parts(body)):
            self._send_json(HTTPStatus.BAD_REQUEST, error_body())
            return
        parts, usage = answer_parts(body)
        response_id = canned.next_response_id()
        if streaming:
            self._send_stream(stream_responses(parts, usage, response_id))
        else:
            self._send_json(HTTPStatus.OK, response(parts, usage, response_id, done=True))

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the scenarios print what they mean to."""

    def _send_json(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(self, chunks: Iterator[dict[str, Any]]) -> None:
        # HTTP/1.0 without Content-Length: the body ends when the connection closes.
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(f"data: {json.dumps(chunk)}\r\n\r\n".encode())
            self.wfile.flush()
        self.close_connection = True
