"""Field-by-field mapping of each convention family, on spans from a real TracerProvider.

The README's "Conventions" table states what these tests assert.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

from opentelemetry.exporter.weave._conventions import KEYS
from opentelemetry.exporter.weave._selection import is_genai_span

from .chat_oracle import chat_errors, recorded_chat_errors
from .helpers import Record, make_tracer
from .test_mapping import one_span, wire

USER = {"role": "user", "content": "What is the capital of France?"}
ASSISTANT = {"role": "assistant", "content": "Paris."}


def otel(start: dict[str, Any]) -> dict[str, Any]:
    context: dict[str, Any] = start["attributes"]["otel"]
    return context


def test_otel_genai_current(record_spans: Record) -> None:
    start, end = wire(
        one_span(
            record_spans,
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.response.model": "gpt-4o-2024-08-06",
                "gen_ai.input.messages": json.dumps([USER]),
                "gen_ai.output.messages": json.dumps([ASSISTANT]),
                "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "Be brief"}]),
                "gen_ai.conversation.id": "conv-42",
                "gen_ai.usage.input_tokens": 20,
                "gen_ai.usage.output_tokens": 3,
                "gen_ai.usage.cache_read.input_tokens": 8,
                "gen_ai.usage.cache_write.input_tokens": 2,
                "gen_ai.usage.reasoning.output_tokens": 1,
            },
            name="chat gpt-4o",
        )
    )
    assert start["op_name"] == "chat gpt-4o"
    assert start["inputs"] == {
        "messages": [{"role": "system", "content": "Be brief"}, USER],
        "model": "gpt-4o",
    }
    assert end["output"]["model"] == "gpt-4o-2024-08-06"
    assert [choice["message"] for choice in end["output"]["choices"]] == [ASSISTANT]
    assert chat_errors({**start, **end}) == []
    assert start["attributes"]["weave"] == {"kind": "llm"}
    assert start["thread_id"] == "conv-42"
    assert end["summary"]["usage"] == {
        "gpt-4o-2024-08-06": {
            "input_tokens": 20,
            "output_tokens": 3,
            "total_tokens": 23,
            "requests": 1,
            "cache_read_input_tokens": 8,
            "cache_creation_input_tokens": 2,
            "reasoning_tokens": 1,
        }
    }
    assert otel(start)["llm_provider"] == "openai"
    assert otel(start)["llm_span_kind"] == "chat"
    for moved in ("gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.conversation.id"):
        assert moved not in start["attributes"]
    assert start["attributes"]["gen_ai.request.model"] == "gpt-4o"


def test_otel_genai_deprecated_names(record_spans: Record) -> None:
    start, end = wire(
        one_span(
            record_spans,
            {
                "gen_ai.system": "anthropic",
                "gen_ai.request.model": "claude-3-5-sonnet",
                "gen_ai.usage.prompt_tokens": 30,
                "gen_ai.usage.completion_tokens": 10,
                "gen_ai.usage.cache_creation_input_tokens": 5,
            },
        )
    )
    assert otel(start)["llm_provider"] == "anthropic"
    assert end["summary"]["usage"]["claude-3-5-sonnet"] == {
        "input_tokens": 30,
        "output_tokens": 10,
        "total_tokens": 40,
        "requests": 1,
        "cache_creation_input_tokens": 5,
    }


def test_otel_genai_structured_messages(record_spans: Record) -> None:
    start, end = wire(
        one_span(
            record_spans,
            {
                "gen_ai.input.messages": (json.dumps(USER), json.dumps(USER)),
                "gen_ai.output.messages": (json.dumps(ASSISTANT),),
            },
        )
    )
    assert start["inputs"] == {"messages": [USER, USER]}
    assert end["output"] == [ASSISTANT]


def test_otel_genai_tool_call(record_spans: Record) -> None:
    start, end = wire(
        one_span(
            record_spans,
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "get_weather",
                "gen_ai.tool.call.id": "call_1",
                "gen_ai.tool.call.arguments": json.dumps({"city": "Paris"}),
                "gen_ai.tool.call.result": json.dumps({"celsius": 21}),
            },
            name="execute_tool get_weather",
        )
    )
    assert start["display_name"] == "get_weather"
    assert start["inputs"] == {"city": "Paris"}
    assert end["output"] == {"celsius": 21}
    assert otel(start)["llm_span_kind"] == "execute_tool"
    assert "summary" in end
    assert "usage" not in end["summary"]


def test_otel_genai_agent(record_spans: Record) -> None:
    start, _ = wire(
        one_span(
            record_spans,
            {"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "Travel planner"},
            name="invoke_agent Travel planner",
        )
    )
    assert start["display_name"] == "Travel planner"
    assert otel(start)["llm_span_kind"] == "invoke_agent"


def test_openllmetry_flattened_messages(record_spans: Record) -> None:
    start, end = wire(
        one_span(
            record_spans,
            {
                "gen_ai.system": "openai",
                "llm.request.type": "chat",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "gen_ai.prompt.0.role": "system",
                "gen_ai.prompt.0.content": "Be brief",
                "gen_ai.prompt.1.role": "user",
                "gen_ai.prompt.1.content": USER["content"],
                "gen_ai.completion.0.role": "assistant",
                "gen_ai.completion.0.content": "Paris.",
                "gen_ai.completion.0.finish_reason": "stop",
                "gen_ai.usage.prompt_tokens": 13,
                "gen_ai.usage.completion_tokens": 7,
                "llm.usage.total_tokens": 20,
            },
            name="openai.chat",
        )
    )
    assert start["inputs"] == {
        "messages": [{"role": "system", "content": "Be brief"}, USER],
        "model": "gpt-4o-mini",
    }
    assert end["output"]["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}
    ]
    assert chat_errors({**start, **end}) == []
    assert end["summary"]["usage"] == {
        "gpt-4o-mini-2024-07-18": {
            "input_tokens": 13,
            "output_tokens": 7,
            "total_tokens": 20,
            "requests": 1,
        }
    }
    assert not [key for key in start["attributes"] if key.startswith("gen_ai.prompt.")]
    assert otel(start)["llm_provider"] == "openai"


def test_openllmetry_workflow_entity(record_spans: Record) -> None:
    start, end = wire(
        one_span(
            record_spans,
            {
                "traceloop.span.kind": "workflow",
                "traceloop.entity.name": "answer_question",
                "traceloop.entity.input": json.dumps({"args": ["France"], "kwargs": {}}),
                "traceloop.entity.output": json.dumps("Paris"),
            },
            name="answer_question.workflow",
        )
    )
    assert start["display_name"] == "answer_question"
    assert start["inputs"] == {"args": ["France"], "kwargs": {}}
    assert end["output"] == '"Paris"'  # a JSON string stays the text it was sent as
    assert otel(start)["llm_span_kind"] == "workflow"


def test_openinference_llm_span(record_spans: Record) -> None:
    request = {"messages": [USER], "model": "gpt-4o-mini"}
    start, end = wire(
        one_span(
            record_spans,
            {
                "openinference.span.kind": "LLM",
                "input.value": json.dumps(request),
                "input.mime_type": "application/json",
                "output.value": '{"looks": "like json"}',
                "output.mime_type": "text/plain",
                "llm.model_name": "gpt-4o-mini-2024-07-18",
                "llm.provider": "openai",
                "llm.input_messages.0.message.role": "user",
                "llm.input_messages.0.message.content": USER["content"],
                "llm.token_count.prompt": 13,
                "llm.token_count.completion": 7,
                "llm.token_count.total": 20,
                "session.id": "session-7",
            },
            name="ChatCompletion",
        )
    )
    # On a model call, the message list wins over `input.value`, which stays an attribute.
    assert start["inputs"] == {"messages": [USER], "model": "gpt-4o-mini-2024-07-18"}
    assert json.loads(start["attributes"]["input.value"]) == request
    # text/plain is kept as text, the reply's content.
    assert end["output"]["choices"][0]["message"]["content"] == '{"looks": "like json"}'
    assert chat_errors({**start, **end}) == []
    assert start["thread_id"] == "session-7"
    assert end["summary"]["usage"]["gpt-4o-mini-2024-07-18"]["total_tokens"] == 20
    assert otel(start)["llm_span_kind"] == "LLM"
    assert otel(start)["llm_provider"] == "openai"


def test_openinference_flattened_messages(record_spans: Record) -> None:
    start, end = wire(
        one_span(
            record_spans,
            {
                "openinference.span.kind": "LLM",
                "llm.input_messages.0.message.role": "system",
                "llm.input_messages.0.message.content": "Be brief",
                "llm.input_messages.1.message.role": "user",
                "llm.input_messages.1.message.content": USER["content"],
                "llm.output_messages.0.message.role": "assistant",
                "llm.output_messages.0.message.content": "Paris.",
                "llm.output_messages.0.message.tool_calls.0.tool_call.function.name": "lookup",
            },
        )
    )
    assert start["inputs"] == {"messages": [{"role": "system", "content": "Be brief"}, USER]}
    (choice,) = end["output"]["choices"]
    assert choice["message"]["content"] == "Paris."
    assert [call["function"]["name"] for call in choice["message"]["tool_calls"]] == ["lookup"]
    assert chat_errors({**start, **end}) == []


def test_openinference_tool_and_json_output(record_spans: Record) -> None:
    start, end = wire(
        one_span(
            record_spans,
            {
                "openinference.span.kind": "TOOL",
                "tool.name": "search",
                "input.value": "plain words",
                "output.value": json.dumps({"hits": 3}),
                "output.mime_type": "application/json",
            },
        )
    )
    assert start["display_name"] == "search"
    assert start["inputs"] == {"input": "plain words"}
    assert end["output"] == {"hits": 3}


def test_vercel_ai_sdk(record_spans: Record) -> None:
    start, end = wire(
        one_span(
            record_spans,
            {
                "ai.operationId": "ai.generateText",
                "ai.model.id": "gpt-4o-mini",
                "ai.model.provider": "openai.chat",
                "ai.response.model": "gpt-4o-mini-2024-07-18",
                "ai.prompt": json.dumps({"system": "Be brief", "prompt": USER["content"]}),
                "ai.response.text": "Paris.",
                "ai.usage.promptTokens": 13,
                "ai.usage.completionTokens": 7,
                "ai.telemetry.functionId": "capital-finder",
            },
            name="ai.generateText",
        )
    )
    assert start["inputs"] == {"system": "Be brief", "prompt": USER["content"]}
    assert end["output"] == "Paris."
    assert start["display_name"] == "capital-finder"
    assert end["summary"]["usage"] == {
        "gpt-4o-mini-2024-07-18": {
            "input_tokens": 13,
            "output_tokens": 7,
            "total_tokens": 20,
            "requests": 1,
        }
    }
    assert otel(start)["llm_provider"] == "openai.chat"
    assert otel(start)["llm_span_kind"] == "ai.generateText"


def test_vercel_ai_sdk_v5_usage_names(record_spans: Record) -> None:
    _, end = wire(
        one_span(
            record_spans,
            {
                "ai.model.id": "claude-3-haiku",
                "ai.usage.inputTokens": 9,
                "ai.usage.outputTokens": 4,
                "ai.usage.totalTokens": 13,
                "ai.usage.cachedInputTokens": 6,
                "ai.usage.reasoningTokens": 2,
            },
        )
    )
    assert end["summary"]["usage"]["claude-3-haiku"] == {
        "input_tokens": 9,
        "output_tokens": 4,
        "total_tokens": 13,
        "requests": 1,
        "cache_read_input_tokens": 6,
        "reasoning_tokens": 2,
    }


def test_content_on_span_events(record_spans: Record) -> None:
    def emit(tracer: Tracer) -> None:
        with tracer.start_as_current_span("chat", attributes={"gen_ai.system": "openai"}) as span:
            span.add_event("gen_ai.content.prompt", {"gen_ai.prompt": json.dumps([USER])})
            span.add_event(
                "gen_ai.content.completion", {"gen_ai.completion": json.dumps([ASSISTANT])}
            )

    (span,) = record_spans(emit)
    start, end = wire(span)
    assert start["inputs"] == {"messages": [USER]}
    assert end["output"] == [ASSISTANT]


def test_span_attributes_win_over_event_content(record_spans: Record) -> None:
    def emit(tracer: Tracer) -> None:
        attributes = {"gen_ai.prompt": json.dumps([USER])}
        with tracer.start_as_current_span("chat", attributes=attributes) as span:
            span.add_event("gen_ai.content.prompt", {"gen_ai.prompt": "from the event"})

    (span,) = record_spans(emit)
    start, _ = wire(span)
    assert start["inputs"] == {"messages": [USER]}


def test_flattened_clash_and_stray_keys_stay_in_attributes(record_spans: Record) -> None:
    start, _ = wire(
        one_span(
            record_spans,
            {
                "gen_ai.prompt.0": "first",
                "gen_ai.prompt.0.content": "clashes with the key above",
                "gen_ai.prompt.foo": "not an index",
                "gen_ai.prompt.1.content": "second",
            },
        )
    )
    assert start["inputs"] == {"input": ["first", {"content": "second"}]}
    assert start["attributes"]["gen_ai.prompt.0.content"] == "clashes with the key above"
    assert start["attributes"]["gen_ai.prompt.foo"] == "not an index"
    assert "gen_ai.prompt.0" not in start["attributes"]
    assert "gen_ai.prompt.1.content" not in start["attributes"]


@pytest.mark.parametrize("key", [key for key in KEYS.inputs if not key.endswith(".*")])
def test_every_input_key_feeds_inputs(record_spans: Record, key: str) -> None:
    start, _ = wire(one_span(record_spans, {key: '{"question": "why?"}'}))
    assert start["inputs"] == {"question": "why?"}
    assert key not in start["attributes"]


@pytest.mark.parametrize("key", [key for key in KEYS.outputs if not key.endswith(".*")])
def test_every_output_key_feeds_output(record_spans: Record, key: str) -> None:
    _, end = wire(one_span(record_spans, {key: '["an", "answer"]'}))
    assert end["output"] == ["an", "answer"]


@pytest.mark.parametrize(
    ("field", "keys"),
    [
        ("display_name", KEYS.display_name),
        ("thread_id", KEYS.thread_id),
    ],
)
def test_every_call_field_key(record_spans: Record, field: str, keys: tuple[str, ...]) -> None:
    for key in keys:
        start, _ = wire(one_span(record_spans, {key: "value-of-" + key}))
        assert start[field] == "value-of-" + key


@pytest.mark.parametrize(
    ("field", "otel_key"), [("span_kind", "llm_span_kind"), ("provider", "llm_provider")]
)
def test_every_kind_and_provider_key(record_spans: Record, field: str, otel_key: str) -> None:
    for key in getattr(KEYS, field):
        start, _ = wire(one_span(record_spans, {key: "value-of-" + key}))
        assert otel(start)[otel_key] == "value-of-" + key
        assert start["attributes"][key] == "value-of-" + key  # context, so kept as well


@pytest.mark.parametrize("key", KEYS.model)
def test_every_model_key(record_spans: Record, key: str) -> None:
    _, end = wire(one_span(record_spans, {key: "model-x", "gen_ai.usage.input_tokens": 1}))
    assert list(end["summary"]["usage"]) == ["model-x"]


@pytest.mark.parametrize(
    ("field", "keys"),
    [
        ("input_tokens", KEYS.input_tokens),
        ("output_tokens", KEYS.output_tokens),
        ("total_tokens", KEYS.total_tokens),
        ("cache_read_input_tokens", KEYS.cache_read_input_tokens),
        ("cache_creation_input_tokens", KEYS.cache_creation_input_tokens),
        ("reasoning_tokens", KEYS.reasoning_tokens),
    ],
)
def test_every_token_key(record_spans: Record, field: str, keys: tuple[str, ...]) -> None:
    for key in keys:
        _, end = wire(one_span(record_spans, {key: 17}))
        assert end["summary"]["usage"]["unknown"][field] == 17, key


def test_wandb_keys_mark_a_span_as_genai(record_spans: Record) -> None:
    (span,) = record_spans(
        lambda tracer: tracer.start_span("x", attributes={"wandb.thread_id": "t"}).end()
    )
    assert is_genai_span(span)
    (plain,) = record_spans(
        lambda tracer: tracer.start_span("y", attributes={"http.method": "GET"}).end()
    )
    assert not is_genai_span(plain)


@pytest.mark.parametrize(
    ("attributes", "kind"),
    [
        ({"weave.span.kind": "guardrail"}, "guardrail"),
        ({"gen_ai.operation.name": "chat"}, "llm"),
        ({"gen_ai.operation.name": "text_completion"}, "llm"),
        ({"gen_ai.operation.name": "generate_content"}, "llm"),
        ({"gen_ai.operation.name": "embeddings"}, "llm"),
        ({"gen_ai.operation.name": "execute_tool"}, "tool"),
        ({"gen_ai.operation.name": "invoke_agent"}, "agent"),
        ({"openinference.span.kind": "LLM"}, "llm"),
        ({"openinference.span.kind": "EMBEDDING"}, "llm"),
        ({"openinference.span.kind": "TOOL"}, "tool"),
        ({"openinference.span.kind": "AGENT"}, "agent"),
        ({"openinference.span.kind": "RETRIEVER"}, "search"),
        ({"openinference.span.kind": "GUARDRAIL"}, "guardrail"),
        ({"openinference.span.kind": "EVALUATOR"}, "scorer"),
        ({"traceloop.span.kind": "agent"}, "agent"),
        ({"traceloop.span.kind": "tool"}, "tool"),
        ({"llm.request.type": "chat"}, "llm"),
        ({"ai.operationId": "ai.streamText.doStream"}, "llm"),
        ({"ai.operationId": "ai.toolCall"}, "tool"),
        # No span-kind key: a named tool, or a model with token counts.
        ({"gen_ai.tool.name": "lookup"}, "tool"),
        ({"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 3}, "llm"),
    ],
)
def test_kinds(record_spans: Record, attributes: dict[str, Any], kind: str) -> None:
    start, _ = wire(one_span(record_spans, attributes))
    assert start["attributes"]["weave"] == {"kind": kind}


@pytest.mark.parametrize(
    "attributes",
    [
        {},
        {"openinference.span.kind": "CHAIN"},
        {"traceloop.span.kind": "workflow"},
        # A span-kind key that names no kind wins over the guesses.
        {"ai.operationId": "ai.generateText", "ai.model.id": "m", "ai.usage.inputTokens": 3},
        {"gen_ai.operation.name": "something_new", "gen_ai.tool.name": "lookup"},
    ],
)
def test_no_kind_when_unknown(record_spans: Record, attributes: dict[str, Any]) -> None:
    start, _ = wire(one_span(record_spans, attributes))
    assert "weave" not in start["attributes"]


def test_agent_name_names_only_agent_calls(record_spans: Record) -> None:
    """pydantic-ai puts its agent's name on every span of a run (WEAVE_WIRE §8)."""

    def emit(tracer: Tracer) -> None:
        agent = {"gen_ai.agent.name": "weather_agent"}
        with tracer.start_as_current_span(
            "invoke_agent weather_agent",
            attributes={**agent, "gen_ai.operation.name": "invoke_agent"},
        ):
            with tracer.start_as_current_span(
                "chat gpt-4o", attributes={**agent, "gen_ai.operation.name": "chat"}
            ):
                pass
            with tracer.start_as_current_span(
                "running tool",
                attributes={**agent, "gen_ai.tool.name": "get_weather", "tool_arguments": "{}"},
            ):
                pass

    chat, tool, agent = (wire(span)[0] for span in record_spans(emit))
    assert agent["display_name"] == "weather_agent"
    assert chat["display_name"] == "chat gpt-4o"
    assert chat["attributes"]["gen_ai.agent.name"] == "weather_agent"  # kept, not lost
    assert tool["display_name"] == "get_weather"
    assert tool["attributes"]["weave"] == {"kind": "tool"}


