"""Would the Weave UI show this stored call as a chat? The test oracle for chat-shaped calls.

Written from WEAVE_WIRE §7 and checked against weave-js's ChatView (`ChatFormats/utils.ts`
`isMessage`, `openai.ts`, `mistral.ts`, `opentelemetry.ts`, `hooks.ts` `getChatFormat`,
`ChatView.tsx`). Slightly stricter than the UI where the brief asks for it: tool-call arguments
must be JSON text, content parts only `text` / `image_url`, a tool result needs its
`tool_call_id`, and `inputs.messages` must not be empty.
"""

from __future__ import annotations

import json
from typing import Any

_PART_TYPES = ("text", "image_url")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _part_errors(part: Any, where: str) -> list[str]:
    if not isinstance(part, dict):
        return [f"{where}: a content part must be an object, got {type(part).__name__}"]
    kind = part.get("type")
    if kind == "text":
        if not isinstance(part.get("text"), str):
            return [f"{where}: a text part needs a string 'text'"]
        return []
    if kind == "image_url":
        image = part.get("image_url")
        if not isinstance(image, dict) or not isinstance(image.get("url"), str):
            return [f"{where}: an image_url part needs image_url.url as a string"]
        return []
    return [f"{where}: content part type {kind!r} is not one of {_PART_TYPES}"]


def _tool_call_errors(tool_call: Any, where: str) -> list[str]:
    if not isinstance(tool_call, dict):
        return [f"{where}: a tool call must be an object"]
    errors = []
    if not isinstance(tool_call.get("id"), str):
        errors.append(f"{where}: tool call 'id' must be a string")
    if tool_call.get("type") != "function":
        errors.append(f"{where}: tool call 'type' must be 'function'")
    function = tool_call.get("function")
    if not isinstance(function, dict):
        return [*errors, f"{where}: tool call needs a 'function' object"]
    if not isinstance(function.get("name"), str):
        errors.append(f"{where}: function.name must be a string")
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        errors.append(f"{where}: function.arguments must be a JSON string, got {arguments!r:.60}")
    else:
        try:
            json.loads(arguments)
        except ValueError:
            errors.append(f"{where}: function.arguments is not JSON text: {arguments!r:.60}")
    return errors


def message_errors(message: Any, where: str = "message") -> list[str]:
    """Why `message` is not an OpenAI chat message the UI renders (empty list: it is)."""
    if not isinstance(message, dict):
        return [f"{where}: a message must be an object, got {type(message).__name__}"]
    errors = []
    if not isinstance(message.get("role"), str):
        errors.append(f"{where}: 'role' must be a string")
    if "content" not in message and "tool_calls" not in message:
        errors.append(f"{where}: needs 'content' or 'tool_calls' (keys: {sorted(message)})")
    content = message.get("content")
    if isinstance(content, list):
        for i, part in enumerate(content):
            errors += _part_errors(part, f"{where}.content[{i}]")
    elif content is not None and not isinstance(content, str):
        errors.append(f"{where}: 'content' must be a string, null or a list of parts")
    if message.get("tool_calls") is not None:  # null is accepted: some SDKs send it
        tool_calls = message["tool_calls"]
        if not isinstance(tool_calls, list):
            errors.append(f"{where}: 'tool_calls' must be a list")
        else:
            for i, tool_call in enumerate(tool_calls):
                errors += _tool_call_errors(tool_call, f"{where}.tool_calls[{i}]")
    if message.get("role") == "tool" and not isinstance(message.get("tool_call_id"), str):
        errors.append(f"{where}: a tool result needs 'tool_call_id' as a string")
    return errors


def _choice_errors(choice: Any, where: str) -> list[str]:
    if not isinstance(choice, dict):
        return [f"{where}: a choice must be an object"]
    errors = []
    if not _is_int(choice.get("index")):
        errors.append(f"{where}: 'index' must be an int")
    if "message" not in choice:
        errors.append(f"{where}: needs 'message'")
    else:
        errors += message_errors(choice["message"], f"{where}.message")
    if "finish_reason" not in choice:
        errors.append(f"{where}: needs 'finish_reason' (string or null)")
    elif choice["finish_reason"] is not None and not isinstance(choice["finish_reason"], str):
        errors.append(f"{where}: 'finish_reason' must be a string or null")
    return errors


