"""Any GenAI convention's messages as the OpenAI chat messages Weave's Chat view renders.

The Chat tab appears only when every item of ``inputs.messages`` is an OpenAI chat message
(WEAVE_WIRE §7): ``role`` a string; ``content`` a string, null or ``text`` / ``image_url`` parts;
``tool_calls`` with ``arguments`` as JSON text; tool results as ``role: tool`` messages. The
instrumentations send OTel GenAI ``parts``, OpenInference ``contents``, Anthropic and Bedrock
content blocks, Vercel AI SDK parts, pydantic-ai parts, LangChain messages, OpenAI Responses
items. Each block type has one handler in ``_BLOCK_HANDLERS``.

Nothing is dropped: reasoning becomes a ``<think>`` block (which the UI folds away), an unknown
part stays as a text part holding its JSON, and fields the chat shape has no place for stay as
extra keys on the message, part or tool call (the UI ignores extra keys).

Every function is pure and total: a value that is not recognised gives ``None`` (the caller then
keeps its non-chat shape), never an exception.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from opentelemetry.exporter.weave._sanitize import nests_within, safe_json_from

__all__ = [
    "ContentEvent",
    "chat_completion",
    "chat_inputs",
    "chat_messages",
    "messages_from_events",
    "plain_chat_messages",
]

Message = dict[str, Any]


class ContentEvent(NamedTuple):
    """A span event or an OTel log record that carries message content."""

    name: str
    attributes: Mapping[str, Any]
    """Raw attribute values (JSON texts not decoded yet)."""
    body: Any = None
    """A log record's body (legacy openai-v2 puts the content there)."""


# Roles other conventions spell differently; any other role string is kept as it is (the UI
# accepts any role: smolagents' `tool-call` / `tool-response` render as assistant turns).
_ROLES = {"human": "user", "ai": "assistant", "model": "assistant", "function": "tool"}
# LangChain serialised messages name their role by class (`{"lc": 1, "id": [..., "AIMessage"]}`).
_LANGCHAIN_CLASSES = {
    "HumanMessage": "user",
    "HumanMessageChunk": "user",
    "AIMessage": "assistant",
    "AIMessageChunk": "assistant",
    "SystemMessage": "system",
    "ToolMessage": "tool",
    "FunctionMessage": "tool",
}
_LANGCHAIN_TYPES = {"human", "ai", "system", "tool", "function", "chat", "developer"}

# OpenAI Responses items have both `id` and `call_id`; results refer to `call_id`.
_TOOL_CALL_ID_KEYS = ("call_id", "id", "toolCallId", "toolUseId", "tool_call_id")
_TOOL_RESULT_ID_KEYS = ("tool_call_id", "tool_use_id", "toolUseId", "toolCallId", "call_id", "id")
_TOOL_NAME_KEYS = ("name", "toolName")
_TOOL_ARGUMENT_KEYS = ("arguments", "args", "input")
_TOOL_RESULT_KEYS = ("response", "result", "content", "output")
_MEDIA_TYPE_KEYS = ("mime_type", "media_type", "mediaType", "mimeType")
_BLOCK_KEYS = {"text", "toolUse", "toolResult", "reasoningContent", "image", "message_content"}


def _decoded(value: Any) -> Any:
    """JSON text as the (JSON-safe, bounded) value it holds; anything else as it is."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        return safe_json_from(value)
    return value


def _is_blocks(value: Any) -> bool:
    """Is `value` a list of content blocks (typed, or Bedrock's one-key blocks)?"""
    return (
        isinstance(value, list)
        and bool(value)
        and all(
            isinstance(block, Mapping) and ("type" in block or block.keys() <= _BLOCK_KEYS)
            for block in value
        )
    )


_encoded_text = json.JSONEncoder(ensure_ascii=False, default=str).encode
"""``json.dumps(value, ensure_ascii=False, default=str)``, its encoder made once (json.dumps
makes one per call with these options: half the cost of a tool call's arguments)."""


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) else _encoded_text(value)


def _first(mapping: Mapping[str, Any], keys: Sequence[str]) -> tuple[str | None, Any]:
    for key in keys:
        if mapping.get(key) is not None:
            return key, mapping[key]
    return None, None


def _rest(mapping: Mapping[str, Any], *consumed: str | None) -> dict[str, Any]:
    return {key: value for key, value in mapping.items() if key not in consumed}


