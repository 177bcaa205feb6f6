"""Fitting calls to the request size limit: the largest fields cut first, each visibly."""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.trace import Tracer

from opentelemetry.exporter.weave import WeaveSpanExporter, WriteMode, _size
from opentelemetry.exporter.weave._call import WeaveCall
from opentelemetry.exporter.weave._delivery import CallFailure, DeliveryReport
from opentelemetry.exporter.weave._size import (
    ROW_JSON_LIMIT,
    FitToSize,
    fit_call,
    service_json_bytes,
)
from opentelemetry.exporter.weave._transport import PostResult
from opentelemetry.exporter.weave.testing import LocalWeaveServer

from .helpers import (
    API_KEY,
    NO_WAIT_RETRIES,
    PROJECT,
    FakeClock,
    Record,
    RecordingSender,
    make_call,
)

MARKER = "… [truncated by opentelemetry-exporter-weave: "


def json_size(value: Any) -> int:
    """Bytes of ``value`` as the call's encoding has it: compact, UTF-8."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def large_call() -> WeaveCall:
    """Fields of distinct sizes: 50 kB, 20 kB, 5 kB, and a few small ones."""
    return make_call(
        inputs={"big": "b" * 50_000, "medium": "m" * 20_000, "note": "small"},
        output={"text": "o" * 5_000},
        attributes={"tag": "small"},
    )


def is_marker(value: Any) -> bool:
    return isinstance(value, str) and MARKER in value


def test_a_call_under_the_budget_is_untouched() -> None:
    call = large_call()

    assert fit_call(call, call.encoded_size) == (call, ())
    assert fit_call(call, call.encoded_size)[0] is call


@pytest.mark.parametrize(
    ("excess", "cut"),
    [
        (1, ("inputs.big",)),
        (45_000, ("inputs.big",)),
        (55_000, ("inputs.big", "inputs.medium")),
        (70_000, ("inputs.big", "inputs.medium", "output")),
    ],
)
def test_the_largest_fields_go_first_and_only_until_it_fits(
    excess: int, cut: tuple[str, ...]
) -> None:
    call = large_call()
    budget = call.encoded_size - excess

    fitted, fields = fit_call(call, budget)

    assert fields == cut
    assert fitted.encoded_size <= budget
    cut_or_kept = {
        "inputs.big": fitted.start.inputs["big"],
        "inputs.medium": fitted.start.inputs["medium"],
        "output": fitted.end.output,
    }
    assert [path for path, value in cut_or_kept.items() if is_marker(value)] == list(cut)
    # Whatever did not have to go is as it was.
    assert fitted.start.inputs["note"] == "small"
    assert fitted.start.attributes == {"tag": "small"}
    if "output" not in cut:
        assert fitted.end.output == call.end.output


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("inputs.messages", {"inputs": {"messages": [{"content": "é" * 30_000}]}}),
        ("output", {"output": {"choices": ["é" * 30_000]}}),
        ("attributes.raw", {"attributes": {"raw": "é" * 30_000}}),
    ],
)
def test_a_marker_keeps_the_head_and_names_the_field_its_size_and_the_limit(
    path: str, fields: dict[str, Any]
) -> None:
    call = make_call(**fields)
    container, _, key = path.partition(".")
    original = call.end.output if container == "output" else fields[container][key]
    budget = 10_000

    fitted, cut = fit_call(call, budget)

    assert cut == (path,)
    marker = fitted.end.output if container == "output" else getattr(fitted.start, container)[key]
    head = json.dumps(original, ensure_ascii=False)[:1000]
    assert marker == (
        f"{head}{MARKER}{path} was {json_size(original)} bytes of JSON, "  # bytes, not chars
        f"over the {budget}-byte request limit]"
    )
    assert fitted.encoded_size <= budget


def test_a_field_the_call_encodes_but_json_cannot_is_cut_too() -> None:
    call = make_call(inputs={"huge": 10**20_000})

    fitted, cut = fit_call(call, 5_000)

    assert cut == ("inputs.huge",)
    assert fitted.start.inputs["huge"].startswith("1" + "0" * 999 + MARKER)
    assert fitted.encoded_size <= 5_000


def test_the_otel_context_is_the_last_of_equally_large_fields_to_go() -> None:
    context = {"events": ["e" * 10_000]}
    call = make_call(attributes={"otel": context, "copy": dict(context)})

    fitted, cut = fit_call(call, call.encoded_size - 1)

    assert cut == ("attributes.copy",)
    assert fitted.start.attributes["otel"] == context


def test_a_call_that_cannot_fit_comes_back_cut_whole() -> None:
    call = large_call()

    fitted, cut = fit_call(call, 100)

    assert fitted.encoded_size > 100  # the service's 413 decides
    assert cut == ("inputs", "output", "attributes")
    assert fitted.start.inputs == fitted.start.attributes == {"truncated": fitted.end.output}
    assert is_marker(fitted.end.output)
    assert fitted.encoded_size < call.encoded_size


def test_many_small_fields_that_cannot_go_one_by_one_go_whole() -> None:
    call = make_call(attributes={f"n{index}": index for index in range(5_000)})
    budget = 10_000

    fitted, cut = fit_call(call, budget)

    assert cut == ("inputs", "attributes")  # no output to cut
    assert "too many fields to fit one by one" in fitted.start.attributes["truncated"]
    assert fitted.encoded_size <= budget


def test_a_call_whose_every_cut_would_add_bytes_comes_back_as_it_was() -> None:
    call = make_call(attributes={"n": 1})

    assert fit_call(call, 10) == (call, ())


field_values = st.one_of(
    st.text(max_size=3_000),
    st.integers(),
    st.lists(st.text(max_size=300), max_size=20),
    st.dictionaries(st.text(max_size=10), st.text(max_size=500), max_size=10),
)


@settings(max_examples=100, deadline=None)
@given(
    inputs=st.dictionaries(st.text(max_size=20), field_values, max_size=15),
    attributes=st.dictionaries(st.text(max_size=20), field_values, max_size=15),
    output=st.one_of(st.none(), field_values),
    budget=st.integers(0, 40_000),
)
def test_fitting_only_ever_shrinks_a_call(
    inputs: dict[str, Any], attributes: dict[str, Any], output: Any, budget: int
) -> None:
    call = make_call(inputs=inputs, output=output, attributes=attributes)

    fitted, cut = fit_call(call, budget)

    assert fitted.encoded_size <= call.encoded_size
    assert (fitted is call) == (cut == ())
    if cut:
        assert fitted.encoded_size < call.encoded_size


class CountingEncodes:
    """Counts each encoding of the calls' attributes (the field these tests make large),
    failing fast past ``limit``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
        self.count = 0
        original = WeaveCall.__dict__["attributes_json"].func

        def counted(call: WeaveCall) -> bytes:
            self.count += 1
            assert self.count <= limit, f"more than {limit} encodes of the attributes"
            return original(call)

        prop = cached_property(counted)
        prop.__set_name__(WeaveCall, "attributes_json")
        monkeypatch.setattr(WeaveCall, "attributes_json", prop)


