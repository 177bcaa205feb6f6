"""The gateway's pure parts: OTLP decoding (both encodings, compression, attribute values),
the trace-wait buffer on a fake clock, and request routing."""

from __future__ import annotations

import base64
import gzip
import json
import zlib
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.trace import SpanKind, StatusCode, set_span_in_context

from opentelemetry.exporter.weave._config import ConfigError
from opentelemetry.exporter.weave.gateway import GatewaySettings
from opentelemetry.exporter.weave.gateway._gateway import api_key_from, project_from
from opentelemetry.exporter.weave.gateway._otlp import (
    BodyTooLargeError,
    Encoding,
    UndecodableError,
    decode_request,
    decompressed,
    encoding_of,
)
from opentelemetry.exporter.weave.gateway._traces import HeldSpan, TraceBuffer

from .helpers import FakeClock, Record

TRACE_HEX = "5B8EFFF798038103D269B633813FC60C"
SPAN_HEX = "EEE19B7EC3C1B174"
PARENT_HEX = "EEE19B7EC3C1B173"


def otlp_json(**span_fields: Any) -> dict[str, Any]:
    """A request as the OTLP spec's JSON example writes it (hex ids, ints as strings)."""
    span = {
        "traceId": TRACE_HEX,
        "spanId": SPAN_HEX,
        "parentSpanId": PARENT_HEX,
        "name": "I'm a server span",
        "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": "1544712661000000000",
        "kind": 2,
        "attributes": [{"key": "my.span.attr", "value": {"stringValue": "some value"}}],
        **span_fields,
    }
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]
                },
                "scopeSpans": [
                    {"scope": {"name": "my.library", "version": "1.0.0"}, "spans": [span]}
                ],
            }
        ]
    }


def test_otlp_json_decodes_hex_ids_enums_and_times() -> None:
    body = otlp_json(
        status={"code": 2, "message": "boom"},
        events=[
            {
                "timeUnixNano": "1544712660500000000",
                "name": "exception",
                "attributes": [{"key": "exception.type", "value": {"stringValue": "ValueError"}}],
            }
        ],
        links=[{"traceId": TRACE_HEX, "spanId": PARENT_HEX}],
    )
    request = decode_request(json.dumps(body).encode(), Encoding.JSON)
    assert request.rejected == 0
    (batch,) = request.batches
    assert batch.resource == {"service.name": "my.service"}
    (span,) = batch.spans
    assert span.context is not None
    assert span.parent is not None
    assert span.context.trace_id == int(TRACE_HEX, 16)
    assert span.context.span_id == int(SPAN_HEX, 16)
    assert span.parent.span_id == int(PARENT_HEX, 16)
    assert span.parent.is_remote is False  # the gateway sees the whole trace: rolled up here
    assert span.kind is SpanKind.SERVER
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "boom"
    assert (span.start_time, span.end_time) == (1544712660000000000, 1544712661000000000)
    assert span.attributes == {"my.span.attr": "some value"}
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "my.library"
    assert span.resource.attributes["service.name"] == "my.service"
    (event,) = span.events
    assert (event.name, event.timestamp) == ("exception", 1544712660500000000)
    assert event.attributes == {"exception.type": "ValueError"}
    (link,) = span.links
    assert link.context.span_id == int(PARENT_HEX, 16)


def test_attribute_values_become_what_a_span_allows() -> None:
    def value(**any_value: Any) -> dict[str, Any]:
        return {"key": "k", "value": any_value}

    cases: list[tuple[dict[str, Any], Any]] = [
        (value(intValue="42"), 42),
        (value(doubleValue=1.5), 1.5),
        (value(boolValue=True), True),
        (value(bytesValue=base64.b64encode(b"\x00\x01").decode()), "AAE="),
        (value(arrayValue={"values": [{"stringValue": "a"}, {"stringValue": "b"}]}), ("a", "b")),
        (value(arrayValue={"values": [{"intValue": "1"}, {"stringValue": "b"}]}), '[1,"b"]'),
        (
            value(kvlistValue={"values": [{"key": "x", "value": {"intValue": "1"}}]}),
            '{"x":1}',
        ),
        (value(arrayValue={}), ()),
    ]
    for attribute, expected in cases:
        request = decode_request(
            json.dumps(otlp_json(attributes=[attribute])).encode(), Encoding.JSON
        )
        assert request.batches[0].spans[0].attributes == {"k": expected}, attribute
    empty = decode_request(json.dumps(otlp_json(attributes=[value()])).encode(), Encoding.JSON)
    assert empty.batches[0].spans[0].attributes == {}