def _arguments_text(arguments: Any) -> str:
    """Tool-call arguments as the JSON text the UI wants: JSON text stays, anything else
    (an object, or text that is not JSON) is encoded, so the text is kept either way."""
    if arguments is None:
        return "{}"
    if isinstance(arguments, str):
        try:
            json.loads(arguments)
        except (ValueError, RecursionError):  # deeper than the decoder goes: kept as text
            return _encoded_text(arguments)
        return arguments
    return _encoded_text(arguments)


@dataclass
class _Parts:
    """What one message's content blocks amount to in the chat shape."""

    content: list[Message] = field(default_factory=list)  # `text` and `image_url` parts
    tool_calls: list[Message] = field(default_factory=list)
    tool_results: list[Message] = field(default_factory=list)  # `role: tool` messages
    reasoning: list[str] = field(default_factory=list)
    reasoning_details: list[Any] = field(default_factory=list)  # signatures and the like

    def text(self, text: str, **extras: Any) -> None:
        # Empty extras (`"annotations": []`) hold nothing; dropping them keeps the text a string.
        kept = {key: value for key, value in extras.items() if value not in (None, [], {})}
        self.content.append({"type": "text", "text": text, **kept})


def _tool_call(raw: Mapping[str, Any]) -> Message:
    """Any convention's tool call (OpenAI, OpenInference, OpenLLMetry, LangChain, Anthropic
    `tool_use`, Vercel `tool-call`, OTel `tool_call`, Bedrock `toolUse`) as an OpenAI one."""
    if isinstance(raw.get("tool_call"), Mapping):  # OpenInference nests it one level down
        raw = raw["tool_call"]
    function = raw.get("function")
    source: Mapping[str, Any] = function if isinstance(function, Mapping) else raw
    id_key, call_id = _first(raw, _TOOL_CALL_ID_KEYS)
    name_key, name = _first(source, _TOOL_NAME_KEYS)
    arguments_key, arguments = _first(source, _TOOL_ARGUMENT_KEYS)
    extras = _rest(raw, "type", "function", id_key, name_key, arguments_key)
    if source is not raw:
        extras.update(_rest(source, name_key, arguments_key))
    if id_key != "id" and "id" in extras:  # a Responses item's own id, beside its `call_id`
        extras["item_id"] = extras.pop("id")
    return {
        **extras,
        "id": _json_text(call_id) if call_id is not None else "",
        "type": "function",
        "function": {
            "name": _json_text(name) if name is not None else "",
            "arguments": _arguments_text(arguments),
        },
    }


def _result_content(value: Any) -> str | list[Message]:
    """A tool result's payload as message content: text stays text, content blocks become
    parts, anything else its JSON text."""
    if isinstance(value, str):
        if not _is_blocks(_decoded(value)):
            return value
        value = _decoded(value)
    if _is_blocks(value):
        parts = _Parts()
        for block in value:
            _add_block(block, parts)
        if not parts.tool_calls and not parts.tool_results and not parts.reasoning:
            return _content_value(parts) or ""
    return _json_text(value)


def _on_text(block: Mapping[str, Any], parts: _Parts) -> None:
    key, text = _first(block, ("text", "content"))
    if isinstance(text, str):
        parts.text(text, **_rest(block, "type", key))
    else:
        _on_unknown(block, parts)


def _on_image_url(block: Mapping[str, Any], parts: _Parts) -> None:
    image = block.get("image_url")
    url = image.get("url") if isinstance(image, Mapping) else image
    if isinstance(url, str):
        parts.content.append({**block, "type": "image_url", "image_url": {"url": url}})
    else:
        _on_unknown(block, parts)


def _image_part(url: str, block: Mapping[str, Any], *consumed: str) -> Message:
    return {"type": "image_url", "image_url": {"url": url}, **_rest(block, "type", *consumed)}


