"""SummaryRollup on its own: sums over subtrees, and bounded memory for parents that never end."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.trace import Tracer
from opentelemetry.util.types import AttributeValue

from opentelemetry.exporter.weave import span_to_call
from opentelemetry.exporter.weave._call import WeaveCall
from opentelemetry.exporter.weave._models import SummaryInsertMap
from opentelemetry.exporter.weave._rollup import SummaryRollup

from .helpers import FakeClock, Record, make_call


def call(number: int, parent: int | None = None, tokens: int = 0) -> WeaveCall:
    """A successful call as mapping makes it, its ids small numbers, with ``tokens`` of usage."""
    summary: dict[str, Any] = {"status_counts": {"success": 1, "error": 0}}
    if tokens:
        summary["usage"] = {"m": {"input_tokens": tokens, "total_tokens": tokens, "requests": 1}}
    parent_id = None if parent is None else f"{parent:016x}"
    return make_call(f"{number:016x}", parent_id).replace(
        summary=SummaryInsertMap.model_validate(summary)
    )


def summary_of(call: WeaveCall) -> dict[str, Any]:
    return call.end.summary.model_dump(mode="json", exclude_none=True)


def test_children_sum_into_parent_with_extra_usage_keys(record_spans: Record) -> None:
    def emit(tracer: Tracer) -> None:
        with tracer.start_as_current_span("parent"):
            for reasoning in (3, 4):
                attributes: dict[str, AttributeValue] = {
                    "gen_ai.request.model": "o3",
                    "gen_ai.usage.input_tokens": 1,
                    "gen_ai.usage.reasoning.output_tokens": reasoning,
                }
                with tracer.start_as_current_span("llm", attributes=attributes):
                    pass

    rollup = SummaryRollup(max_pending=10, max_age_seconds=60)
    calls = [span_to_call(span, "e/p") for span in record_spans(emit)]
    first, second, parent = [rollup.roll_up(call) for call in calls]
    assert first.end.summary.model_dump()["usage"]["o3"]["reasoning_tokens"] == 3
    assert second.end.summary.model_dump()["usage"]["o3"]["reasoning_tokens"] == 4
    usage = parent.end.summary.model_dump()["usage"]["o3"]
    assert usage == {"input_tokens": 2, "total_tokens": 2, "requests": 2, "reasoning_tokens": 7}
    assert parent.end.summary.model_dump()["status_counts"] == {"success": 3, "error": 0}
    assert len(rollup) == 0  # nothing left waiting once the root ended


def test_a_summary_holds_the_whole_subtree() -> None:
    rollup = SummaryRollup(max_pending=10, max_age_seconds=60)
    root = call(1, tokens=1)
    rollup.roll_up(call(3, parent=2, tokens=3))
    middle = rollup.roll_up(call(2, parent=1, tokens=2))
    rolled_root = rollup.roll_up(root)
    assert summary_of(middle)["usage"]["m"]["total_tokens"] == 5
    assert summary_of(rolled_root) == {
        "usage": {"m": {"input_tokens": 6, "total_tokens": 6, "requests": 3}},
        "status_counts": {"success": 3, "error": 0},
    }
    assert summary_of(root)["usage"]["m"]["total_tokens"] == 1  # the call given is not changed


def test_pending_parents_are_bounded_by_count() -> None:
    evicted: list[int] = []
    rollup = SummaryRollup(max_pending=5, max_age_seconds=3600, on_evict=evicted.append)
    for number in range(12):  # each a child of its own parent, none of which has ended
        rollup.roll_up(call(100 + number, parent=number))
    assert len(rollup) == 5
    assert evicted == [1] * 7
    oldest_kept, evicted_last = call(7), call(6)
    assert rollup.roll_up(evicted_last) is evicted_last  # nothing waited for it any more
    assert summary_of(rollup.roll_up(oldest_kept))["status_counts"] == {"success": 2, "error": 0}


def test_pending_parents_are_bounded_by_age() -> None:
    clock = FakeClock()
    evicted: list[int] = []
    rollup = SummaryRollup(
        max_pending=1000, max_age_seconds=10, on_evict=evicted.append, clock=clock.monotonic
    )
    for number in range(3):
        rollup.roll_up(call(100 + number, parent=number))
    clock.advance(9.9)
    rollup.roll_up(call(103, parent=3))
    assert (len(rollup), evicted) == (4, [])  # none old enough yet
    clock.advance(0.2)
    rollup.roll_up(call(104, parent=4))
    assert len(rollup) == 2  # the old parents' totals went, the fresh ones' stay
    assert evicted == [3]
    old, fresh = call(0), call(3)
    assert rollup.roll_up(old) is old
    assert summary_of(rollup.roll_up(fresh))["status_counts"] == {"success": 2, "error": 0}


def test_a_call_under_a_remote_parent_leaves_nothing_waiting() -> None:
    rollup = SummaryRollup(max_pending=10, max_age_seconds=60)
    rollup.roll_up(call(2, parent=1, tokens=2))
    local_root = rollup.roll_up(call(1, parent=9, tokens=1), into_parent=False)
    assert len(rollup) == 0  # the remote parent never ends here: nothing waits for it
    assert summary_of(local_root)["usage"]["m"]["total_tokens"] == 3  # its own subtree counts
    remote_parent = call(9)
    assert rollup.roll_up(remote_parent) is remote_parent


@pytest.mark.parametrize("into_parent", [True, False])
@pytest.mark.parametrize("parent", [None, 1], ids=["root", "child"])
def test_a_call_with_no_ended_children_is_returned_unchanged(
    parent: int | None, into_parent: bool
) -> None:
    leaf = call(2, parent=parent, tokens=4)
    assert SummaryRollup(10, 60).roll_up(leaf, into_parent) is leaf
