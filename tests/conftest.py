from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from hypothesis import settings as hypothesis_settings
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

from opentelemetry.exporter.weave import _pipeline
from opentelemetry.exporter.weave._call import WeaveCall
from opentelemetry.exporter.weave._transport import HttpAttempt, PostResult
from opentelemetry.exporter.weave.testing import LocalWeaveServer

from .chat_oracle import recorded_chat_errors
from .fault_server import ScriptedServer
from .helpers import API_KEY, Record, contract_errors, make_tracer

# In CI the property-based tests run the same examples every time: a red build is reproducible.
hypothesis_settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

_SETTING_PREFIXES = ("WANDB_", "WEAVE_", "WF_TRACE_", "OTEL_")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the settings they set themselves."""
    for name in list(os.environ):
        if name.startswith(_SETTING_PREFIXES):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def contract_check(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every body the package posts in any test must satisfy the contract schema."""
    violations: list[str] = []
    original_post = HttpAttempt.post

    def checked_post(
        self: HttpAttempt, path: str, body: bytes, timeout: float, headers: Mapping[str, str]
    ) -> PostResult:
        violations.extend(contract_errors(path, json.loads(body)))
        return original_post(self, path, body, timeout, headers)

    monkeypatch.setattr(HttpAttempt, "post", checked_post)
    yield violations
    assert violations == [], "bodies that break the contract were sent"


@pytest.fixture(autouse=True)
def chat_check(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every LLM call the pipeline maps in any test, of any convention, must be chat-shaped in
    what it recorded (``tests/chat_oracle.py``: Weave's chat-view rules)."""
    problems: list[str] = []
    original_map = _pipeline.span_to_call

    def checked_map(span: ReadableSpan, *args: Any, **kwargs: Any) -> WeaveCall:
        call = original_map(span, *args, **kwargs)
        if call.facts.kind == "llm":
            stored = {**json.loads(call.start_json), **json.loads(call.end_json)}
            problems.extend(f"{span.name}: {error}" for error in recorded_chat_errors(stored))
        return call

    monkeypatch.setattr(_pipeline, "span_to_call", checked_map)
    yield problems
    assert problems == [], "LLM calls that Weave's chat view would not show were mapped"


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL where nothing listens: connecting is refused."""
    with socket.socket() as unbound:
        unbound.bind(("127.0.0.1", 0))
        port = unbound.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def receiver() -> Iterator[LocalWeaveServer]:
    with LocalWeaveServer(api_key=API_KEY) as server:
        yield server


@pytest.fixture
def record_spans() -> Record:
    """Run a function against a real tracer and return the finished spans, in end order."""

    def run(emit: Callable[[Tracer], None]) -> list[ReadableSpan]:
        memory = InMemorySpanExporter()
        provider, tracer = make_tracer(SimpleSpanProcessor(memory))
        emit(tracer)
        provider.shutdown()
        return list(memory.get_finished_spans())

    return run


# One scripted server per test module (tests/fault_server.py), reset for each test; a module
# that needs a server of its own defines its own `server`.
@pytest.fixture(scope="module")
def shared_server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


@pytest.fixture
def server(shared_server: ScriptedServer) -> ScriptedServer:
    shared_server.reset()
    return shared_server
