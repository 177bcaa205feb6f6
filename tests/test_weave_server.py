"""The contract stage against Weave's own server code (issue 9 §9): a traced conversation,
sent by a real ``TracerProvider`` and ``WeaveSpanProcessor`` in each write mode to Weave's
``SqliteTraceServer`` behind the service's routes (``tests/weave_server/``, in its own
environment), then read back through the query routes the UI reads: calls, statuses, ops and
the op filter, the thread and its turns, costs, summaries."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.trace import Tracer

from .helpers import API_KEY, NO_WAIT_RETRIES, make_processor, make_tracer, wait_until
from .venvs import venv_python

ROOT = Path(__file__).resolve().parent.parent
ENTITY = "contract-entity"
MODEL = "gpt-4o-mini-2024-07-18"
CONVERSATION = "conversation-7f3a"
QUESTIONS = ("What is the weather in Paris?", "And tomorrow?")
ANSWERS = ("Sunny, 21 degrees.", "I could not reach the forecast service.")
TOKENS = {"chat-1a": (100, 20), "chat-1b": (150, 30), "chat-2": (200, 40)}
"""Usage of each LLM call (input, output), by the label it carries in ``test.label``."""

AUTO_PROJECT = f"{ENTITY}/auto-on-a-calls-complete-project"
PROJECTS = {
    "calls_complete": f"{ENTITY}/calls-complete",
    "upsert_batch": f"{ENTITY}/upsert-batch",
    "call_end": f"{ENTITY}/call-end",
    # A new project: v1 writes answer CALLS_COMPLETE_MODE_REQUIRED, auto must switch.
    "auto": AUTO_PROJECT,
}

Call = dict[str, Any]


@dataclass(frozen=True)
class TraceService:
    """The query side of the wrapped server, as the UI uses it."""

    url: str

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        response = httpx.post(f"{self.url}{path}", json=body, auth=("api", API_KEY), timeout=30)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
        return response

    def lines(self, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.post(path, body).text.splitlines() if line]

    def calls(self, project: str, **query: Any) -> list[Call]:
        return self.lines("/calls/stream_query", {"project_id": project, **query})

    def threads(self, project: str) -> list[dict[str, Any]]:
        return self.lines("/threads/stream_query", {"project_id": project})

    def ops(self, project: str) -> list[dict[str, Any]]:
        body = {"project_id": project, "filter": {"is_op": True, "latest_only": True}}
        objs: list[dict[str, Any]] = self.post("/objs/query", body).json()["objs"]
        return objs


@pytest.fixture(scope="module")
def weave_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TraceService]:
    python = venv_python("weave_sqlite")
    scratch = tmp_path_factory.mktemp("weave-server")
    log = (scratch / "stderr.log").open("w+")
    process = subprocess.Popen(
        [
            str(python),
            "-m",
            "tests.weave_server.app",
            "--api-key",
            API_KEY,
            "--port",
            "0",
            "--db",
            str(scratch / "trace.db"),
            "--calls-complete-only",
            AUTO_PROJECT,
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert process.stdout is not None
    port = process.stdout.readline().strip()
    try:
        if not port.isdigit():
            log.seek(0)
            pytest.fail(f"the Weave server wrapper did not start:\n{log.read()}")
        yield TraceService(f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.seek(0)
        # What the server logged (tracebacks of 5xx answers) shows with a failing test.
        print(log.read())
        log.close()


def chat(tracer: Tracer, label: str, question: str, reply: str) -> None:
    input_tokens, output_tokens = TOKENS[label]
    attributes = {
        "test.label": label,
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": MODEL,
        "gen_ai.response.id": f"chatcmpl-{label}",
        "gen_ai.usage.input_tokens": input_tokens,
        "gen_ai.usage.output_tokens": output_tokens,
        "gen_ai.input.messages": json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": question}]}]
        ),
        "gen_ai.output.messages": json.dumps(
            [
                {
                    "role": "assistant",
                    "parts": [{"type": "text", "content": reply}],
                    "finish_reason": "stop",
                }
            ]
        ),
    }
    with tracer.start_as_current_span("chat gpt-4o-mini", attributes=attributes):
        pass


def turn(tracer: Tracer, label: str, question: str, answer: str) -> Any:
    attributes = {
        "test.label": label,
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.agent.name": "weather_assistant",
        "gen_ai.conversation.id": CONVERSATION,
        "gen_ai.input.messages": json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": question}]}]
        ),
        "gen_ai.output.messages": json.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": answer}]}]
        ),
    }
    return tracer.start_as_current_span("invoke_agent weather_assistant", attributes=attributes)


def tool(tracer: Tracer, label: str, name: str) -> Any:
    attributes = {
        "test.label": label,
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": name,
        "gen_ai.tool.call.arguments": json.dumps({"city": "Paris"}),
    }
    return tracer.start_as_current_span(f"execute_tool {name}", attributes=attributes)


def converse(tracer: Tracer) -> None:
    """Two turns of one conversation; the second one's tool fails."""
    with turn(tracer, "turn-1", QUESTIONS[0], ANSWERS[0]):
        chat(tracer, "chat-1a", QUESTIONS[0], "calling get_weather")
        with tool(tracer, "tool", "get_weather") as span:
            span.set_attribute("gen_ai.tool.call.result", json.dumps({"sky": "sunny"}))
        chat(tracer, "chat-1b", QUESTIONS[0], ANSWERS[0])
    with turn(tracer, "turn-2", QUESTIONS[1], ANSWERS[1]):
        try:
            with tool(tracer, "failing-tool", "get_forecast"):
                raise ConnectionError("forecast service unreachable")
        except ConnectionError:
            pass
        chat(tracer, "chat-2", QUESTIONS[1], ANSWERS[1])