def _on_media(block: Mapping[str, Any], parts: _Parts) -> None:
    """OTel `blob` / `uri` / `file`, pydantic-ai `binary` / `image-url`, Anthropic and Vercel
    `image`, OpenInference `image`: an image with a URL or inline data becomes an `image_url`
    part (data: URL); any other media stays a text part holding its JSON."""
    _, media_type = _first(block, _MEDIA_TYPE_KEYS)
    kind = block.get("type")
    is_image = (
        block.get("modality") == "image"
        or (isinstance(media_type, str) and media_type.startswith("image/"))
        or kind in ("image", "image-url")
    )
    source = block.get("source") if isinstance(block.get("source"), Mapping) else None
    image = block.get("image")
    if isinstance(image, Mapping):  # OpenInference: `message_content.image.image.url`
        image = image.get("image", image)
        image = image.get("url") if isinstance(image, Mapping) else image
    for url_key in ("uri", "url", "image"):
        url = image if url_key == "image" else block.get(url_key)
        if is_image and isinstance(url, str) and ":" in url[:12]:
            parts.content.append(_image_part(url, block, url_key))
            return
    data_key, data = _first(block, ("content", "data", "image"))
    if source is not None:  # Anthropic: `{"type": "base64", "media_type", "data"}` or a URL
        media_type = source.get("media_type", media_type)
        url = source.get("url")
        if isinstance(url, str):
            parts.content.append(_image_part(url, block, "source"))
            return
        data_key, data = "source", source.get("data")
    if is_image and isinstance(data, str) and isinstance(media_type, str):
        url = f"data:{media_type};base64,{data}"
        parts.content.append(_image_part(url, block, data_key or "", *_MEDIA_TYPE_KEYS))
        return
    _on_unknown(block, parts)


def _on_tool_call(block: Mapping[str, Any], parts: _Parts) -> None:
    parts.tool_calls.append(_tool_call(block))


def _on_tool_result(block: Mapping[str, Any], parts: _Parts) -> None:
    id_key, call_id = _first(block, _TOOL_RESULT_ID_KEYS)
    payload_key, payload = _first(block, _TOOL_RESULT_KEYS)
    parts.tool_results.append(
        {
            "role": "tool",
            "tool_call_id": _json_text(call_id) if call_id is not None else "",
            "content": _result_content(payload) if payload_key else "",
            **_rest(block, "type", "role", id_key, payload_key),
        }
    )


def _on_reasoning(block: Mapping[str, Any], parts: _Parts) -> None:
    """OTel `reasoning`, Anthropic `thinking` / `redacted_thinking`, pydantic-ai `thinking`,
    Bedrock `reasoningContent`; a signature or other field goes to the message's
    `reasoning_details`."""
    if isinstance(block.get("reasoningText"), Mapping):
        block = {**_rest(block, "reasoningText"), **block["reasoningText"]}
    text_key, text = _first(block, ("content", "thinking", "text", "data"))
    parts.reasoning.append(_json_text(text) if text is not None else "")
    extras = _rest(block, "type", text_key)
    if extras:
        parts.reasoning_details.append(extras)


def _on_unknown(block: Mapping[str, Any], parts: _Parts) -> None:
    parts.text(_json_text(block))


_BLOCK_HANDLERS: dict[str, Callable[[Mapping[str, Any], _Parts], None]] = {
    "text": _on_text,
    "input_text": _on_text,  # OpenAI Responses
    "output_text": _on_text,
    "image_url": _on_image_url,
    "image": _on_media,
    "image-url": _on_media,  # pydantic-ai
    "binary": _on_media,  # pydantic-ai
    "blob": _on_media,  # OTel GenAI
    "uri": _on_media,
    "file": _on_media,
    "tool_call": _on_tool_call,  # OTel GenAI, pydantic-ai, LangChain
    "tool_use": _on_tool_call,  # Anthropic
    "tool-call": _on_tool_call,  # Vercel AI SDK
    "function_call": _on_tool_call,  # OpenAI Responses
    "tool_call_response": _on_tool_result,  # OTel GenAI, pydantic-ai
    "tool_result": _on_tool_result,  # Anthropic
    "tool-result": _on_tool_result,  # Vercel AI SDK
    "function_call_output": _on_tool_result,  # OpenAI Responses
    "reasoning": _on_reasoning,
    "thinking": _on_reasoning,
    "redacted_thinking": _on_reasoning,
}
# Bedrock Converse blocks (strands-agents) have no `type`: their one key says what they are.
_UNTYPED_BLOCKS = {
    "toolUse": _on_tool_call,
    "toolResult": _on_tool_result,
    "reasoningContent": _on_reasoning,
}


def _add_block(block: Any, parts: _Parts) -> None:
    if isinstance(block, str):
        parts.text(block)
        return
    if not isinstance(block, Mapping):
        parts.text(_json_text(block))
        return
    if isinstance(block.get("message_content"), Mapping):  # OpenInference `contents` item
        block = block["message_content"]
    kind = block.get("type")
    handler = _BLOCK_HANDLERS.get(kind) if isinstance(kind, str) else None
    if handler is not None:
        handler(block, parts)
        return
    for key, untyped in _UNTYPED_BLOCKS.items():
        if isinstance(block.get(key), Mapping) and len(block) == 1:
            untyped(block[key], parts)
            return
    if kind is None and isinstance(block.get("text"), str):
        _on_text(block, parts)
    else:
        _on_unknown(block, parts)


