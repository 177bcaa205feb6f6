"""Fitting calls to the request size limit: the largest fields cut first, each visibly."""

from __future__ import annotations

import json
from functools import cached_property
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opentelemetry.exporter.weave import _size
from opentelemetry.exporter.weave._call import WeaveCall
from opentelemetry.exporter.weave._delivery import CallFailure, DeliveryReport
from opentelemetry.exporter.weave._size import FitToSize, fit_call
from opentelemetry.exporter.weave._transport import PostResult

from .helpers import FakeClock, RecordingSender, make_call

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
    """Counts each encoding of a whole call (its start half), failing fast past ``limit``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, limit: int) -> None:
        self.count = 0
        original = WeaveCall.__dict__["start_json"].func

        def counted(call: WeaveCall) -> bytes:
            self.count += 1
            assert self.count <= limit, f"more than {limit} encodes of a whole call"
            return original(call)

        prop = cached_property(counted)
        prop.__set_name__(WeaveCall, "start_json")
        monkeypatch.setattr(WeaveCall, "start_json", prop)


def test_fitting_40_000_fields_encodes_the_call_a_fixed_number_of_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    value = "v" * 1_200  # its marker is a little smaller: each cut saves a few bytes
    call = make_call(attributes={f"key{index}": value for index in range(40_000)})
    budget = call.encoded_size - 500_000
    encodes = CountingEncodes(monkeypatch, limit=10)

    fitted, cut = fit_call(call, budget)

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