@dataclass(frozen=True)
class Stored:
    """What one write mode left on the server."""

    project: str
    calls: dict[str, Call]
    """Every call of the project (with costs), by its ``test.label``."""

    def label_of(self, call_id: str) -> str:
        return next(label for label, call in self.calls.items() if call["id"] == call_id)


@pytest.fixture(scope="module", params=list(PROJECTS))
def stored(request: pytest.FixtureRequest, weave_service: TraceService) -> Stored:
    mode: str = request.param
    project = PROJECTS[mode]
    processor = make_processor(
        weave_service.url,
        project=project,
        write_mode=mode,
        # The product's default, which the helpers turn off for the other stages' tests.
        op_refs=True,
        _retry_policy=NO_WAIT_RETRIES,
    )
    provider, tracer = make_tracer(processor)
    converse(tracer)
    provider.shutdown()
    stats = processor.stats()
    assert (stats.calls_exported, stats.calls_rejected, stats.calls_undeliverable) == (7, 0, 0)
    # Weave's own server took every op request: no call fell back to a plain op_name.
    assert (stats.ops_created, stats.ops_fallback) == (4, 0)
    calls = weave_service.calls(project, include_costs=True)
    return Stored(project, {call["attributes"]["test.label"]: call for call in calls})


def status(call: Call) -> str:
    result: str = call["summary"]["weave"]["status"]
    return result


def test_every_call_is_stored_and_visible(stored: Stored) -> None:
    # The query drops calls without an op_name (a start-only field): all seven must be there.
    assert set(stored.calls) == {"turn-1", "turn-2", "tool", "failing-tool", *TOKENS}
    assert all(call["op_name"] for call in stored.calls.values())
    parents = {label: call["parent_id"] for label, call in stored.calls.items()}
    assert parents["turn-1"] is None
    assert parents["turn-2"] is None
    assert {stored.label_of(parents[label]) for label in ("chat-1a", "tool", "chat-1b")} == {
        "turn-1"
    }
    assert {stored.label_of(parents[label]) for label in ("failing-tool", "chat-2")} == {"turn-2"}


def test_statuses_are_weaves(stored: Stored) -> None:
    statuses = {label: status(call) for label, call in stored.calls.items()}
    assert statuses == {
        "turn-1": "success",
        "chat-1a": "success",
        "tool": "success",
        "chat-1b": "success",
        "turn-2": "descendant_error",
        "failing-tool": "error",
        "chat-2": "success",
    }
    exception = json.loads(stored.calls["failing-tool"]["exception"])
    assert exception["type"] == "ConnectionError"
    assert exception["message"] == "forecast service unreachable"
    assert isinstance(exception["traceback"], list)


def test_ops_exist_and_the_op_filter_finds_their_calls(
    stored: Stored, weave_service: TraceService
) -> None:
    prefix = f"weave:///{stored.project}/op/"
    op_names = {call["op_name"] for call in stored.calls.values()}
    assert all(name.startswith(prefix) for name in op_names), op_names
    ops = {f"{prefix}{op['object_id']}:{op['digest']}" for op in weave_service.ops(stored.project)}
    assert op_names <= ops, "calls refer to ops that do not exist"
    for op_name in op_names:
        found = weave_service.calls(stored.project, filter={"op_names": [op_name]})
        expected = {label for label, call in stored.calls.items() if call["op_name"] == op_name}
        assert {call["attributes"]["test.label"] for call in found} == expected, op_name
    # One op per span name: the three LLM calls share one.
    assert len(op_names) == 4
    assert stored.calls["turn-1"]["display_name"] == "weather_assistant"


