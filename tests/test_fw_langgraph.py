"""LangGraph + OpenInference's LangChain instrumentation, as a Weave user must see it (issue 9).

One run of ``tests/frameworks/scenario_langgraph.py`` serves every test: two turns of
``create_react_agent`` on one ``thread_id`` with a scripted fake chat model; turn 2's tool
fails. A trace is ``LangGraph`` > ``agent`` (> ``RunnableSequence`` > ``Prompt``,
``ToolCallingFakeModel``; ``call_model``, ``should_continue``) and ``tools`` > ``get_weather``.
"""

from __future__ import annotations

import json

import pytest

from .helpers import (
    Call,
    assert_all_chat_shaped,
    assert_one_kind,
    assert_roots_sum_their_llm_calls,
    assert_thread_of_turns,
    assert_usage_per_call,
    calls_named,
    children_of,
    display_names,
    error_count,
    exception_errors,
    roots_named,
    scenario_calls_fixture,
    token_usage,
    trace_of,
    usage_by_model,
)

PROJECT = "test-entity/fw-langgraph"
THREAD_ID = "langgraph-thread-1"
MODEL = "fake-chat-model-1"
GRAPH_SPAN = "LangGraph"
AGENT_SPAN = "agent"
TOOLS_SPAN = "tools"
LLM_SPAN = "ToolCallingFakeModel"
TOOL_SPAN = "get_weather"
CHAIN_SPANS = ("RunnableSequence", "Prompt", "call_model", "should_continue", TOOLS_SPAN)
USAGES = [(30, 8), (45, 6), (60, 8)]


calls = scenario_calls_fixture("langgraph", PROJECT)


def roots(calls: list[Call]) -> list[Call]:
    return roots_named(calls, GRAPH_SPAN)


def ancestors(calls: list[Call], call: Call) -> list[Call]:
    by_id = {c["id"]: c for c in calls}
    found = []
    while (parent := by_id.get(call["parent_id"])) is not None:
        found.append(parent)
        call = parent
    return found


def test_the_tree(calls: list[Call]) -> None:
    first, second = roots(calls)
    assert (len(calls), len(trace_of(calls, first)), len(trace_of(calls, second))) == (24, 14, 8)
    for llm in calls_named(calls, LLM_SPAN):
        assert [a["display_name"] for a in ancestors(calls, llm)][-2:] == [AGENT_SPAN, GRAPH_SPAN]
    for tool in calls_named(calls, TOOL_SPAN):
        parent, root = ancestors(calls, tool)
        assert (parent["display_name"], root["display_name"]) == (TOOLS_SPAN, GRAPH_SPAN)
    assert [len(calls_named(children_of(calls, r), AGENT_SPAN)) for r in (first, second)] == [2, 1]


@pytest.mark.parametrize(
    ("span_names", "kind"),
    [
        ((LLM_SPAN,), "llm"),
        ((TOOL_SPAN,), "tool"),
        ((AGENT_SPAN,), "agent"),
        ((GRAPH_SPAN, *CHAIN_SPANS), None),
    ],
)
def test_kind(calls: list[Call], span_names: tuple[str, ...], kind: str | None) -> None:
    assert_one_kind(calls_named(calls, *span_names), kind)


@pytest.mark.parametrize("span_name", [LLM_SPAN, TOOL_SPAN, AGENT_SPAN, GRAPH_SPAN])
def test_display_name(calls: list[Call], span_name: str) -> None:
    assert display_names(calls, span_name) == {span_name}


def test_every_llm_call_is_chat_shaped(calls: list[Call]) -> None:
    assert_all_chat_shaped(calls_named(calls, LLM_SPAN), 3)


def test_the_chat_holds_the_tool_call_result_and_answer(calls: list[Call]) -> None:
    answer = calls_named(calls, LLM_SPAN)[1]
    messages = answer["inputs"]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool"]
    tool_call = messages[2]["tool_calls"][0]
    assert tool_call["function"]["name"] == TOOL_SPAN
    assert json.loads(tool_call["function"]["arguments"]) == {"city": "Paris"}
    assert messages[3]["tool_call_id"] == tool_call["id"]
    assert messages[3]["content"] == "sunny in Paris"
    assert answer["inputs"]["model"] == MODEL
    choice = answer["output"]["choices"][0]
    assert choice["message"]["content"] == "It is sunny in Paris."
    assert choice["finish_reason"] == "stop"


def test_tool_arguments_and_result(calls: list[Call]) -> None:
    succeeded, failed = calls_named(calls, TOOL_SPAN)
    assert "Paris" in json.dumps(succeeded["inputs"])
    assert "Atlantis" in json.dumps(failed["inputs"])
    # The result the model got back, not LangChain's serialised ToolMessage envelope.
    assert succeeded["output"] == "sunny in Paris" or succeeded["output"].get("content") == (
        "sunny in Paris"
    )


def test_usage_per_exact_model_on_each_llm_call(calls: list[Call]) -> None:
    assert_usage_per_call(calls_named(calls, LLM_SPAN), MODEL, USAGES)


def test_root_usage_is_the_sum_of_its_llm_calls(calls: list[Call]) -> None:
    first, second = roots(calls)
    assert_roots_sum_their_llm_calls(calls, (first, second), LLM_SPAN)
    assert usage_by_model(first) == {MODEL: token_usage(75, 14, 89, requests=2)}


def test_a_failing_tool_fails_its_call_and_the_graph(calls: list[Call]) -> None:
    first, second = roots(calls)
    (failed_tool,) = calls_named(trace_of(calls, second), TOOL_SPAN)
    for failed in (failed_tool, second):
        assert exception_errors(failed, "LookupError", "no weather station in Atlantis") == []
    assert error_count(second) >= 1
    assert first["exception"] is None
    assert error_count(first) == 0


def test_the_thread_has_two_turns(calls: list[Call]) -> None:
    assert_thread_of_turns(calls, roots(calls), THREAD_ID)