def _content_value(parts: _Parts) -> str | list[Message] | None:
    """Plain text parts join into one string (where the UI folds `<think>` blocks); parts with
    images or extra fields stay a list. None when there is nothing."""
    thinking = [f"<think>{text}</think>" for text in parts.reasoning]
    if all(part.keys() == {"type", "text"} and part["type"] == "text" for part in parts.content):
        texts = [part["text"] for part in parts.content]
        return "\n".join(thinking + texts) if thinking or texts else None
    return [{"type": "text", "text": text} for text in thinking] + parts.content


def _is_openai_tool_call(tool_call: Any) -> bool:
    if not isinstance(tool_call, Mapping) or not isinstance(tool_call.get("id"), str):
        return False
    function = tool_call.get("function")
    return (
        tool_call.get("type") == "function"
        and isinstance(function, Mapping)
        and isinstance(function.get("name"), str)
        and isinstance(function.get("arguments"), str)
        and _arguments_text(function["arguments"]) == function["arguments"]
    )


def _is_openai_part(part: Any) -> bool:
    if not isinstance(part, Mapping):
        return False
    if part.get("type") == "text":
        return isinstance(part.get("text"), str)
    image = part.get("image_url")
    return (
        part.get("type") == "image_url"
        and isinstance(image, Mapping)
        and isinstance(image.get("url"), str)
    )


def _is_openai_message(message: Mapping[str, Any]) -> bool:
    """Already what the UI renders: passed through untouched."""
    content, tool_calls = message.get("content"), message.get("tool_calls")
    return (
        isinstance(message.get("role"), str)
        and ("content" in message or "tool_calls" in message)
        and (
            content is None
            or (isinstance(content, str) and not _is_blocks(_decoded(content)))
            or (isinstance(content, list) and all(_is_openai_part(part) for part in content))
        )
        and (
            tool_calls is None
            or (isinstance(tool_calls, list) and all(map(_is_openai_tool_call, tool_calls)))
        )
        and (message["role"] != "tool" or isinstance(message.get("tool_call_id"), str))
        and "parts" not in message
        and "contents" not in message
    )