def test_the_conversation_lists_as_one_thread_with_two_turns(
    stored: Stored, weave_service: TraceService
) -> None:
    assert all(call["thread_id"] == CONVERSATION for call in stored.calls.values())
    for label, call in stored.calls.items():
        root = "turn-1" if label in ("turn-1", "chat-1a", "tool", "chat-1b") else "turn-2"
        assert call["turn_id"] == stored.calls[root]["id"], label
    threads = weave_service.threads(stored.project)
    assert [(thread["thread_id"], thread["turn_count"]) for thread in threads] == [
        (CONVERSATION, 2)
    ]
    first = weave_service.calls(stored.project, filter={"call_ids": [threads[0]["first_turn_id"]]})
    last = weave_service.calls(stored.project, filter={"call_ids": [threads[0]["last_turn_id"]]})
    assert [call["attributes"]["test.label"] for call in first + last] == ["turn-1", "turn-2"]
    # The Threads view's First Input and Last Output columns.
    assert QUESTIONS[0] in json.dumps(first[0]["inputs"])
    assert ANSWERS[1] in json.dumps(last[0]["output"])


def test_costs_are_computed_for_the_usage_key(stored: Stored) -> None:
    for label, tokens, requests in (
        ("chat-1a", TOKENS["chat-1a"], 1),
        ("turn-1", (250, 50), 2),
        ("turn-2", TOKENS["chat-2"], 1),
    ):
        costs = stored.calls[label]["summary"]["weave"]["costs"]
        assert set(costs) == {MODEL}, label
        cost = costs[MODEL]
        assert (cost["prompt_tokens"], cost["completion_tokens"], cost["requests"]) == (
            *tokens,
            requests,
        ), label
        assert cost["prompt_token_cost"] > 0
        assert cost["completion_token_cost"] > 0
        assert cost["prompt_tokens_total_cost"] == pytest.approx(
            tokens[0] * cost["prompt_token_cost"]
        )
        assert cost["completion_tokens_total_cost"] == pytest.approx(
            tokens[1] * cost["completion_token_cost"]
        )
    assert "costs" not in stored.calls["tool"]["summary"]["weave"]


def test_summaries_roll_up(stored: Stored, weave_service: TraceService) -> None:
    def usage(label: str) -> tuple[int, int, int]:
        entry = stored.calls[label]["summary"]["usage"][MODEL]
        return entry["input_tokens"], entry["output_tokens"], entry["requests"]

    assert usage("chat-1a") == (100, 20, 1)
    assert usage("turn-1") == (250, 50, 2)
    assert usage("turn-2") == (200, 40, 1)
    assert (
        "usage" not in stored.calls["tool"]["summary"]
        or not stored.calls["tool"]["summary"]["usage"]
    )
    first, second = (
        stored.calls[label]["summary"]["status_counts"] for label in ("turn-1", "turn-2")
    )
    assert first.get("error", 0) == 0
    assert sum(first.values()) == 4
    assert second["error"] == 1
    assert sum(second.values()) == 3
    stats = weave_service.post("/calls/query_stats", {"project_id": stored.project}).json()
    roots = weave_service.post(
        "/calls/query_stats",
        {"project_id": stored.project, "filter": {"trace_roots_only": True}},
    ).json()
    assert (stats["count"], roots["count"]) == (7, 2)


@pytest.mark.parametrize("mode", ["calls_complete", "upsert_batch"])
def test_a_long_span_is_running_then_finished(weave_service: TraceService, mode: str) -> None:
    """Issue 11: a span open past the live threshold shows as running in Weave, then as the
    same call finished (one call: its start on its own, then its end)."""
    project = f"{ENTITY}/live-{mode.replace('_', '-')}"
    processor = make_processor(
        weave_service.url,
        project=project,
        write_mode=mode,
        op_refs=True,
        live_after_seconds=0.2,
        _retry_policy=NO_WAIT_RETRIES,
    )
    provider, tracer = make_tracer(processor)
    with tracer.start_as_current_span("agent run", attributes={"test.label": "live"}) as span:
        wait_until(lambda: len(weave_service.calls(project)) == 1)
        (running,) = weave_service.calls(project)
        assert running["ended_at"] is None
        assert status(running) == "running"
        assert running["op_name"].startswith(f"weave:///{project}/op/agent_run:")
        span.set_attribute("output", "done")
    provider.shutdown()
    (finished,) = weave_service.calls(project)
    assert finished["id"] == running["id"]
    assert finished["ended_at"] is not None
    assert finished["output"] == "done"
    assert status(finished) == "success"
    stats = processor.stats()
    assert (stats.calls_started_early, stats.live_ends_matched) == (1, 1)
