"""Fitting calls to the request size limit: the largest fields cut first, each visibly."""

from __future__ import annotations

import json
from typing import Any

import pytest

from opentelemetry.exporter.weave._call import WeaveCall
from opentelemetry.exporter.weave._delivery import CallFailure, DeliveryReport
from opentelemetry.exporter.weave._size import FitToSize, fit_call
from opentelemetry.exporter.weave._transport import PostResult

from .helpers import RecordingSender, make_call

MARKER = "… [truncated by opentelemetry-exporter-weave: "


def json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode())


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


def test_the_otel_context_is_the_last_of_equally_large_fields_to_go() -> None:
    context = {"events": ["e" * 10_000]}
    call = make_call(attributes={"otel": context, "copy": dict(context)})

    fitted, cut = fit_call(call, call.encoded_size - 1)

    assert cut == ("attributes.copy",)
    assert fitted.start.attributes["otel"] == context


def test_a_call_that_cannot_fit_comes_back_with_its_large_fields_cut() -> None:
    call = large_call()

    fitted, cut = fit_call(call, 100)

    assert fitted.encoded_size > 100  # the service's 413 decides
    assert {"inputs.big", "inputs.medium", "output"} <= set(cut)
    assert fitted.encoded_size < call.encoded_size


def test_a_call_that_cannot_fit_comes_back_as_small_as_it_gets() -> None:
    call = make_call(
        inputs={"big": "b" * 3_000}, attributes={f"n{index}": index for index in range(50)}
    )

    fitted, _ = fit_call(call, 100)

    assert fitted.start.attributes == call.start.attributes  # a marker would be larger
    assert fitted.encoded_size < call.encoded_size


def test_fit_to_size_sends_fitted_calls_and_counts_the_truncated() -> None:
    small = make_call("0000000000000001")
    big = make_call("0000000000000002", inputs={"text": "x" * 30_000})
    bigger = make_call("0000000000000003", output="y" * 40_000)
    refused = CallFailure(small, "/call/start", PostResult(400))
    inner = RecordingSender(
        lambda calls: DeliveryReport(delivered=len(calls) - 1, failures=(refused,), retries=2)
    )
    budget = 10_000

    report = FitToSize(inner, budget).send([small, big, bigger], deadline=0.0)

    (sent,) = inner.batches
    assert sent == [small, fit_call(big, budget)[0], fit_call(bigger, budget)[0]]
    assert sent[0] is small
    assert all(call.encoded_size <= budget for call in sent)
    assert report == DeliveryReport(delivered=2, failures=(refused,), truncated=2, retries=2)