def _output_errors(output: Any) -> list[str]:
    if not isinstance(output, dict):
        return [f"output must be a chat completion or a message, got {type(output).__name__}"]
    if output.get("object") == "response":
        return ["output.object 'response' makes the UI read it as an OpenAI Responses result"]
    if "choices" in output:
        choices = output["choices"]
        if not isinstance(choices, list) or not choices:
            return ["output.choices must be a non-empty list"]
        errors = []
        for i, choice in enumerate(choices):
            errors += _choice_errors(choice, f"output.choices[{i}]")
        return errors
    errors = message_errors(output, "output")
    content = output.get("content")
    if not errors and not content:
        # ChatView shows a single-message response only when its content is non-empty.
        errors.append("output is a message with empty content: no response pane")
    return errors


def _mistral_errors(output: Any) -> list[str]:
    """A model name containing 'mistral' makes the UI skip the OpenAI format for the Mistral one,
    which also demands these completion fields."""
    if output is None:
        return []
    if not isinstance(output, dict):
        return ["mistral model: output must be a chat completion"]
    errors = []
    if not isinstance(output.get("id"), str):
        errors.append("mistral model: output.id must be a string")
    if not str(output.get("object", "")).startswith("chat.completion"):
        errors.append("mistral model: output.object must be 'chat.completion'")
    if not isinstance(output.get("created"), (int, float)):
        errors.append("mistral model: output.created must be a number")
    if "mistral" not in str(output.get("model", "")).lower():
        errors.append("mistral model: output.model must name the mistral model")
    usage = output.get("usage")
    keys = ("prompt_tokens", "completion_tokens", "total_tokens")
    if not isinstance(usage, dict) or not all(_is_int(usage.get(k)) for k in keys):
        errors.append(f"mistral model: output.usage needs int {', '.join(keys)}")
    return errors


def chat_errors(call: dict[str, Any]) -> list[str]:
    """Reasons the Weave UI would not show `call` (a stored call dict) with a Chat tab and a
    response pane; an empty list means it would. A call with an `exception` may have no output."""
    inputs = call.get("inputs")
    if not isinstance(inputs, dict):
        return ["inputs must be an object"]
    messages = inputs.get("messages")
    if not isinstance(messages, list) or not messages:
        return ["inputs.messages must be a non-empty list"]
    errors = []
    for i, message in enumerate(messages):
        errors += message_errors(message, f"inputs.messages[{i}]")
    attributes = call.get("attributes")
    if isinstance(attributes, dict) and "otel_span" in attributes:
        errors.append("attributes.otel_span makes the UI parse inputs as a raw OTel span")
    output = call.get("output")
    if output is None:
        if call.get("exception") is None:
            errors.append("output is null on a call without exception: no response pane")
    else:
        errors += _output_errors(output)
    model = inputs.get("model")
    if isinstance(model, str) and "mistral" in model.lower():
        errors += _mistral_errors(output)
    return errors


def assert_chat_shaped(call: dict[str, Any]) -> None:
    """Fail with every reason when the Weave UI would not show `call` as a chat."""
    errors = chat_errors(call)
    if errors:
        raise AssertionError("not chat-shaped:\n  " + "\n  ".join(errors))


def recorded_chat_errors(call: dict[str, Any]) -> list[str]:
    """``chat_errors`` for what the call recorded: no complaint of a missing prompt or reply
    its instrumentation did not capture, but what was recorded must be in the chat shape."""
    inputs = call.get("inputs")
    if not (isinstance(inputs, dict) and "messages" in inputs):
        output = call.get("output")
        return [] if output is None else _output_errors(output)
    errors = chat_errors(call)
    if call.get("output") is None:
        errors = [error for error in errors if not error.startswith("output is null")]
    return errors
