"""A canned OpenAI-compatible chat server on 127.0.0.1, for examples and tests.

It answers ``POST /v1/chat/completions`` the way OpenAI's API does, with fixed content, so a
real ``openai`` client (and any instrumentation wrapped around it) can run with no network
and no API key::

    with CannedOpenAI() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])

- a normal request gets one completion from ``RESPONSE_MODEL`` (a dated model name, unlike
  the requested one, as OpenAI answers) with ``REPLY`` and ``USAGE``;
- ``"stream": true`` gets ``REPLY`` as server-sent event chunks, then a usage chunk when
  ``stream_options.include_usage`` is true, then ``data: [DONE]``;
- a request that offers ``tools`` and holds no tool result yet gets a call of its first tool
  instead (arguments filled in from the tool's JSON schema, ``TOOL_ARGUMENT`` for strings),
  streamed too, so an agent loop runs: tool call, tool result, answer;
- a request whose messages contain ``FAIL_TRIGGER`` gets HTTP 400 with an OpenAI-style error
  body (a 400, not a 5xx, so the client never retries it).

Each answer has an id of its own, ``RESPONSE_ID`` first, counting up per server.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import threading
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = [
    "CREATED",
    "ERROR_MESSAGE",
    "FAIL_TRIGGER",
    "REPLY",
    "RESPONSE_ID",
    "RESPONSE_MODEL",
    "TOOL_ARGUMENT",
    "USAGE",
    "CannedOpenAI",
]

RESPONSE_MODEL = "gpt-4o-mini-2024-07-18"
REPLY = "The canned answer is forty-two."
USAGE = {"prompt_tokens": 13, "completion_tokens": 7, "total_tokens": 20}
FAIL_TRIGGER = "FAIL"
ERROR_MESSAGE = "The canned server refuses this request on purpose."
RESPONSE_ID = "chatcmpl-canned-0001"
TOOL_ARGUMENT = "Paris"
CREATED = 1_700_000_000
_POLL_INTERVAL_S = 0.05


class CannedOpenAI:
    """The server: ``start()``/``stop()`` or a ``with`` block; ``requests`` logs the bodies."""

    def __init__(self, port: int = 0) -> None:
        """Listens on 127.0.0.1 only; port 0 picks a free one."""
        self.requests: list[dict[str, Any]] = []
        self.response_numbers = itertools.count(1)
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self._server.daemon_threads = True
        self._server.canned = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        """What to pass as ``openai.OpenAI(base_url=...)``."""
        return f"{self.url}/v1"

    def start(self) -> CannedOpenAI:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": _POLL_INTERVAL_S},
                name="canned-openai",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> CannedOpenAI:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def response_id(number: int) -> str:
    return f"chatcmpl-canned-{number:04d}"


def tool_call_for(body: dict[str, Any]) -> dict[str, Any] | None:
    """The call of the request's first tool, unless it has none or already holds a result."""
    tools = body.get("tools")
    messages = body.get("messages")
    if not isinstance(tools, list) or not tools or not isinstance(messages, list):
        return None
    if any(isinstance(message, dict) and message.get("role") == "tool" for message in messages):
        return None
    function = tools[0].get("function", {}) if isinstance(tools[0], dict) else {}
    schema = function.get("parameters") or {}
    arguments = {
        name: _example_value(spec)
        for name, spec in (schema.get("properties") or {}).items()
        if name in (schema.get("required") or ())
    }
    return {
        "id": "call_canned_0001",
        "type": "function",
        "function": {"name": function.get("name", "tool"), "arguments": json.dumps(arguments)},
    }


def _example_value(spec: Any) -> Any:
    kind = spec.get("type") if isinstance(spec, dict) else None
    return {"integer": 1, "number": 1.0, "boolean": True, "array": [], "object": {}}.get(
        kind if isinstance(kind, str) else "", TOOL_ARGUMENT
    )


