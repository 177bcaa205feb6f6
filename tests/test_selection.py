"""Choosing what to export: SpanSelection on its own, then the README's web request end to end."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, Tracer

from opentelemetry.exporter.weave import ConfigError, SpanSet, WeaveSettings, WeaveSpanProcessor
from opentelemetry.exporter.weave._call import format_span_id
from opentelemetry.exporter.weave._selection import LEFT_OUT, SpanSelection, is_genai_span
from opentelemetry.exporter.weave.testing import LocalWeaveServer

from .helpers import PROJECT, make_processor, make_tracer

TRACE_ID = 0x0123456789ABCDEF0123456789ABCDEF
SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def span(
    name: str,
    span_id: int,
    parent: int | None = None,
    *,
    remote_parent: bool = False,
    attributes: dict[str, Any] | None = None,
    events: Sequence[Event] = (),
) -> ReadableSpan:
    """A finished span of one trace, its ids small numbers."""
    return ReadableSpan(
        name=name,
        context=SpanContext(TRACE_ID, span_id, is_remote=False, trace_flags=SAMPLED),
        parent=None
        if parent is None
        else SpanContext(TRACE_ID, parent, is_remote=remote_parent, trace_flags=SAMPLED),
        attributes=attributes,
        events=events,
    )


def wanting(*names: str, max_tracked: int = 100) -> SpanSelection:
    return SpanSelection(lambda span: span.name in names, max_tracked)


def parents(selection: SpanSelection, ended: Sequence[ReadableSpan]) -> dict[str, object]:
    """What the selection answers for each span, the spans given in the order they end."""
    return {span.name: selection.parent_of(span) for span in ended}


def call_id(span_id: int) -> str:
    return format_span_id(span_id)


# --- SpanSelection.parent_of -------------------------------------------------------------


def test_a_wanted_span_keeps_its_parent() -> None:
    ended = [span("child", 2, parent=1), span("root", 1)]
    assert parents(wanting("child", "root"), ended) == {"child": call_id(1), "root": None}


def test_a_span_the_filter_leaves_out_is_left_out() -> None:
    ended = [span("noise", 2, parent=1), span("root", 1)]
    assert parents(wanting("root"), ended) == {"noise": LEFT_OUT, "root": None}


def test_ancestors_of_an_exported_span_are_exported() -> None:
    ended = [
        span("wanted", 3, parent=2),
        span("unwanted-leaf", 4, parent=2),
        span("middle", 2, parent=1),
        span("root", 1),
    ]
    assert parents(wanting("wanted"), ended) == {
        "wanted": call_id(2),
        "unwanted-leaf": LEFT_OUT,
        "middle": call_id(1),
        "root": None,
    }


def test_a_late_descendant_joins_the_nearest_exported_ancestor() -> None:
    # root → noise-a → noise-b → late-child; both noise spans end before late-child.
    ended = [
        span("noise-b", 3, parent=2),
        span("noise-a", 2, parent=1),
        span("late-child", 4, parent=3),
        span("root", 1),
    ]
    assert parents(wanting("late-child"), ended) == {
        "noise-b": LEFT_OUT,
        "noise-a": LEFT_OUT,
        "late-child": call_id(1),
        "root": None,  # exported for late-child's sake
    }


def test_a_remote_parent_is_not_waited_for() -> None:
    # Room for one span to wait for: a remote parent, which never ends here, must not take it.
    ended = [
        span("local-child", 3, parent=2),
        span("remote-child", 5, parent=9, remote_parent=True),
        span("local-parent", 2),
    ]
    assert parents(wanting("local-child", "remote-child", max_tracked=1), ended) == {
        "local-child": call_id(2),
        "remote-child": call_id(9),
        "local-parent": None,
    }


def test_a_failing_filter_exports_the_spans_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(span: ReadableSpan) -> bool:
        raise RuntimeError("filter bug")

    ended = [span("child", 2, parent=1), span("sibling", 3, parent=1), span("root", 1)]
    with caplog.at_level(logging.ERROR, logger="opentelemetry.exporter.weave"):
        answers = parents(SpanSelection(broken, max_tracked=100), ended)
    assert answers == {"child": call_id(1), "sibling": call_id(1), "root": None}
    assert len([r for r in caplog.records if "span filter raised" in r.getMessage()]) == 1


def test_spans_waited_for_are_bounded_oldest_first() -> None:
    ended = [
        *(span(f"child-{n}", 10 + n, parent=n) for n in (1, 2, 3)),
        *(span(f"parent-{n}", n) for n in (1, 2, 3)),
    ]
    assert parents(wanting("child-1", "child-2", "child-3", max_tracked=2), ended) == {
        "child-1": call_id(1),
        "child-2": call_id(2),
        "child-3": call_id(3),
        "parent-1": LEFT_OUT,  # forgotten: its child's wait was the oldest
        "parent-2": None,
        "parent-3": None,
    }


def test_left_out_spans_remembered_are_bounded_oldest_first() -> None:
    ended = [
        span("noise-1", 2, parent=1),
        span("noise-2", 3, parent=1),
        span("late-2", 5, parent=3),
        span("late-1", 4, parent=2),
        span("root", 1),
    ]
    assert parents(wanting("late-1", "late-2", "root", max_tracked=1), ended) == {
        "noise-1": LEFT_OUT,
        "noise-2": LEFT_OUT,
        "late-2": call_id(1),
        "late-1": call_id(2),  # noise-1 was forgotten: its descendant keeps its own parent id
        "root": None,
    }


# --- WEAVE_OTEL_SPANS=genai --------------------------------------------------------------

# As the README lists them.
GENAI_PREFIXES = [
    "gen_ai.",
    "llm.",
    "traceloop.",
    "openinference.",
    "ai.",
    "mlflow.",
    "pydantic_ai.",
    "gcp.vertex.agent.",
    "weave.",
]


@pytest.mark.parametrize("prefix", GENAI_PREFIXES)
def test_an_attribute_of_an_llm_convention_marks_a_genai_span(prefix: str) -> None:
    assert is_genai_span(span("llm", 1, attributes={"http.method": "POST", f"{prefix}x": 1}))


def test_a_gen_ai_event_marks_a_genai_span() -> None:
    assert is_genai_span(span("llm", 1, events=[Event("gen_ai.content.prompt")]))


@pytest.mark.parametrize(
    ("attributes", "events"),
    [
        pytest.param(None, (), id="nothing"),
        pytest.param({"http.request.method": "POST", "aim.run": "r", "gen_ai": 1}, (), id="other"),
        pytest.param(None, [Event("exception", {"gen_ai.x": 1})], id="other-event"),
    ],
)
def test_other_spans_are_not_genai_spans(
    attributes: dict[str, Any] | None, events: Sequence[Event]
) -> None:
    assert not is_genai_span(span("GET /health", 1, attributes=attributes, events=events))


def test_genai_leaves_out_a_trace_without_llm_spans() -> None:
    ended = [span("SELECT 1", 2, parent=1), span("GET /health", 1)]
    selection = SpanSelection(is_genai_span, max_tracked=100)
    assert parents(selection, ended) == {"SELECT 1": LEFT_OUT, "GET /health": LEFT_OUT}


# --- end to end: the README's web request ------------------------------------------------


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


def export(
    receiver: LocalWeaveServer, emit: Callable[[Tracer], None] = emit_web_request, **options: Any
) -> tuple[dict[str, dict[str, Any]], WeaveSpanProcessor]:
    processor = make_processor(receiver.url, **options)
    provider, tracer = make_tracer(processor)
    emit(tracer)
    provider.shutdown()
    return {call["op_name"]: call for call in receiver.calls(PROJECT)}, processor


def test_genai_keeps_llm_spans_and_their_ancestors(
    receiver: LocalWeaveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEAVE_OTEL_SPANS", "genai")
    calls, processor = export(receiver)
    assert set(calls) == {"GET /ask", "chat gpt-4o", "execute_tool lookup"}
    root = calls["GET /ask"]
    assert calls["chat gpt-4o"]["parent_id"] == root["id"]
    assert calls["execute_tool lookup"]["parent_id"] == root["id"]
    # roll-up counts what was exported
    assert root["summary"]["usage"]["gpt-4o"]["total_tokens"] == 7
    assert root["summary"]["status_counts"] == {"success": 2, "error": 1}
    assert processor.stats().spans_filtered == 2


@pytest.mark.parametrize(
    ("spans_variable", "options", "exported"),
    [
        pytest.param(
            None,
            {},
            {"GET /ask", "SELECT users", "chat gpt-4o", "POST", "execute_tool lookup"},
            id="all-spans-by-default",
        ),
        pytest.param(
            "genai",
            {"span_filter": lambda span: span.name == "POST"},
            {"GET /ask", "chat gpt-4o", "POST"},
            id="span-filter-overrides-the-variable",
        ),
    ],
)
def test_settings_choose_the_calls(
    receiver: LocalWeaveServer,
    monkeypatch: pytest.MonkeyPatch,
    spans_variable: str | None,
    options: dict[str, Any],
    exported: set[str],
) -> None:
    if spans_variable is not None:
        monkeypatch.setenv("WEAVE_OTEL_SPANS", spans_variable)
    calls, _ = export(receiver, **options)
    assert set(calls) == exported


def test_a_late_descendant_reaches_its_new_parent_and_its_summary(
    receiver: LocalWeaveServer,
) -> None:
    """The parent the selection answers is the call's parent_id, and the roll-up follows it."""

    def emit(tracer: Tracer) -> None:
        with tracer.start_as_current_span("root"):
            noise = tracer.start_span("noise")
            late_child = tracer.start_span("late-child", context=trace.set_span_in_context(noise))
            noise.end()  # left out, and nothing under it has ended yet
            late_child.end()

    calls, _ = export(receiver, emit, span_filter=lambda span: span.name != "noise")
    assert set(calls) == {"root", "late-child"}
    assert calls["late-child"]["parent_id"] == calls["root"]["id"]
    assert calls["root"]["summary"]["status_counts"] == {"success": 2, "error": 0}


def test_spans_setting_is_validated() -> None:
    env = {"WANDB_API_KEY": "k", "WEAVE_PROJECT": "e/p"}
    assert WeaveSettings.from_env({**env, "WEAVE_OTEL_SPANS": "GenAI"}).spans is SpanSet.GENAI
    assert WeaveSettings.from_env(env, spans="genai").spans is SpanSet.GENAI
    with pytest.raises(ConfigError, match="WEAVE_OTEL_SPANS"):
        WeaveSettings.from_env({**env, "WEAVE_OTEL_SPANS": "llm-only"})
    with pytest.raises(ConfigError, match="span_filter"):
        WeaveSettings.from_env(env, span_filter="not callable")  # type: ignore[arg-type]
