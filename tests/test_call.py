"""The call every stage passes along, and the body each write route encodes it as."""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Sequence
from dataclasses import FrozenInstanceError, asdict, fields, replace
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.trace import Tracer
from pydantic import BaseModel

from opentelemetry.exporter.weave import WeaveSpanExporter, WriteMode
from opentelemetry.exporter.weave._call import (
    END_ONLY_FIELDS,
    REQUEST_ENVELOPE_BYTES,
    CallFacts,
    EndedCall,
    StartedCall,
    WeaveCall,
    call_end_body,
    call_start_body,
    calls_complete_body,
    calls_complete_route,
    format_span_id,
    format_trace_id,
    upsert_batch_body,
    utc_datetime,
    utc_iso,
)
from opentelemetry.exporter.weave._models import (
    CallEndReq,
    CallsCompleteReq,
    CallStartReq,
    CompletedCallSchemaForInsert,
    EndedCallSchemaForInsert,
    StartedCallSchemaForInsert,
    UpsertBatchReq,
)
from opentelemetry.exporter.weave.testing import LocalWeaveServer

from .helpers import API_KEY, PROJECT, Record, make_call

BatchBody = Callable[[Sequence[WeaveCall]], bytes]
BATCH_BODIES = [upsert_batch_body, calls_complete_body]
LATER = datetime(2026, 6, 1, tzinfo=timezone.utc)


def as_sent(model: BaseModel) -> dict[str, Any]:
    """A half (or a whole call) as the service reads it, as plain data like a ``WeaveCall``'s."""
    fields = dict(model)
    if "summary" in fields:
        fields["summary"] = model.summary.model_dump(mode="json")  # type: ignore[attr-defined]
    return fields


def rich_call(call_id: str = "00000000000000aa") -> WeaveCall:
    """A call with every kind of field set, and usage with most token counts unset."""
    call = make_call(
        call_id,
        parent_id="00000000000000ff",
        inputs={"messages": [{"role": "user", "content": "héllo ✓"}]},
        output={"choices": [None, 1.5, "ok"]},
        attributes={"otel": {"span_kind": "client"}, "note": "x"},
    )
    summary = {
        "usage": {"gpt-4o": {"input_tokens": 5, "requests": 1}},
        "status_counts": {"success": 1},
    }
    return call.replace(
        display_name="chat", exception="ValueError: no", summary=summary, wb_run_step_end=3
    )


CALLS = [make_call(), rich_call(), make_call("00000000000000bb", inputs={"t": '\u0000"\\'})]


# WeaveCall.replace: the one way of changing a call.


@pytest.mark.parametrize(
    ("changes", "in_start", "in_end"),
    [
        pytest.param({"op_name": "renamed", "inputs": {"a": 1}}, True, False, id="start-only"),
        pytest.param({"output": {"a": 1}, "exception": "boom"}, False, True, id="end-only"),
        pytest.param({"id": "fedcba9876543210"}, True, True, id="shared-id"),
        pytest.param({"project_id": "other/project"}, True, True, id="shared-project"),
        pytest.param({"started_at": LATER}, True, True, id="shared-started-at"),
        pytest.param({"trace_id": "f" * 32}, True, True, id="shared-trace-id"),
    ],
)
def test_replace_changes_the_half_that_holds_each_field(
    changes: dict[str, Any], in_start: bool, in_end: bool
) -> None:
    call = make_call()
    before = (replace(call.start), replace(call.end), call.start_json, call.end_json)

    changed = call.replace(**changes)

    for name, value in changes.items():
        if in_start:
            assert getattr(changed.start, name) == value
        if in_end:
            assert getattr(changed.end, name) == value
    assert (changed.start is call.start) is not in_start  # an untouched half is shared
    assert (changed.end is call.end) is not in_end
    assert (call.start, call.end, call.start_json, call.end_json) == before
    # The new call's JSON is its own, not the original's cached JSON.
    assert as_sent(StartedCallSchemaForInsert.model_validate_json(changed.start_json)) == asdict(
        changed.start
    )
    assert as_sent(EndedCallSchemaForInsert.model_validate_json(changed.end_json)) == asdict(
        changed.end
    )
    assert (changed.start_json != call.start_json) is in_start
    assert (changed.end_json != call.end_json) is in_end


