"""Property-based: whatever a span carries, nothing raises and every body is valid JSON that
passes the contract schema; whatever a redaction callback returns or a server answers, the
same."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, Status, StatusCode

from opentelemetry.exporter.weave import span_to_call
from opentelemetry.exporter.weave._call import (
    CALL_END_ROUTE,
    CALL_START_ROUTE,
    UPSERT_BATCH_ROUTE,
    WeaveCall,
    call_end_body,
    call_start_body,
    calls_complete_body,
    calls_complete_route,
    upsert_batch_body,
)
from opentelemetry.exporter.weave._conventions import KEYS
from opentelemetry.exporter.weave._redaction import Redactor
from opentelemetry.exporter.weave._transport import HttpAttempt

from .fault_server import Reply, ScriptedServer
from .helpers import API_KEY, contract_errors, make_call, settings_for

MEMORY = InMemorySpanExporter()
PROVIDER = TracerProvider(
    span_limits=SpanLimits(max_attributes=10_000, max_attribute_length=None),
    shutdown_on_exit=False,
)
PROVIDER.add_span_processor(SimpleSpanProcessor(MEMORY))
TRACER = PROVIDER.get_tracer("hostile")


def bodies(call: WeaveCall) -> list[tuple[str, bytes]]:
    """Every request body any write mode sends for ``call``, with its route."""
    return [
        (CALL_START_ROUTE, call_start_body(call)),
        (CALL_END_ROUTE, call_end_body(call)),
        (UPSERT_BATCH_ROUTE, upsert_batch_body([call])),
        (calls_complete_route("e", "p"), calls_complete_body([call])),
    ]


CONVENTION_KEYS = sorted(
    {key.removesuffix(".*") + (".0.content" if key.endswith(".*") else "") for key in KEYS.inputs}
    | set(KEYS.outputs)
    | set(KEYS.input_tokens)
    | set(KEYS.model)
    | set(KEYS.display_name)
    | set(KEYS.thread_id)
    | set(KEYS.wb_run_id)
    | set(KEYS.wb_run_step)
    | {"gen_ai.prompt.0.role", "llm.input_messages.0.message.content", "input.mime_type"}
)

any_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=200)
hostile_json = st.one_of(
    st.integers(1, 5000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(1, 5000).map(lambda depth: '{"a":' * depth + "1" + "}" * depth),
    st.recursive(
        st.none() | st.booleans() | st.floats() | st.integers() | any_text,
        lambda children: (
            st.lists(children, max_size=5) | st.dictionaries(any_text, children, max_size=5)
        ),
        max_leaves=30,
    ).map(lambda value: json.dumps(value, allow_nan=True)),
    st.just('{"a": NaN, "b": -Infinity, "c": 1e999}'),
    st.just("[1e999, -1E999]"),
    st.just("[1" + "0" * 400 + ".5]"),
    st.just('{"a": "\\ud800 lone surrogate", "\\u0000": "nul"}'),
)
primitive = st.one_of(
    any_text,
    hostile_json,
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
)
attribute_value = st.one_of(
    primitive,
    st.lists(any_text, max_size=5),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=5),
    st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=5),
    st.lists(st.booleans(), max_size=5),
)
attribute_key = st.one_of(st.sampled_from(CONVENTION_KEYS), any_text.filter(bool))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=any_text,
    attributes=st.dictionaries(attribute_key, attribute_value, max_size=40),
    many=st.integers(0, 2000),
    failed=st.booleans(),
    event_attributes=st.dictionaries(attribute_key, attribute_value, max_size=5),
)
def test_any_span_maps_to_valid_bodies(
    name: str,
    attributes: dict[str, Any],
    many: int,
    failed: bool,
    event_attributes: dict[str, Any],
) -> None:
    MEMORY.clear()
    with TRACER.start_as_current_span(name) as span:
        span.set_attributes(attributes)
        span.set_attributes({f"bulk.{index}": index for index in range(many)})
        span.add_event("gen_ai.content.prompt", event_attributes)
        if failed:
            span.record_exception(ValueError(name))
            span.set_status(Status(StatusCode.ERROR, name))
    (finished,) = MEMORY.get_finished_spans()

    call = Redactor().apply(span_to_call(finished, "e/p"))

    assert (call.end.exception is not None) is failed
    for route, body in bodies(call):
        # Valid JSON whatever went in, and within the contract.
        assert contract_errors(route, json.loads(body)) == []


flattened_key = st.tuples(
    st.sampled_from(["gen_ai.prompt.", "llm.input_messages.", "gen_ai.completion.", ""]),
    st.lists(st.sampled_from(["0", "1", "²", "٣", "a", "message", "content", ""]), max_size=1500),
).map(lambda parts: parts[0] + ".".join(parts[1]))
hostile_key = st.one_of(attribute_key, flattened_key)
timestamp = st.one_of(
    st.none(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
optional_text = st.one_of(st.none(), any_text)
events = st.lists(
    st.builds(
        Event,
        name=any_text,
        attributes=st.dictionaries(hostile_key, attribute_value, max_size=5),
        timestamp=timestamp,
    ),
    max_size=4,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=any_text,
    attributes=st.dictionaries(hostile_key, attribute_value, max_size=20),
    start_time=timestamp,
    end_time=timestamp,
    scope=st.tuples(any_text, optional_text),
    status=st.tuples(st.sampled_from(list(StatusCode)), optional_text),
    resource=st.dictionaries(any_text, attribute_value, max_size=5),
    span_events=events,
)
def test_any_span_the_sdk_can_hold_maps_to_valid_bodies(
    name: str,
    attributes: dict[str, Any],
    start_time: Any,
    end_time: Any,
    scope: tuple[str, str | None],
    status: tuple[StatusCode, str | None],
    resource: dict[str, Any],
    span_events: list[Event],
) -> None:
    """Built field by field, past what the tracer API checks: hostile keys, times, texts."""
    code, description = status
    span = ReadableSpan(
        name=name,
        context=SpanContext(0x1234, 0x5678, is_remote=False),
        start_time=start_time,
        end_time=end_time,
        attributes=attributes,
        events=span_events,
        instrumentation_scope=InstrumentationScope(*scope),
        status=Status(code, description if code is StatusCode.ERROR else None),
        resource=Resource(resource),
    )

    call = Redactor().apply(span_to_call(span, "e/p"))

    for route, body in bodies(call):
        assert contract_errors(route, json.loads(body)) == []


json_unsafe = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=50)
    | st.binary(max_size=50)
    | st.builds(object),
    lambda children: (
        st.lists(children, max_size=5)
        | st.tuples(children, children)
        | st.frozensets(st.integers() | st.text(max_size=5), max_size=5)
        | st.dictionaries(st.integers() | st.text(max_size=10) | st.none(), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=150, deadline=None)
@given(inputs=json_unsafe, output=json_unsafe, attributes=json_unsafe)
def test_any_redaction_callback_result_reaches_the_wire_as_valid_json(
    inputs: Any, output: Any, attributes: Any
) -> None:
    results = {"inputs": inputs, "output": output, "attributes": attributes}
    redactor = Redactor(callback=lambda field, value: results[field])

    call = redactor.apply(make_call())

    for route, body in bodies(call):
        assert contract_errors(route, json.loads(body)) == []


@pytest.fixture(scope="module")
def answering() -> Iterator[tuple[ScriptedServer, HttpAttempt]]:
    with ScriptedServer() as server:
        attempt = HttpAttempt(settings_for(server.url))
        yield server, attempt
        attempt.close()


header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    # 204 and 304 have no body in HTTP: the test server would send one anyway.
    status=st.integers(200, 599).filter(lambda status: status not in (204, 304)),
    reason=header_text,
    retry_after=st.none() | header_text | st.sampled_from(["-1", "nan", "inf", "1e400", "0"]),
    body=st.binary(max_size=2000)
    | st.sampled_from(
        [b"[" * 100_000, b'{"reason":' * 5_000, f'{{"reason":"{API_KEY}"}}'.encode()]
    ),
)
def test_any_server_answer_is_taken_for_what_it_is_and_never_raises(
    answering: tuple[ScriptedServer, HttpAttempt],
    status: int,
    reason: str,
    retry_after: str | None,
    body: bytes,
) -> None:
    server, attempt = answering
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    server.responder = lambda seen: Reply(status, body, headers, reason_phrase=reason or None)

    result = attempt.post(CALL_START_ROUTE, call_start_body(make_call()), 5.0, {})

    assert result.status_code == status
    assert result.ok is (200 <= status < 300)  # a 2xx is a success, whatever its body
    assert result.retry_after is None or 0 < result.retry_after < float("inf")
    assert len(result.reason) <= 500
    assert API_KEY not in result.reason


@settings(max_examples=300, deadline=None)
@given(
    value=st.none()
    | st.booleans()
    | st.integers()
    | st.text()
    # A lone surrogate (no valid UTF-8) and a text past the length cap, which the walk mends.
    | st.sampled_from(["\ud800 lone", "caf\u00e9", "x" * 1_000_001])
)
def test_json_safe_of_a_scalar_takes_a_shortcut_to_the_same_answer(value: Any) -> None:
    from opentelemetry.exporter.weave._sanitize import _SafeCopy, json_safe

    assert json_safe(value) == _SafeCopy().of(value, 0)
    assert type(json_safe(value)) is type(_SafeCopy().of(value, 0))
