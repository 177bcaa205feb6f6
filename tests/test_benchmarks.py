"""The benchmark's openai workload replays what the real instrumentation recorded."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from _workload import OPENAI_SPANS, OpenAIWorkload  # noqa: E402


def as_recorded(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def test_the_openai_workload_replays_every_recorded_span_as_it_was() -> None:
    recorded = json.loads(OPENAI_SPANS.read_text(encoding="utf-8"))["traces"]
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))

    OpenAIWorkload(provider).emit(10 * len(recorded))

    finished = memory.get_finished_spans()
    assert len(finished) == 10 * len(recorded)
    by_trace: dict[int, list[Any]] = {}
    for span in finished:
        by_trace.setdefault(span.context.trace_id, []).append(span)
    for trace, spans in zip(
        recorded, sorted(by_trace.values(), key=lambda s: min(x.start_time for x in s)), strict=True
    ):
        spans.sort(key=lambda span: (span.start_time, span.parent is not None))
        ids = [span.context.span_id for span in spans]
        base = spans[0].start_time
        for span, record in zip(spans, trace["spans"], strict=True):
            scope = span.instrumentation_scope
            assert (span.name, span.kind.name) == (record["name"], record["kind"])
            assert [scope.name, scope.version or "", scope.schema_url or ""] == record["scope"]
            parent = None if span.parent is None else ids.index(span.parent.span_id)
            assert parent == record["parent"]
            attributes = {key: as_recorded(value) for key, value in span.attributes.items()}
            assert attributes == {**record["start_attributes"], **record["attributes"]}
            assert (span.start_time - base, span.end_time - base) == (
                record["start"],
                record["end"],
            )
            assert [span.status.status_code.name, span.status.description] == record["status"]
            assert [event.name for event in span.events] == [e["name"] for e in record["events"]]


def test_the_instruction_count_children_do_the_work_they_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import instructions

    # What each child counts: the stock encoder's protobuf, and the pipeline's calls.
    encoded: list[int] = []
    bodies: list[int] = []
    from opentelemetry.exporter.otlp.proto.common import trace_encoder

    from opentelemetry.exporter.weave import _call

    real_encode, real_body = trace_encoder.encode_spans, _call.calls_complete_body
    monkeypatch.setattr(
        trace_encoder,
        "encode_spans",
        lambda spans: encoded.append(len(spans)) or real_encode(spans),
    )
    monkeypatch.setattr(
        _call,
        "calls_complete_body",
        lambda calls: bodies.append(len(calls)) or real_body(calls),
    )

    for workload in ("synthetic", "openai"):
        instructions.child("stock", workload, 20, 1)
        instructions.child("weave", workload, 20, 1)

    assert encoded == [20, 20, 20, 20]  # warm-up and one counted loop, per workload
    assert bodies == [20, 20, 20, 20]


def test_each_stage_child_does_the_work_it_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    import instructions

    from opentelemetry.exporter.weave import _call, _mapping, _redaction, _rollup

    done: list[str] = []

    def counting(stage: str, real: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            done.append(stage)
            return real(*args, **kwargs)

        return counted

    monkeypatch.setattr(_mapping, "span_to_call", counting("map", _mapping.span_to_call))
    redactor_apply = counting("scrub", _redaction.Redactor.apply)
    monkeypatch.setattr(_redaction.Redactor, "apply", redactor_apply)
    roll_up = counting("roll-up", _rollup.SummaryRollup.roll_up)
    monkeypatch.setattr(_rollup.SummaryRollup, "roll_up", roll_up)
    monkeypatch.setattr(_call.WeaveCall, "sealed", counting("seal", _call.WeaveCall.sealed))

    for stage in instructions.STAGES:
        done.clear()
        instructions.child(stage, "synthetic", 20, 1)
        # Its input made once (mapped and scrubbed calls), then the stage, warm-up and a loop.
        setup = ["map"] * 20 + ["scrub"] * 20
        assert done[: len(setup)] == setup
        assert done[len(setup) :] == [stage] * 40
