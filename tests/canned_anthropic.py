"""A canned Anthropic Messages API on 127.0.0.1, for the framework tests.

It answers ``POST /v1/messages`` the way Anthropic's API does, so the real ``anthropic`` client
(its own tracing, and any instrumentation wrapped around it) runs with no network:

- a request that offers tools and holds no ``tool_result`` yet gets a ``tool_use`` block calling
  the first tool with ``TOOL_INPUT`` (``stop_reason`` ``tool_use``, ``TOOL_USE_USAGE``);
- any other request gets ``REPLY`` as one text block (``end_turn``, ``REPLY_USAGE``);
- ``"stream": true`` gets the same message as server-sent events (``message_start``, content
  block start/delta/stop, ``message_delta`` with the output tokens, ``message_stop``);
- a request whose text holds ``FAIL_TRIGGER`` gets HTTP 400 with Anthropic's error body (a 400,
  so the client never retries it).

Each answer has its own message id (``msg_canned_<n>``), as two requests never share one.
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

RESPONSE_MODEL = "claude-haiku-4-5-20251001"
REPLY = "It is sunny and 21 degrees in Paris."
TOOL_USE_ID = "toolu_canned_01"
TOOL_INPUT = {"city": "Paris"}
TOOL_USE_USAGE = {"input_tokens": 31, "output_tokens": 12}
REPLY_USAGE = {"input_tokens": 57, "output_tokens": 15}
FAIL_TRIGGER = "FAIL"
ERROR_MESSAGE = "The canned Anthropic server refuses this request on purpose."
_POLL_INTERVAL_S = 0.05


class CannedAnthropic:
    """The server: a ``with`` block; ``requests`` logs the request bodies in arrival order."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.canned = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": _POLL_INTERVAL_S},
            name="canned-anthropic",
            daemon=True,
        )

    @property
    def base_url(self) -> str:
        """What to pass as ``anthropic.Anthropic(base_url=...)``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def next_message_id(self) -> str:
        return f"msg_canned_{next(self._ids):04d}"

    def __enter__(self) -> CannedAnthropic:
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


def _texts(messages: Any) -> Iterator[str]:
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, dict) else None
        for block in content if isinstance(content, list) else [content]:
            if isinstance(block, str):
                yield block
            elif isinstance(block, dict) and isinstance(block.get("text"), str):
                yield block["text"]


def _has_tool_result(messages: Any) -> bool:
    for message in messages if isinstance(messages, list) else []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list) and any(
            isinstance(block, dict) and block.get("type") == "tool_result" for block in content
        ):
            return True
    return False


def answer(body: dict[str, Any], message_id: str) -> dict[str, Any]:
    """The complete message that the API returns for ``body``."""
    tools = body.get("tools") or []
    if tools and not _has_tool_result(body.get("messages")):
        content: list[dict[str, Any]] = [
            {"type": "tool_use", "id": TOOL_USE_ID, "name": tools[0]["name"], "input": TOOL_INPUT}
        ]
        stop_reason, usage = "tool_use", TOOL_USE_USAGE
    else:
        content = [{"type": "text", "text": REPLY}]
        stop_reason, usage = "end_turn", REPLY_USAGE
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": RESPONSE_MODEL,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {**usage, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
    }


def stream_events(message: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``message`` as the (event name, data) pairs of Anthropic's streaming protocol."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    yield "message_start", {"type": "message_start", "message": start}
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            yield (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            words = block["text"].split(" ")
            for position, word in enumerate(words):
                delta = {"type": "text_delta", "text": word if position == 0 else f" {word}"}
                yield (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": delta,
                    },
                )
        else:
            yield (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {**block, "input": {}},
                },
            )
            yield (
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {
                        "type": "input_json_delta",
                        "partial_json": json.dumps(block["input"]),
                    },
                },
            )
        yield "content_block_stop", {"type": "content_block_stop", "index": index}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]},
        },
    )
    yield "message_stop", {"type": "message_stop"}


def error_body() -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": ERROR_MESSAGE},
    }


class _Handler(BaseHTTPRequestHandler):
    server_version = "CannedAnthropic/1.0"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._send_json(HTTPStatus.BAD_REQUEST, error_body())
            return
        if self.path.split("?")[0].rstrip("/") != "/v1/messages" or not isinstance(body, dict):
            self._send_json(HTTPStatus.NOT_FOUND, {"type": "error", "error": {"type": "not_found"}})
            return
        canned: CannedAnthropic = self.server.canned  # type: ignore[attr-defined]
        canned.requests.append(body)
        if any(FAIL_TRIGGER in text for text in _texts(body.get("messages"))):
            self._send_json(HTTPStatus.BAD_REQUEST, error_body())
            return
        message = answer(body, canned.next_message_id())
        if body.get("stream"):
            self._send_stream(stream_events(message))
        else:
            self._send_json(HTTPStatus.OK, message)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the scenarios print what they mean to."""

    def _send_json(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", "req_canned")
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(self, events: Iterator[tuple[str, dict[str, Any]]]) -> None:
        # HTTP/1.0 without Content-Length: the body ends when the connection closes.
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("request-id", "req_canned")
        self.end_headers()
        for name, data in events:
            self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
            self.wfile.flush()
        self.close_connection = True
