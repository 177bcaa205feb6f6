"""strands-agents with its OpenAI model provider (streaming), as a Weave user sees it.

The scenario (``tests/frameworks/scenario_strands.py``): one direct tool call recorded in the
conversation, one agent turn (one streamed request, final answer), then one turn the canned
server refuses. strands puts the run's totals on the agent span beside its chat span's own:
Weave must not add them twice. Run with per-message span events (default) and with
``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental``.
"""

from __future__ import annotations

import json

import pytest

from opentelemetry.exporter.weave.testing import LocalWeaveServer

from .chat_oracle import chat_errors
from .helpers import Checklist, as_text, calls_of_run, token_usage, usage_by_model, weave_kind
from .openai_server import ERROR_MESSAGE, REPLY, USAGE

# strands records only the model it asked for (no gen_ai.response.model): the usage key.
REQUESTED_MODEL = "gpt-4o-mini"

AGENT = "weather_agent"
QUESTION = "What is the canned answer?"
ONE_REQUEST = token_usage(USAGE["prompt_tokens"], USAGE["completion_tokens"], USAGE["total_tokens"])


@pytest.mark.parametrize("semconv_opt_in", ["", "gen_ai_latest_experimental"])
def test_agent_turns_as_weave_shows_them(receiver: LocalWeaveServer, semconv_opt_in: str) -> None:
    project = f"test-entity/fw-strands-{'latest' if semconv_opt_in else 'default'}"
    calls = calls_of_run(
        receiver,
        "strands",
        project,
        WEAVE_TEST_CAPTURE="1",
        OTEL_SEMCONV_STABILITY_OPT_IN=semconv_opt_in,
    )
    checks = Checklist()
    agents = [c for c in calls if c["display_name"] == AGENT]
    if not checks.equal("two agent runs named by the agent", len(agents), 2):
        checks.assert_all()
    for index, agent in enumerate(agents):
        label = "ok run" if index == 0 else "refused run"
        subtree = [c for c in calls if c["trace_id"] == agent["trace_id"] and c is not agent]
        cycles = [c for c in subtree if c["display_name"] == "execute_event_loop_cycle"]
        chats = [c for c in subtree if c["display_name"] == "chat"]
        checks.equal(
            f"{label}: tree agent > cycle > chat",
            [(c["parent_id"] == agent["id"]) for c in cycles]
            + [(c["parent_id"] in {x["id"] for x in cycles}) for c in chats],
            [True, True],
        )
        checks.equal(
            f"{label}: kinds",
            (weave_kind(agent), [weave_kind(c) for c in chats]),
            ("agent", ["llm"]),
        )
        checks.check(
            f"{label}: agent name only on the agent",
            all(c["display_name"] != AGENT for c in subtree),
            [c["display_name"] for c in subtree],
        )
        for chat in chats:
            checks.equal(f"{label}: chat-shaped", chat_errors(chat), [])
            checks.check(
                f"{label}: question/prompt in messages",
                ("FAIL" if index else QUESTION) in as_text(chat["inputs"].get("messages")),
                chat["inputs"],
            )
            checks.check(
                f"{label}: tool call and result in history",
                "sunny, 21 degrees in Paris" in as_text(chat["inputs"].get("messages")),
                chat["inputs"],
            )
        if index == 0:
            (chat,) = chats
            checks.check(
                "ok run: reply in output", REPLY in as_text(chat["output"]), chat["output"]
            )
            checks.equal(
                "ok run: chat usage by the model it names",
                usage_by_model(chat),
                {REQUESTED_MODEL: ONE_REQUEST},
            )
            checks.equal(
                "ok run: agent usage = its chat's (no doubling, no phantom requests)",
                usage_by_model(agent),
                {REQUESTED_MODEL: ONE_REQUEST},
            )
            checks.equal(
                "ok run: status counts",
                agent["summary"].get("status_counts"),
                {"success": 3, "error": 0},
            )
        else:
            exception = json.loads(agent["exception"] or "{}")
            checks.check(
                "refused run: agent exception JSON with message and traceback list",
                ERROR_MESSAGE in as_text(exception)
                and isinstance(exception.get("traceback"), list)
                and bool(exception.get("traceback")),
                agent["exception"],
            )
            checks.check(
                "refused run: chat call has the exception",
                all(c["exception"] for c in chats),
                [c["exception"] for c in chats],
            )
            checks.check(
                "refused run: no usage", not agent["summary"].get("usage"), agent["summary"]
            )
    checks.assert_all()