def test_an_explicit_display_name_wins(record_spans: Record) -> None:
    start, _ = wire(
        one_span(
            record_spans,
            {"wandb.display_name": "Mine", "gen_ai.tool.name": "lookup"},
            name="execute_tool lookup",
        )
    )
    assert start["display_name"] == "Mine"
    assert start["attributes"]["gen_ai.tool.name"] == "lookup"


def test_the_span_name_is_the_display_name_by_default(record_spans: Record) -> None:
    start, _ = wire(one_span(record_spans, {}, name="my step"))
    assert (start["op_name"], start["display_name"]) == ("my step", "my step")


def test_format_2_tool_keys_of_pydantic_ai(record_spans: Record) -> None:
    start, end = wire(
        one_span(
            record_spans,
            {
                "gen_ai.tool.name": "get_weather",
                "tool_arguments": json.dumps({"city": "Paris"}),
                "tool_response": json.dumps({"temperature": 21}),
            },
            name="running tool",
        )
    )
    assert start["inputs"] == {"city": "Paris"}
    assert end["output"] == {"temperature": 21}
    assert start["display_name"] == "get_weather"


def test_request_parameters_sit_beside_the_messages(record_spans: Record) -> None:
    start, _ = wire(
        one_span(
            record_spans,
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.request.temperature": 0.2,
                "gen_ai.request.max_tokens": 100,
                "gen_ai.request.stop_sequences": ("END",),
                "gen_ai.input.messages": json.dumps([USER]),
            },
        )
    )
    assert start["inputs"] == {
        "messages": [USER],
        "model": "gpt-4o",
        "temperature": 0.2,
        "max_tokens": 100,
        "stop": ["END"],
    }
    assert not [key for key in start["attributes"] if key.startswith("gen_ai.request.t")]


