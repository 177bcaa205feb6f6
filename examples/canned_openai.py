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
- a request whose messages contain ``FAIL_TRIGGER`` gets HTTP 400 with an OpenAI-style error
  body (a 400, not a 5xx, so the client never retries it).
"""

from __future__ import annotations

import argparse
import contextlib
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
    "USAGE",
    "CannedOpenAI",
]

RESPONSE_MODEL = "gpt-4o-mini-2024-07-18"
REPLY = "The canned answer is forty-two."
USAGE = {"prompt_tokens": 13, "completion_tokens": 7, "total_tokens": 20}
FAIL_TRIGGER = "FAIL"
ERROR_MESSAGE = "The canned server refuses this request on purpose."
RESPONSE_ID = "chatcmpl-canned-0001"
CREATED = 1_700_000_000
_POLL_INTERVAL_S = 0.05


class CannedOpenAI:
    """The server: ``start()``/``stop()`` or a ``with`` block; ``requests`` logs the bodies."""

    def __init__(self, port: int = 0) -> None:
        """Listens on 127.0.0.1 only; port 0 picks a free one."""
        self.requests: list[dict[str, Any]] = []
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


def completion() -> dict[str, Any]:
    return {
        "id": RESPONSE_ID,
        "object": "chat.completion",
        "created": CREATED,
        "model": RESPONSE_MODEL,
        "system_fingerprint": "fp_canned",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": REPLY, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": dict(USAGE),
    }


def stream_chunks(include_usage: bool) -> Iterator[dict[str, Any]]:
    """The chunks of a streamed ``REPLY``: role first, a few words each, then usage."""

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": RESPONSE_ID,
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

    yield chunk({"role": "assistant", "content": ""})
    words = REPLY.split(" ")
    for index, word in enumerate(words):
        yield chunk({"content": word if index == 0 else f" {word}"})
    yield chunk({}, finish_reason="stop")
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
        self.server.canned.requests.append(body)  # type: ignore[attr-defined]
        if _mentions_trigger(body.get("messages")):
            self._send_json(HTTPStatus.BAD_REQUEST, error_body())
        elif body.get("stream"):
            options = body.get("stream_options") or {}
            self._send_stream(stream_chunks(bool(options.get("include_usage"))))
        else:
            self._send_json(HTTPStatus.OK, completion())

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
