"""`_chat`: every convention's messages become calls the Weave UI shows as a chat (the oracle of
`chat_oracle.py`), losing no text; OpenAI messages pass through; nothing raises."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opentelemetry.exporter.weave import _chat
from opentelemetry.exporter.weave._chat import (
    ContentEvent,
    chat_completion,
    chat_inputs,
    chat_messages,
    messages_from_events,
)

from .chat_oracle import assert_chat_shaped, chat_errors

PNG_BASE64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
USAGE = {"input_tokens": 52, "output_tokens": 17, "total_tokens": 69}

# OTel GenAI semconv (gen-ai-input-messages.json / gen-ai-output-messages.json; openai-v2 with
# `span_only`, google-genai, pydantic-ai's `gen_ai.input.messages`).
OTEL_INPUT = [
    {"role": "user", "parts": [
        {"type": "text", "content": "Weather in Paris? See the photos."},
        {"type": "blob", "modality": "image", "mime_type": "image/png", "content": PNG_BASE64},
        {"type": "uri", "modality": "image", "mime_type": "image/jpeg",
         "uri": "https://example.com/paris.jpg"},
        {"type": "file", "modality": "document", "mime_type": "application/pdf",
         "file_id": "file-Forecast123"},
    ]},
    {"role": "assistant", "finish_reason": "tool_call", "parts": [
        {"type": "reasoning", "content": "The user wants the current weather."},
        {"type": "tool_call", "id": "call_VSPygqKTWdrhaFErNvMV18Yl", "name": "get_weather",
         "arguments": {"location": "Paris"}},
    ]},
    {"role": "tool", "parts": [
        {"type": "tool_call_response", "id": "call_VSPygqKTWdrhaFErNvMV18Yl",
         "response": "rainy, 57°F"},
    ]},
    {"role": "user", "parts": [{"type": "server_tool_call", "name": "code_interpreter"}]},
]  # fmt: skip
OTEL_SYSTEM = [{"type": "text", "content": "You are a helpful bot"}]
OTEL_OUTPUT = [
    {"role": "assistant", "finish_reason": "stop",
     "parts": [{"type": "text", "content": "It is rainy in Paris, 57°F."}]},
]  # fmt: skip

# OpenInference `llm.input_messages.*` / `llm.output_messages.*`, rebuilt by the mapping.
OPENINFERENCE_INPUT = [
    {"role": "system", "content": "You are a weather bot."},
    {"role": "user", "contents": [
        {"message_content": {"type": "text", "text": "What is in this image?"}},
        {"message_content": {"type": "image",
                             "image": {"image": {"url": "https://example.com/cloud.png"}}}},
    ]},
    {"role": "assistant", "tool_calls": [
        {"tool_call": {"id": "call_oi_1", "function": {
            "name": "get_weather", "arguments": '{"city": "Paris"}'}}},
    ]},
    {"role": "tool", "content": "sunny", "tool_call_id": "call_oi_1", "name": "get_weather"},
]  # fmt: skip
OPENINFERENCE_OUTPUT = [{"role": "assistant", "content": "It is sunny in Paris."}]

# OpenLLMetry's anthropic instrumentation: `gen_ai.prompt.N.*` with content as JSON text of
# Anthropic blocks, `gen_ai.completion.N.*` with flattened tool calls.
OPENLLMETRY_INPUT = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": '[{"type": "text", "text": "What\'s the weather in SF?"}]'},
]
OPENLLMETRY_OUTPUT = [
    {"role": "assistant", "content": "Let me check.", "finish_reason": "tool_use",
     "tool_calls": [{"id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather",
                     "arguments": '{"location": "San Francisco"}'}]},
]  # fmt: skip

# Anthropic Messages API request content blocks and a response Message.
ANTHROPIC_INPUT = [
    {"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg",
                                     "data": "/9j/4AAQSkZJRgABAQ"}},
        {"type": "text", "text": "Describe this image."},
    ]},
    {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "Let me look at the sky first.",
         "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pk"},
        {"type": "tool_use", "id": "toolu_01", "name": "get_weather",
         "input": {"location": "San Francisco, CA"}},
    ]},
    {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_01",
         "content": [{"type": "text", "text": "15 degrees"}], "is_error": False},
        {"type": "text", "text": "And tomorrow?"},
    ]},
]  # fmt: skip
ANTHROPIC_OUTPUT = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [{"type": "text", "text": "Tomorrow it will be 17 degrees."}],
    "stop_reason": "end_turn", "stop_sequence": None,
    "usage": {"input_tokens": 2095, "output_tokens": 503},
}  # fmt: skip

# Vercel AI SDK `ai.prompt.messages`; the response as `ai.response.text` + `ai.response.toolCalls`.
VERCEL_INPUT = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": [
        {"type": "text", "text": "What is the weather in San Francisco?"},
        {"type": "image", "image": "https://example.com/sf.png", "mimeType": "image/png"},
    ]},
    {"role": "assistant", "content": [
        {"type": "tool-call", "toolCallId": "call_abc", "toolName": "weather",
         "args": {"location": "San Francisco"}},
    ]},
    {"role": "tool", "content": [
        {"type": "tool-result", "toolCallId": "call_abc", "toolName": "weather",
         "result": {"location": "San Francisco", "temperature": 72}},
    ]},
]  # fmt: skip
VERCEL_OUTPUT = {
    "role": "assistant", "content": "It is 72°F in San Francisco.",
    "tool_calls": [{"toolCallType": "function", "toolCallId": "call_def", "toolName": "forecast",
                    "args": '{"location":"San Francisco"}'}],
}  # fmt: skip

# pydantic-ai `pydantic_ai.all_messages` (its own OTel-parts flavour).
PYDANTIC_AI_INPUT = [
    {"role": "system", "parts": [{"type": "text", "content": "Be concise."}]},
    {"role": "user", "parts": [
        {"type": "text", "content": "What is the weather in London?"},
        {"type": "image-url", "url": "https://example.com/london.jpg"},
        {"type": "binary", "media_type": "image/png", "content": PNG_BASE64},
        {"type": "audio-url", "url": "https://example.com/question.mp3"},
    ]},
    {"role": "assistant", "finish_reason": "tool_call", "parts": [
        {"type": "thinking", "content": "I need the weather tool."},
        {"type": "tool_call", "id": "pyd_ai_tool_call_id__get_weather", "name": "get_weather",
         "arguments": {"city": "London"}},
    ]},
    {"role": "user", "parts": [
        {"type": "tool_call_response", "id": "pyd_ai_tool_call_id__get_weather",
         "name": "get_weather", "result": {"forecast": "sunny", "celsius": 21}},
    ]},
]  # fmt: skip
PYDANTIC_AI_OUTPUT = [
    {"role": "assistant", "finish_reason": "stop",
     "parts": [{"type": "text", "content": "It is sunny in London, 21°C."}]},
]  # fmt: skip


def _lc(cls: str, **kwargs: Any) -> dict[str, Any]:
    return {"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", cls],
            "kwargs": kwargs}  # fmt: skip


# LangChain (OpenInference `input.value`): serialised messages in a batch, and plain dicts.
LANGCHAIN_INPUT = {"messages": [[
    _lc("SystemMessage", content="You add numbers.", type="system"),
    _lc("HumanMessage", content="What is 2+2?", type="human"),
    _lc("AIMessage", content="", type="ai", id="run-7f3a",
        tool_calls=[{"name": "add", "args": {"a": 2, "b": 2}, "id": "call_add",
                     "type": "tool_call"}],
        response_metadata={"finish_reason": "tool_calls"}),
    _lc("ToolMessage", content="4", type="tool", tool_call_id="call_add", name="add"),
    {"type": "human", "content": "Thanks!"},
]]}  # fmt: skip
LANGCHAIN_OUTPUT = _lc("AIMessage", content="2 + 2 = 4.", type="ai", id="run-8b1c")

# smolagents `ChatMessage` dicts (roles `tool-call` / `tool-response`, text-part content).
SMOLAGENTS_INPUT = [
    {"role": "system", "content": [{"type": "text", "text": "You are an expert assistant."}]},
    {"role": "user", "content": [{"type": "text", "text": "New task:\nWhat is 2+2?"}]},
    {"role": "tool-call", "content": [{"type": "text", "text": "Calling tools: final_answer"}],
     "tool_calls": [{"id": "call_1", "type": "function",
                     "function": {"name": "final_answer", "arguments": {"answer": 4}}}]},
    {"role": "tool-response", "content": [
        {"type": "text", "text": "Call id: call_1\nObservation:\n4"}]},
]  # fmt: skip
SMOLAGENTS_OUTPUT = {"role": "assistant", "content": "The answer is 4."}

# OpenAI Responses items (OpenInference `input.value` of the Agents SDK) and a Response object.
RESPONSES_INPUT = [
    {"role": "user", "content": "Weather in Oslo?"},
    {"type": "function_call", "call_id": "call_r1", "name": "get_weather",
     "arguments": '{"city":"Oslo"}', "id": "fc_1", "status": "completed"},
    {"type": "function_call_output", "call_id": "call_r1", "output": "snow"},
]  # fmt: skip
RESPONSES_OUTPUT = {
    "id": "resp_1", "object": "response", "model": "gpt-4o-mini-2024-07-18",
    "output": [{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": "It is snowing.", "annotations": []}]}],
}  # fmt: skip

OPENAI_INPUT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": [{"type": "text", "text": "hi"},
                                 {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"q": 1}'}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "ok"},
]  # fmt: skip
OPENAI_OUTPUT = {
    "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-mini", "created": 1,
    "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                 "message": {"role": "assistant", "content": "Hello!", "refusal": None}}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
}  # fmt: skip

CONVENTIONS = {
    "otel_parts": (OTEL_INPUT, OTEL_OUTPUT),
    "openinference": (OPENINFERENCE_INPUT, OPENINFERENCE_OUTPUT),
    "openllmetry": (OPENLLMETRY_INPUT, OPENLLMETRY_OUTPUT),
    "anthropic": (ANTHROPIC_INPUT, ANTHROPIC_OUTPUT),
    "vercel": (VERCEL_INPUT, VERCEL_OUTPUT),
    "pydantic_ai": (PYDANTIC_AI_INPUT, PYDANTIC_AI_OUTPUT),
    "langchain": (LANGCHAIN_INPUT, LANGCHAIN_OUTPUT),
    "smolagents": (SMOLAGENTS_INPUT, SMOLAGENTS_OUTPUT),
    "openai_responses": (RESPONSES_INPUT, RESPONSES_OUTPUT),
    "openai": (OPENAI_INPUT, OPENAI_OUTPUT),
}

# Type tags, roles and LangChain's class path are structure, not content: they may change.
_STRUCTURE_KEYS = {"type", "role", "lc", "toolCallType", "object"}


def _texts(value: Any, *, skip_structure: bool) -> list[str]:
    """Every leaf string and number of `value`, JSON texts opened up as well."""
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except ValueError:
            return [value]
        nested = _texts(decoded, skip_structure=skip_structure)
        return [value, *nested] if not skip_structure else nested or [value]
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, (int, float)):
        return [str(value)]
    if isinstance(value, dict):
        return [
            text
            for key, child in value.items()
            if not (
                skip_structure
                and (key in _STRUCTURE_KEYS or (key == "id" and isinstance(child, list)))
            )
            for text in _texts(child, skip_structure=skip_structure)
        ]
    if isinstance(value, list):
        return [text for child in value for text in _texts(child, skip_structure=skip_structure)]
    return []


def assert_nothing_lost(source: Any, result: Any) -> None:
    kept = _texts(result, skip_structure=False)
    missing = [
        text for text in _texts(source, skip_structure=True) if not any(text in k for k in kept)
    ]
    assert not missing, f"lost: {missing}"


def _call(
    inputs: Any, output: Any, *, span_fields: bool = True, **inputs_kwargs: Any
) -> dict[str, Any]:
    """The call `inputs` and `output` make; with `span_fields`, as an OTel span's response
    attributes (model, id, usage) come with them."""
    messages = chat_messages(inputs)
    assert messages is not None
    if span_fields:
        fields: dict[str, Any] = {"model": "gpt-4o-mini", "response_id": "resp-1", "usage": USAGE}
    else:
        fields = {"model": None, "response_id": None, "usage": None}
    completion = chat_completion(output, finish_reasons=None, **fields)
    assert completion is not None
    return {"inputs": chat_inputs(messages, **inputs_kwargs), "output": completion}


@pytest.mark.parametrize("name", CONVENTIONS)
def test_every_convention_becomes_a_chat_losing_no_text(name: str) -> None:
    source_inputs, source_output = CONVENTIONS[name]
    call = _call(source_inputs, source_output, span_fields=False)
    assert_chat_shaped(call)
    assert_nothing_lost(source_inputs, call["inputs"]["messages"])
    assert_nothing_lost(source_output, call["output"])


@pytest.mark.parametrize("name", CONVENTIONS)
def test_conversion_is_idempotent(name: str) -> None:
    source_inputs, source_output = CONVENTIONS[name]
    call = _call(source_inputs, source_output)
    assert chat_messages(call["inputs"]["messages"]) == call["inputs"]["messages"]
    again = chat_completion(
        call["output"], model="gpt-4o-mini", response_id="resp-1", finish_reasons=None, usage=USAGE
    )
    assert again == call["output"]


def test_openai_messages_pass_through_unchanged() -> None:
    assert chat_messages(OPENAI_INPUT) == OPENAI_INPUT
    assert chat_messages(json.dumps(OPENAI_INPUT)) == OPENAI_INPUT
    completion = chat_completion(
        OPENAI_OUTPUT, model=None, response_id=None, finish_reasons=None, usage=None
    )
    assert completion == OPENAI_OUTPUT


def test_otel_parts() -> None:
    call = _call(OTEL_INPUT, OTEL_OUTPUT, system_instructions=OTEL_SYSTEM, model="gpt-4o")
    system, user, assistant, tool, other = call["inputs"]["messages"]
    assert system == {"role": "system", "content": "You are a helpful bot"}
    assert call["inputs"]["model"] == "gpt-4o"
    text, blob, uri, file = user["content"]
    assert text == {"type": "text", "text": "Weather in Paris? See the photos."}
    assert blob["image_url"] == {"url": f"data:image/png;base64,{PNG_BASE64}"}
    assert uri["image_url"] == {"url": "https://example.com/paris.jpg"}
    assert uri["mime_type"] == "image/jpeg"  # fields the part had stay on it
    assert json.loads(file["text"])["file_id"] == "file-Forecast123"
    assert assistant["content"] == "<think>The user wants the current weather.</think>"
    assert assistant["finish_reason"] == "tool_call"
    assert assistant["tool_calls"] == [
        {
            "id": "call_VSPygqKTWdrhaFErNvMV18Yl",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'},
        }
    ]
    assert tool == {
        "role": "tool",
        "tool_call_id": "call_VSPygqKTWdrhaFErNvMV18Yl",
        "content": "rainy, 57°F",
    }
    assert json.loads(other["content"]) == {"type": "server_tool_call", "name": "code_interpreter"}
    (choice,) = call["output"]["choices"]
    assert choice == {
        "index": 0,
        "message": {"role": "assistant", "content": "It is rainy in Paris, 57°F."},
        "finish_reason": "stop",
    }
    assert call["output"]["usage"] == {
        "prompt_tokens": 52,
        "completion_tokens": 17,
        "total_tokens": 69,
    }
    assert call["output"]["id"] == "resp-1"
    assert call["output"]["object"] == "chat.completion"


def test_openinference() -> None:
    system, user, assistant, tool = chat_messages(OPENINFERENCE_INPUT) or []
    assert system == OPENINFERENCE_INPUT[0]
    assert user["content"] == [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/cloud.png"}},
    ]
    assert assistant["tool_calls"][0]["function"] == {
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
    }
    assert tool == OPENINFERENCE_INPUT[3]


def test_openllmetry_anthropic_prompt_blocks_and_flattened_tool_calls() -> None:
    _, user = chat_messages(OPENLLMETRY_INPUT) or []
    assert user == {"role": "user", "content": "What's the weather in SF?"}
    completion = chat_completion(
        OPENLLMETRY_OUTPUT, model="claude-3-5", response_id=None, finish_reasons=None, usage=None
    )
    assert completion is not None
    (choice,) = completion["choices"]
    assert choice["finish_reason"] == "tool_use"
    assert choice["message"]["tool_calls"] == [
        {
            "id": "toolu_01A09q90qw90lq917835lq9",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"location": "San Francisco"}'},
        }
    ]


def test_anthropic_blocks() -> None:
    user, assistant, tool, follow_up = chat_messages(ANTHROPIC_INPUT) or []
    assert user["content"][0]["image_url"]["url"] == "data:image/jpeg;base64,/9j/4AAQSkZJRgABAQ"
    assert assistant["content"] == "<think>Let me look at the sky first.</think>"
    assert assistant["reasoning_details"] == [
        {"signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pk"}
    ]
    assert (
        assistant["tool_calls"][0]["function"]["arguments"] == '{"location": "San Francisco, CA"}'
    )
    assert tool == {
        "role": "tool",
        "tool_call_id": "toolu_01",
        "content": "15 degrees",
        "is_error": False,
    }
    assert follow_up == {"role": "user", "content": "And tomorrow?"}
    completion = chat_completion(
        ANTHROPIC_OUTPUT, model=None, response_id=None, finish_reasons=None, usage=None
    )
    assert completion is not None
    assert completion["id"] == "msg_01XFDUDYJgAACzvnptvVoYEL"
    assert completion["model"] == "claude-sonnet-4-5-20250929"
    assert completion["choices"][0]["finish_reason"] == "end_turn"
    assert completion["usage"] == {
        "prompt_tokens": 2095,
        "completion_tokens": 503,
        "total_tokens": 2598,
    }


def test_vercel_parts_and_response_tool_calls() -> None:
    _, user, assistant, tool = chat_messages(VERCEL_INPUT) or []
    assert user["content"][1]["image_url"] == {"url": "https://example.com/sf.png"}
    assert assistant["tool_calls"][0]["id"] == "call_abc"
    assert assistant["tool_calls"][0]["function"]["name"] == "weather"
    assert tool["tool_call_id"] == "call_abc"
    assert json.loads(tool["content"]) == {"location": "San Francisco", "temperature": 72}
    assert tool["toolName"] == "weather"
    completion = chat_completion(
        VERCEL_OUTPUT, model="gpt-4o", response_id=None, finish_reasons=["tool-calls"], usage=None
    )
    assert completion is not None
    (choice,) = completion["choices"]
    assert choice["finish_reason"] == "tool-calls"
    assert choice["message"]["tool_calls"][0]["function"] == {
        "name": "forecast",
        "arguments": '{"location":"San Francisco"}',
    }


def test_pydantic_ai_tool_response_in_a_user_message_becomes_a_tool_message() -> None:
    _, user, assistant, tool = chat_messages(PYDANTIC_AI_INPUT) or []
    assert [part.get("image_url") for part in user["content"][1:3]] == [
        {"url": "https://example.com/london.jpg"},
        {"url": f"data:image/png;base64,{PNG_BASE64}"},
    ]
    assert json.loads(user["content"][3]["text"])["url"] == "https://example.com/question.mp3"
    assert assistant["content"] == "<think>I need the weather tool.</think>"
    assert tool["role"] == "tool"
    assert tool["tool_call_id"] == "pyd_ai_tool_call_id__get_weather"
    assert json.loads(tool["content"]) == {"forecast": "sunny", "celsius": 21}
    assert tool["name"] == "get_weather"


def test_langchain_serialised_and_plain_messages() -> None:
    messages = chat_messages(LANGCHAIN_INPUT) or []
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "user"]
    assistant = messages[2]
    assert assistant["tool_calls"] == [
        {
            "id": "call_add",
            "type": "function",
            "function": {"name": "add", "arguments": '{"a": 2, "b": 2}'},
        }
    ]
    assert assistant["response_metadata"] == {"finish_reason": "tool_calls"}
    assert messages[3]["tool_call_id"] == "call_add"
    completion = chat_completion(
        LANGCHAIN_OUTPUT, model=None, response_id=None, finish_reasons=["stop"], usage=None
    )
    assert completion is not None
    assert completion["choices"][0]["message"]["content"] == "2 + 2 = 4."


def test_smolagents_roles_stay_and_arguments_become_json_text() -> None:
    messages = chat_messages(SMOLAGENTS_INPUT) or []
    assert [m["role"] for m in messages] == ["system", "user", "tool-call", "tool-response"]
    assert messages[:2] == SMOLAGENTS_INPUT[:2]  # text parts are OpenAI already
    assert messages[2]["tool_calls"][0]["function"]["arguments"] == '{"answer": 4}'


def test_openai_responses_items_and_result() -> None:
    _, call, result = chat_messages(RESPONSES_INPUT) or []
    assert call["tool_calls"][0]["id"] == "call_r1"
    assert result == {"role": "tool", "tool_call_id": "call_r1", "content": "snow"}
    completion = chat_completion(
        RESPONSES_OUTPUT, model=None, response_id=None, finish_reasons=["stop"], usage=None
    )
    assert completion is not None
    assert completion["object"] == "chat.completion"
    assert completion["choices"][0]["message"]["content"] == "It is snowing."


def test_tool_arguments_that_are_not_json_are_kept_as_json_text() -> None:
    (message,) = chat_messages(
        [{"role": "assistant", "tool_calls": [{"id": "1", "name": "f", "arguments": "{broken"}]}]
    ) or [{}]
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == "{broken"


def test_json_text_content_that_is_not_blocks_stays_as_written() -> None:
    raw = '{"answer":  42}'
    assert chat_messages([{"role": "user", "parts": [{"type": "text", "content": raw}]}]) == [
        {"role": "user", "content": raw}
    ]
    assert chat_messages([{"role": "user", "content": "[1, 2]", "x": 1}]) == [
        {"role": "user", "content": "[1, 2]", "x": 1}
    ]


def test_chat_inputs_puts_system_first_once_and_parameters_beside() -> None:
    user = {"role": "user", "content": "hi"}
    inputs = chat_inputs(
        [user], system_instructions="Be kind.", model="m", parameters={"temperature": 0.2}
    )
    assert inputs == {
        "messages": [{"role": "system", "content": "Be kind."}, user],
        "model": "m",
        "temperature": 0.2,
    }
    system = {"role": "system", "content": "Already here."}
    assert chat_inputs([system, user], system_instructions="Be kind.") == {
        "messages": [system, user]
    }
    assert chat_inputs([user], parameters={"messages": "x", "model": "y"}) == {"messages": [user]}


@pytest.mark.parametrize(
    "value", ["hello", 42, None, [], {"foo": 1}, [{"foo": 1}], [{"role": 3}], ["text"], [[]]]
)
def test_what_is_not_a_message_list_is_not_converted(value: Any) -> None:
    assert chat_messages(value) is None


def test_a_plain_string_output_is_one_choice() -> None:
    completion = chat_completion(
        "Paris.", model="gpt-4o", response_id="r", finish_reasons=["stop"], usage=None, created=7
    )
    assert completion == {
        "id": "r",
        "object": "chat.completion",
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Paris."},
                "finish_reason": "stop",
            }
        ],
        "created": 7,
    }
    assert (
        chat_completion(3.5, model=None, response_id=None, finish_reasons=None, usage=None) is None
    )


def test_several_output_messages_are_several_choices() -> None:
    outputs = [{"role": "assistant", "content": "A"}, {"role": "assistant", "content": "B"}]
    completion = chat_completion(
        outputs, model="m", response_id=None, finish_reasons=["stop", "length"], usage=None
    )
    assert completion is not None
    assert [
        (c["index"], c["message"]["content"], c["finish_reason"]) for c in completion["choices"]
    ] == [
        (0, "A", "stop"),
        (1, "B", "length"),
    ]


# Legacy openai-v2 (util-genai 0.4b0, content on): one log record per message, content in the body.
LEGACY_LOG_RECORDS = [
    ContentEvent(
        "gen_ai.system.message", {"gen_ai.system": "openai"}, {"content": "You are helpful."}
    ),
    ContentEvent(
        "gen_ai.user.message", {"gen_ai.system": "openai"}, {"content": "Weather in Paris?"}
    ),
    ContentEvent(
        "gen_ai.assistant.message",
        {"gen_ai.system": "openai"},
        {
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ]
        },
    ),
    ContentEvent(
        "gen_ai.tool.message", {"gen_ai.system": "openai"}, {"content": "rainy", "id": "call_1"}
    ),
    ContentEvent(
        "gen_ai.choice",
        {"gen_ai.system": "openai"},
        {
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": "It is rainy."},
        },
    ),
]

# strands-agents span events: content as JSON text of Bedrock Converse blocks.
STRANDS_EVENTS = [
    ContentEvent("gen_ai.system.message", {"content": '[{"text": "You tell the time."}]'}),
    ContentEvent("gen_ai.user.message", {"content": '[{"text": "What time is it?"}]'}),
    ContentEvent(
        "gen_ai.assistant.message",
        {
            "content": json.dumps(
                [
                    {
                        "reasoningContent": {
                            "reasoningText": {"text": "Use the clock.", "signature": "sig1"}
                        }
                    },
                    {"text": "Let me check."},
                    {
                        "toolUse": {
                            "toolUseId": "tooluse_1",
                            "name": "current_time",
                            "input": {"timezone": "UTC"},
                        }
                    },
                ]
            )
        },
    ),
    ContentEvent(
        "gen_ai.tool.message",
        {
            "role": "tool",
            "id": "tooluse_1",
            "content": json.dumps(
                [
                    {
                        "toolResult": {
                            "toolUseId": "tooluse_1",
                            "status": "success",
                            "content": [{"text": "12:00"}],
                        }
                    }
                ]
            ),
        },
    ),
    ContentEvent(
        "gen_ai.choice", {"message": '[{"text": "It is 12:00 UTC."}]', "finish_reason": "end_turn"}
    ),
]

# openai-v2 / google-genai `event_only`, strands with gen_ai_latest_experimental: one event.
DETAILS_EVENT = ContentEvent(
    "gen_ai.client.inference.operation.details",
    {
        "gen_ai.system_instructions": json.dumps(OTEL_SYSTEM),
        "gen_ai.input.messages": json.dumps(OTEL_INPUT[:3]),
        "gen_ai.output.messages": OTEL_OUTPUT,
        "gen_ai.operation.name": "chat",
    },
)


def _events_call(events: list[ContentEvent]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    inputs, outputs = messages_from_events(events)
    completion = chat_completion(
        outputs, model="m", response_id=None, finish_reasons=None, usage=None
    )
    return {"inputs": chat_inputs(inputs), "output": completion}, inputs


def test_legacy_log_records() -> None:
    call, inputs = _events_call(LEGACY_LOG_RECORDS)
    assert_chat_shaped(call)
    assert [m["role"] for m in inputs] == ["system", "user", "assistant", "tool"]
    assert inputs[2]["tool_calls"][0]["id"] == "call_1"
    assert inputs[3]["tool_call_id"] == "call_1"
    assert call["output"]["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "It is rainy."},
            "finish_reason": "stop",
        }
    ]
    assert_nothing_lost([e.body for e in LEGACY_LOG_RECORDS], [call["inputs"], call["output"]])


def test_strands_span_events_with_bedrock_blocks() -> None:
    call, inputs = _events_call(STRANDS_EVENTS)
    assert_chat_shaped(call)
    system, _, assistant, tool = inputs
    assert system == {"role": "system", "content": "You tell the time."}
    assert assistant["content"] == "<think>Use the clock.</think>\nLet me check."
    assert assistant["reasoning_details"] == [{"signature": "sig1"}]
    assert assistant["tool_calls"][0]["function"]["arguments"] == '{"timezone": "UTC"}'
    assert tool["role"] == "tool"
    assert tool["tool_call_id"] == "tooluse_1"
    assert tool["content"] == "12:00"
    assert call["output"]["choices"][0]["finish_reason"] == "end_turn"
    assert_nothing_lost(
        [dict(e.attributes) for e in STRANDS_EVENTS], [call["inputs"], call["output"]]
    )


def test_operation_details_event() -> None:
    call, inputs = _events_call([DETAILS_EVENT])
    assert_chat_shaped(call)
    assert inputs[0] == {"role": "system", "content": "You are a helpful bot"}
    assert inputs[1:] == chat_messages(OTEL_INPUT[:3])
    assert call["output"]["choices"][0]["finish_reason"] == "stop"


def test_oracle_refuses_what_the_ui_refuses() -> None:
    good = {"role": "user", "content": "hi"}
    completion = {"choices": [{"index": 0, "message": good, "finish_reason": None}]}
    assert chat_errors({"inputs": {"messages": [good]}, "output": completion}) == []
    bad_calls: list[dict[str, Any]] = [
        {"inputs": {"messages": []}, "output": completion},
        {"inputs": {"messages": OTEL_INPUT}, "output": completion},
        {"inputs": {"messages": [good]}, "output": OTEL_OUTPUT},
        {"inputs": {"messages": [{"role": "assistant", "tool_calls": [
            {"id": "1", "type": "function", "function": {"name": "f", "arguments": {}}}]}]},
         "output": completion},
        {"inputs": {"messages": [{"role": "tool", "content": "x"}]}, "output": completion},
        {"inputs": {"messages": [good]}, "output": None},
        {"inputs": {"messages": [good]}, "output": {"role": "assistant", "content": ""}},
        {"inputs": {"messages": [good], "model": "mistral-large"}, "output": completion},
        {"inputs": {"messages": [good]}, "output": completion, "attributes": {"otel_span": {}}},
    ]  # fmt: skip
    for call in bad_calls:
        assert chat_errors(call), call
    assert chat_errors({"inputs": {"messages": [good]}, "output": None, "exception": "{}"}) == []


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
    | st.sampled_from(["text", "tool_call", "image", "blob", "role", "user", "thinking", "[", "{"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(
        st.sampled_from(["role", "type", "content", "parts", "text", "tool_calls", "id", "name",
                         "arguments", "image", "source", "url", "message", "choices", "lc",
                         "kwargs", "toolUse", "toolResult", "reasoningContent", "mime_type",
                         "output", "finish_reason", "index"]),
        children, max_size=5),
    max_leaves=25,
)  # fmt: skip


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(value=_JSON, name=st.sampled_from(["gen_ai.user.message", "gen_ai.choice", "x"]))
def test_nothing_raises_and_what_converts_is_chat_shaped(value: Any, name: str) -> None:
    messages = chat_messages(value)
    completion = chat_completion(
        value, model=None, response_id=None, finish_reasons=["stop"], usage=None
    )
    if messages is not None and completion is not None and completion["choices"]:
        call = {"inputs": chat_inputs(messages), "output": completion}
        assert_chat_shaped(call)
        assert chat_messages(messages) == messages
    events = [ContentEvent(name, value if isinstance(value, dict) else {"content": value}, value)]
    inputs, outputs = messages_from_events(
        [
            *events,
            ContentEvent(
                "gen_ai.client.inference.operation.details", {"gen_ai.input.messages": value}
            ),
        ]
    )
    for message in [*inputs, *outputs]:
        assert chat_errors({"inputs": {"messages": [message]}, "exception": "x"}) == []
    chat_inputs(inputs, system_instructions=value)


def test_a_mistral_model_needs_created_and_usage_which_the_span_provides() -> None:
    messages = chat_messages([{"role": "user", "content": "Bonjour"}]) or []
    completion = chat_completion(
        "Salut !", model="mistral-large-2411", response_id="r1", finish_reasons=["stop"],
        usage=USAGE, created=1764630000,
    )  # fmt: skip
    call = {"inputs": chat_inputs(messages, model="mistral-large-2411"), "output": completion}
    assert_chat_shaped(call)
    assert chat_errors({**call, "output": {**(completion or {}), "created": None}})


_ROLE_NAMES = st.sampled_from(["user", "assistant", "system", "tool", "function", "human", "ai"])
_TEXT_PART = st.fixed_dictionaries({"type": st.just("text"), "content": st.text(max_size=30)})
_NEAR_TEXT_PART = st.one_of(
    _TEXT_PART,
    st.fixed_dictionaries({"type": st.just("text"), "content": st.integers()}),
    st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=5)}),
    st.fixed_dictionaries(
        {"type": st.just("text"), "content": st.text(max_size=5), "x": st.just(1)}
    ),
    st.fixed_dictionaries({"type": st.just("reasoning"), "content": st.text(max_size=5)}),
)


@settings(max_examples=300, deadline=None)
@given(
    role=_ROLE_NAMES | st.text(max_size=8),
    parts=st.lists(_NEAR_TEXT_PART, max_size=4),
    finish_reason=st.none() | st.sampled_from(["stop", "length"]),
    extra=st.booleans(),
)
def test_the_text_only_fast_path_converts_exactly_as_the_full_one(
    role: str, parts: list[dict[str, Any]], finish_reason: str | None, extra: bool
) -> None:
    message: dict[str, Any] = {"role": role, "parts": parts}
    if finish_reason is not None:
        message["finish_reason"] = finish_reason
    if extra:
        message["name"] = "someone"
    fast = _chat._text_only(message)
    if fast is not None:
        assert fast == _chat._converted_in_full(message)
    assert _chat._converted(message) == _chat._converted_in_full(message)


def test_the_text_only_fast_path_takes_the_commonest_message() -> None:
    message = {"role": "assistant", "parts": [{"type": "text", "content": "Hi"}]}
    assert _chat._text_only({**message, "finish_reason": "stop"}) == [
        {"role": "assistant", "finish_reason": "stop", "content": "Hi"}
    ]
    assert _chat._text_only({**message, "role": "tool"}) is None  # needs its tool_call_id