def test_openinference_invocation_parameters(record_spans: Record) -> None:
    start, _ = wire(
        one_span(
            record_spans,
            {
                "openinference.span.kind": "LLM",
                "llm.model_name": "gpt-4o-mini",
                "llm.invocation_parameters": json.dumps({"temperature": 0.5, "stream": True}),
                "llm.input_messages.0.message.role": "user",
                "llm.input_messages.0.message.content": USER["content"],
            },
        )
    )
    assert start["inputs"]["temperature"] == 0.5
    assert start["inputs"]["stream"] is True


def test_a_span_attribute_named_like_our_context_is_kept_apart(record_spans: Record) -> None:
    start, _ = wire(
        one_span(
            record_spans,
            {"otel": "the user's", "weave": "also the user's", "gen_ai.operation.name": "chat"},
        )
    )
    attributes = start["attributes"]
    assert attributes["weave"] == {"kind": "llm"}
    assert attributes["otel"]["span_kind"] == "INTERNAL"
    assert attributes["otel"]["span_attributes"] == {
        "otel": "the user's",
        "weave": "also the user's",
    }


def test_a_usage_key_is_bounded_and_no_summary_weave_is_sent(record_spans: Record) -> None:
    _, end = wire(
        one_span(
            record_spans,
            {"gen_ai.response.model": "m" * 10_000, "gen_ai.usage.input_tokens": 3},
        )
    )
    (model,) = end["summary"]["usage"]
    assert model == "m" * 128
    assert "weave" not in end["summary"]  # the server derives it, and drops a stored one