def test_every_call_s_end_carries_its_start_s_trace_id() -> None:
    # Built without one, as an end from an older spool or a hand-made call would be.
    call = make_call()
    bare = WeaveCall(start=call.start, end=replace(call.end, trace_id=None))
    other = WeaveCall(start=call.start, end=replace(call.end, trace_id="e" * 32))

    for each in (call, bare, other, call.replace(output={"a": 1})):
        assert each.end.trace_id == each.start.trace_id
        assert json.loads(each.end_json)["trace_id"] == each.start.trace_id


@pytest.mark.parametrize(
    "ends",
    [
        lambda call: [json.loads(call_end_body(call))["end"]],
        lambda call: [
            item["req"]["end"]
            for item in json.loads(upsert_batch_body([call]))["batch"]
            if item["mode"] == "end"
        ],
        lambda call: json.loads(calls_complete_body([call]))["batch"],
    ],
    ids=["call_end", "upsert_batch", "calls_complete"],
)
def test_every_route_sends_the_end_with_trace_id_and_started_at(
    ends: Callable[[WeaveCall], list[dict[str, Any]]],
) -> None:
    call = rich_call()

    (end,) = ends(call)

    assert end["trace_id"] == call.start.trace_id
    assert end["started_at"] == json.loads(call.start_json)["started_at"]


def test_replace_refuses_what_is_not_a_call_field() -> None:
    call = make_call()
    with pytest.raises(TypeError, match="not a call field: colour, size"):
        call.replace(op_name="ok", size=1, colour="red")


# The encoders: one pure function per write route.


@pytest.mark.parametrize("call", CALLS)
def test_call_start_and_end_bodies_are_their_requests(call: WeaveCall) -> None:
    assert as_sent(CallStartReq.model_validate_json(call_start_body(call)).start) == asdict(
        call.start
    )
    assert as_sent(CallEndReq.model_validate_json(call_end_body(call)).end) == asdict(call.end)


def test_upsert_batch_body_carries_every_start_before_any_end() -> None:
    request = UpsertBatchReq.model_validate_json(upsert_batch_body(CALLS))

    assert [item.mode for item in request.batch] == ["start"] * 3 + ["end"] * 3
    starts = [item.req.start for item in request.batch if isinstance(item.req, CallStartReq)]
    ends = [item.req.end for item in request.batch if isinstance(item.req, CallEndReq)]
    assert [as_sent(start) for start in starts] == [asdict(call.start) for call in CALLS]
    assert [as_sent(end) for end in ends] == [asdict(call.end) for call in CALLS]


def test_calls_complete_body_carries_whole_calls() -> None:
    request = CallsCompleteReq.model_validate_json(calls_complete_body(CALLS))

    assert [as_sent(item) for item in request.batch] == [
        {**asdict(call.start), **{name: getattr(call.end, name) for name in END_ONLY_FIELDS}}
        for call in CALLS
    ]


@pytest.mark.parametrize("body", BATCH_BODIES)
@pytest.mark.parametrize("count", [0, 1, 3])
def test_a_batch_body_is_its_items_in_one_envelope(body: BatchBody, count: int) -> None:
    calls = CALLS[:count]
    items_per_call = 2 if body is upsert_batch_body else 1
    encoded = body(calls)
    assert encoded.startswith(b'{"batch":[')
    assert encoded.endswith(b"]}")
    assert len(json.loads(encoded)["batch"]) == items_per_call * count
    assert body(calls) == encoded  # the calls' own JSON is left as it was