def test_spans_with_invalid_ids_are_rejected_and_the_rest_kept(record_spans: Record) -> None:
    spans = record_spans(lambda tracer: [tracer.start_span(f"s{n}").end() for n in range(3)])
    message = encode_spans(spans)
    message.resource_spans[0].scope_spans[0].spans[1].span_id = b"\x00" * 8
    message.resource_spans[0].scope_spans[0].spans[2].parent_span_id = b"\x01\x02"
    request = decode_request(message.SerializeToString(), Encoding.PROTOBUF)
    assert request.rejected == 2
    assert [span.name for span in request.batches[0].spans] == ["s0"]
    assert any("span_id" in error for error in request.errors)
    assert any("parent_span_id" in error for error in request.errors)
    json_bad = decode_request(json.dumps(otlp_json(spanId="not-hex!")).encode(), Encoding.JSON)
    assert (json_bad.rejected, json_bad.batches) == (1, [])


@pytest.mark.parametrize(
    "body", [b"\xff\xff\xff", b"{", b"[1]", b'{"resourceSpans": "x"}'], ids=repr
)
def test_a_body_that_is_no_request_is_undecodable(body: bytes) -> None:
    encoding = Encoding.PROTOBUF if body.startswith(b"\xff") else Encoding.JSON
    with pytest.raises(UndecodableError):
        decode_request(body, encoding)


def test_bodies_decompress_within_the_limit() -> None:
    plain = b"x" * 10_000
    assert decompressed(gzip.compress(plain), "gzip", 10_000) == plain
    assert decompressed(zlib.compress(plain), "deflate", 10_000) == plain
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert decompressed(raw.compress(plain) + raw.flush(), "deflate", 10_000) == plain
    assert decompressed(plain, None, 10_000) == plain
    with pytest.raises(BodyTooLargeError):
        decompressed(gzip.compress(plain), "gzip", 9_999)  # a bomb stops at the limit
    with pytest.raises(UndecodableError):
        decompressed(b"not gzip", "gzip", 10_000)
    with pytest.raises(UndecodableError):
        decompressed(gzip.compress(plain)[:-20], "gzip", 10_000)
    with pytest.raises(UndecodableError):
        decompressed(plain, "br", 10_000)


def test_content_types() -> None:
    assert encoding_of("application/x-protobuf") is Encoding.PROTOBUF
    assert encoding_of("Application/JSON; charset=utf-8") is Encoding.JSON
    assert encoding_of("text/plain") is None
    assert encoding_of(None) is None


def held(record_spans: Record, build: Any) -> list[HeldSpan]:
    return [HeldSpan(span, 100) for span in record_spans(build)]


def two_level_trace(tracer: Any) -> None:
    with tracer.start_as_current_span("root"), tracer.start_as_current_span("child"):
        pass


def test_a_trace_waits_for_its_root_plus_the_wait(record_spans: Record) -> None:
    clock = FakeClock()
    buffer = TraceBuffer(5, 60, 1000, 100, clock.monotonic)
    child, root = held(record_spans, two_level_trace)
    assert buffer.add("route", [child]) == []
    clock.advance(30)
    assert buffer.due() == []  # no root yet: held
    assert buffer.add("route", [root]) == []
    clock.advance(4.9)
    assert buffer.due() == []
    clock.advance(0.2)
    (released,) = buffer.due()
    assert [h.span.name for h in released.spans] == ["child", "root"]
    assert (released.route, buffer.held_spans, buffer.traces_timed_out) == ("route", 0, 0)


def test_a_trace_without_root_times_out_counted(record_spans: Record) -> None:
    clock = FakeClock()
    buffer = TraceBuffer(5, 60, 1000, 100, clock.monotonic)
    child, root = held(record_spans, two_level_trace)
    buffer.add("route", [child])
    assert buffer.seconds_to_next() == 60
    clock.advance(60)
    (released,) = buffer.due()
    assert [h.span.name for h in released.spans] == ["child"]
    assert buffer.traces_timed_out == 1
    late = buffer.add("route", [root])  # its trace went: sent at once, on its own
    assert [h.span.name for t in late for h in t.spans] == ["root"]
    assert (buffer.spans_late, buffer.held_traces) == (1, 0)


