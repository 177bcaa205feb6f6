"""pydantic-ai's own instrumentation, as a Weave user must see it (issue 9).

One run of ``tests/frameworks/scenario_pydantic_ai.py`` in its environment serves every test:
a two-turn conversation of ``weather_agent`` (format 5; turn 2's tool fails) and one run of
``legacy_agent`` in format 2 with per-span usage names. Calls are found by their span name
(``op_matches``), so each test fails only for what it checks.
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
    usage_by_model,
)

PROJECT = "test-entity/fw-pydantic-ai"
CONVERSATION_ID = "pyd-conversation-1"
MODEL = "canned-model"
AGENT_SPAN = "invoke_agent weather_agent"
LEGACY_AGENT_SPAN = "agent run"
CHAT_SPAN = f"chat {MODEL}"
TOOL_SPAN = "execute_tool get_weather"
LEGACY_TOOL_SPAN = "running tool"
TOOL_CALL_USAGE = token_usage(11, 5, 16)
ANSWER_USAGE = token_usage(20, 4, 24)


calls = scenario_calls_fixture("pydantic_ai", PROJECT)


def shape(calls: list[Call], expected: list[str]) -> list[str]:
    """``expected`` where each call matches it, else the call's op name: a readable diff."""
    matched = [
        want if op_matches(call, want) else call["op_name"]
        for call, want in zip(calls, expected, strict=False)
    ]
    return matched + [call["op_name"] for call in calls[len(expected) :]]


def test_the_tree_is_agent_over_chat_tool_chat(calls: list[Call]) -> None:
    turns = roots_named(calls, AGENT_SPAN)
    legacy = roots_named(calls, LEGACY_AGENT_SPAN)
    assert (len(turns), len(legacy), len(calls)) == (2, 1, 11), [c["op_name"] for c in calls]
    first, failed, legacy_run = (children_of(calls, root) for root in (*turns, *legacy))
    assert shape(first, [CHAT_SPAN, TOOL_SPAN, CHAT_SPAN]) == [CHAT_SPAN, TOOL_SPAN, CHAT_SPAN]
    assert shape(failed, [CHAT_SPAN, TOOL_SPAN]) == [CHAT_SPAN, TOOL_SPAN]
    expected_legacy = [CHAT_SPAN, LEGACY_TOOL_SPAN, CHAT_SPAN]
    assert shape(legacy_run, expected_legacy) == expected_legacy


@pytest.mark.parametrize(
    ("span_name", "kind"),
    [
        (AGENT_SPAN, "agent"),
        (LEGACY_AGENT_SPAN, "agent"),
        (CHAT_SPAN, "llm"),
        (TOOL_SPAN, "tool"),
        (LEGACY_TOOL_SPAN, "tool"),
    ],
)
def test_kind(calls: list[Call], span_name: str, kind: str) -> None:
    assert_one_kind(calls_named(calls, span_name), kind)


@pytest.mark.parametrize(
    ("span_name", "display_name"),
    [
        (AGENT_SPAN, "weather_agent"),
        (LEGACY_AGENT_SPAN, "legacy_agent"),
        # pydantic-ai puts gen_ai.agent.name on these too: it must not name them.
        (CHAT_SPAN, CHAT_SPAN),
        (TOOL_SPAN, "get_weather"),
        (LEGACY_TOOL_SPAN, "get_weather"),
    ],
)
def test_display_name(calls: list[Call], span_name: str, display_name: str) -> None:
    assert display_names(calls, span_name) == {display_name}


def test_every_llm_call_is_chat_shaped(calls: list[Call]) -> None:
    assert_all_chat_shaped(calls_named(calls, CHAT_SPAN), 5)


def test_the_chat_holds_the_instructions_tool_call_result_and_answer(calls: list[Call]) -> None:
    answer = children_of(calls, roots_named(calls, AGENT_SPAN)[0])[2]
    messages = answer["inputs"]["messages"]
    assert messages[0] == {"role": "system", "content": "Answer in one sentence."}
    assert messages[1] == {"role": "user", "content": "What is the weather in Paris?"}
    tool_call = messages[2]["tool_calls"][0]
    assert tool_call["function"]["name"] == "get_weather"
    assert json.loads(tool_call["function"]["arguments"]) == {"city": "Paris"}
    assert messages[3]["role"] == "tool"
    assert messages[3]["tool_call_id"] == tool_call["id"]
    assert answer["inputs"]["model"] == MODEL
    choice = answer["output"]["choices"][0]
    assert choice["message"]["content"] == "It is sunny in Paris."


@pytest.mark.parametrize("span_name", [TOOL_SPAN, LEGACY_TOOL_SPAN])
def test_tool_arguments_and_result(calls: list[Call], span_name: str) -> None:
    tools = calls_named(calls, span_name)
    assert tools
    for tool in tools:
        assert tool["inputs"] in ({"city": "Paris"}, {"city": "Atlantis"})
    assert {t["output"] for t in tools if t["exception"] is None} == {"sunny in Paris"}


def test_usage_per_exact_model_on_each_llm_call(calls: list[Call]) -> None:
    usages = [usage_by_model(c) for c in calls_named(calls, CHAT_SPAN)]
    assert usages
    assert all(usage in ({MODEL: TOOL_CALL_USAGE}, {MODEL: ANSWER_USAGE}) for usage in usages)
    assert [usage_by_model(c) for c in calls_named(calls, TOOL_SPAN, LEGACY_TOOL_SPAN)] == [{}] * 3


@pytest.mark.parametrize("span_name", [AGENT_SPAN, LEGACY_AGENT_SPAN])
def test_root_usage_is_the_sum_of_its_llm_calls(calls: list[Call], span_name: str) -> None:
    assert_roots_sum_their_llm_calls(calls, roots_named(calls, span_name), CHAT_SPAN, children_of)


def test_a_failing_tool_fails_its_call_and_the_run(calls: list[Call]) -> None:
    first, second = roots_named(calls, AGENT_SPAN)
    failed_tool = calls_named(children_of(calls, second), TOOL_SPAN)[0]
    assert exception_errors(failed_tool, "LookupError", "no weather station in Atlantis") == []
    assert exception_errors(second, "LookupError", "no weather station in Atlantis") == []
    assert error_count(second) >= 1
    assert first["exception"] is None
    assert error_count(first) == 0


def test_the_conversation_is_one_thread_of_two_turns(calls: list[Call]) -> None:
    assert_thread_of_turns(calls, roots_named(calls, AGENT_SPAN), CONVERSATION_ID, children_of)