def test_calls_complete_body_names_every_field_once() -> None:
    def once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        names = [name for name, _ in pairs]
        assert len(names) == len(set(names)), f"a field named twice: {names}"
        return dict(pairs)

    (item,) = json.loads(calls_complete_body([rich_call()]), object_pairs_hook=once)["batch"]

    assert set(item) == set(CompletedCallSchemaForInsert.model_fields)


@pytest.mark.parametrize(
    "encode",
    [
        call_end_body,
        lambda call: upsert_batch_body([call]),
        lambda call: calls_complete_body([call]),
    ],
    ids=["call_end", "upsert_batch", "calls_complete"],
)
def test_no_body_sends_an_unset_usage_count_as_null(encode: Callable[[WeaveCall], bytes]) -> None:
    # A present null token count outranks a real one in Weave's cost sum.
    assert summaries_in(json.loads(encode(rich_call()))) == [
        {"usage": {"gpt-4o": {"input_tokens": 5, "requests": 1}}, "status_counts": {"success": 1}}
    ]


def summaries_in(tree: Any) -> list[Any]:
    """Every value of a ``summary`` key, anywhere in ``tree``."""
    if isinstance(tree, list):
        return [summary for item in tree for summary in summaries_in(item)]
    if not isinstance(tree, dict):
        return []
    found = [tree["summary"]] if "summary" in tree else []
    return found + [summary for value in tree.values() for summary in summaries_in(value)]


def test_end_only_fields_are_the_end_fields_the_start_lacks() -> None:
    start, end = StartedCallSchemaForInsert.model_fields, EndedCallSchemaForInsert.model_fields

    assert sorted(END_ONLY_FIELDS) == sorted(end.keys() - start.keys())
    assert set(CompletedCallSchemaForInsert.model_fields) == start.keys() | set(END_ONLY_FIELDS)


@pytest.mark.parametrize("call", CALLS)
def test_encoded_size_bounds_the_call_s_share_of_every_route_s_body(call: WeaveCall) -> None:
    others = [make_call(f"{index:016x}") for index in range(3)]

    assert len(call_start_body(call)) + len(call_end_body(call)) <= call.encoded_size
    for body in BATCH_BODIES:
        assert len(body([*others, call])) - len(body(others)) <= call.encoded_size


@pytest.mark.parametrize("body", BATCH_BODIES)
def test_a_batch_fits_its_calls_encoded_sizes_and_the_envelope(body: BatchBody) -> None:
    assert len(body(CALLS)) <= sum(call.encoded_size for call in CALLS) + REQUEST_ENVELOPE_BYTES


# The names and times the mapping writes.


def test_calls_complete_route_quotes_entity_and_project() -> None:
    assert calls_complete_route("my team", "a/b?c") == "/v2/my%20team/a%2Fb%3Fc/calls/complete"


def test_ids_are_fixed_width_lowercase_hex() -> None:
    assert format_span_id(0xABC) == "0000000000000abc"
    assert format_trace_id(0xABC) == "0" * 29 + "abc"


def test_timestamps_become_utc_datetimes_to_the_microsecond() -> None:
    assert utc_datetime(1_767_225_600_123_456_789) == datetime(
        2026, 1, 1, 0, 0, 0, 123_456, tzinfo=timezone.utc
    )


def test_ids_outside_their_width_keep_it() -> None:
    assert format_span_id(2**64 + 0xABC) == "0000000000000abc"
    assert format_span_id(-1) == "f" * 16
    assert format_trace_id(2**128 + 0xABC) == "0" * 29 + "abc"


@pytest.mark.parametrize(
    ("nanoseconds", "expected"),
    [
        (-1, datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=timezone.utc)),
        (253_402_300_799_999_999_999, datetime.max.replace(tzinfo=timezone.utc)),
        # Exact to the microsecond: integer arithmetic, no float of the seconds.
        (4_102_444_800_000_001_999, datetime(2100, 1, 1, 0, 0, 0, 1, tzinfo=timezone.utc)),
    ],
)
def test_timestamps_convert_exactly_over_all_a_datetime_holds(
    nanoseconds: int, expected: datetime
) -> None:
    assert utc_datetime(nanoseconds) == expected