def test_fitting_40_000_fields_encodes_the_call_a_fixed_number_of_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    value = "v" * 1_200  # its marker is a little smaller: each cut saves a few bytes
    call = make_call(attributes={f"key{index}": value for index in range(40_000)})
    budget = call.encoded_size - 500_000
    encodes = CountingEncodes(monkeypatch, limit=10)

    # The request limit alone: this many fields that cuts save little on would go whole
    # under the row limit (test_many_medium_fields_over_the_row_limit_go_whole).
    fitted, cut = fit_call(call, budget, row_limit=3 * call.encoded_size)

    assert fitted.encoded_size <= budget
    assert len(cut) > 5_000
    assert encodes.count <= 2  # the call as it came, and as it was cut


class TickingClock(FakeClock):
    """A clock that moves ``step`` seconds each time it is read: work that reads it takes time."""

    def __init__(self, step: float) -> None:
        super().__init__()
        self.step = step

    def monotonic(self) -> float:
        self.advance(self.step)
        return super().monotonic()


def fields_call(count: int) -> WeaveCall:
    return make_call(inputs={f"field{index}": "f" * (10_000 + index) for index in range(count)})


def test_fitting_with_time_to_spare_cuts_the_largest_fields() -> None:
    clock = TickingClock(step=0.001)
    inner = RecordingSender()

    report = FitToSize(inner, 500_000, clock.monotonic).send([fields_call(100)], 1000.0 + 60)

    ((sent,),) = inner.batches
    assert is_marker(sent.start.inputs["field99"])
    assert sent.start.inputs["field0"] == "f" * 10_000  # the smallest could stay
    assert sent.encoded_size <= 500_000
    assert report.truncated == 1


