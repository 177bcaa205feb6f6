"""SummaryRollup on its own: sums over subtrees, and bounded memory for parents that never end."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from opentelemetry.trace import Tracer
from opentelemetry.util.types import AttributeValue

from opentelemetry.exporter.weave import span_to_call
from opentelemetry.exporter.weave._call import CallFacts, WeaveCall
from opentelemetry.exporter.weave._rollup import SummaryRollup

from .helpers import FakeClock, Record, make_call

MODEL_CALL = CallFacts(kind="llm", model="m")


def call(
    number: int,
    parent: int | None = None,
    tokens: int = 0,
    facts: CallFacts = MODEL_CALL,
    model: str = "m",
) -> WeaveCall:
    """A successful call as mapping makes it, its ids small numbers, with ``tokens`` of usage
    (of ``model``); a model call unless ``facts`` say otherwise."""
    summary: dict[str, Any] = {"status_counts": {"success": 1, "error": 0}}
    if tokens:
        summary["usage"] = {model: {"input_tokens": tokens, "total_tokens": tokens, "requests": 1}}
    parent_id = None if parent is None else f"{parent:016x}"
    made = make_call(f"{number:016x}", parent_id).replace(summary=summary)
    return WeaveCall(start=made.start, end=made.end, facts=facts)


AGENT = CallFacts(kind="agent")


def test_a_run_total_on_an_agent_does_not_add_to_its_model_calls() -> None:
    rollup = SummaryRollup(max_pending=10, max_age_seconds=60)
    rollup.roll_up(call(2, parent=1, tokens=3))
    rollup.roll_up(call(3, parent=1, tokens=4))
    agent = rollup.roll_up(call(1, tokens=7, facts=AGENT))  # the run's total, reported again
    assert summary_of(agent)["usage"] == {
        "m": {"input_tokens": 7, "total_tokens": 7, "requests": 2}
    }


def test_an_agent_total_stands_in_when_no_descendant_reported_usage() -> None:
    rollup = SummaryRollup(max_pending=10, max_age_seconds=60)
    rollup.roll_up(call(2, parent=1, facts=CallFacts(kind="tool")))
    agent = rollup.roll_up(call(1, tokens=5, facts=AGENT))
    assert summary_of(agent)["usage"] == {
        "m": {"input_tokens": 5, "total_tokens": 5, "requests": 1}
    }
    lone = call(9, tokens=2, facts=CallFacts())
    assert rollup.roll_up(lone) is lone  # a leaf's own usage is its own, whatever its kind


def test_a_model_less_total_takes_the_single_model_of_its_descendants() -> None:
    rollup = SummaryRollup(max_pending=10, max_age_seconds=60)
    rollup.roll_up(call(2, parent=1, facts=CallFacts(kind="llm", model="gpt-4o")))
    total = call(1, tokens=5, facts=AGENT, model="unknown")
    own_summary = copy.deepcopy(total.end.summary)
    agent = rollup.roll_up(total)
    assert set(summary_of(agent)["usage"]) == {"gpt-4o"}
    assert total.end.summary == own_summary  # moved in the rolled-up copy only


def test_a_model_less_total_stays_unknown_when_descendants_used_several_models() -> None:
    rollup = SummaryRollup(max_pending=10, max_age_seconds=60)
    rollup.roll_up(call(2, parent=1, facts=CallFacts(kind="llm", model="a")))
    rollup.roll_up(call(3, parent=1, facts=CallFacts(kind="llm", model="b")))
    agent = rollup.roll_up(call(1, tokens=5, facts=AGENT, model="unknown"))
    assert set(summary_of(agent)["usage"]) == {"unknown"}


def test_two_spans_of_one_response_count_it_once() -> None:
    rollup = SummaryRollup(max_pending=10, max_age_seconds=60)
    same_response = CallFacts(kind="llm", model="m", response_id="msg_1")
    first = rollup.roll_up(call(2, parent=1, tokens=10, facts=same_response))
    second = rollup.roll_up(call(3, parent=1, tokens=10, facts=same_response))
    other = rollup.roll_up(
        call(4, parent=1, tokens=1, facts=CallFacts(kind="llm", response_id="x"))
    )
    root = rollup.roll_up(call(1, facts=AGENT))
    assert summary_of(first)["usage"]["m"]["input_tokens"] == 10
    assert summary_of(second)["usage"]["m"]["input_tokens"] == 10  # its own, shown on itself
    assert summary_of(other)["usage"]["m"]["input_tokens"] == 1
    assert summary_of(root)["usage"]["m"] == {"input_tokens": 11, "total_tokens": 11, "requests": 2}


def test_a_span_wrapping_another_of_the_same_response_counts_it_once() -> None:
    rollup = SummaryRollup(max_pending=10, max_age_seconds=60)
    same_response = CallFacts(kind="llm", model="m", response_id="msg_1")
    rollup.roll_up(call(2, parent=1, tokens=10, facts=same_response))
    wrapper = rollup.roll_up(call(1, tokens=10, facts=same_response))
    assert summary_of(wrapper)["usage"]["m"]["input_tokens"] == 10


def test_the_same_response_id_in_another_trace_counts_again() -> None:
    rollup = SummaryRollup(max_pending=10, max_age_seconds=60)
    facts = CallFacts(kind="llm", model="m", response_id="msg_1")
    rollup.roll_up(call(2, tokens=10, facts=facts))
    elsewhere = call(3, tokens=10, facts=facts)
    elsewhere = elsewhere.replace(trace_id="f" * 32)
    assert summary_of(rollup.roll_up(elsewhere))["usage"]["m"]["input_tokens"] == 10


def summary_of(call: WeaveCall) -> dict[str, Any]:
    return call.end.summary


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
    assert first.end.summary["usage"]["o3"]["reasoning_tokens"] == 3
    assert second.end.summary["usage"]["o3"]["reasoning_tokens"] == 4
    usage = parent.end.summary["usage"]["o3"]
    assert usage == {"input_tokens": 2, "total_tokens": 2, "requests": 2, "reasoning_tokens": 7}
    assert parent.end.summary["status_counts"] == {"success": 3, "error": 0}
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


def test_after_the_oldest_totals_expire_the_next_expire_on_their_own_time() -> None:
    clock = FakeClock()
    evicted: list[int] = []
    rollup = SummaryRollup(
        max_pending=1000, max_age_seconds=10, on_evict=evicted.append, clock=clock.monotonic
    )
    rollup.roll_up(call(100, parent=0))  # totals for parent 0, made at 0 s
    clock.advance(5)
    rollup.roll_up(call(101, parent=1))  # for parent 1, at 5 s
    clock.advance(5.1)
    rollup.roll_up(call(102, parent=2))  # for parent 2, at 10.1 s: parent 0's expire
    assert (len(rollup), evicted) == (2, [1])
    clock.advance(4.8)
    rollup.roll_up(call(103, parent=3))  # at 14.9 s: parent 1's are not 10 s old yet
    assert (len(rollup), evicted) == (3, [1])
    clock.advance(0.2)
    rollup.roll_up(call(104, parent=4))  # at 15.1 s they are, the later ones not
    assert (len(rollup), evicted) == (3, [1, 1])
    parent_1, parent_2 = call(1), call(2)
    assert rollup.roll_up(parent_1) is parent_1
    assert summary_of(rollup.roll_up(parent_2))["status_counts"] == {"success": 2, "error": 0}


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


def test_only_whole_numbers_add_up_and_a_childs_own_summary_stays_as_it_is() -> None:
    rollup = SummaryRollup(max_pending=10, max_age_seconds=60)
    child = call(2, parent=1, tokens=3)
    odd = {"input_tokens": 3, "total_tokens": 3, "requests": True, "cost": 0.5}
    child = child.replace(summary={**summary_of(child), "usage": {"m": odd}})
    assert rollup.roll_up(child) is child
    parent = rollup.roll_up(call(1, tokens=0, facts=AGENT))
    assert summary_of(parent)["usage"] == {"m": {"input_tokens": 3, "total_tokens": 3}}
    assert odd == {"input_tokens": 3, "total_tokens": 3, "requests": True, "cost": 0.5}
