from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, Status, StatusCode, Tracer

from opentelemetry.exporter.weave import span_to_call
from opentelemetry.exporter.weave._call import call_end_body, call_start_body
from opentelemetry.exporter.weave._mapping import stack_frames
from opentelemetry.exporter.weave._models import CallEndReq, CallStartReq
from opentelemetry.exporter.weave._sanitize import MAX_DEPTH, MAX_STRING_CHARS

from .helpers import Record, contract_errors

PROJECT = "ent/proj"


def one_span(record: Record, attributes: dict[str, Any], name: str = "op") -> ReadableSpan:
    def emit(tracer: Tracer) -> None:
        with tracer.start_as_current_span(name, attributes=attributes):
            pass

    (span,) = record(emit)
    return span


def wire(span: ReadableSpan) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON bodies exactly as they would be posted."""
    call = span_to_call(span, PROJECT)
    start = json.loads(call_start_body(call))["start"]
    end = json.loads(call_end_body(call))["end"]
    CallStartReq.model_validate({"start": start})  # the contract's own models accept both
    CallEndReq.model_validate({"end": end})
    return start, end


def test_ids_times_and_tree(record_spans: Record) -> None:
    def emit(tracer: Tracer) -> None:
        with tracer.start_as_current_span("root"), tracer.start_as_current_span("child"):
            pass

    child, root = record_spans(emit)
    root_start, root_end = wire(root)
    child_start, _ = wire(child)
    assert root_start["id"] == f"{root.context.span_id:016x}"
    assert root_start["id"] == root_start["id"].lower()
    assert len(root_start["id"]) == 16
    assert root_start["trace_id"] == f"{root.context.trace_id:032x}"
    assert root_start["parent_id"] is None
    assert child_start["parent_id"] == root_start["id"]
    assert child_start["trace_id"] == root_start["trace_id"]
    assert root_start["project_id"] == root_end["project_id"] == PROJECT
    assert root_end["id"] == root_start["id"]
    assert root_start["op_name"] == "root"

    started = datetime.fromisoformat(root_start["started_at"])
    ended = datetime.fromisoformat(root_end["ended_at"])
    assert started.tzinfo is not None
    assert started.utcoffset() == ended.utcoffset() == timezone.utc.utcoffset(None)
    assert root_start["started_at"].endswith("+00:00")
    assert len(root_start["started_at"].split(".")[1]) == len("000000+00:00")
    assert int(started.timestamp() * 1_000_000) == root.start_time // 1000
    assert int(ended.timestamp() * 1_000_000) == root.end_time // 1000
    assert root_end["started_at"] == root_start["started_at"]


def test_long_op_name_is_shortened_deterministically(record_spans: Record) -> None:
    long_name = "n" * 200
    first, _ = wire(one_span(record_spans, {}, name=long_name))
    second, _ = wire(one_span(record_spans, {}, name=long_name))
    other, _ = wire(one_span(record_spans, {}, name="n" * 199 + "m"))
    assert len(first["op_name"]) < 128
    assert first["op_name"].startswith("n" * 100)
    assert first["op_name"] == second["op_name"]
    assert first["op_name"] != other["op_name"]
    exact, _ = wire(one_span(record_spans, {}, name="x" * 127))
    assert exact["op_name"] == "x" * 127


def test_weave_fields_from_attributes(record_spans: Record) -> None:
    start, end = wire(
        one_span(
            record_spans,
            {
                "wandb.display_name": "My agent",
                "gen_ai.conversation.id": "conv-1",
                "wandb.wb_run_id": "run42",
                "wandb.wb_run_step": 3,
                "wandb.wb_run_step_end": "7",
                "user.tier": "gold",
            },
        )
    )
    assert start["display_name"] == "My agent"
    assert start["thread_id"] == "conv-1"
    assert start["wb_run_id"] == f"{PROJECT}/run42"
    assert start["wb_run_step"] == 3
    assert end["wb_run_step_end"] == 7
    assert start["attributes"]["user.tier"] == "gold"
    for consumed in ("wandb.display_name", "gen_ai.conversation.id", "wandb.wb_run_id"):
        assert consumed not in start["attributes"]


def test_thread_from_wandb_and_full_run_path(record_spans: Record) -> None:
    start, _ = wire(one_span(record_spans, {"wandb.thread_id": "t-9", "wandb.wb_run_id": "e/p/r1"}))
    assert start["thread_id"] == "t-9"
    assert start["wb_run_id"] == "e/p/r1"


def test_otel_context_in_attributes(record_spans: Record) -> None:
    def emit(tracer: Tracer) -> None:
        with tracer.start_as_current_span("op") as span:
            span.add_event("retrieved", {"docs": 3})
            span.set_status(Status(StatusCode.OK))

    (span,) = record_spans(emit)
    start, _ = wire(span)
    otel = start["attributes"]["otel"]
    assert otel["span_kind"] == "INTERNAL"
    assert otel["status"] == {"code": "OK", "description": None}
    assert otel["scope"] == {"name": "tests", "version": "1.0"}
    assert otel["resource"]["telemetry.sdk.name"] == "opentelemetry"
    assert otel["events"][0]["name"] == "retrieved"
    assert otel["events"][0]["attributes"] == {"docs": 3}


@pytest.mark.parametrize(
    ("attributes", "expected_inputs"),
    [
        (
            {"gen_ai.input.messages": json.dumps([{"role": "user", "content": "hi"}])},
            {"messages": [{"role": "user", "content": "hi"}]},
        ),
        ({"input.value": json.dumps({"question": "why?"})}, {"question": "why?"}),
        ({"input.value": "plain question"}, {"input": "plain question"}),
        ({"traceloop.entity.input": "[1, 2]"}, {"input": [1, 2]}),
        ({"ai.prompt": '{"prompt": "p"}'}, {"prompt": "p"}),
        (  # one precedence rule: OTel GenAI before OpenInference
            {"gen_ai.input.messages": '[{"role": "user"}]', "input.value": "loses"},
            {"messages": [{"role": "user"}]},
        ),
        ({"input.value": "{not json"}, {"input": "{not json"}),
        ({}, {}),
    ],
)
def test_inputs(
    record_spans: Record, attributes: dict[str, Any], expected_inputs: dict[str, Any]
) -> None:
    start, _ = wire(one_span(record_spans, attributes))
    assert start["inputs"] == expected_inputs
    used, *unused = attributes or [None]
    assert used not in start["attributes"]  # the key read is not repeated
    for key in unused:
        assert key in start["attributes"]  # ... but a key not read is kept


@pytest.mark.parametrize(
    ("attributes", "expected_output"),
    [
        (
            {"gen_ai.output.messages": json.dumps([{"role": "assistant", "content": "yo"}])},
            [{"role": "assistant", "content": "yo"}],
        ),
        ({"output.value": "the answer"}, "the answer"),
        ({"output": '{"score": 1}'}, {"score": 1}),
        ({}, None),
    ],
)
def test_output(record_spans: Record, attributes: dict[str, Any], expected_output: Any) -> None:
    _, end = wire(one_span(record_spans, attributes))
    assert end["output"] == expected_output


def test_error_span_with_exception_event(record_spans: Record) -> None:
    def emit(tracer: Tracer) -> None:
        try:
            with tracer.start_as_current_span("tool"):
                raise ValueError("bad input")
        except ValueError:
            pass

    (span,) = record_spans(emit)
    _, end = wire(span)
    exception = json.loads(end["exception"])
    assert exception["type"] == "ValueError"
    assert exception["message"] == "bad input"
    *_, raised = exception["traceback"]  # frames, as Weave's exception panel lists them
    assert raised["filename"].endswith("test_mapping.py")
    assert raised["function_name"] == "emit"
    assert isinstance(raised["line_number"], int)
    assert raised["text"] == 'raise ValueError("bad input")'
    assert end["summary"]["status_counts"] == {"success": 0, "error": 1}


def test_error_span_uses_last_exception_event(record_spans: Record) -> None:
    def emit(tracer: Tracer) -> None:
        with tracer.start_as_current_span("op") as span:
            span.record_exception(KeyError("first"))
            span.record_exception(TimeoutError("second"))
            span.set_status(Status(StatusCode.ERROR, "timed out"))

    (span,) = record_spans(emit)
    _, end = wire(span)
    assert json.loads(end["exception"])["type"] == "TimeoutError"


def test_error_span_without_event_uses_error_type_and_description(record_spans: Record) -> None:
    def emit(tracer: Tracer) -> None:
        with tracer.start_as_current_span("chat", attributes={"error.type": "RateLimitError"}) as s:
            s.set_status(Status(StatusCode.ERROR, "429 Too Many Requests"))

    (span,) = record_spans(emit)
    _, end = wire(span)
    assert json.loads(end["exception"]) == {
        "type": "RateLimitError",
        "message": "429 Too Many Requests",
        "traceback": [],
    }


def test_error_type_given_as_a_class_repr(record_spans: Record) -> None:
    def emit(tracer: Tracer) -> None:
        attributes = {"error.type": "<class 'openai.BadRequestError'>"}
        with tracer.start_as_current_span("chat", attributes=attributes) as span:
            span.set_status(Status(StatusCode.ERROR))

    (span,) = record_spans(emit)
    _, end = wire(span)
    assert json.loads(end["exception"])["type"] == "openai.BadRequestError"


def test_failed_http_span_says_its_status(record_spans: Record) -> None:
    def emit(tracer: Tracer) -> None:
        with tracer.start_as_current_span("POST", attributes={"http.status_code": 400}) as span:
            span.set_status(Status(StatusCode.ERROR))

    (span,) = record_spans(emit)
    _, end = wire(span)
    assert json.loads(end["exception"]) == {"type": "Error", "message": "HTTP 400", "traceback": []}


def test_error_span_with_nothing_still_has_exception(record_spans: Record) -> None:
    def emit(tracer: Tracer) -> None:
        with tracer.start_as_current_span("op") as span:
            span.set_status(Status(StatusCode.ERROR))

    (span,) = record_spans(emit)
    _, end = wire(span)
    assert end["exception"] is not None
    assert json.loads(end["exception"])["type"] == "Error"


def test_handled_exception_is_not_an_error(record_spans: Record) -> None:
    def emit(tracer: Tracer) -> None:
        with tracer.start_as_current_span("op") as span:
            span.record_exception(ValueError("handled"))

    (span,) = record_spans(emit)
    _, end = wire(span)
    assert end["exception"] is None
    assert end["summary"]["status_counts"] == {"success": 1, "error": 0}


@pytest.mark.parametrize(
    ("attributes", "model", "usage"),
    [
        pytest.param(
            {
                "gen_ai.response.model": "gpt-4o-2024-08-06",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 12,
                "gen_ai.usage.output_tokens": 5,
            },
            "gpt-4o-2024-08-06",
            {"input_tokens": 12, "output_tokens": 5, "total_tokens": 17, "requests": 1},
            id="otel-genai-response-model-wins",
        ),
        pytest.param(
            {
                "gen_ai.request.model": "claude-3",
                "gen_ai.usage.input_tokens": 1,
                "gen_ai.usage.prompt_tokens": 99,
                "gen_ai.usage.output_tokens": 2,
                "gen_ai.usage.total_tokens": 50,
                "gen_ai.usage.cache_read.input_tokens": 4,
                "gen_ai.usage.cache_read_input_tokens": 400,
                "gen_ai.usage.cache_write.input_tokens": 6,
                "gen_ai.usage.cache_creation_input_tokens": 600,
                "gen_ai.usage.reasoning.output_tokens": 8,
            },
            "claude-3",
            {
                "input_tokens": 1,
                "output_tokens": 2,
                "total_tokens": 50,
                "requests": 1,
                "cache_read_input_tokens": 4,
                "cache_creation_input_tokens": 6,
                "reasoning_tokens": 8,
            },
            id="otel-genai-precedence-and-extras",
        ),
        pytest.param(
            {
                "gen_ai.request.model": "m",
                "gen_ai.usage.cache_creation.input_tokens": 7,
                "gen_ai.usage.cache_creation_input_tokens": 70,
            },
            "m",
            {"cache_creation_input_tokens": 7, "requests": 1},
            id="cache-write-middle-spelling",
        ),
        pytest.param(
            {
                "gen_ai.request.model": "m",
                "gen_ai.usage.cache_creation_input_tokens": 9,
                "gen_ai.usage.input_tokens": 3,
            },
            "m",
            {
                "cache_creation_input_tokens": 9,
                "input_tokens": 3,
                "total_tokens": 3,
                "requests": 1,
            },
            id="cache-write-oldest-spelling",
        ),
        pytest.param(
            {
                "gen_ai.response.model": "gpt-3.5",
                "gen_ai.usage.prompt_tokens": 10,
                "gen_ai.usage.completion_tokens": 20,
                "llm.usage.total_tokens": 31,
            },
            "gpt-3.5",
            {"input_tokens": 10, "output_tokens": 20, "total_tokens": 31, "requests": 1},
            id="openllmetry",
        ),
        pytest.param(
            {
                "llm.model_name": "llama-3",
                "llm.token_count.prompt": 100,
                "llm.token_count.completion": 50,
                "llm.token_count.total": 150,
                "llm.token_count.prompt_details.cache_read": 30,
                "llm.token_count.prompt_details.cache_write": 10,
                "llm.token_count.completion_details.reasoning": 5,
            },
            "llama-3",
            {
                "input_tokens": 100,
                "output_tokens": 50,
                "total_tokens": 150,
                "requests": 1,
                "cache_read_input_tokens": 30,
                "cache_creation_input_tokens": 10,
                "reasoning_tokens": 5,
            },
            id="openinference",
        ),
        pytest.param(
            {
                "ai.model.id": "gpt-4o-mini",
                "ai.usage.promptTokens": 7,
                "ai.usage.completionTokens": 3,
            },
            "gpt-4o-mini",
            {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10, "requests": 1},
            id="vercel-ai",
        ),
        pytest.param(
            {"gen_ai.usage.output_tokens": 4},
            "unknown",
            {"output_tokens": 4, "total_tokens": 4, "requests": 1},
            id="no-model",
        ),
        pytest.param(
            {"gen_ai.usage.input_tokens": "15", "gen_ai.usage.output_tokens": 2.0},
            "unknown",
            {"input_tokens": 15, "output_tokens": 2, "total_tokens": 17, "requests": 1},
            id="numeric-strings-and-floats",
        ),
    ],
)
def test_usage(
    record_spans: Record, attributes: dict[str, Any], model: str, usage: dict[str, int]
) -> None:
    _, end = wire(one_span(record_spans, attributes))
    assert end["summary"]["usage"] == {model: usage}
    assert None not in end["summary"]["usage"][model].values()


def test_no_usage_without_tokens(record_spans: Record) -> None:
    _, end = wire(one_span(record_spans, {"gen_ai.request.model": "gpt-4o"}))
    assert "usage" not in end["summary"]
    assert end["summary"]["status_counts"] == {"success": 1, "error": 0}


def test_odd_values_are_sanitised(record_spans: Record) -> None:
    deep = "[" * (MAX_DEPTH + 50) + "]" * (MAX_DEPTH + 50)
    very_deep = "[" * 100_000 + "]" * 100_000
    attributes = {
        "raw.bytes": b"\xff\xfe ok",
        "nan": float("nan"),
        "inf": float("inf"),
        "neg_inf": float("-inf"),
        "floats": (1.5, float("nan")),
        "huge": "x" * (MAX_STRING_CHARS + 10),
        "surrogate": "bad \ud800 text",
        "control": "a\x00b\x1bc",
        "input.value": deep,
        "output.value": very_deep,
    }
    start, end = wire(one_span(record_spans, attributes))
    attrs = start["attributes"]
    assert attrs["raw.bytes"] == "\\xff\\xfe ok"
    assert (attrs["nan"], attrs["inf"], attrs["neg_inf"]) == ("NaN", "Infinity", "-Infinity")
    assert attrs["floats"] == [1.5, "NaN"]
    assert attrs["huge"].startswith("x" * 100)
    assert attrs["huge"].endswith("[truncated 10 chars]")
    assert attrs["surrogate"] == "bad \ufffd text"
    assert attrs["control"] == "a\x00b\x1bc"
    nested: Any = start["inputs"]["input"]
    depth = 0
    while isinstance(nested, list) and nested:
        nested, depth = nested[0], depth + 1
    assert isinstance(nested, str)
    assert "nested deeper" in nested
    assert depth <= MAX_DEPTH
    assert end["output"] == very_deep  # too deep to decode: kept as the text it was


def test_hostile_non_json_values_in_decoded_text(record_spans: Record) -> None:
    start, end = wire(
        one_span(
            record_spans,
            {"input.value": '{"a": NaN, "b": Infinity}', "output.value": '[1e999, "ok"]'},
        )
    )
    assert start["inputs"] == {"a": "NaN", "b": "Infinity"}
    assert end["output"] == ["Infinity", "ok"]


def bare_span(**fields: Any) -> ReadableSpan:
    """A finished span built field by field, as the SDK lets any of them be set."""
    values: dict[str, Any] = {
        "name": "op",
        "context": SpanContext(0x1234, 0x5678, is_remote=False),
        "start_time": 1_700_000_000_000_000_000,
        "end_time": 1_700_000_001_000_000_000,
    }
    return ReadableSpan(**{**values, **fields})


def wire_passes_the_contract(span: ReadableSpan) -> tuple[dict[str, Any], dict[str, Any]]:
    start, end = wire(span)
    assert contract_errors("/call/start", {"start": start}) == []
    assert contract_errors("/call/end", {"end": end}) == []
    return start, end


@pytest.mark.parametrize("digit", ["²", "٣", "①"])
def test_a_flattened_index_that_is_not_an_ascii_digit_is_an_attribute(digit: str) -> None:
    attributes = {
        "gen_ai.prompt.0.role": "user",
        "gen_ai.prompt.0.content": "hi",
        f"gen_ai.prompt.{digit}.content": "odd",
    }

    start, _ = wire_passes_the_contract(bare_span(attributes=attributes))

    assert start["inputs"] == {"messages": [{"role": "user", "content": "hi"}]}
    assert start["attributes"][f"gen_ai.prompt.{digit}.content"] == "odd"


def test_a_flattened_key_deeper_than_json_can_nest_keeps_its_last_segments_as_one_key() -> None:
    key = "gen_ai.prompt.0." + ".".join(["a"] * 1_500)

    start, _ = wire_passes_the_contract(bare_span(attributes={key: "deep"}))

    node: Any = start["inputs"]["input"][0]  # the list under the prefix, its entry 0
    depth = 0
    while len(node) == 1 and (only_key := next(iter(node))) == "a":
        node, depth = node[only_key], depth + 1
    assert depth == MAX_DEPTH - 2  # the index and the joined rest are the other two levels
    assert node == {".".join(["a"] * (1_500 - depth)): "deep"}


NS_2023 = 1_700_000_000_000_000_000
LATEST = "9999-12-31T23:59:59.999999+00:00"
EPOCH = "1970-01-01T00:00:00.000000+00:00"


@pytest.mark.parametrize(
    ("start_time", "end_time", "started_at", "ended_at", "adjusted"),
    [
        # Any int-like or float: the SDK takes it.
        (NS_2023, float(NS_2023 + 1_500_160), None, "2023-11-14T22:13:20.001500+00:00", None),
        (NS_2023, True, None, "1970-01-01T00:00:00.000000+00:00", None),
        # Out of range: clamped, the original kept.
        (-5, NS_2023, EPOCH, None, {"start_time": -5}),
        (NS_2023, 10**30, None, LATEST, {"end_time": 10**30}),
        # Missing or not a number: taken from the other end.
        (None, NS_2023, "2023-11-14T22:13:20.000000+00:00", None, {"start_time": None}),
        (NS_2023, float("nan"), None, "2023-11-14T22:13:20.000000+00:00", {"end_time": "NaN"}),
        (NS_2023, None, None, "2023-11-14T22:13:20.000000+00:00", None),
        (None, None, EPOCH, EPOCH, {"start_time": None}),
    ],
)
def test_any_span_time_maps_clamped_or_filled_in_and_marked(
    start_time: Any, end_time: Any, started_at: str | None, ended_at: str | None, adjusted: Any
) -> None:
    start, end = wire_passes_the_contract(bare_span(start_time=start_time, end_time=end_time))

    if started_at is not None:
        assert start["started_at"] == end["started_at"] == started_at
    if ended_at is not None:
        assert end["ended_at"] == ended_at
    assert start["attributes"]["otel"].get("adjusted_times") == adjusted


@pytest.mark.parametrize(
    ("timestamp", "expected", "original"),
    [
        (10**22, LATEST, 10**22),  # after year 9999
        (-(10**22), EPOCH, -(10**22)),
        (float(NS_2023), "2023-11-14T22:13:20.000000+00:00", None),
        ("soon", "2023-11-14T22:13:20.000000+00:00", "soon"),  # not a time: the span's start
    ],
)
def test_any_event_time_maps_clamped_or_marked(
    timestamp: Any, expected: str, original: Any
) -> None:
    event = Event("odd", {"k": "v"}, timestamp=timestamp)

    start, _ = wire_passes_the_contract(bare_span(events=[event]))

    (mapped,) = start["attributes"]["otel"]["events"]
    assert mapped["timestamp"] == expected
    assert mapped.get("original_timestamp") == original


def test_every_text_of_the_otel_context_is_sanitised() -> None:
    """Scope, status, event names, resource, span name: whatever reaches the wire is clean."""
    span = bare_span(
        name="op \ud800",
        instrumentation_scope=InstrumentationScope("scope \udc00", "1.0 \ud800"),
        status=Status(StatusCode.ERROR, "failed \ud800"),
        events=[Event("event \udfff", {"k \ud800": "v \ud800"}, timestamp=NS_2023)],
        resource=Resource({"service.name": "svc \ud800"}),
        attributes={"key \ud800": "value"},
    )

    start, end = wire_passes_the_contract(span)

    otel = start["attributes"]["otel"]
    assert start["op_name"] == "op \ufffd"
    assert otel["scope"] == {"name": "scope \ufffd", "version": "1.0 \ufffd"}
    assert otel["status"]["description"] == "failed \ufffd"
    assert otel["events"][0]["name"] == "event \ufffd"
    assert otel["events"][0]["attributes"] == {"k \ufffd": "v \ufffd"}
    assert otel["resource"] == {"service.name": "svc \ufffd"}
    assert start["attributes"]["key \ufffd"] == "value"
    assert json.loads(end["exception"])["message"] == "failed \ufffd"


def test_ids_outside_their_bit_width_still_map_to_fixed_width_hex() -> None:
    context = SpanContext(2**128 + 5, 2**70 + 6, is_remote=False)
    parent = SpanContext(2**128 + 5, -1, is_remote=False)

    start, _ = wire_passes_the_contract(bare_span(context=context, parent=parent))

    assert start["trace_id"] == f"{5:032x}"
    assert start["id"] == f"{6:016x}"
    assert start["parent_id"] == "f" * 16


PYTHON_STACK = """Traceback (most recent call last):
  File "/app/agent.py", line 12, in run
    answer = tool(query)
             ^^^^^^^^^^^
  File "/app/tools.py", line 40, in tool
    raise LookupError(query)
