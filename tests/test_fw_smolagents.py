"""smolagents + OpenInference, as a Weave user must see it (issue 9).

One run of ``tests/frameworks/scenario_smolagents.py`` serves every test: two runs of a
``ToolCallingAgent`` named ``weather_agent`` in one OpenInference session, on a scripted model;
in turn 2 the tool refuses the city and the model answers after seeing the error. A trace is
``weather_agent.run`` > ``Step N`` > ``ScriptedModel.generate`` and a tool span.
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

PROJECT = "test-entity/fw-smolagents"
SESSION_ID = "smol-session-1"
MODEL = "scripted-model-1"
RUN_SPAN = "weather_agent.run"
STEP_SPANS = ("Step 1", "Step 2")
LLM_SPAN = "ScriptedModel.generate"
TOOL_SPAN = "SimpleTool"
FINAL_ANSWER_SPAN = "FinalAnswerTool"
USAGES = [(30, 8), (45, 6), (60, 8), (70, 5)]


calls = scenario_calls_fixture("smolagents", PROJECT)


def roots(calls: list[Call]) -> list[Call]:
    return roots_named(calls, RUN_SPAN)


def test_the_tree(calls: list[Call]) -> None:
    turns = roots(calls)
    assert (len(turns), len(calls)) == (2, 14), [c["op_name"] for c in calls]
    for turn in turns:
        steps = children_of(calls, turn)
        assert [len(calls_named(steps, name)) for name in STEP_SPANS] == [1, 1]
        first_step, second_step = (calls_named(steps, name)[0] for name in STEP_SPANS)
        assert len(calls_named(children_of(calls, first_step), LLM_SPAN, TOOL_SPAN)) == 2
        assert len(calls_named(children_of(calls, second_step), LLM_SPAN, FINAL_ANSWER_SPAN)) == 2


@pytest.mark.parametrize(
    ("span_names", "kind"),
    [
        ((LLM_SPAN,), "llm"),
        ((TOOL_SPAN, FINAL_ANSWER_SPAN), "tool"),
        ((RUN_SPAN,), "agent"),
        (STEP_SPANS, None),
    ],
)
def test_kind(calls: list[Call], span_names: tuple[str, ...], kind: str | None) -> None:
    assert_one_kind(calls_named(calls, *span_names), kind)


@pytest.mark.parametrize(
    ("span_name", "display_name"),
    [
        (LLM_SPAN, LLM_SPAN),
        (TOOL_SPAN, "get_weather"),
        (FINAL_ANSWER_SPAN, "final_answer"),
        (RUN_SPAN, RUN_SPAN),
    ],
)
def test_display_name(calls: list[Call], span_name: str, display_name: str) -> None:
    assert display_names(calls, span_name) == {display_name}


def test_every_llm_call_is_chat_shaped(calls: list[Call]) -> None:
    assert_all_chat_shaped(calls_named(calls, LLM_SPAN), 4)


def test_the_chat_holds_the_task_and_the_tool_call_with_its_arguments(calls: list[Call]) -> None:
    first = calls_named(calls, LLM_SPAN)[0]
    messages = first["inputs"]["messages"]
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "What is the weather in Paris?" in json.dumps(messages[1]["content"])
    assert first["inputs"]["model"] == MODEL
    (tool_call,) = first["output"]["choices"][0]["message"]["tool_calls"]
    assert tool_call["function"]["name"] == "get_weather"
    assert json.loads(tool_call["function"]["arguments"]) == {"city": "Paris"}


def test_tool_arguments_and_results(calls: list[Call]) -> None:
    tools = calls_named(calls, TOOL_SPAN, FINAL_ANSWER_SPAN)
    # smolagents' own flag stays beside the arguments, which show by name.
    for tool in tools:
        assert tool["inputs"].pop("sanitize_inputs_outputs") is True
    assert [(t["inputs"], t["output"]) for t in tools] == [
        ({"city": "Paris"}, "sunny in Paris"),
        ({"answer": "It is sunny in Paris."}, "It is sunny in Paris."),
        ({"city": "Atlantis"}, None),
        ({"answer": "Nobody knows."}, "Nobody knows."),
    ]


def test_usage_per_exact_model_on_each_llm_call(calls: list[Call]) -> None:
    assert_usage_per_call(calls_named(calls, LLM_SPAN), MODEL, USAGES)


def test_root_usage_is_the_sum_of_its_llm_calls(calls: list[Call]) -> None:
    # The run span carries the agent's running totals (turn 2's include turn 1's, as
    # reset=False keeps the monitor): only the run's own LLM calls may count.
    first, second = roots(calls)
    assert_roots_sum_their_llm_calls(calls, (first, second), LLM_SPAN)
    assert usage_by_model(second) == {MODEL: token_usage(130, 13, 143, requests=2)}


def test_the_refused_tool_fails_its_call_and_its_step(calls: list[Call]) -> None:
    first, second = roots(calls)
    (failed_tool,) = calls_named(trace_of(calls, second), TOOL_SPAN)
    assert exception_errors(failed_tool, "LookupError", "no weather station in Atlantis") == []
    failed_step = calls_named(children_of(calls, second), "Step 1")[0]
    assert failed_step["exception"] is not None
    assert second["exception"] is None
    assert error_count(second) >= 1
    assert error_count(first) == 0


def test_the_session_is_one_thread_of_two_turns(calls: list[Call]) -> None:
    assert_thread_of_turns(calls, roots(calls), SESSION_ID)
