"""openai-v2 2.4b0 in ``event_only`` mode: the content is on log records; Weave must still show it.

The scenario (``tests/frameworks/scenario_openai_v2_events.py``): an app span ``ask_twice``
with one plain and one streamed chat completion, then one refused request. Target: the
``gen_ai.client.inference.operation.details`` records, joined to their chat span by span id,
make each LLM call chat-shaped with the prompt and the reply.
"""

from __future__ import annotations

import json

from opentelemetry.exporter.weave.testing import LocalWeaveServer

from .chat_oracle import chat_errors
from .helpers import Checklist, as_text, calls_of_run, token_usage, usage_by_model, weave_kind
from .openai_server import ERROR_MESSAGE, REPLY, RESPONSE_MODEL, USAGE

PROMPTS = (
    "What is the canned answer? Asked plainly.",
    "What is the canned answer? Asked for a stream.",
)
SYSTEM_PROMPT = "Answer in one sentence."
CHAT = "chat gpt-4o-mini"
ONE_REQUEST = {
    RESPONSE_MODEL: token_usage(
        USAGE["prompt_tokens"], USAGE["completion_tokens"], USAGE["total_tokens"]
    )
}


def test_event_only_content_reaches_the_llm_calls(receiver: LocalWeaveServer) -> None:
    project = "test-entity/fw-openai-v2-events"
    calls = calls_of_run(
        receiver,
        "openai_v2_events",
        project,
        WEAVE_TEST_CAPTURE="1",
        OTEL_SEMCONV_STABILITY_OPT_IN="gen_ai_latest_experimental",
        OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="event_only",
    )
    checks = Checklist()
    roots = [call for call in calls if call["display_name"] == "ask_twice"]
    chats = [call for call in calls if call["display_name"] == CHAT]
    if not checks.equal("calls", (len(roots), len(chats)), (1, 3)):
        checks.assert_all()
    root, (plain, streamed, refused) = roots[0], chats
    checks.equal(
        "tree",
        [c["parent_id"] for c in (root, plain, streamed, refused)],
        [None, root["id"], root["id"], None],
    )
    checks.equal("kinds", [weave_kind(c) for c in chats], ["llm"] * 3)
    for call, prompt in ((plain, PROMPTS[0]), (streamed, PROMPTS[1])):
        label = "streamed" if call is streamed else "plain"
        checks.equal(f"{label}: chat-shaped", chat_errors(call), [])
        messages = call["inputs"].get("messages") or []
        checks.equal(
            f"{label}: system then user message",
            [(m.get("role"), m.get("content")) for m in messages],
            [("system", SYSTEM_PROMPT), ("user", prompt)],
        )
        checks.check(f"{label}: reply in output", REPLY in as_text(call["output"]), call["output"])
        checks.equal(f"{label}: usage by response model", usage_by_model(call), ONE_REQUEST)
    checks.equal("plain: temperature beside messages", plain["inputs"].get("temperature"), 0.3)
    checks.equal(
        "root usage: the two requests (the canned server reuses one response id for both)",
        usage_by_model(root),
        {RESPONSE_MODEL: {key: value * 2 for key, value in ONE_REQUEST[RESPONSE_MODEL].items()}},
    )
    checks.equal("refused: chat-shaped", chat_errors(refused), [])
    checks.check(
        "refused: prompt in inputs",
        "FAIL" in as_text(refused["inputs"].get("messages")),
        refused["inputs"],
    )
    exception = json.loads(refused["exception"] or "{}")
    checks.check(
        "refused: exception JSON with message and traceback list",
        ERROR_MESSAGE in as_text(exception) and isinstance(exception.get("traceback"), list),
        refused["exception"],
    )
    checks.equal(
        "refused: status counts",
        refused["summary"].get("status_counts"),
        {"success": 0, "error": 1},
    )
    checks.assert_all()
