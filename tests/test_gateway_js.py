"""The gateway fed by a client nobody here wrote: the OpenTelemetry JS SDK in a Node process,
tracing a Vercel AI SDK agent run (``ai`` with its mock language model, one tool call) and
exporting it over OTLP/HTTP protobuf, chunked, as Node's exporter sends it: plain and gzip.

The Node packages are pinned in ``tests/js/package-lock.json`` and installed once by ``npm
ci`` (``tests/js/__init__.py``); without Node.js the test is skipped, a failing ``npm ci``
fails it.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from opentelemetry.exporter.weave.testing import LocalWeaveServer

from .chat_oracle import chat_errors
from .helpers import (
    API_KEY,
    calls_named,
    children_of,
    op_matches,
    summed_usage,
    usage_by_model,
    wait_until,
    weave_kind,
)
from .js import client_dir

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js >= 20")

_LISTENING = re.compile(r"listening on (http://\S+)")
_SPAN_NAMES = ("weather-agent-request", "ai.generateText", "ai.generateText.doGenerate")


@contextmanager
def running_gateway(env: Mapping[str, str], startup_seconds: float = 30.0) -> Iterator[str]:
    """``python -m opentelemetry.exporter.weave.gateway --port 0`` in a subprocess; yields its
    URL once it printed that it listens, and stops it with SIGTERM (it must drain and exit 0)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "opentelemetry.exporter.weave.gateway", "--port", "0"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    output: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        url = None
        while url is None:
            try:
                line = lines.get(timeout=startup_seconds)
            except queue.Empty:
                pytest.fail(f"the gateway did not say it listens:\n{''.join(output)}")
            if line is None:
                pytest.fail(f"the gateway exited ({process.wait()}):\n{''.join(output)}")
            if match := _LISTENING.search(line):
                url = match.group(1)
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
    assert code == 0, f"the gateway exited with {code}:\n{''.join(output)}"


def run_node_client(script: Path, gateway_url: str, compression: str) -> dict[str, Any]:
    """Run the Vercel AI SDK script against the gateway; its JSON summary line."""
    result = subprocess.run(
        ["node", str(script), gateway_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", "/tmp"),
            # Read by the JS OTLP exporter itself: `none` or `gzip` (a gzip stream, chunked).
            "OTEL_EXPORTER_OTLP_COMPRESSION": compression,
        },
    )
    assert result.returncode == 0, f"node failed:\n{result.stdout}\n{result.stderr}"
    summary: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return summary


@pytest.fixture(scope="module", params=["none", "gzip"])
def node_calls(
    request: pytest.FixtureRequest,
) -> Iterator[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """The Node client's summary and the calls its one trace became in a receiver: one run
    per body compression for the module's tests."""
    with LocalWeaveServer(api_key=API_KEY) as receiver:
        yield _node_run(receiver, request.param)


def _node_run(
    receiver: LocalWeaveServer, compression: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    project = f"test-entity/js-{uuid.uuid4().hex[:8]}"
    env = {
        "WANDB_API_KEY": API_KEY,
        "WEAVE_PROJECT": project,
        "WF_TRACE_SERVER_URL": receiver.url,
        # The whole trace comes in one request: no other service's spans to wait for.
        "WEAVE_GATEWAY_TRACE_WAIT": "0.2",
    }
    script = client_dir() / "vercel_ai_trace.mjs"  # npm ci first, when not built yet
    with running_gateway(env) as url:
        summary = run_node_client(script, url, compression)
        wait_until(lambda: len(receiver.calls(project)) >= summary["exported_spans"], 30)
    return summary, receiver.calls(project)


def test_node_client_exports_every_span_of_one_trace(
    node_calls: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    summary, calls = node_calls
    assert summary["exported_spans"] == 5
    assert len(calls) == 5
    assert {call["trace_id"] for call in calls} == {summary["trace_id"]}
    assert all(call["ended_at"] is not None for call in calls)


def test_vercel_spans_form_the_call_tree(
    node_calls: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    _, calls = node_calls
    (root,) = [call for call in calls if call["parent_id"] is None]
    assert op_matches(root, "weather-agent-request")
    (generate,) = children_of(calls, root)
    assert op_matches(generate, "ai.generateText")
    steps = children_of(calls, generate)
    assert [
        next(name for name in ("ai.generateText.doGenerate", "ai.toolCall") if op_matches(c, name))
        for c in steps
    ] == ["ai.generateText.doGenerate", "ai.toolCall", "ai.generateText.doGenerate"]


def test_op_names_are_op_refs(node_calls: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    _, calls = node_calls
    for call in calls:
        assert str(call["op_name"]).startswith(f"weave:///{call['project_id']}/op/"), call
    for name in (*_SPAN_NAMES, "ai.toolCall"):
        assert calls_named(calls, name), f"no call of {name}"


def test_kinds_llm_on_do_generate_and_tool_on_tool_call(
    node_calls: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    _, calls = node_calls
    llm_calls = calls_named(calls, "ai.generateText.doGenerate")
    (tool_call,) = calls_named(calls, "ai.toolCall")
    assert [weave_kind(call) for call in llm_calls] == ["llm", "llm"]
    assert weave_kind(tool_call) == "tool"
    assert tool_call["display_name"] == "weather"
    assert "Paris" in json.dumps(tool_call["inputs"])
    assert "sunny" in json.dumps(tool_call["output"])


def test_llm_calls_are_chat_shaped(
    node_calls: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    summary, calls = node_calls
    first, second = calls_named(calls, "ai.generateText.doGenerate")
    for call in (first, second):
        assert chat_errors(call) == [], call
    assert first["output"]["choices"][0]["message"]["tool_calls"][0]["function"]["name"] == (
        "weather"
    )
    assert second["output"]["choices"][0]["message"]["content"] == summary["text"]
    assert {message["role"] for message in second["inputs"]["messages"]} >= {
        "system",
        "user",
        "assistant",
        "tool",
    }


def test_usage_under_the_mock_model_rolls_up_to_the_root(
    node_calls: tuple[dict[str, Any], list[dict[str, Any]]],
) -> None:
    summary, calls = node_calls
    model = summary["model"]
    first, second = calls_named(calls, "ai.generateText.doGenerate")
    assert usage_by_model(first)[model] == {
        "input_tokens": 31,
        "output_tokens": 12,
        "total_tokens": 43,
        "requests": 1,
    }
    assert usage_by_model(second)[model]["input_tokens"] == 58
    (root,) = [call for call in calls if call["parent_id"] is None]
    assert usage_by_model(root) == summed_usage([first, second])
    assert usage_by_model(root)[model] == {
        "input_tokens": 89,
        "output_tokens": 23,
        "total_tokens": 112,
        "requests": 2,
    }