def test_fitting_near_the_deadline_cuts_whole_and_never_runs_past_it() -> None:
    clock = TickingClock(step=0.001)  # weighing 1,000 fields would take a second
    inner = RecordingSender()
    deadline = 1000.0 + 0.2

    report = FitToSize(inner, 100_000, clock.monotonic).send([fields_call(1_000)] * 3, deadline)

    (sent,) = inner.batches
    assert all(call.start.inputs.keys() == {"truncated"} for call in sent)
    assert "no time left to cut field by field" in sent[0].start.inputs["truncated"]
    assert all(call.encoded_size <= 100_000 for call in sent)
    assert report.truncated == 3
    # Fitting kept to its share of the time left, leaving the rest to delivery.
    assert clock.monotonic() < 1000.0 + 0.1 + 0.01


def test_fitting_that_runs_out_of_time_while_cutting_cuts_whole() -> None:
    clock = TickingClock(step=0.001)  # weighing 100 fields takes 0.1 s, 55 cuts 0.055 s more
    inner = RecordingSender()
    deadline = 1000.0 + 0.25  # fitting may use 0.125 s of it

    FitToSize(inner, 500_000, clock.monotonic).send([fields_call(100)], deadline)

    ((sent,),) = inner.batches
    assert sent.start.inputs.keys() == {"truncated"}
    assert clock.monotonic() < 1000.0 + 0.125 + 0.01


def test_fitting_past_the_deadline_weighs_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    weighed: list[Any] = []
    monkeypatch.setattr(_size, "to_json", lambda value: weighed.append(value) or b"")
    inner = RecordingSender()

    FitToSize(inner, 100_000, clock.monotonic).send([fields_call(100)], clock.monotonic() - 1)

    ((sent,),) = inner.batches
    assert sent.start.inputs.keys() == {"truncated"}
    assert weighed == []


def test_fit_to_size_sends_fitted_calls_and_counts_the_truncated() -> None:
    small = make_call("0000000000000001")
    big = make_call("0000000000000002", inputs={"text": "x" * 30_000})
    bigger = make_call("0000000000000003", output="y" * 40_000)
    refused = CallFailure(small, "/call/start", PostResult(400))
    inner = RecordingSender(
        lambda calls: DeliveryReport(delivered=len(calls) - 1, failures=(refused,), retries=2)
    )
    budget = 10_000
    clock = FakeClock()

    report = FitToSize(inner, budget, clock.monotonic).send([small, big, bigger], 1000.0 + 5)

    (sent,) = inner.batches
    assert sent == [small, fit_call(big, budget)[0], fit_call(bigger, budget)[0]]
    assert sent[0] is small
    assert all(call.encoded_size <= budget for call in sent)
    assert report == DeliveryReport(delivered=2, failures=(refused,), truncated=2, retries=2)


# The limit of a call's JSON fields, as the service weighs them when it stores the call.

SERVICE_ROW_LIMIT = 3.5 * 1024 * 1024
"""``CLICKHOUSE_SINGLE_ROW_INSERT_BYTES_LIMIT`` of weave 0.53's trace server."""
JSON_FIELDS = ("inputs", "output", "attributes", "summary")


