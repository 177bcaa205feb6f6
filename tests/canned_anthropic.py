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

import json
from collections.abc import Iterator, Mapping
from http import HTTPStatus
from typing import Any, ClassVar

from .canned_server import CannedHandler, CannedServer, sse_event

RESPONSE_MODEL = "claude-haiku-4-5-20251001"
REPLY = "It is sunny and 21 degrees in Paris."
TOOL_USE_ID = "toolu_canned_01"
TOOL_INPUT = {"city": "Paris"}
TOOL_USE_USAGE = {"input_tokens": 31, "output_tokens": 12}
REPLY_USAGE = {"input_tokens": 57, "output_tokens": 15}
FAIL_TRIGGER = "FAIL"
ERROR_MESSAGE = "The canned Anthropic server refuses this request on purpose."


class CannedAnthropic(CannedServer):
    """The server: a ``with`` block; ``base_url`` is what ``anthropic.Anthropic`` takes."""

    def __init__(self) -> None:
        super().__init__(_Handler, name="canned-anthropic", id_format="msg_canned_{:04d}")


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


_ERROR_TYPES = {
    HTTPStatus.BAD_REQUEST: "invalid_request_error",
    HTTPStatus.NOT_FOUND: "not_found_error",
}


class _Handler(CannedHandler):
    server_version = "CannedAnthropic/1.0"
    reply_headers: ClassVar[Mapping[str, str]] = {"request-id": "req_canned"}

    def serves(self, route: str) -> bool:
        return route.rstrip("/") == "/v1/messages"

    def error_body(self, status: HTTPStatus, message: str) -> dict[str, Any]:
        return {"type": "error", "error": {"type": _ERROR_TYPES[status], "message": message}}

    def answer(self, route: str, body: dict[str, Any]) -> None:
        if any(FAIL_TRIGGER in text for text in _texts(body.get("messages"))):
            self.send_error_body(HTTPStatus.BAD_REQUEST, ERROR_MESSAGE)
            return
        message = answer(body, self.canned.next_id())
        if body.get("stream"):
            self.send_events(sse_event(data, event=name) for name, data in stream_events(message))
        else:
            self.send_json(HTTPStatus.OK, message)