def completion(number: int = 1, tool_call: dict[str, Any] | None = None) -> dict[str, Any]:
    if tool_call is None:
        message: dict[str, Any] = {"role": "assistant", "content": REPLY, "refusal": None}
    else:
        message = {"role": "assistant", "content": None, "tool_calls": [tool_call]}
    return {
        "id": response_id(number),
        "object": "chat.completion",
        "created": CREATED,
        "model": RESPONSE_MODEL,
        "system_fingerprint": "fp_canned",
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": "stop" if tool_call is None else "tool_calls",
            }
        ],
        "usage": dict(USAGE),
    }


def stream_chunks(
    include_usage: bool, number: int = 1, tool_call: dict[str, Any] | None = None
) -> Iterator[dict[str, Any]]:
    """The chunks of a streamed ``REPLY`` (role first, a few words each) or tool call, then
    usage."""

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": response_id(number),
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": RESPONSE_MODEL,
            "system_fingerprint": "fp_canned",
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if include_usage:
            body["usage"] = None  # as OpenAI sends it on every chunk but the last
        return body

    yield chunk({"role": "assistant", "content": "" if tool_call is None else None})
    if tool_call is None:
        words = REPLY.split(" ")
        for index, word in enumerate(words):
            yield chunk({"content": word if index == 0 else f" {word}"})
        yield chunk({}, finish_reason="stop")
    else:
        yield chunk({"tool_calls": [{"index": 0, **tool_call}]})
        yield chunk({}, finish_reason="tool_calls")
    if include_usage:
        last = chunk({})
        last["choices"] = []
        last["usage"] = dict(USAGE)
        yield last


def error_body() -> dict[str, Any]:
    return {
        "error": {
            "message": ERROR_MESSAGE,
            "type": "invalid_request_error",
            "param": "messages",
            "code": "canned_failure",
        }
    }


def _mentions_trigger(messages: object) -> bool:
    """Whether any message text (a string or a list of text parts) holds ``FAIL_TRIGGER``."""
    if not isinstance(messages, list):
        return False
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        parts = content if isinstance(content, list) else [content]
        for part in parts:
            text = part.get("text") if isinstance(part, dict) else part
            if isinstance(text, str) and FAIL_TRIGGER in text:
                return True
    return False


class _Handler(BaseHTTPRequestHandler):
    server_version = "CannedOpenAI/1.0"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._send_json(HTTPStatus.BAD_REQUEST, {"error": {"message": "bad JSON"}})
            return
        if self.path.rstrip("/") != "/v1/chat/completions" or not isinstance(body, dict):
            self._send_json(HTTPStatus.NOT_FOUND, {"error": {"message": f"no {self.path}"}})
            return
        canned: CannedOpenAI = self.server.canned  # type: ignore[attr-defined]
        canned.requests.append(body)
        if _mentions_trigger(body.get("messages")):
            self._send_json(HTTPStatus.BAD_REQUEST, error_body())
            return
        number, tool_call = next(canned.response_numbers), tool_call_for(body)
        if body.get("stream"):
            options = body.get("stream_options") or {}
            include_usage = bool(options.get("include_usage"))
            self._send_stream(stream_chunks(include_usage, number, tool_call))
        else:
            self._send_json(HTTPStatus.OK, completion(number, tool_call))

    def do_GET(self) -> None:
        self._send_json(HTTPStatus.NOT_FOUND, {"error": {"message": f"no {self.path}"}})

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests and examples print what they mean to."""

    def _send_json(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", "req_canned")
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(self, chunks: Iterator[dict[str, Any]]) -> None:
        # HTTP/1.0 without Content-Length: the body ends when the connection closes.
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve canned OpenAI chat completions.")
    parser.add_argument("--port", type=int, default=8766, help="port on 127.0.0.1 (0: any)")
    args = parser.parse_args()
    with CannedOpenAI(args.port) as canned:
        print(f"canned OpenAI-compatible server at {canned.base_url} (Ctrl-C stops it)")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
