"""The OpenAI Agents SDK + OpenInference, as a Weave user must see it (issue 9).

One run of ``tests/frameworks/scenario_openai_agents.py`` serves every test: two runs of
``weather_agent`` in one OpenInference session against ``examples/canned_openai.py``; turn 2's
model request is refused (HTTP 400). Each trace is
``weather workflow`` (AGENT) > ``weather workflow`` (CHAIN) > ``weather_agent`` (AGENT) >
``turn`` (CHAIN) > ``generation`` (LLM) / ``get_weather`` (TOOL).
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
    calls_named,
    children_of,
    display_names,
    error_count,
    exception_errors,
    op_matches,
    roots_named,
    scenario_calls_fixture,
    token_usage,
    trace_of,
    usage_by_model,
)
from .openai_server import ERROR_MESSAGE, REPLY, TOOL_ARGUMENT, USAGE

PROJECT = "test-entity/fw-openai-agents"
SESSION_ID = "agents-session-1"
# The SDK's generation span carries only the requested model, not the response's dated one.
MODEL = "gpt-4o-mini"
WORKFLOW_SPAN = "weather workflow"
AGENT_SPAN = "weather_agent"
TURN_SPAN = "turn"
LLM_SPAN = "generation"
TOOL_SPAN = "get_weather"
# The canned server reports the same usage for every answer, the tool call and the reply.
ONE_REQUEST = token_usage(USAGE["prompt_tokens"], USAGE["completion_tokens"], USAGE["total_tokens"])
REFUSAL = ERROR_MESSAGE


calls = scenario_calls_fixture("openai_agents", PROJECT)


def roots(calls: list[Call]) -> list[Call]:
    return roots_named(calls, WORKFLOW_SPAN)


def path_names(calls: list[Call], call: Call) -> list[str]:
    """The op names from the root down to ``call``."""
    by_id = {c["id"]: c for c in calls}
    names = []
    current: Call | None = call
    while current is not None:
        names.append(current["op_name"])
        current = by_id.get(current["parent_id"])
    return names[::-1]


def test_the_tree(calls: list[Call]) -> None:
    first, second = roots(calls)
    assert len(calls) == 13, [c["op_name"] for c in calls]
    assert len(trace_of(calls, first)) == 7
    chain = [WORKFLOW_SPAN, WORKFLOW_SPAN, AGENT_SPAN, TURN_SPAN]
    for leaf in calls_named(trace_of(calls, first), LLM_SPAN, TOOL_SPAN):
        path = path_names(calls, leaf)
        assert all(op_matches({"op_name": n}, w) for n, w in zip(path, chain, strict=False))
        assert len(path) == 5
    turns = calls_named(trace_of(calls, first), TURN_SPAN)
    assert [len(children_of(calls, turn)) for turn in turns] == [2, 1]
    assert len(calls_named(trace_of(calls, second), LLM_SPAN)) == 1


@pytest.mark.parametrize(
    ("span_name", "kind"),
    [(LLM_SPAN, "llm"), (TOOL_SPAN, "tool"), (AGENT_SPAN, "agent"), (TURN_SPAN, None)],
)
def test_kind(calls: list[Call], span_name: str, kind: str | None) -> None:
    assert_one_kind(calls_named(calls, span_name), kind)


@pytest.mark.parametrize(
    ("span_name", "display_name"),
    [(LLM_SPAN, LLM_SPAN), (TOOL_SPAN, TOOL_SPAN), (AGENT_SPAN, AGENT_SPAN)],
)
def test_display_name(calls: list[Call], span_name: str, display_name: str) -> None:
    assert display_names(calls, span_name) == {display_name}


def test_every_llm_call_is_chat_shaped(calls: list[Call]) -> None:
    assert_all_chat_shaped(calls_named(calls, LLM_SPAN), 3)


def test_the_chat_holds_the_tool_call_result_and_answer(calls: list[Call]) -> None:
    answer = calls_named(trace_of(calls, roots(calls)[0]), LLM_SPAN)[1]
    messages = answer["inputs"]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool"]
    tool_call = messages[2]["tool_calls"][0]
    assert tool_call["function"]["name"] == TOOL_SPAN
    assert json.loads(tool_call["function"]["arguments"]) == {"city": TOOL_ARGUMENT}
    assert messages[3]["tool_call_id"] == tool_call["id"]
    assert answer["inputs"]["model"] == MODEL
    assert answer["output"]["choices"][0]["message"]["content"] == REPLY


def test_tool_arguments_and_result(calls: list[Call]) -> None:
    tools = calls_named(calls, TOOL_SPAN)
    assert [(t["inputs"], t["output"]) for t in tools] == [
        ({"city": TOOL_ARGUMENT}, f"sunny in {TOOL_ARGUMENT}")
    ]


def test_usage_per_model_on_each_llm_call(calls: list[Call]) -> None:
    usages = [usage_by_model(c) for c in calls_named(calls, LLM_SPAN) if c["exception"] is None]
    assert usages == [{MODEL: ONE_REQUEST}, {MODEL: ONE_REQUEST}]


def test_root_usage_is_the_sum_of_its_llm_calls(calls: list[Call]) -> None:
    assert_roots_sum_their_llm_calls(calls, roots(calls), LLM_SPAN)
    twice = {key: 2 * count for key, count in ONE_REQUEST.items()}
    assert usage_by_model(roots(calls)[0]) == {MODEL: twice}


def test_the_refused_request_fails_the_generation_and_the_agent(calls: list[Call]) -> None:
    second = roots(calls)[1]
    for span_name in (LLM_SPAN, AGENT_SPAN):
        (failed,) = calls_named(trace_of(calls, second), span_name)
        # No exception event: the error status's description is all there is.
        assert exception_errors(failed, None, REFUSAL, with_frames=False) == []
    assert error_count(second) >= 1
    assert error_count(roots(calls)[0]) == 0


def test_the_session_is_one_thread_of_two_turns(calls: list[Call]) -> None:
    assert_thread_of_turns(calls, roots(calls), SESSION_ID)