def _normalised(raw: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The message with a string `role`, from LangChain's and OpenAI Responses' shapes too;
    None when `raw` is no message."""
    if raw.get("lc") == 1 and isinstance(raw.get("kwargs"), Mapping):
        path = raw.get("id")
        class_name = path[-1] if isinstance(path, list) and path else None
        kwargs = raw["kwargs"]
        role = kwargs.get("role") or _LANGCHAIN_CLASSES.get(str(class_name))
        return {**_rest(kwargs, "type"), "role": role} if isinstance(role, str) else None
    kind = raw.get("type")
    if "role" not in raw and isinstance(kind, str) and kind in _LANGCHAIN_TYPES:
        return {**_rest(raw, "type"), "role": _ROLES.get(kind, kind)}
    if kind == "function_call":  # OpenAI Responses items have no role
        return {"role": "assistant", "content": None, "tool_calls": [raw]}
    if kind == "function_call_output":
        return {"role": "tool", "content": [raw]}
    return raw if isinstance(raw.get("role"), str) else None


_TEXT_ONLY_KEYS = frozenset({"role", "parts", "finish_reason"})


def _genai_message(raw: Any) -> tuple[str, list[Any]] | None:
    """The role (as OpenAI names it) and parts of what may be an OpenTelemetry GenAI message,
    the shape both one-step conversions start from; None for anything else."""
    if type(raw) is not dict:
        return None
    parts = raw.get("parts")
    if type(parts) is not list or not parts or not raw.keys() <= _TEXT_ONLY_KEYS:
        return None
    role = raw.get("role")
    if not isinstance(role, str):
        return None
    return _ROLES.get(role, role), parts


def _text_only(raw: Any) -> list[Message] | None:
    """The commonest message (OpenTelemetry GenAI's, of text parts only) in one step: exactly
    what :func:`_converted_in_full` makes of it (a property test holds the two equal); None
    for any other message."""
    message = _one_text(raw)
    if message is not None:
        return [message]
    found = _genai_message(raw)
    if found is None:
        return None
    role, parts = found
    if role == "tool":  # tool messages get a `tool_call_id`
        return None
    texts: list[str] = []
    for part in parts:
        if (
            type(part) is not dict
            or len(part) != 2
            or part.get("type") != "text"
            or not isinstance(text := part.get("content"), str)
        ):
            return None
        texts.append(text)
    message = {"role": role}
    if "finish_reason" in raw:
        message["finish_reason"] = raw["finish_reason"]
    message["content"] = "\n".join(texts)
    return [message]


def _one_text(raw: Any) -> Message | None:
    """The one message :func:`_text_only` makes of most messages (one text part; a
    ``finish_reason``, if any, no container, so nothing in it nests), read without its calls;
    None for any other message (a property test holds it to :func:`_text_only`)."""
    if type(raw) is not dict:
        return None
    parts = raw.get("parts")
    if type(parts) is not list or len(parts) != 1:
        return None
    part = parts[0]
    if (
        type(part) is not dict
        or len(part) != 2
        or part.get("type") != "text"
        or type(content := part.get("content")) is not str
        or type(role := raw.get("role")) is not str
    ):
        return None
    role = _ROLES.get(role, role)
    if role == "tool":  # tool messages get a `tool_call_id`
        return None
    size = len(raw)  # `role` and `parts` are there: a third key may be `finish_reason` only
    if size == 2:
        return {"role": role, "content": content}
    if size != 3 or "finish_reason" not in raw:
        return None
    reason = raw["finish_reason"]
    if type(reason) is dict or type(reason) is list:
        return None
    return {"role": role, "finish_reason": reason, "content": content}


_TOOL_CALL_PART_KEYS = frozenset({"type", "id", "name", "arguments"})
_TOOL_RESULT_PART_KEYS = frozenset({"type", "id", "response"})


def _genai_parts(raw: Any) -> list[Message] | None:
    """An OpenTelemetry GenAI message of text, ``tool_call`` and ``tool_call_response`` parts
    (each with exactly the spec's keys, its ids and names text) in one step: exactly what
    :func:`_converted_in_full` makes of it (a property test holds the two equal); None for
    any other message."""
    found = _genai_message(raw)
    if found is None:
        return None
    role, parts = found
    texts: list[str] = []
    tool_calls: list[Message] = []
    tool_results: list[Message] = []
    for part in parts:
        if type(part) is not dict:
            return None
        kind = part.get("type")
        if kind == "text":
            if len(part) != 2 or not isinstance(text := part.get("content"), str):
                return None
            texts.append(text)
        elif kind == "tool_call":
            if (
                part.keys() != _TOOL_CALL_PART_KEYS
                or type(call_id := part["id"]) is not str
                or type(name := part["name"]) is not str
                or (arguments := part["arguments"]) is None
            ):
                return None
            function = {"name": name, "arguments": _arguments_text(arguments)}
            tool_calls.append({"id": call_id, "type": "function", "function": function})
        elif kind == "tool_call_response":
            if (
                part.keys() != _TOOL_RESULT_PART_KEYS
                or type(call_id := part["id"]) is not str
                or (response := part["response"]) is None
            ):
                return None
            content = _result_content(response)
            tool_results.append({"role": "tool", "tool_call_id": call_id, "content": content})
        else:
            return None
    extras = {"finish_reason": raw["finish_reason"]} if "finish_reason" in raw else {}
    own: Message = {"role": role, **extras, "content": "\n".join(texts) if texts else None}
    if tool_calls:
        own["tool_calls"] = tool_calls
    elif own["content"] is None:
        own["content"] = ""
    if role == "tool":  # the message itself has no id to refer to
        own["tool_call_id"] = ""
    if not tool_results:
        return [own]
    if own["content"] == "" and not tool_calls:
        # The message was only its tool results: they carry its other fields.
        return [{**tool_results[0], **extras, "role": "tool"}, *tool_results[1:]]
    return [*tool_results, own]


def _converted(raw: Any) -> list[Message] | None:
    """One message of any convention as one or more OpenAI messages (tool results inside a
    message become `role: tool` messages of their own); None when it is no message."""
    return _text_only(raw) or _genai_parts(raw) or _converted_in_full(raw)


def _converted_in_full(raw: Any) -> list[Message] | None:
    if not isinstance(raw, Mapping):
        return None
    if raw.keys() == {"message"} and isinstance(raw["message"], Mapping):
        raw = raw["message"]
    if _is_openai_message(raw):
        return [dict(raw)]
    message = _normalised(raw)
    if message is None:
        return None
    role = _ROLES.get(message["role"], message["role"])
    parts = _Parts()
    for key in ("parts", "contents", "content"):
        value = message.get(key)
        decoded = _decoded(value)
        # JSON text stays text unless it holds content blocks (OpenLLMetry's Anthropic prompts).
        blocks = decoded if _is_blocks(decoded) else value
        for block in blocks if isinstance(blocks, list) else [blocks] if blocks is not None else []:
            _add_block(block, parts)
    tool_calls = _decoded(message.get("tool_calls"))
    for tool_call in tool_calls if isinstance(tool_calls, list) else []:
        parts.tool_calls.append(
            _tool_call(tool_call)
            if isinstance(tool_call, Mapping)
            else _tool_call({"arguments": tool_call})
        )
    extras = _rest(message, "role", "parts", "contents", "content", "tool_calls")
    if tool_calls is not None and not isinstance(tool_calls, list):
        extras["tool_calls_value"] = tool_calls
    if parts.reasoning_details:
        extras["reasoning_details"] = parts.reasoning_details
    own: Message = {"role": role, **extras, "content": _content_value(parts)}
    if parts.tool_calls:
        own["tool_calls"] = parts.tool_calls
    elif own["content"] is None:
        own["content"] = ""
    if role == "tool" and not isinstance(own.get("tool_call_id"), str):
        _, call_id = _first(message, _TOOL_RESULT_ID_KEYS)
        own["tool_call_id"] = _json_text(call_id) if call_id is not None else ""
    if not parts.tool_results:
        return [own]
    if own["content"] == "" and not parts.tool_calls:
        # The message was only its tool results: they carry its other fields.
        return [{**parts.tool_results[0], **extras, "role": "tool"}, *parts.tool_results[1:]]
    return [*parts.tool_results, own]


def chat_messages(value: Any) -> list[Message] | None:
    """Any convention's message list (or JSON text of one, or one message, or a request body
    with `messages`) as OpenAI chat messages; None if `value` is not a message list this module
    recognises (the caller then keeps its non-chat shape)."""
    if type(value) is not list:  # a list needs neither step (nor the ABC's check)
        value = _decoded(value)
        if isinstance(value, Mapping):
            value = value["messages"] if isinstance(value.get("messages"), list) else [value]
        if not isinstance(value, list) or not value:
            return None
    elif not value:
        return None
    if isinstance(value[0], list) and all(isinstance(item, list) for item in value):
        value = [item for batch in value for item in batch]  # LangChain batches: `[[message, …]]`
    messages: list[Message] = []
    for raw in value:
        message = _one_text(raw)  # most messages: _converted's answer, without its calls
        if message is not None:
            messages.append(message)
            continue
        # _converted's other steps (_genai_parts takes each message _text_only takes, as it does)
        converted = _genai_parts(raw) or _converted_in_full(raw)
        if converted is None:
            return None
        messages += converted
    return messages or None


def plain_chat_messages(value: list[Any], levels: int) -> list[Message] | None:
    """``chat_messages(value)`` of decoded JSON whose every message the one-step conversions
    take (OpenTelemetry GenAI's), when it nests no deeper than ``levels``; None otherwise.

    Those conversions take fixed shapes only (a message's text role and its parts, a part's
    texts): all that may nest is a message's ``finish_reason`` and a tool call's arguments or
    a tool's response, and those alone are walked, before anything is converted."""
    if levels < _PLAIN_MESSAGE_LEVELS:
        return None
    messages: list[Message] = []
    for raw in value:
        message = _one_text(raw)  # nothing in it nests: no values to walk
        if message is not None:
            messages.append(message)
            continue
        if not _free_values_within(raw, levels):
            return None
        converted = _genai_parts(raw)  # it takes each message _text_only takes, as it does
        if converted is None:
            return None
        messages += converted
    return messages or None


_PLAIN_MESSAGE_LEVELS = 4
"""The list of messages, a message, its parts, a part."""


def _free_values_within(raw: Any, levels: int) -> bool:
    """Whether a message's values of free shape nest within ``levels``, the list that holds
    the message its first level (the message, its parts, a part: the next three)."""
    if type(raw) is not dict:
        return False
    reason = raw.get("finish_reason")
    if (type(reason) is dict or type(reason) is list) and not nests_within(reason, levels - 2):
        return False
    parts = raw.get("parts")
    if type(parts) is not list:
        return False
    for part in parts:
        if type(part) is not dict:
            return False
        for key in ("arguments", "response"):
            free = part.get(key)
            if (type(free) is dict or type(free) is list) and not nests_within(free, levels - 4):
                return False
    return True


def _system_message(system_instructions: Any) -> Message | None:
    system_instructions = _decoded(system_instructions)
    if system_instructions is None or system_instructions in ("", []):
        return None
    converted = _converted({"role": "system", "content": system_instructions})
    return converted[-1] if converted else None


def chat_inputs(
    messages: list[Message],
    *,
    system_instructions: Any = None,
    model: str | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An LLM call's inputs: ``{"messages": [system first if given and not already there,
    *messages], "model": model, **parameters}`` (model and parameters left out when unknown)."""
    if system_instructions is not None:  # None makes no system message
        system = _system_message(system_instructions)
        if system is not None and not (messages and messages[0].get("role") == "system"):
            messages = [system, *messages]
    inputs: dict[str, Any] = {"messages": messages}
    if model is not None:
        inputs["model"] = model
    if parameters:
        for key, value in parameters.items():
            if key not in ("messages", "model"):  # as _rest leaves them out
                inputs[key] = value
    return inputs


_OPENAI_USAGE_NAMES = {"input_tokens": "prompt_tokens", "output_tokens": "completion_tokens"}


def _openai_usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    converted = {}
    for key, value in usage.items():
        converted[_OPENAI_USAGE_NAMES.get(key, key)] = value
    prompt, completion = converted.get("prompt_tokens"), converted.get("completion_tokens")
    if "total_tokens" not in converted and isinstance(prompt, int) and isinstance(completion, int):
        converted["total_tokens"] = prompt + completion
    return converted


def chat_completion(
    value: Any,
    *,
    model: str | None,
    response_id: str | None,
    finish_reasons: Sequence[str] | None,
    usage: Mapping[str, int] | None,
    created: int | None = None,
    messages: list[Message] | None = None,
) -> dict[str, Any] | None:
    """An LLM call's output content (a message list, a single message, a choices list, an
    Anthropic or OpenAI Responses result, a plain string, or JSON text of any) as an OpenAI
    chat completion; None when `value` is not chat-like (the caller keeps it as it is).

    `usage` is ``{"input_tokens", "output_tokens", "total_tokens"}`` and is written with
    OpenAI's names; `created` (epoch seconds) is what the UI needs for models it reads as
    Mistral's format. `messages`, when given, is what :func:`plain_chat_messages` made of
    `value`: the choices are made of them, `value` not converted again (none of its messages
    is a choice)."""
    if messages is not None:
        plain_choices: list[Message] = []
        _add_choices(plain_choices, messages, None, None, finish_reasons)
        return _completion(
            {}, plain_choices, model=model, response_id=response_id, usage=usage, created=created
        )
    if type(value) is not list:  # a list is what _decoded leaves as it is
        value = _decoded(value)
    extras: dict[str, Any] = {}
    stop_reason = None
    # Once, and not for a list or a dict: an ABC's check is a Python-level call.
    value_type = type(value)
    is_mapping = value_type is dict or (value_type is not list and isinstance(value, Mapping))
    if isinstance(value, str):
        items: list[Any] = [{"role": "assistant", "content": value}]
    elif is_mapping and isinstance(value.get("choices"), list):
        items, extras = value["choices"], _rest(value, "choices", "object")
    elif is_mapping and value.get("object") == "response" and isinstance(value.get("output"), list):
        items, extras = value["output"], _rest(value, "output", "object")
    elif is_mapping and value.get("type") == "message" and "content" in value:
        # An Anthropic Message: the result's fields sit beside the one message it holds.
        items = [{"role": value.get("role", "assistant"), "content": value["content"]}]
        extras, stop_reason = (
            _rest(value, "type", "role", "content", "stop_reason"),
            value.get("stop_reason"),
        )
    elif is_mapping:
        items = [value]
    elif isinstance(value, list) and value:
        items = value
    else:
        return None
    choices: list[Message] = []
    for item in items:
        choice = (
            item
            if (type(item) is dict or isinstance(item, Mapping))
            and "message" in item
            and "role" not in item
            else None
        )
        message = _one_text(item) if choice is None else None
        converted = (
            [message]
            if message is not None
            else _converted(choice["message"] if choice is not None else item)
        )
        if converted is None:
            return None
        _add_choices(choices, converted, choice, stop_reason, finish_reasons)
    return _completion(
        extras, choices, model=model, response_id=response_id, usage=usage, created=created
    )


def _add_choices(
    choices: list[Message],
    converted: list[Message],
    choice: Mapping[str, Any] | None,
    stop_reason: Any,
    finish_reasons: Sequence[str] | None,
) -> None:
    """The choices of an item's converted messages; ``choice`` the item when it is a choice
    (a ``message`` in it), not a message."""
    for message in converted:
        position = len(choices)
        if choice is None:  # a message: what the general steps make of it, without them
            reason = message.pop("finish_reason", None) or stop_reason
            if reason is None and finish_reasons:
                reason = finish_reasons[min(position, len(finish_reasons) - 1)]
            choices.append(
                {
                    "index": position,
                    "message": message,
                    "finish_reason": None if reason is None else _json_text(reason),
                }
            )
            continue
        reason = message.pop("finish_reason", None) or choice.get("finish_reason") or stop_reason
        if reason is None and finish_reasons:
            reason = finish_reasons[min(position, len(finish_reasons) - 1)]
        index = choice.get("index")
        index = index if type(index) is int and len(converted) == 1 else position
        choices.append(
            {
                **_rest(choice, "message", "index", "finish_reason"),
                "index": index,
                "message": message,
                "finish_reason": _json_text(reason) if reason is not None else None,
            }
        )


def _completion(
    extras: dict[str, Any],
    choices: list[Message],
    *,
    model: str | None,
    response_id: str | None,
    usage: Mapping[str, int] | None,
    created: int | None,
) -> dict[str, Any]:
    completion: dict[str, Any] = {
        **extras,
        "id": response_id if response_id is not None else extras.get("id"),
        "object": "chat.completion",
        "model": model if model is not None else extras.get("model"),
        "choices": choices,
    }
    if created is not None:
        completion["created"] = created
    own_usage = extras.get("usage")
    if usage is not None:
        completion["usage"] = _openai_usage(usage)
    elif isinstance(own_usage, Mapping):
        completion["usage"] = _openai_usage(own_usage)
    return completion


_EVENT_ROLES = {
    "gen_ai.system.message": "system",
    "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant",
    "gen_ai.tool.message": "tool",
}
_CHOICE_EVENT = "gen_ai.choice"
_DETAILS_EVENT = "gen_ai.client.inference.operation.details"


def _event_fields(event: ContentEvent) -> dict[str, Any]:
    """The event's content fields: its body (a mapping, or text that is the content) and its
    attributes, JSON texts decoded, without the event's own metadata (`gen_ai.system`, …)."""
    body = _decoded(event.body)
    fields: dict[str, Any] = dict(body) if isinstance(body, Mapping) else {}
    if body is not None and not isinstance(body, Mapping):
        fields["content"] = body
    for key, value in event.attributes.items():
        if not key.startswith(("gen_ai.", "event.")):
            fields[key] = _decoded(value)
    return fields


def _choice_message(fields: Mapping[str, Any]) -> Any:
    message = fields.get(
        "message",
        {key: value for key, value in fields.items() if key not in ("index", "finish_reason")},
    )
    if isinstance(message, Mapping):
        message = {"role": "assistant", **message}
        if "content" not in message and "tool_calls" not in message:
            message["content"] = ""
    else:  # strands: the message is its content blocks
        message = {"role": "assistant", "content": message}
    if fields.get("finish_reason") is not None:
        message["finish_reason"] = fields["finish_reason"]
    return message


def messages_from_events(events: Sequence[ContentEvent]) -> tuple[list[Message], list[Message]]:
    """The input messages and output messages carried by per-message events
    (`gen_ai.{system,user,assistant,tool}.message`, `gen_ai.choice`) and/or
    `gen_ai.client.inference.operation.details` (`gen_ai.input.messages`,
    `gen_ai.output.messages`, `gen_ai.system_instructions`), as OpenAI chat messages. Output
    messages keep their `finish_reason` key for `chat_completion` to move onto the choice."""
    inputs: list[Message] = []
    outputs: list[Message] = []
    for event in events:
        if event.name == _DETAILS_EVENT:
            body = event.body if isinstance(event.body, Mapping) else {}
            details = {**body, **event.attributes}
            system = _system_message(details.get("gen_ai.system_instructions"))
            inputs += [system] if system is not None else []
            inputs += chat_messages(details.get("gen_ai.input.messages")) or []
            outputs += chat_messages(details.get("gen_ai.output.messages")) or []
        elif event.name in _EVENT_ROLES:
            fields = _event_fields(event)
            if "content" not in fields and "tool_calls" not in fields:
                fields["content"] = ""
            converted = _converted({"role": _EVENT_ROLES[event.name], **fields})
            inputs += converted or []
        elif event.name == _CHOICE_EVENT:
            outputs += _converted(_choice_message(_event_fields(event))) or []
    return inputs, outputs
