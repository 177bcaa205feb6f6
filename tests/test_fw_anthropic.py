"""anthropic's tool runner traced by the SDK itself and by OpenLLMetry, as a Weave user sees it.

The scenario (``tests/frameworks/scenario_anthropic.py``) runs in its own environment: one tool
runner loop (tool call, final answer) and one refused request. Each request gives two sibling
LLM calls, ``anthropic.messages.create`` (the SDK) and ``anthropic.chat`` (OpenLLMetry), with the
same ``gen_ai.response.id``: Weave must count that usage once. OpenLLMetry runs with its content
on span attributes. With ``use_attributes=False`` (content on log records) it emits the records
under the tool runner's span, not its own, and leaves the response model and id off its span
(seen with opentelemetry-instrumentation-anthropic 0.62.4): nothing can join those records to
their call, so that mode is not tested as working (README: supported instrumentations).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from opentelemetry.exporter.weave.testing import LocalWeaveServer

from .canned_anthropic import (
    ERROR_MESSAGE,
    REPLY,
    REPLY_USAGE,
    RESPONSE_MODEL,
    TOOL_USE_USAGE,
)
from .chat_oracle import chat_errors
from .helpers import (
    Checklist,
    as_text,
    calls_of_run,
    exception_errors,
    summed_usage,
    token_usage,
    usage_by_model,
    weave_kind,
)

QUESTION = "What is the weather in Paris?"
CONVERSATION_ID = "conv-anthropic-weather"
RUNNER = "anthropic.messages.tool_runner"
SDK_LLM = "anthropic.messages.create"
OPENLLMETRY_LLM = "anthropic.chat"
TOOL = "get_weather"
TOOL_RESULT = "sunny, 21 degrees in Paris"


def usage_entry(usage: dict[str, int]) -> dict[str, dict[str, int]]:
    return {RESPONSE_MODEL: token_usage(usage["input_tokens"], usage["output_tokens"])}


def named(calls: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return sorted(
        (call for call in calls if call["display_name"] == name),
        key=lambda call: call["started_at"],
    )


@pytest.mark.parametrize("openllmetry_attributes", ["true"])
def test_tool_runner_as_weave_shows_it(
    receiver: LocalWeaveServer, openllmetry_attributes: str
) -> None:
    project = f"test-entity/fw-anthropic-{openllmetry_attributes}"
    calls = calls_of_run(
        receiver,
        "anthropic",
        project,
        WEAVE_TEST_CAPTURE="1",
        SCENARIO_OPENLLMETRY_ATTRIBUTES=openllmetry_attributes,
    )
    checks = Checklist()
    runners, tools = named(calls, RUNNER), named(calls, TOOL)
    sdk, openllmetry = named(calls, SDK_LLM), named(calls, OPENLLMETRY_LLM)
    checks.equal(
        "call count by display name",
        [len(runners), len(tools), len(sdk), len(openllmetry)],
        [1, 1, 3, 3],
    )
    if not checks.check(
        "runner exists", len(runners) == 1, sorted(c["display_name"] for c in calls)
    ):
        checks.assert_all()
    runner = runners[0]
    in_run = [call for call in calls if call["trace_id"] == runner["trace_id"]]
    run_llm = [call for call in in_run if call["display_name"] in (SDK_LLM, OPENLLMETRY_LLM)]
    failed = [call for call in calls if call["trace_id"] != runner["trace_id"]]

    checks.equal("runner is a root", runner["parent_id"], None)
    checks.equal(
        "tool and LLM calls are the runner's children",
        sorted(call["parent_id"] == runner["id"] for call in in_run if call is not runner),
        [True] * 5,
    )
    checks.equal(
        "the refused request is two root calls", [c["parent_id"] for c in failed], [None, None]
    )

    checks.equal("kind: runner agent", weave_kind(runner), "agent")
    checks.equal("kind: tool", [weave_kind(c) for c in tools], ["tool"])
    checks.equal(
        "kind: llm on every LLM call", [weave_kind(c) for c in sdk + openllmetry], ["llm"] * 6
    )
    checks.equal("tool named by its tool", [c["display_name"] for c in tools], [TOOL])

    for call in sdk + openllmetry:
        checks.equal(f"chat-shaped {call['display_name']} {call['id'][:8]}", chat_errors(call), [])
    for group in (sdk, openllmetry):
        first, second = (call for call in group if call["trace_id"] == runner["trace_id"])
        label = group[0]["display_name"]
        checks.check(
            f"{label}: question in first inputs.messages",
            QUESTION in as_text(first["inputs"].get("messages")),
            first["inputs"],
        )
        tool_calls = [
            tool_call
            for choice in (first.get("output") or {}).get("choices", [])
            for tool_call in choice.get("message", {}).get("tool_calls") or []
        ]
        checks.equal(
            f"{label}: first output asks for get_weather with JSON-text arguments",
            [
                (t.get("function", {}).get("name"), json.loads(t["function"]["arguments"]))
                for t in tool_calls
                if isinstance(t.get("function", {}).get("arguments"), str)
            ],
            [(TOOL, {"city": "Paris"})],
        )
        checks.check(
            f"{label}: tool result in second inputs.messages",
            TOOL_RESULT in as_text(second["inputs"].get("messages")),
            second["inputs"],
        )
        checks.check(
            f"{label}: reply in second output", REPLY in as_text(second["output"]), second["output"]
        )
        checks.equal(
            f"{label}: usage of the tool-use request",
            usage_by_model(first),
            usage_entry(TOOL_USE_USAGE),
        )
        checks.equal(
            f"{label}: usage of the final request", usage_by_model(second), usage_entry(REPLY_USAGE)
        )
    for call in tools:
        checks.check("tool arguments in inputs", "Paris" in as_text(call["inputs"]), call["inputs"])
        checks.check(
            "tool result in output", TOOL_RESULT in as_text(call["output"]), call["output"]
        )

    expected_root = summed_usage([call for call in run_llm if call["display_name"] == SDK_LLM])
    checks.equal(
        "runner usage: each request once (same gen_ai.response.id), no phantom requests",
        usage_by_model(runner),
        {RESPONSE_MODEL: token_usage(88, 27, 115, requests=2)},
    )
    checks.equal("sum of the SDK's LLM calls is that usage", usage_by_model(runner), expected_root)
    checks.equal(
        "runner status counts", runner["summary"].get("status_counts"), {"success": 6, "error": 0}
    )
    checks.equal("runner has no exception", runner["exception"], None)

    for call in failed:
        label = f"refused {call['display_name']}"
        checks.check(f"{label}: exception set", call["exception"] is not None, call["attributes"])
        checks.equal(
            f"{label}: status counts",
            call["summary"].get("status_counts"),
            {"success": 0, "error": 1},
        )
        checks.check(f"{label}: no usage", not call["summary"].get("usage"), call["summary"])
        checks.check(f"{label}: prompt kept", "FAIL" in as_text(call["inputs"]), call["inputs"])
    for call in named(failed, OPENLLMETRY_LLM):
        checks.equal(
            "refused anthropic.chat: exception JSON with frames",
            exception_errors(call, "anthropic.BadRequestError", ERROR_MESSAGE),
            [],
        )
    for call in named(failed, SDK_LLM):
        exception = json.loads(call["exception"] or "{}")
        checks.check(
            "refused anthropic.messages.create: exception JSON (type, message, traceback list)",
            isinstance(exception.get("type"), str)
            and isinstance(exception.get("traceback"), list)
            and "invalid_request_error" in as_text(exception),
            call["exception"],
        )

    checks.equal(
        "thread id on every call of the run",
        sorted({c.get("thread_id") for c in in_run}, key=str),
        [CONVERSATION_ID],
    )
    checks.equal(
        "the runner is the turn",
        sorted({c.get("turn_id") for c in in_run}, key=str),
        [runner["id"]],
    )
    for call in named(failed, SDK_LLM):
        checks.equal(
            "the refused SDK call is a turn of the thread",
            (call.get("thread_id"), call.get("turn_id")),
            (CONVERSATION_ID, call["id"]),
        )
    checks.assert_all()
