"""Threads and turns: what Weave's Threads view lists, from a real TracerProvider.

The view lists a thread through its turn calls (``turn_id == id``); the topmost call carrying a
thread id is the turn, and its descendants inherit both ids (WEAVE_WIRE §7). Spans end
child-first, so the processor learns the thread from each span's *start*.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import httpx
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

from opentelemetry.exporter.weave import WeaveSpanExporter
from opentelemetry.exporter.weave._threads import ThreadContext, ThreadTracker
from opentelemetry.exporter.weave.testing import LocalWeaveServer

from .helpers import API_KEY, make_processor, make_tracer

_projects = itertools.count()
CONVERSATION = {"gen_ai.conversation.id": "conv-1"}


def traced(receiver: LocalWeaveServer, emit: Any, project: str = "") -> dict[str, dict[str, Any]]:
    """Run ``emit`` through a WeaveSpanProcessor into the receiver; calls by display name."""
    project = project or f"test-entity/threads-{next(_projects)}"
    processor = make_processor(receiver.url, project=project)
    provider, tracer = make_tracer(processor)
    emit(tracer)
    provider.shutdown()
    return {call["display_name"]: call for call in receiver.calls(project)}


QUESTIONS = {1: "When are you open?", 2: "And on Sundays?"}
ANSWERS = {1: "9:00-17:00, Mon-Fri.", 2: "Closed on Sundays."}


def test_a_two_turn_conversation(receiver: LocalWeaveServer) -> None:
    def emit(tracer: Tracer) -> None:
        for turn in (1, 2):
            user = {"role": "user", "content": QUESTIONS[turn]}
            with (
                tracer.start_as_current_span(
                    f"turn {turn}",
                    attributes={**CONVERSATION, "input": json.dumps({"messages": [user]})},
                ) as root,
                tracer.start_as_current_span(f"chat {turn}"),
                tracer.start_as_current_span(f"tool {turn}"),
            ):
                root.set_attribute("output", ANSWERS[turn])

    project = f"test-entity/threads-{next(_projects)}"
    calls = traced(receiver, emit, project)
    # As the Threads view lists it: one thread, two turns, first input and last output.
    (thread,) = receiver.threads(project)
    assert thread["thread_id"] == "conv-1"
    assert thread["turn_count"] == 2
    assert thread["first_input"] == {"messages": [{"role": "user", "content": QUESTIONS[1]}]}
    assert thread["last_output"] == ANSWERS[2]
    assert (thread["first_turn_id"], thread["last_turn_id"]) == (
        calls["turn 1"]["id"],
        calls["turn 2"]["id"],
    )
    assert thread["last_turn_status"] == "success"
    listed = httpx.get(
        f"{receiver.url}/threads", params={"project_id": project}, auth=("api", API_KEY)
    )
    assert listed.json() == {"threads": [thread]}
    for turn in (1, 2):
        root = calls[f"turn {turn}"]
        assert root["turn_id"] == root["id"]  # a turn: the Threads view lists it
        for name in (f"chat {turn}", f"tool {turn}"):
            assert (calls[name]["thread_id"], calls[name]["turn_id"]) == ("conv-1", root["id"])
    turns = [call for call in calls.values() if call["turn_id"] == call["id"]]
    assert len(turns) == 2
    assert {call["thread_id"] for call in calls.values()} == {"conv-1"}


def test_a_thread_id_on_a_child_makes_the_child_the_turn(receiver: LocalWeaveServer) -> None:
    def emit(tracer: Tracer) -> None:
        with (
            tracer.start_as_current_span("request"),
            tracer.start_as_current_span("agent", attributes=CONVERSATION),
            tracer.start_as_current_span("chat"),
        ):
            pass

    calls = traced(receiver, emit)
    agent = calls["agent"]
    assert (calls["request"]["thread_id"], calls["request"]["turn_id"]) == (None, None)
    assert agent["turn_id"] == agent["id"]
    assert (calls["chat"]["thread_id"], calls["chat"]["turn_id"]) == ("conv-1", agent["id"])


def test_wandb_is_turn_marks_a_turn_inside_a_thread(receiver: LocalWeaveServer) -> None:
    def emit(tracer: Tracer) -> None:
        with (
            tracer.start_as_current_span("session", attributes=CONVERSATION),
            tracer.start_as_current_span("step", attributes={"wandb.is_turn": True}),
            tracer.start_as_current_span("chat"),
        ):
            pass

    calls = traced(receiver, emit)
    step = calls["step"]
    assert step["turn_id"] == step["id"]
    assert calls["chat"]["turn_id"] == step["id"]
    assert calls["session"]["turn_id"] == calls["session"]["id"]
    assert "wandb.is_turn" not in step["attributes"]


def test_another_thread_below_a_thread_is_a_turn_of_its_own(receiver: LocalWeaveServer) -> None:
    def emit(tracer: Tracer) -> None:
        with (
            tracer.start_as_current_span("outer", attributes=CONVERSATION),
            tracer.start_as_current_span("inner", attributes={"gen_ai.conversation.id": "conv-2"}),
            tracer.start_as_current_span("chat"),
        ):
            pass

    calls = traced(receiver, emit)
    inner = calls["inner"]
    assert (inner["thread_id"], inner["turn_id"]) == ("conv-2", inner["id"])
    assert (calls["chat"]["thread_id"], calls["chat"]["turn_id"]) == ("conv-2", inner["id"])


def test_a_thread_id_set_after_the_start_still_makes_a_root_a_turn(
    receiver: LocalWeaveServer,
) -> None:
    def emit(tracer: Tracer) -> None:
        with tracer.start_as_current_span("turn") as turn:
            with tracer.start_as_current_span("chat"):
                pass
            turn.set_attribute("gen_ai.conversation.id", "conv-late")

    calls = traced(receiver, emit)
    turn = calls["turn"]
    assert (turn["thread_id"], turn["turn_id"]) == ("conv-late", turn["id"])
    # Its child ended, and was mapped, before anyone knew: it stays out of the thread.
    assert calls["chat"]["thread_id"] is None


def spans_of(emit: Any) -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider, tracer = make_tracer(SimpleSpanProcessor(memory))
    emit(tracer)
    provider.shutdown()
    return list(memory.get_finished_spans())


def test_the_exporter_which_sees_no_starts_marks_only_roots_as_turns(
    receiver: LocalWeaveServer,
) -> None:
    def emit(tracer: Tracer) -> None:
        with (
            tracer.start_as_current_span("turn", attributes=CONVERSATION),
            tracer.start_as_current_span("chat", attributes=CONVERSATION),
        ):
            pass

    project = f"test-entity/threads-{next(_projects)}"
    exporter = WeaveSpanExporter(
        api_key=API_KEY, project=project, server_url=receiver.url, write_mode="call_end"
    )
    exporter.export(spans_of(emit))
    exporter.shutdown()
    calls = {call["display_name"]: call for call in receiver.calls(project)}
    assert calls["turn"]["turn_id"] == calls["turn"]["id"]
    # Whether its parent is in the thread is not known when it is mapped: in it, no turn.
    assert (calls["chat"]["thread_id"], calls["chat"]["turn_id"]) == ("conv-1", None)


class _Started:
    """What on_start is given: a span's context, parent and attributes so far."""

    def __init__(self, span: ReadableSpan) -> None:
        self.context = span.context
        self.parent = span.parent
        self.attributes = span.attributes