def service_weight(value: Any) -> int:
    """What the service makes of a field: our JSON parsed, then ``json.dumps`` of it."""
    return len(json.dumps(json.loads(_size.to_json(value))).encode())


def fields_weight(call: WeaveCall) -> int:
    """The service's weight of the call's four JSON fields together (one calls_complete row)."""
    summary = call.end.summary
    halves = (call.start.inputs, call.end.output, call.start.attributes, summary)
    return sum(service_weight(value) for value in halves)


def is_row_marker(value: Any) -> bool:
    return is_marker(value) and "limit of a call's JSON fields]" in value


def test_the_row_limit_leaves_a_margin_under_the_services() -> None:
    assert ROW_JSON_LIMIT <= SERVICE_ROW_LIMIT - 512 * 1024


@settings(max_examples=200, deadline=None)
@given(
    value=st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text()),
        lambda children: st.lists(children) | st.dictionaries(st.text(), children),
        max_leaves=30,
    )
)
def test_service_json_bytes_never_undercounts_nor_passes_six_times_the_json(value: Any) -> None:
    encoded = _size.to_json(value)

    assert service_weight(value) <= service_json_bytes(encoded) <= 6 * len(encoded)


@pytest.mark.parametrize(
    "text",
    ["plain ascii", "\x7f" * 3, "é" * 7, "中文" * 5, "😀" * 3, 'mixé中😀\u0000"quoted"'],
    ids=["ascii", "del", "two-byte", "three-byte", "four-byte", "mixed"],
)
def test_service_json_bytes_is_exact_for_text_without_separators(text: str) -> None:
    assert service_json_bytes(_size.to_json(text)) == service_weight(text)


def call_weighing(weight: int, text: str) -> WeaveCall:
    """A call whose JSON fields weigh ``weight`` as fit_call counts them: ``text`` repeated in
    one input, topped up with ASCII."""
    unit = service_json_bytes(_size.to_json(text)) - 2  # without the quotes
    base = make_call(inputs={"text": ""})
    base_weight = service_json_bytes(base.start_json) + service_json_bytes(base.end_only_json)
    count, rest = divmod(weight - base_weight, unit)
    return make_call(inputs={"text": text * count + "a" * rest})


@pytest.mark.parametrize("text", ["a", "é", "😀"], ids=["ascii", "two-byte", "four-byte"])
def test_a_call_at_the_row_limit_is_untouched_and_one_byte_over_is_cut(text: str) -> None:
    at_limit = call_weighing(ROW_JSON_LIMIT, text)
    over = call_weighing(ROW_JSON_LIMIT + 1, text)
    budget = 31 * 1024 * 1024

    assert fit_call(at_limit, budget) == (at_limit, ())
    fitted, cut = fit_call(over, budget)

    assert cut == ("inputs.text",)
    marker = fitted.start.inputs["text"]
    assert is_row_marker(marker)
    assert marker.startswith(json.dumps(over.start.inputs["text"], ensure_ascii=False)[:1000])
    assert f"over the {ROW_JSON_LIMIT}-byte limit of a call's JSON fields]" in marker
    assert fields_weight(over) > ROW_JSON_LIMIT - 1_000  # the weighing is near exact
    assert fields_weight(fitted) <= ROW_JSON_LIMIT


def test_multi_byte_text_the_request_limit_takes_is_cut_to_what_the_service_stores() -> None:
    # 1.3 MB of our UTF-8 JSON, 3.9 MB once the service escapes it: over its 3.5 MiB.
    call = make_call(output={"choices": [{"message": {"content": "é" * 650_000}}]})
    assert call.encoded_size < ROW_JSON_LIMIT / 2
    assert fields_weight(call) > SERVICE_ROW_LIMIT

    fitted, cut = fit_call(call, 31 * 1024 * 1024)

    assert cut == ("output",)
    assert is_row_marker(fitted.end.output)
    assert fields_weight(fitted) <= ROW_JSON_LIMIT


def nested(depth: int, leaf: Any) -> Any:
    for level in range(depth):
        leaf = {f"level{level}": [leaf]}
    return leaf