LookupError: no such city

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "<stdin>", line 1, in <module>
RuntimeError: tool failed
"""


def test_a_python_stack_trace_becomes_its_frames() -> None:
    assert stack_frames(PYTHON_STACK) == [
        {
            "filename": "/app/agent.py",
            "line_number": 12,
            "function_name": "run",
            "text": "answer = tool(query)",
        },
        {
            "filename": "/app/tools.py",
            "line_number": 40,
            "function_name": "tool",
            "text": "raise LookupError(query)",
        },
        {"filename": "<stdin>", "line_number": 1, "function_name": "<module>", "text": None},
    ]


def test_another_language_s_stack_text_is_one_frame_a_line_and_nothing_is_lost() -> None:
    stack = (
        "TypeError: x is undefined\n    at run (/app/agent.js:12:5)\n\n"
        "    at main (/app/index.js:3:1)"
    )

    frames = stack_frames(stack)

    assert [frame["text"] for frame in frames] == [
        "TypeError: x is undefined",
        "at run (/app/agent.js:12:5)",
        "at main (/app/index.js:3:1)",
    ]
    assert {(frame["filename"], frame["line_number"]) for frame in frames} == {("", None)}


@pytest.mark.parametrize("stack", ["", "   \n\n"])
def test_no_stack_trace_is_no_frame(stack: str) -> None:
    assert stack_frames(stack) == []


def test_a_line_number_too_long_for_a_number_is_no_python_frame() -> None:
    line = f'  File "a.py", line {"9" * 5000}, in f'

    assert stack_frames(line) == [
        {"filename": "", "line_number": None, "function_name": "", "text": line.strip()}
    ]
