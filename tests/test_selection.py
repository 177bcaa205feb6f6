"""Choosing what to export: WEAVE_OTEL_SPANS=genai and span_filter, with whole trees."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from opentelemetry.exporter.weave import ConfigError, SpanSet, WeaveSettings
from opentelemetry.exporter.weave.testing import LocalWeaveServer

from .conftest import PROJECT, make_processor, make_tracer


def emit_web_request(tracer: Tracer) -> None:
    """An instrumented web app: HTTP server span → DB query, LLM call → its HTTP client span."""
    with tracer.start_as_current_span("GET /ask", kind=SpanKind.SERVER):
        with tracer.start_as_current_span("SELECT users", kind=SpanKind.CLIENT):
            pass
        with (
            tracer.start_as_current_span(
                "chat gpt-4o",
                kind=SpanKind.CLIENT,
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.response.model": "gpt-4o",
                    "gen_ai.usage.input_tokens": 5,
                    "gen_ai.usage.output_tokens": 2,
                },
            ),
            tracer.start_as_current_span("POST", kind=SpanKind.CLIENT) as http,
        ):
            http.set_attribute("http.request.method", "POST")
        with tracer.start_as_current_span(
            "execute_tool lookup", attributes={"gen_ai.tool.name": "lookup"}
        ) as tool:
            tool.set_status(Status(StatusCode.ERROR, "not found"))


def export(receiver: LocalWeaveServer, emit: Any, **options: Any) -> dict[str, dict[str, Any]]:
    processor = make_processor(receiver.url, **options)
    provider, tracer = make_tracer(processor)
    emit(tracer)
    provider.shutdown()
    return {call["op_name"]: call for call in receiver.calls(PROJECT)}


def test_all_spans_by_default(receiver: LocalWeaveServer) -> None:
    calls = export(receiver, emit_web_request)
    assert set(calls) == {"GET /ask", "SELECT users", "chat gpt-4o", "POST", "execute_tool lookup"}


def test_genai_keeps_llm_spans_and_their_ancestors(
    receiver: LocalWeaveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEAVE_OTEL_SPANS", "genai")
    processor = make_processor(receiver.url)
    provider, tracer = make_tracer(processor)
    emit_web_request(tracer)
    provider.shutdown()
    calls = {call["op_name"]: call for call in receiver.calls(PROJECT)}
    assert set(calls) == {"GET /ask", "chat gpt-4o", "execute_tool lookup"}
    root = calls["GET /ask"]
    assert calls["chat gpt-4o"]["parent_id"] == root["id"]
    assert calls["execute_tool lookup"]["parent_id"] == root["id"]
    # roll-up counts what was exported
    assert root["summary"]["usage"]["gpt-4o"]["total_tokens"] == 7
    assert root["summary"]["status_counts"] == {"success": 2, "error": 1}
    assert processor.stats().spans_filtered == 2


def test_genai_drops_traces_without_llm_spans(receiver: LocalWeaveServer) -> None:
    def emit(tracer: Tracer) -> None:
        with tracer.start_as_current_span("GET /health"):
            pass

    assert export(receiver, emit, spans="genai") == {}


def test_span_filter_reparents_late_descendants(receiver: LocalWeaveServer) -> None:
    """A left-out span whose child ends after it: the child joins its nearest exported ancestor."""

    def emit(tracer: Tracer) -> None:
        with tracer.start_as_current_span("root"):
            noise = tracer.start_span("noise")
            late_child = tracer.start_span("late-child", context=trace.set_span_in_context(noise))
            noise.end()  # left out, and nothing under it has ended yet
            late_child.end()

    calls = export(receiver, emit, span_filter=lambda span: span.name != "noise")
    assert set(calls) == {"root", "late-child"}
    assert calls["late-child"]["parent_id"] == calls["root"]["id"]
    assert calls["root"]["summary"]["status_counts"] == {"success": 2, "error": 0}


def test_span_filter_keeps_ancestors_of_wanted_spans(receiver: LocalWeaveServer) -> None:
    def emit(tracer: Tracer) -> None:
        with tracer.start_as_current_span("root"), tracer.start_as_current_span("middle"):
            with tracer.start_as_current_span("wanted"):
                pass
            with tracer.start_as_current_span("unwanted-leaf"):
                pass

    calls = export(receiver, emit, span_filter=lambda span: span.name == "wanted")
    assert set(calls) == {"root", "middle", "wanted"}
    assert calls["wanted"]["parent_id"] == calls["middle"]["id"]
    assert calls["middle"]["parent_id"] == calls["root"]["id"]


def test_span_filter_overrides_the_variable(
    receiver: LocalWeaveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEAVE_OTEL_SPANS", "genai")
    calls = export(receiver, emit_web_request, span_filter=lambda span: span.name == "POST")
    assert set(calls) == {"GET /ask", "chat gpt-4o", "POST"}


def test_failing_span_filter_keeps_spans_and_says_so(
    receiver: LocalWeaveServer, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(span: ReadableSpan) -> bool:
        raise RuntimeError("filter bug")

    with caplog.at_level(logging.ERROR, logger="opentelemetry.exporter.weave"):
        calls = export(receiver, emit_web_request, span_filter=broken)
    assert len(calls) == 5
    assert len([r for r in caplog.records if "span filter raised" in r.getMessage()]) == 1


def test_spans_setting_is_validated() -> None:
    env = {"WANDB_API_KEY": "k", "WEAVE_PROJECT": "e/p"}
    assert WeaveSettings.from_env({**env, "WEAVE_OTEL_SPANS": "GenAI"}).spans is SpanSet.GENAI
    with pytest.raises(ConfigError, match="WEAVE_OTEL_SPANS"):
        WeaveSettings.from_env({**env, "WEAVE_OTEL_SPANS": "llm-only"})
    with pytest.raises(ConfigError, match="span_filter"):
        WeaveSettings.from_env(env, span_filter="not callable")  # type: ignore[arg-type]
