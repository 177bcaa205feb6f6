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

from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

from .canned_server import CannedHandler, CannedServer, sse_event

RESPONSE_MODEL = "gemini-2.5-flash-001"
REPLY = "It is sunny and 21 degrees in Paris."
FUNCTION_ARGS = {"city": "Paris"}
CALL_USAGE = {"promptTokenCount": 24, "candidatesTokenCount": 6, "totalTokenCount": 30}
REPLY_USAGE = {"promptTokenCount": 41, "candidatesTokenCount": 11, "totalTokenCount": 52}
FAIL_TRIGGER = "FAIL"
ERROR_MESSAGE = "The canned Gemini server refuses this request on purpose."
_STREAM_ROUTE_SUFFIX = ":streamGenerateContent"


class CannedGemini(CannedServer):
    """The server: a ``with`` block; ``base_url`` goes in ``genai.Client``'s ``http_options``."""

    def __init__(self) -> None:
        super().__init__(_Handler, name="canned-gemini", id_format="canned-gemini-{:04d}")


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


class _Handler(CannedHandler):
    server_version = "CannedGemini/1.0"
    json_content_type = "application/json; charset=UTF-8"

    def serves(self, route: str) -> bool:
        return route.endswith((_STREAM_ROUTE_SUFFIX, ":generateContent"))

    def error_body(self, status: HTTPStatus, message: str) -> dict[str, Any]:
        state = "INVALID_ARGUMENT" if status == HTTPStatus.BAD_REQUEST else status.name
        return {"error": {"code": int(status), "message": message, "status": state}}

    def answer(self, route: str, body: dict[str, Any]) -> None:
        if any(FAIL_TRIGGER in str(part.get("text", "")) for part in _parts(body)):
            self.send_error_body(HTTPStatus.BAD_REQUEST, ERROR_MESSAGE)
            return
        parts, usage = answer_parts(body)
        response_id = self.canned.next_id()
        if route.endswith(_STREAM_ROUTE_SUFFIX):
            chunks = stream_responses(parts, usage, response_id)
            self.send_events(sse_event(chunk, newline="\r\n") for chunk in chunks)
        else:
            self.send_json(HTTPStatus.OK, response(parts, usage, response_id, done=True))