def test_a_timestamp_past_what_a_datetime_holds_is_an_overflow() -> None:
    with pytest.raises(OverflowError):
        utc_datetime(253_402_300_800_000_000_000)


def end_halves(path: str, body: Any) -> list[dict[str, Any]]:
    """The end halves (or whole calls) a request to ``path`` carries."""
    if path == "/call/end":
        return [body["end"]]
    if path == "/call/upsert_batch":
        return [item["req"]["end"] for item in body["batch"] if item["mode"] == "end"]
    if path.endswith("/calls/complete"):
        return list(body["batch"])
    return []


@pytest.mark.parametrize("mode", [mode.value for mode in WriteMode])
def test_every_write_mode_sends_trace_ids_on_ends_and_says_so(
    record_spans: Record, mode: str
) -> None:
    def emit(tracer: Tracer) -> None:
        with tracer.start_as_current_span("parent"), tracer.start_as_current_span("child"):
            pass

    spans = record_spans(emit)
    with LocalWeaveServer(api_key=API_KEY) as server:
        exporter = WeaveSpanExporter(
            api_key=API_KEY, project=PROJECT, server_url=server.url, write_mode=mode
        )
        try:
            exporter.export(spans)
        finally:
            exporter.shutdown()
        requests = [
            request
            for request in server.requests()
            if request.path.startswith("/call/") or request.path.endswith("/calls/complete")
        ]
        stored = {call["id"]: call["trace_id"] for call in server.calls()}

    ends = [
        end for request in requests for end in end_halves(request.path, json.loads(request.body))
    ]
    assert sorted(end["id"] for end in ends) == sorted(stored)
    assert all(end["trace_id"] == stored[end["id"]] for end in ends)
    # The capability is a promise about every end; it holds, so every call request makes it.
    assert requests
    assert all(
        request.headers["x-weave-client-capabilities"] == "trace_id_on_end" for request in requests
    )


# Sealed calls: what waits for delivery, encoded, its large fields kept as JSON only.


@pytest.mark.parametrize("call", CALLS)
def test_a_sealed_call_is_the_call_it_seals(call: WeaveCall) -> None:
    sealed = call.sealed()

    assert sealed == call
    assert (asdict(sealed.start), asdict(sealed.end)) == (asdict(call.start), asdict(call.end))
    assert (sealed.start_json, sealed.end_json, sealed.encoded_size) == (
        call.start_json,
        call.end_json,
        call.encoded_size,
    )
    for changes in (
        {"op_name": "renamed", "display_name": "shown"},
        {"summary": {"status_counts": {"success": 0, "error": 1}}},
        {"inputs": {"a": 1}},
        {"output": [2], "exception": "boom"},
        {"attributes": {"b": 3}, "id": "fedcba9876543210"},
    ):
        changed, expected = sealed.replace(**changes), call.replace(**changes)
        assert changed == expected, changes
        assert (changed.start_json, changed.end_json) == (expected.start_json, expected.end_json)


@pytest.mark.parametrize("call", CALLS)
def test_renamed_is_replace_of_the_name_and_the_name_shown(call: WeaveCall) -> None:
    for original in (call, call.sealed()):
        _ = original.inputs_json  # a large field's JSON, kept by both
        renamed = original.renamed("weave:///e/p/op/x:abc", "shown")
        expected = original.replace(op_name="weave:///e/p/op/x:abc", display_name="shown")

        assert renamed == expected
        assert (renamed.start_json, renamed.end_json) == (expected.start_json, expected.end_json)
        assert renamed.__dict__["inputs_json"] is original.inputs_json