def test_the_heaviest_fields_of_all_four_go_first_until_the_row_fits() -> None:
    call = make_call(
        inputs={"deep": nested(60, "d" * 40_000), "small": "kept"},
        output={"text": "o" * 30_000},
        attributes={"raw": "r" * 20_000, "otel": {"span_kind": "client"}},
    )
    row_limit = fields_weight(call) - 45_000  # the deep input alone is not enough

    fitted, cut = fit_call(call, 31 * 1024 * 1024, row_limit=row_limit)

    assert cut == ("inputs.deep", "output")
    assert fitted.start.inputs["deep"].startswith('{"level59": [{"level58": [')
    assert all(is_row_marker(value) for value in (fitted.start.inputs["deep"], fitted.end.output))
    assert fitted.start.inputs["small"] == "kept"
    assert fitted.start.attributes == call.start.attributes
    assert fitted.end.summary == call.end.summary  # never cut: costs and status live there
    assert fields_weight(fitted) <= row_limit


def test_many_medium_fields_over_the_row_limit_go_whole() -> None:
    # Each marker would weigh nearly what its field does: cutting one by one cannot fit.
    call = make_call(attributes={f"key{index}": "v" * 1_200 for index in range(200)})
    row_limit = 100_000

    fitted, cut = fit_call(call, 31 * 1024 * 1024, row_limit=row_limit)

    assert cut == ("inputs", "attributes")
    assert is_row_marker(fitted.start.attributes["truncated"])
    assert "too many fields to fit one by one" in fitted.start.attributes["truncated"]
    assert fields_weight(fitted) <= row_limit


def test_a_call_over_both_limits_names_each_cut_once_with_its_limit() -> None:
    call = make_call(inputs={"a": "é" * 30_000, "b": "b" * 20_000})
    row_limit, budget = 150_000, 15_000  # "a" weighs 180 kB to the service, 60 kB to us

    fitted, cut = fit_call(call, budget, row_limit=row_limit)

    assert cut == ("inputs.a", "inputs.b")
    assert is_row_marker(fitted.start.inputs["a"])
    assert "over the 15000-byte request limit]" in fitted.start.inputs["b"]
    assert fitted.encoded_size <= budget


def test_fit_to_size_keeps_each_call_within_the_row_limit() -> None:
    inner = RecordingSender()
    calls = [make_call(inputs={"text": "é" * 40_000}), make_call("0000000000000002")]

    report = FitToSize(inner, 10_000_000, FakeClock().monotonic, row_limit=100_000).send(
        calls, 1000.0 + 5
    )

    ((cut, kept),) = inner.batches
    assert is_row_marker(cut.start.inputs["text"])
    assert kept is calls[1]
    assert report.truncated == 1


def emit_heavy_span(tracer: Tracer) -> None:
    with tracer.start_as_current_span("heavy") as span:
        # 1.4 MB to us, 4.2 MB to the service: over its 3.5 MiB row limit.
        span.set_attribute("document", "é" * 700_000)


@pytest.mark.parametrize("mode", [mode.value for mode in WriteMode])
def test_every_write_mode_stores_a_heavy_span_cut_within_the_row_limit(
    record_spans: Record, mode: str
) -> None:
    spans = record_spans(emit_heavy_span)
    with LocalWeaveServer(api_key=API_KEY) as server:
        exporter = WeaveSpanExporter(
            api_key=API_KEY,
            project=PROJECT,
            server_url=server.url,
            write_mode=mode,
            _retry_policy=NO_WAIT_RETRIES,
        )
        try:
            exporter.export(spans)
        finally:
            exporter.shutdown()
        (stored,) = server.calls()

    assert is_row_marker(stored["attributes"]["document"])
    assert sum(len(json.dumps(stored[name])) for name in JSON_FIELDS) <= ROW_JSON_LIMIT
    assert exporter.stats().calls_truncated == 1
    # Each body sent also passed conftest's contract check, which every posted body goes through.