def test_the_tracker_forgets_a_span_once_taken_and_stays_bounded() -> None:
    def emit(tracer: Tracer) -> None:
        with tracer.start_as_current_span("root", attributes=CONVERSATION):
            for number in range(6):
                with tracer.start_as_current_span(f"child {number}"):
                    pass

    *children, root = spans_of(emit)
    tracker = ThreadTracker(max_open_spans=4)
    tracker.span_started(root)
    for child in children:
        tracker.span_started(child)
    assert len(tracker) == 8  # 7 spans in the thread, 1 root: bounded when the worker takes
    root_call = f"{root.context.span_id:016x}" if root.context else ""
    assert tracker.take(root) == ThreadContext("conv-1", root_call, root_call)
    assert len(tracker) <= 4
    assert tracker.take(root) is None


def test_outside_any_thread_only_each_trace_s_root_is_noted() -> None:
    def emit(tracer: Tracer) -> None:
        for _ in range(3):
            with tracer.start_as_current_span("root"), tracer.start_as_current_span("child"):
                pass

    spans = spans_of(emit)
    tracker = ThreadTracker()
    for span in reversed(spans):
        tracker.span_started(span)
    assert len(tracker) == 3  # no entry per span: one per open trace
    child, root = spans[0], spans[1]
    root_call = f"{root.context.span_id:016x}" if root.context else ""
    assert tracker.take(child) == ThreadContext(None, None, root_call)
    assert tracker.take(root) == ThreadContext(None, None, root_call)
    assert len(tracker) == 2  # that trace's root is forgotten once mapped


def test_a_thread_id_every_span_gets_at_its_end_makes_one_turn(
    receiver: LocalWeaveServer,
) -> None:
    """OpenInference's LangChain tracer sets ``session.id`` on each span as it ends."""

    def emit(tracer: Tracer) -> None:
        for turn in (1, 2):
            with tracer.start_as_current_span(f"graph {turn}") as graph:
                with tracer.start_as_current_span(f"node {turn}") as node:
                    with tracer.start_as_current_span(f"chat {turn}") as chat:
                        chat.set_attribute("session.id", "s-1")
                    node.set_attribute("session.id", "s-1")
                graph.set_attribute("session.id", "s-1")

    calls = traced(receiver, emit)
    for turn in (1, 2):
        graph = calls[f"graph {turn}"]
        assert graph["turn_id"] == graph["id"]
        for name in (f"node {turn}", f"chat {turn}"):
            assert (calls[name]["thread_id"], calls[name]["turn_id"]) == ("s-1", graph["id"])