def test_renamed_copies_every_other_field_from_its_own() -> None:
    call = rich_call().replace(
        thread_id="thread-1", turn_id="turn-1", wb_run_id="run/1", wb_run_step=7
    )
    renamed = call.renamed("weave:///e/p/op/x:abc", "shown")

    assert (renamed.start.op_name, renamed.start.display_name) == ("weave:///e/p/op/x:abc", "shown")
    for spec in fields(call.start):
        if spec.name not in ("op_name", "display_name"):
            assert getattr(renamed.start, spec.name) is getattr(call.start, spec.name), spec.name
    assert renamed.end is call.end
    assert renamed.facts is call.facts


@settings(max_examples=500, deadline=None)
@given(st.datetimes(timezones=st.just(timezone.utc)) | st.datetimes(timezones=st.timezones()))
def test_utc_iso_is_isoformat_in_utc(value: datetime) -> None:
    try:
        expected = value.astimezone(timezone.utc).isoformat(timespec="microseconds")
    except OverflowError:  # out of range once in UTC: not a time a span can have
        return
    assert utc_iso(value) == expected
    assert utc_iso(value) == expected  # as remembered


@pytest.mark.parametrize("same_trace", [True, False])
def test_weave_call_of_is_the_constructor(same_trace: bool) -> None:
    call = rich_call()
    end = replace(call.end, trace_id=call.start.trace_id if same_trace else "f" * 32)

    made, constructed = (
        WeaveCall.of(call.start, end, call.facts),
        WeaveCall(start=call.start, end=end, facts=call.facts),
    )

    assert made == constructed
    assert made.end.trace_id == made.start.trace_id  # the start's, as the constructor makes it
    assert (made.start_json, made.end_json) == (constructed.start_json, constructed.end_json)


@pytest.mark.parametrize(
    "values", [("llm", "gpt-4o", "chatcmpl-1"), ("tool", None, None), (None, None, None)]
)
def test_call_facts_of_is_the_constructor(values: tuple[Any, Any, Any]) -> None:
    made, constructed = CallFacts.of(*values), CallFacts(*values)

    assert made == constructed
    assert hash(made) == hash(constructed)
    assert vars(made) == vars(constructed)  # every field, a new one too
    with pytest.raises(FrozenInstanceError):
        made.model = "other"  # type: ignore[misc]


def test_a_sealed_half_copies_each_field_from_its_own() -> None:
    # Every field distinct from every other: a value copied into the wrong field shows.
    call = rich_call().replace(
        thread_id="thread-1", turn_id="turn-1", wb_run_id="run/1", wb_run_step=7
    )
    call = call.replace(started_at=LATER)
    sealed = call.sealed()

    for half, original in ((sealed.start, call.start), (sealed.end, call.end)):
        for spec in fields(original):
            assert getattr(half, spec.name) == getattr(original, spec.name), spec.name
    assert len({str(getattr(call.start, spec.name)) for spec in fields(call.start)}) == len(
        fields(call.start)
    )


def tracked_objects(root: object) -> int:
    """The objects the garbage collector tracks among those ``root`` holds, ``root`` too."""
    seen: set[int] = set()
    pending = [root]
    while pending:
        item = pending.pop()
        if id(item) in seen or isinstance(item, type) or not gc.is_tracked(item):
            continue
        seen.add(id(item))
        pending.extend(gc.get_referents(item))
    return len(seen)


def test_a_sealed_call_leaves_the_garbage_collector_a_few_objects_whatever_its_size() -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": f"m{n}"}]} for n in range(50)]
    call = make_call(inputs={"messages": messages}, output=[[n] for n in range(50)])

    assert tracked_objects(call.sealed()) == 1 < 100 < tracked_objects(call)


def test_the_plain_halves_have_exactly_the_contract_models_fields() -> None:
    # The hot path's dataclasses and the schemas that check what is sent cannot drift apart.
    assert {f.name for f in fields(StartedCall)} == set(StartedCallSchemaForInsert.model_fields)
    assert {f.name for f in fields(EndedCall)} == set(EndedCallSchemaForInsert.model_fields)
