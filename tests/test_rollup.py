"""SummaryRollup on its own: sums, and bounded memory for parents that never end."""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import Tracer

from opentelemetry.exporter.weave import span_to_call
from opentelemetry.exporter.weave._call import WeaveCall
from opentelemetry.exporter.weave._rollup import SummaryRollup

Record = Callable[[Callable[[Tracer], None]], list[ReadableSpan]]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def calls_of(record: Record, emit: Callable[[Tracer], None]) -> list[WeaveCall]:
    return [span_to_call(span, "e/p") for span in record(emit)]


def orphan_children(tracer: Tracer, count: int) -> None:
    """Children whose parents end nowhere here (each its own unended parent)."""
    for index in range(count):
        parent = tracer.start_span(f"never-ends-{index}")
        with tracer.start_as_current_span("child", context=trace.set_span_in_context(parent)):
            pass


def test_children_sum_into_parent_with_extra_usage_keys(record_spans: Record) -> None:
    def emit(tracer: Tracer) -> None:
        with tracer.start_as_current_span("parent"):
            for reasoning in (3, 4):
                attributes = {
                    "gen_ai.request.model": "o3",
                    "gen_ai.usage.input_tokens": 1,
                    "gen_ai.usage.reasoning.output_tokens": reasoning,
                }
                with tracer.start_as_current_span("llm", attributes=attributes):
                    pass

    rollup = SummaryRollup(max_pending=10, max_age_seconds=60)
    first, second, parent = [rollup.roll_up(call) for call in calls_of(record_spans, emit)]
    assert first.end.summary.model_dump()["usage"]["o3"]["reasoning_tokens"] == 3
    assert second.end.summary.model_dump()["usage"]["o3"]["reasoning_tokens"] == 4
    usage = parent.end.summary.model_dump()["usage"]["o3"]
    assert usage == {"input_tokens": 2, "total_tokens": 2, "requests": 2, "reasoning_tokens": 7}
    assert parent.end.summary.model_dump()["status_counts"] == {"success": 3, "error": 0}
    assert len(rollup) == 0  # nothing left waiting once the root ended


def test_pending_parents_are_bounded_by_count(record_spans: Record) -> None:
    evicted: list[int] = []
    rollup = SummaryRollup(max_pending=5, max_age_seconds=3600, on_evict=evicted.append)
    for call in calls_of(record_spans, lambda tracer: orphan_children(tracer, 12)):
        rollup.roll_up(call)
    assert len(rollup) == 5
    assert sum(evicted) == 7


def test_pending_parents_are_bounded_by_age(record_spans: Record) -> None:
    clock = FakeClock()
    evicted: list[int] = []
    rollup = SummaryRollup(
        max_pending=1000, max_age_seconds=10, on_evict=evicted.append, clock=clock
    )
    old, *_ = calls_of(record_spans, lambda tracer: orphan_children(tracer, 3))
    rollup.roll_up(old)
    assert len(rollup) == 1
    clock.now = 11
    (fresh,) = calls_of(record_spans, lambda tracer: orphan_children(tracer, 1))
    rollup.roll_up(fresh)
    assert len(rollup) == 1  # the old parent's totals went, the fresh one's stay
    assert evicted == [1]


def test_leaf_is_returned_unchanged(record_spans: Record) -> None:
    (leaf,) = calls_of(record_spans, lambda tracer: tracer.start_span("leaf").end())
    assert SummaryRollup(10, 60).roll_up(leaf) is leaf