def test_the_bounds_release_the_oldest_traces_early(record_spans: Record) -> None:
    clock = FakeClock()
    buffer = TraceBuffer(5, 60, 3, 100, clock.monotonic)
    first = held(record_spans, two_level_trace)
    second = held(record_spans, two_level_trace)
    assert buffer.add("route", first) == []
    (early,) = buffer.add("route", second)  # 4 spans > 3: the older trace goes
    assert early.spans == first
    assert (buffer.traces_exported_early, buffer.held_spans) == (1, 2)
    by_traces = TraceBuffer(5, 60, 1000, 1, clock.monotonic)
    by_traces.add("route", first[:1])
    assert [t.spans for t in by_traces.add("route", second[:1])] == [first[:1]]


def test_routes_keep_traces_apart_and_release_all_empties(record_spans: Record) -> None:
    clock = FakeClock()
    buffer = TraceBuffer(5, 60, 1000, 100, clock.monotonic)
    spans = held(record_spans, two_level_trace)
    buffer.add("a", spans[:1])
    buffer.add("b", spans[1:])
    assert buffer.held_traces == 2
    assert sorted(t.route for t in buffer.release_all()) == ["a", "b"]
    assert (buffer.held_spans, buffer.seconds_to_next()) == (0, None)


@pytest.mark.parametrize("child_end", [10, 12], ids=["same-end", "skewed-clock"])
def test_children_come_before_their_parent_whatever_their_end(
    record_spans: Record, child_end: int
) -> None:
    def emit(tracer: Any) -> None:
        root = tracer.start_span("root", start_time=1)
        child = tracer.start_span("child", context=set_span_in_context(root), start_time=2)
        grandchild = tracer.start_span("grandchild", context=set_span_in_context(child))
        sibling = tracer.start_span("sibling", context=set_span_in_context(root), start_time=3)
        sibling.end(end_time=4)
        root.end(end_time=10)
        grandchild.end(end_time=child_end + 1)
        child.end(end_time=child_end)

    spans = held(record_spans, emit)
    buffer = TraceBuffer(0, 60, 1000, 100, FakeClock().monotonic)
    buffer.add("r", spans)
    (released,) = buffer.due()
    assert [h.span.name for h in released.spans] == ["sibling", "grandchild", "child", "root"]


def test_routing_headers() -> None:
    basic = base64.b64encode(b"api:key-1").decode()
    assert api_key_from({"authorization": f"Basic {basic}"}) == "key-1"
    assert api_key_from({"authorization": "Bearer key-2"}) == "key-2"
    assert api_key_from({"wandb-api-key": "key-3"}) == "key-3"
    assert api_key_from({"authorization": "Bearer key-2", "wandb-api-key": "key-3"}) == "key-2"
    assert api_key_from({}) is None
    resource = {"wandb.entity": "team", "wandb.project": "app"}
    assert project_from(resource, {"project_id": "other/p"}) == "team/app"
    assert project_from({"wandb.project": "team/app"}, {}) == "team/app"
    assert project_from({}, {"project_id": "other/p"}) == "other/p"
    assert project_from({}, {}) is None


def test_gateway_settings_name_the_bad_variable() -> None:
    settings = GatewaySettings.from_env({})
    assert (settings.host, settings.port, settings.trace_wait_seconds) == ("127.0.0.1", 4318, 5)
    assert GatewaySettings.from_env({"WEAVE_GATEWAY_TRACE_WAIT": "0.5"}).trace_wait_seconds == 0.5
    assert GatewaySettings.from_env({"WEAVE_GATEWAY_PORT": "1"}, port="0").port == 0
    for variable, value in [
        ("WEAVE_GATEWAY_TRACE_WAIT", "soon"),
        ("WEAVE_GATEWAY_MAX_HELD_SPANS", "0"),
        ("WEAVE_GATEWAY_MAX_PIPELINES", "1.5"),
        ("WEAVE_GATEWAY_PORT", "70000"),
        ("WEAVE_GATEWAY_DRAIN_TIMEOUT", "-1"),
    ]:
        with pytest.raises(ConfigError, match=variable):
            GatewaySettings.from_env({variable: value})
