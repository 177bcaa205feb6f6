"""Secrets stay home, end to end: one scrub through processor and receiver (the scrubber and the
callback on their own: test_redaction.py), the API key, clear-text warnings; loss callbacks."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.trace import Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

from opentelemetry.exporter.weave import WeaveSpanExporter
from opentelemetry.exporter.weave.testing import LocalWeaveServer

from .fault_server import Reply, ScriptedServer
from .helpers import API_KEY, NO_WAIT_RETRIES, PROJECT, make_processor, make_tracer
from .test_redaction import BEARER, JWT, OPENAI_KEY


def emit_leaky(tracer: Tracer) -> None:
    attributes: dict[str, AttributeValue] = {
        "openai.api_key": OPENAI_KEY,
        "http.request.header.authorization": BEARER,
        "user.password": "hunter2",
        "db.connection_string": "postgresql://bob:s3cret@db.internal:5432/app",
        "note": f"the key is {OPENAI_KEY}, keep it safe",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.request.model": "gpt-4o",
        "valid_tokens": 5,
        "gen_ai.input.messages": json.dumps(
            [{"role": "user", "content": f"call the API with {BEARER}", "api_key": "plain"}]
        ),
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "content": f"token {JWT}"}]),
    }
    with tracer.start_as_current_span("leaky", attributes=attributes) as span:
        span.record_exception(ValueError(f"auth failed for {OPENAI_KEY}"))
        span.set_status(Status(StatusCode.ERROR, "auth failed"))


def test_default_scrubber_redacts_keys_and_values(receiver: LocalWeaveServer) -> None:
    provider, tracer = make_tracer(make_processor(receiver.url))
    emit_leaky(tracer)
    provider.shutdown()
    (call,) = receiver.calls(PROJECT)
    stored = json.dumps(call)
    for secret in (OPENAI_KEY, JWT, "hunter2", "s3cret", "abcdefghijklmnopqrstuvwxyz0123"):
        assert secret not in stored
    attributes = call["attributes"]
    assert attributes["openai.api_key"] == "[REDACTED]"
    assert attributes["http.request.header.authorization"] == "[REDACTED]"
    assert attributes["user.password"] == "[REDACTED]"
    assert attributes["db.connection_string"] == "postgresql://[REDACTED]@db.internal:5432/app"
    assert attributes["note"] == "the key is [REDACTED], keep it safe"
    assert call["inputs"]["messages"][0] == {
        "role": "user",
        "content": "call the API with [REDACTED]",
        "api_key": "[REDACTED]",
    }
    assert call["output"]["choices"][0]["message"] == {
        "role": "assistant",
        "content": "token [REDACTED]",
    }
    assert json.loads(call["exception"])["message"] == "auth failed for [REDACTED]"
    # what only looks like a secret by name fragments is left alone
    assert attributes["valid_tokens"] == 5
    assert attributes["gen_ai.usage.input_tokens"] == 12
    assert call["summary"]["usage"]["gpt-4o"]["input_tokens"] == 12


def test_captured_http_headers_are_redacted(
    receiver: LocalWeaveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real instrumentation records each captured header as a sequence of strings.
    monkeypatch.setenv(
        "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST",
        "authorization,x-api-key,cookie,accept",
    )
    provider, _ = make_tracer(make_processor(receiver.url))
    headers = {
        "Authorization": "Bearer plain1",
        "X-Api-Key": "plain2",
        "Cookie": "sid=plain3",
        "Accept": "application/json",
    }
    with ScriptedServer() as server, httpx.Client(headers=headers) as client:
        HTTPXClientInstrumentor.instrument_client(client, tracer_provider=provider)
        client.post(f"{server.url}/v1/search?api_key=plain4&q=cats", json={})
        assert {k.lower(): v for k, v in server.seen[0].headers.items()}[
            "x-api-key"
        ] == "plain2"  # the request itself is intact
    provider.shutdown()
    (call,) = receiver.calls(PROJECT)
    attributes = call["attributes"]
    assert attributes["http.request.header.authorization"] == ["[REDACTED]"]
    assert attributes["http.request.header.x_api_key"] == ["[REDACTED]"]
    assert attributes["http.request.header.cookie"] == ["[REDACTED]"]
    assert attributes["http.request.header.accept"] == ["application/json"]
    for secret in ("plain1", "plain2", "plain3", "plain4"):
        assert secret not in json.dumps(call)


def test_a_callback_returning_what_json_cannot_hold_loses_nothing(
    receiver: LocalWeaveServer,
) -> None:
    def odd(field: str, value: Any) -> Any:
        if field == "inputs" and value.get("input") == "odd":
            return {"tags": {"a"}, "raw": b"\xff", 1: float("nan")}
        return value

    provider, tracer = make_tracer(make_processor(receiver.url, redaction_callback=odd))
    for text in ("good-1", "odd", "good-2"):
        with tracer.start_as_current_span(text, attributes={"input.value": text}):
            pass
    provider.shutdown()
    calls = {call["op_name"]: call for call in receiver.calls(PROJECT)}
    assert sorted(calls) == ["good-1", "good-2", "odd"]
    assert calls["odd"]["inputs"] == {"tags": ["a"], "raw": "\\xff", "1": "NaN"}


def test_api_key_never_in_logs_reprs_or_stats(caplog: pytest.LogCaptureFixture) -> None:
    with ScriptedServer() as server:
        server.script("/call/start", [Reply(503), Reply(401, {"reason": f"bad key {API_KEY}"})])
        with caplog.at_level(logging.DEBUG):  # every logger, httpx and httpcore included
            processor = make_processor(
                server.url, write_mode="call_end", _retry_policy=NO_WAIT_RETRIES
            )
            provider, tracer = make_tracer(processor)
            with tracer.start_as_current_span("one"):
                pass
            processor.force_flush(10_000)
            provider.shutdown()
    assert any(record.name.startswith("httpx") for record in caplog.records)
    texts = [caplog.text, repr(processor), repr(processor.settings), str(processor.stats())]
    for text in texts:
        assert API_KEY not in text
    assert "bad key ***" in caplog.text


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("http://weave.example.com", True),
        ("http://10.1.2.3:8080", True),
        ("http://127.0.0.1:8080", False),
        ("http://localhost:8080", False),
        ("http://[::1]:8080", False),
        ("https://weave.example.com", False),
    ],
)
def test_clear_text_credentials_draw_a_warning(
    url: str, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="opentelemetry.exporter.weave"):
        exporter = WeaveSpanExporter(api_key=API_KEY, project=PROJECT, server_url=url)
        exporter.shutdown()
    warnings = [r for r in caplog.records if "unencrypted" in r.getMessage()]
    assert bool(warnings) is warned


def test_on_drop_reports_each_loss_once() -> None:
    drops: list[tuple[str, int]] = []
    with ScriptedServer() as server:
        server.script("/call/start", [Reply(400, {"reason": "no"})] * 2)
        processor = make_processor(
            server.url, write_mode="call_end", on_drop=lambda *drop: drops.append(drop)
        )
        provider, tracer = make_tracer(processor)
        for name in ("a", "b", "c"):
            with tracer.start_as_current_span(name):
                pass
        processor.force_flush(10_000)
        provider.shutdown()
        with tracer.start_as_current_span("late"):
            pass
    assert drops == [("rejected", 2)]
    assert processor.stats().calls_rejected == 2
    assert processor.stats().calls_exported == 1


def test_failing_on_drop_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    def broken(reason: str, count: int) -> None:
        raise RuntimeError("callback bug")

    with ScriptedServer() as server:
        server.script("/call/start", [Reply(400, {"reason": "no"})] * 5)
        processor = make_processor(server.url, write_mode="call_end", on_drop=broken)
        provider, tracer = make_tracer(processor)
        with caplog.at_level(logging.ERROR, logger="opentelemetry.exporter.weave"):
            for _ in range(2):
                with tracer.start_as_current_span("x"):
                    pass
                processor.force_flush(10_000)
        provider.shutdown()
    assert len([r for r in caplog.records if "on_drop callback raised" in r.getMessage()]) == 1
    assert processor.stats().calls_rejected == 2