def test_vercel_model_call_reply_with_text_and_tool_calls(record_spans: Record) -> None:
    tool_calls = [{"toolCallId": "call_1", "toolName": "weather", "args": '{"city":"Paris"}'}]
    start, end = wire(
        one_span(
            record_spans,
            {
                "ai.operationId": "ai.generateText.doGenerate",
                "ai.model.id": "gpt-4o-mini",
                "ai.response.model": "gpt-4o-mini-2024-07-18",
                "ai.prompt.messages": json.dumps([{"role": "user", "content": USER["content"]}]),
                "ai.response.text": "Let me look.",
                "ai.response.toolCalls": json.dumps(tool_calls),
                "ai.response.finishReason": "tool-calls",
                "ai.usage.promptTokens": 13,
                "ai.usage.completionTokens": 7,
            },
            name="ai.generateText.doGenerate",
        )
    )
    assert chat_errors({**start, **end}) == []
    assert start["inputs"]["messages"] == [USER]
    (choice,) = end["output"]["choices"]
    assert choice["message"]["content"] == "Let me look."
    (call,) = choice["message"]["tool_calls"]
    assert (call["id"], call["function"]["name"]) == ("call_1", "weather")
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert choice["finish_reason"] == "tool-calls"


def record_one(attributes: dict[str, Any]) -> ReadableSpan:
    """One finished span (hypothesis reruns a test: no function-scoped fixture)."""
    memory = InMemorySpanExporter()
    provider, tracer = make_tracer(SimpleSpanProcessor(memory))
    with tracer.start_as_current_span("chat", attributes=attributes):
        pass
    provider.shutdown()
    (span,) = memory.get_finished_spans()
    return span


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["role", "content", "parts", "type", "text", "tool_calls", "x"]),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs=_JSON, output=_JSON, as_text=st.booleans())
def test_any_content_of_a_model_call_is_chat_shaped(
    inputs: Any, output: Any, as_text: bool
) -> None:
    """The chat view shows every LLM call that recorded content, whatever its shape."""
    attributes: dict[str, Any] = {"gen_ai.operation.name": "chat"}
    for key, value in (("gen_ai.input.messages", inputs), ("gen_ai.output.messages", output)):
        if value is not None:
            attributes[key] = json.dumps(value) if as_text else str(value)
    start, end = wire(record_one(attributes))
    assert recorded_chat_errors({**start, **end}) == []
