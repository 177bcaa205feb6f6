"""Delivery over real HTTP to a scripted server on 127.0.0.1: order, retries, auth, refusals."""

from __future__ import annotations

import base64
import logging
import time
from datetime import datetime, timezone
from email.utils import formatdate

import httpx
import pytest
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from opentelemetry.exporter.weave import ExportStats, WeaveSettings, WeaveSpanExporter
from opentelemetry.exporter.weave._models import (
    CallEndReq,
    CallStartReq,
    EndedCallSchemaForInsert,
    StartedCallSchemaForInsert,
    SummaryInsertMap,
)
from opentelemetry.exporter.weave._retry import Retrying, RetryPolicy
from opentelemetry.exporter.weave._transport import HttpAttempt, PostResult

from .conftest import API_KEY, PROJECT, make_processor, make_tracer
from .fault_server import Reply, ScriptedServer

FAST_RETRIES = RetryPolicy(initial_backoff_seconds=0.01, max_backoff_seconds=0.05)
NOW = datetime.now(timezone.utc)
BODIES = {
    "/call/start": CallStartReq(
        start=StartedCallSchemaForInsert(
            project_id=PROJECT,
            id="0123456789abcdef",
            op_name="op",
            trace_id="0123456789abcdef0123456789abcdef",
            started_at=NOW,
            attributes={},
            inputs={},
        )
    ),
    "/call/end": CallEndReq(
        end=EndedCallSchemaForInsert(
            project_id=PROJECT, id="0123456789abcdef", ended_at=NOW, summary=SummaryInsertMap()
        )
    ),
}


def post(transport: Retrying, path: str, seconds: float = 10) -> PostResult:
    body = BODIES[path].model_dump_json().encode()
    return transport.post(path, body, time.monotonic() + seconds)


@pytest.fixture
def server() -> ScriptedServer:
    with ScriptedServer() as scripted:
        yield scripted


def transport_for(url: str, **options: object) -> Retrying:
    settings = WeaveSettings.from_env(
        {}, api_key=API_KEY, project=PROJECT, server_url=url, **options
    )
    return Retrying(HttpAttempt(settings), FAST_RETRIES)


def emit_tree(processor_url: str, delivered: bool = True, **options: object) -> ExportStats:
    """A root with three children through the processor; the processor's stats after flush.

    ``delivered``: whether force_flush must report everything delivered.
    """
    processor = make_processor(processor_url, **options)
    provider, tracer = make_tracer(processor)
    with tracer.start_as_current_span("root"):
        for index in range(3):
            with tracer.start_as_current_span(f"child-{index}"):
                pass
    assert processor.force_flush(10_000) is delivered
    stats = processor.stats()
    provider.shutdown()
    return stats


def test_start_is_sent_and_accepted_before_its_end(server: ScriptedServer) -> None:
    stats = emit_tree(server.url)
    starts = {s.json()["start"]["id"]: s.at for s in server.seen if s.path == "/call/start"}
    ends = {s.json()["end"]["id"]: s.at for s in server.seen if s.path == "/call/end"}
    assert len(starts) == 4
    assert starts.keys() == ends.keys()
    for call_id, ended_at in ends.items():
        assert starts[call_id] < ended_at
    assert stats.calls_exported == 4


