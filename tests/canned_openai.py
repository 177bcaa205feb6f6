"""A canned OpenAI chat server that asks for one tool call, for the agent-framework scenarios.

``examples/canned_openai.py`` always answers with text; an agent run needs the model to call
a tool first. This one answers ``POST /v1/chat/completions`` (no streaming) by the request's
last message:

- a user message containing ``FAIL_TRIGGER``: HTTP 400 with an OpenAI-style error body;
- a user message: a ``tool_calls`` completion asking for the first offered tool with
  ``TOOL_ARGUMENTS`` (``TOOL_CALL_USAGE``);
- a tool result: a text completion ``"Answer: <result>"`` (``ANSWER_USAGE``).

It imports only the standard library, so it runs in every framework's environment.
"""

from __future__ import annotations

import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

RESPONSE_MODEL = "gpt-4o-mini-2024-07-18"
FAIL_TRIGGER = "FAIL"
ERROR_MESSAGE = "The canned server refuses this request on purpose."
TOOL_ARGUMENTS = {"city": "Paris"}
TOOL_CALL_ID = "call_canned_1"
TOOL_CALL_USAGE = {"prompt_tokens": 30, "completion_tokens": 8, "total_tokens": 38}
ANSWER_USAGE = {"prompt_tokens": 45, "completion_tokens": 6, "total_tokens": 51}


class CannedToolServer:
    """``with CannedToolServer() as server:`` then ``base_url``; ``requests`` logs the bodies."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.canned = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="canned-openai-tools", daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> CannedToolServer:
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


def _text(content: Any) -> str:
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return str(content or "")


def _completion(message: dict[str, Any], finish_reason: str, usage: dict[str, int]) -> dict:
    return {
        "id": f"chatcmpl-canned-{finish_reason}",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": RESPONSE_MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
        "usage": dict(usage),
    }


def answer(body: dict[str, Any]) -> tuple[HTTPStatus, dict[str, Any]]:
    """The status and JSON answer to one chat completion request."""
    last = (body.get("messages") or [{}])[-1]
    if last.get("role") == "tool":
        message = {"role": "assistant", "content": f"Answer: {_text(last.get('content'))}"}
        return HTTPStatus.OK, _completion(message, "stop", ANSWER_USAGE)
    if FAIL_TRIGGER in _text(last.get("content")):
        error = {"message": ERROR_MESSAGE, "type": "invalid_request_error", "code": "canned"}
        return HTTPStatus.BAD_REQUEST, {"error": error}
    tool = (body.get("tools") or [{}])[0].get("function", {}).get("name", "missing_tool")
    call = {
        "id": TOOL_CALL_ID,
        "type": "function",
        "function": {"name": tool, "arguments": json.dumps(TOOL_ARGUMENTS)},
    }
    message = {"role": "assistant", "content": None, "tool_calls": [call]}
    return HTTPStatus.OK, _completion(message, "tool_calls", TOOL_CALL_USAGE)


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        self.server.canned.requests.append(body)  # type: ignore[attr-defined]
        status, payload = (
            answer(body)
            if self.path.rstrip("/") == "/v1/chat/completions"
            else (HTTPStatus.NOT_FOUND, {"error": {"message": f"no {self.path}"}})
        )
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the scenarios print what they mean to."""
