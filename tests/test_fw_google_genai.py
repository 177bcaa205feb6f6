"""google-genai with OpenTelemetry's instrumentation, content on spans and on log records.

The scenario (``tests/frameworks/scenario_google_genai.py``): inside an app span ``ask_weather``,
one ``generate_content`` whose automatic function calling runs ``get_weather`` (the
instrumentation traces it as ``execute_tool`` inside the one LLM span, which reports the last
response only), then one refused request.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from opentelemetry.exporter.weave.testing import LocalWeaveServer

from .canned_gemini import ERROR_MESSAGE, REPLY, REPLY_USAGE, RESPONSE_MODEL
from .chat_oracle import chat_errors
from .helpers import Checklist, as_text, calls_of_run, token_usage, usage_by_model, weave_kind

QUESTION = "What is the weather in Paris?"
LLM = "generate_content gemini-2.5-flash"
TOOL_RESULT = "sunny, 21 degrees in Paris"
FINAL_USAGE = {
    RESPONSE_MODEL: token_usage(
        REPLY_USAGE["promptTokenCount"],
        REPLY_USAGE["candidatesTokenCount"],
        REPLY_USAGE["totalTokenCount"],
    )
}


@pytest.mark.parametrize("content_mode", ["SPAN_ONLY", "EVENT_ONLY"])
def test_generate_content_as_weave_shows_it(receiver: LocalWeaveServer, content_mode: str) -> None:
    project = f"test-entity/fw-google-genai-{content_mode.lower()}"
    calls = calls_of_run(
        receiver,
        "google_genai",
        project,
        WEAVE_TEST_CAPTURE="1",
        OTEL_SEMCONV_STABILITY_OPT_IN="gen_ai_latest_experimental",
        OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=content_mode,
    )
    by_name: dict[str, list[dict[str, Any]]] = {}
    for call in calls:
        by_name.setdefault(call["display_name"], []).append(call)
    checks = Checklist()
    counts = {name: len(group) for name, group in by_name.items()}
    if not checks.equal("calls", counts, {"ask_weather": 1, LLM: 2, "get_weather": 1}):
        checks.assert_all()
    (root,), (tool,) = by_name["ask_weather"], by_name["get_weather"]
    llm, refused = by_name[LLM]
    checks.equal(
        "tree: root > llm > tool",
        (root["parent_id"], llm["parent_id"], tool["parent_id"]),
        (None, root["id"], llm["id"]),
    )
    checks.equal("refused call is a root", refused["parent_id"], None)
    checks.equal(
        "kinds", [weave_kind(c) for c in (root, llm, tool, refused)], [None, "llm", "tool", "llm"]
    )
    checks.equal("chat-shaped LLM call", chat_errors(llm), [])
    checks.equal("chat-shaped refused call", chat_errors(refused), [])
    checks.check(
        "question in inputs.messages",
        QUESTION in as_text(llm["inputs"].get("messages")),
        llm["inputs"],
    )
    checks.check("reply in output", REPLY in as_text(llm["output"]), llm["output"])
    checks.equal("request parameter beside messages", llm["inputs"].get("temperature"), 0.2)
    if content_mode == "SPAN_ONLY":
        # In EVENT_ONLY mode the instrumentation records a tool's arguments and result nowhere:
        # not on its span, not on a log record.
        checks.check("tool arguments in inputs", "Paris" in as_text(tool["inputs"]), tool["inputs"])
        checks.check(
            "tool result in output", TOOL_RESULT in as_text(tool["output"]), tool["output"]
        )
    checks.equal("LLM usage by response model", usage_by_model(llm), FINAL_USAGE)
    checks.equal("root usage = its LLM call's", usage_by_model(root), FINAL_USAGE)
    checks.equal(
        "root status counts", root["summary"].get("status_counts"), {"success": 3, "error": 0}
    )
    exception = json.loads(refused["exception"] or "{}")
    checks.check(
        "refused: exception JSON with the API's message and a traceback list",
        ERROR_MESSAGE in as_text(exception) and isinstance(exception.get("traceback"), list),
        refused["exception"],
    )
    checks.check("refused: prompt kept", "FAIL" in as_text(refused["inputs"]), refused["inputs"])
    checks.check("refused: no usage", not refused["summary"].get("usage"), refused["summary"])
    checks.assert_all()