def test_no_end_when_its_start_was_refused(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.script("/call/start", [Reply(400, {"reason": "op_name too long"})])
    stats = emit_tree(server.url, delivered=False, max_concurrency=1)
    start_ids = [s.json()["start"]["id"] for s in server.seen if s.path == "/call/start"]
    end_ids = [s.json()["end"]["id"] for s in server.seen if s.path == "/call/end"]
    refused = start_ids[0]
    assert refused not in end_ids
    assert sorted(end_ids) == sorted(start_ids[1:])
    assert stats.calls_failed == 1
    assert stats.calls_exported == 3


def test_retries_on_503_until_accepted(server: ScriptedServer) -> None:
    server.script("/call/start", [Reply(503), Reply(502), Reply(500)])
    result = post(transport_for(server.url), "/call/start", 10)
    assert result.ok
    assert result.attempts == 4
    assert server.paths() == ["/call/start"] * 4


@pytest.mark.parametrize("status", [408, 409, 429, 504])
def test_other_retryable_statuses(server: ScriptedServer, status: int) -> None:
    server.script("/call/end", [Reply(status)])
    result = post(transport_for(server.url), "/call/end", 10)
    assert result.ok
    assert result.attempts == 2


def test_processor_retries_503_end_to_end(server: ScriptedServer) -> None:
    server.script("/call/start", [Reply(503)])
    server.script("/call/end", [Reply(503)])
    stats = emit_tree(server.url, max_concurrency=1)
    assert stats.calls_exported == 4
    assert server.paths().count("/call/start") == 5
    assert server.paths().count("/call/end") == 5


def test_429_retry_after_seconds_is_honoured(server: ScriptedServer) -> None:
    server.script("/call/start", [Reply(429, {"reason": "slow down"}, {"Retry-After": "1"})])
    result = post(transport_for(server.url), "/call/start", 10)
    assert result.ok
    first, second = server.seen
    assert second.at - first.at >= 0.95  # waited what the server asked, not the 10 ms backoff


def test_429_retry_after_http_date_is_honoured(server: ScriptedServer) -> None:
    # HTTP-dates have whole seconds: ask for 2 s so that at least 1 s remains to wait.
    retry_at = formatdate(time.time() + 2, usegmt=True)
    server.script("/call/start", [Reply(429, {}, {"Retry-After": retry_at})])
    result = post(transport_for(server.url), "/call/start", 10)
    assert result.ok
    first, second = server.seen
    assert second.at - first.at >= 0.9


def test_retry_after_beyond_deadline_gives_up_without_waiting(server: ScriptedServer) -> None:
    server.script("/call/start", [Reply(429, {"reason": "later"}, {"Retry-After": "30"})])
    began = time.monotonic()
    result = post(transport_for(server.url), "/call/start", 2)
    waited = time.monotonic() - began
    assert not result.ok
    assert result.status_code == 429
    assert result.reason == "later"
    assert waited < 2
    assert len(server.seen) == 1


def test_retry_after_is_capped_at_sixty_seconds() -> None:
    assert RetryPolicy().max_retry_after_seconds == 60


def test_final_4xx_is_not_retried_and_logged_once_with_reason(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.script("/call/start", [Reply(403, {"reason": "project is read-only"})] * 4)
    with caplog.at_level(logging.WARNING, logger="opentelemetry.exporter.weave"):
        stats = emit_tree(server.url, delivered=False)
    assert server.paths() == ["/call/start"] * 4  # each call tried once, no retry, no end
    assert stats.calls_failed == 4
    refusals = [r for r in caplog.records if "project is read-only" in r.getMessage()]
    assert len(refusals) == 1  # one line for the batch, not one per call
    assert "403" in refusals[0].getMessage()
    assert "4 call(s)" in refusals[0].getMessage()


def test_non_json_error_body_becomes_the_reason(server: ScriptedServer) -> None:
    server.script("/call/start", [Reply(418, b"<html>teapot</html>")])
    result = post(transport_for(server.url), "/call/start", 5)
    assert (result.status_code, result.reason) == (418, "<html>teapot</html>")


def test_connection_refused_is_retried_until_deadline() -> None:
    with ScriptedServer() as gone:
        url = gone.url
    result = post(transport_for(url), "/call/start", 0.5)
    assert not result.ok
    assert result.status_code is None
    assert "ConnectError" in result.reason
    assert result.attempts > 1


def test_basic_auth_header(server: ScriptedServer) -> None:
    post(transport_for(server.url), "/call/start", 5)
    expected = "Basic " + base64.b64encode(f"api:{API_KEY}".encode()).decode()
    assert server.seen[0].headers["authorization"] == expected
    assert server.seen[0].headers["content-type"] == "application/json"


def test_bearer_auth_header(server: ScriptedServer) -> None:
    post(transport_for(server.url, auth_scheme="bearer"), "/call/start", 5)
    assert server.seen[0].headers["authorization"] == f"Bearer {API_KEY}"


def test_api_key_echoed_by_server_is_redacted(
    server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.script("/call/start", [Reply(401, {"reason": f"bad key {API_KEY}"})] * 4)
    with caplog.at_level(logging.DEBUG):
        emit_tree(server.url, delivered=False)
    assert caplog.records
    assert API_KEY not in caplog.text
    assert "bad key ***" in caplog.text


def test_exporting_does_not_trace_itself(server: ScriptedServer) -> None:
    memory = InMemorySpanExporter()
    processor = make_processor(server.url)
    provider, tracer = make_tracer(SimpleSpanProcessor(memory), processor)
    instrumentor = HTTPXClientInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        with tracer.start_as_current_span("app-work"):
            pass
        assert processor.force_flush(10_000)
        with httpx.Client() as client:  # proves the instrumentation is live
            client.post(f"{server.url}/probe", content=b"{}")
    finally:
        instrumentor.uninstrument()
        provider.shutdown()
    names = [span.name for span in memory.get_finished_spans()]
    assert "app-work" in names
    assert any(name.startswith("POST") for name in names)  # the probe was traced
    assert len(names) == 2  # ... but none of the exporter's own POSTs were
    exported = [s.json()["start"]["op_name"] for s in server.seen if s.path == "/call/start"]
    assert sorted(exported) == sorted(names)


def test_exporter_interface_reports_success_and_failure(server: ScriptedServer) -> None:
    memory = InMemorySpanExporter()
    provider, tracer = make_tracer(SimpleSpanProcessor(memory))
    with tracer.start_as_current_span("one"):
        pass
    provider.shutdown()
    spans = memory.get_finished_spans()
    exporter = WeaveSpanExporter(api_key=API_KEY, project=PROJECT, server_url=server.url)
    try:
        assert exporter.export(spans) is SpanExportResult.SUCCESS
        server.script("/call/start", [Reply(400, {"reason": "no"})])
        assert exporter.export(spans) is SpanExportResult.FAILURE
    finally:
        exporter.shutdown()
    assert exporter.export(spans) is SpanExportResult.FAILURE  # after shutdown
    assert exporter.stats().calls_exported == 1
    assert exporter.stats().calls_failed == 1
