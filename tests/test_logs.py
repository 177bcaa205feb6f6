"""Content on OTel log records reaches the call of its span (issue 9 §6, log records).

A real ``LoggerProvider`` and ``TracerProvider`` in this process, the real openai-v2 2.4b0
instrumentation in ``event_only`` mode against the canned server, and ``opentelemetry-instrument``
with ``OTEL_LOGS_EXPORTER=weave`` in a subprocess; the join's bounds, unsampled spans, records
without a span, and every value the SDK lets a record hold.
"""

from __future__ import annotations

import json
import math
import os
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import openai
import pytest
from opentelemetry._logs import LogRecord
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import Tracer

from opentelemetry.exporter.weave import (
    WeaveLogExporter,
    WeaveLogRecordProcessor,
    WeaveSpanProcessor,
    _logs,
    install,
)
from opentelemetry.exporter.weave._logs import LogRecordJoin
from opentelemetry.exporter.weave.testing import LocalWeaveServer

from .helpers import API_KEY, PROJECT, calls_named, make_processor, run_instrumented
from .openai_server import REPLY, CannedOpenAI
from .test_instrumentations import (
    OPENAI_V2,
    PLAIN_PROMPT,
    REQUEST_MODEL,
    ask,
    shadow_other_instrumentations,
    unwrap_leftovers,
)

EVENT_ONLY = {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "event_only"}
DETAILS = "gen_ai.client.inference.operation.details"
SCOPE = "opentelemetry.instrumentation.tests"
"""One scope for the tracer and the logger, as an instrumentation has."""


@pytest.fixture
def join(monkeypatch: pytest.MonkeyPatch) -> LogRecordJoin:
    """A fresh process-wide join: what the processor, exporter and pipeline built here share."""
    fresh = LogRecordJoin()
    monkeypatch.setattr(_logs, "_PROCESS_JOIN", fresh)
    return fresh


@pytest.fixture
def canned() -> Iterator[CannedOpenAI]:
    with CannedOpenAI() as server:
        yield server


def providers(*, sampler: Any = None) -> tuple[TracerProvider, LoggerProvider]:
    tracer_provider = TracerProvider(shutdown_on_exit=False, sampler=sampler)
    return tracer_provider, LoggerProvider(shutdown_on_exit=False)


def emit_content(
    logger_provider: LoggerProvider, name: str = DETAILS, body: Any = None, **attributes: Any
) -> None:
    """A content record in the current context, as util-genai and OpenLLMetry emit them."""
    logger = logger_provider.get_logger(SCOPE)
    logger.emit(LogRecord(event_name=name, attributes=attributes or None, body=body))


def details_attributes(prompt: str, reply: str) -> dict[str, Any]:
    """The attributes of util-genai's details record (JSON texts, as it writes them)."""
    user = [{"role": "user", "parts": [{"type": "text", "content": prompt}]}]
    assistant = [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": reply}],
            "finish_reason": "stop",
        }
    ]
    return {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": REQUEST_MODEL,
        "gen_ai.input.messages": json.dumps(user),
        "gen_ai.output.messages": json.dumps(assistant),
    }


def chat_span(tracer: Tracer, logger_provider: LoggerProvider, prompt: str, reply: str) -> None:
    """An LLM span whose content travels on a log record, emitted before the span ends."""
    with tracer.start_as_current_span(
        f"chat {REQUEST_MODEL}",
        attributes={"gen_ai.operation.name": "chat", "gen_ai.request.model": REQUEST_MODEL},
    ):
        emit_content(logger_provider, **details_attributes(prompt, reply))


def assert_has_content(call: dict[str, Any], prompt: str, reply: str) -> None:
    messages = call["inputs"].get("messages")
    assert isinstance(messages, list), json.dumps(call["inputs"])[:800]
    assert prompt in json.dumps(messages, ensure_ascii=False), json.dumps(call["inputs"])[:800]
    assert reply in json.dumps(call["output"], ensure_ascii=False), json.dumps(call["output"])


# --- The join on its own ------------------------------------------------------------------


def test_keeps_content_events_of_a_span_in_emission_order(join: LogRecordJoin) -> None:
    tracer_provider, logger_provider = providers()
    logger_provider.add_log_record_processor(WeaveLogRecordProcessor())
    tracer = tracer_provider.get_tracer("tests")
    with tracer.start_as_current_span("chat") as span:
        emit_content(logger_provider, "gen_ai.user.message", body={"content": "first"})
        emit_content(logger_provider, "app.log.line", body="not content")  # ignored
        emit_content(logger_provider, "gen_ai.choice", body={"message": {"content": "second"}})
    assert join.held == 2
    events = join.take(span)  # type: ignore[arg-type]
    assert [(event.name, event.body) for event in events] == [
        ("gen_ai.user.message", {"content": "first"}),
        ("gen_ai.choice", {"message": {"content": "second"}}),
    ]
    assert join.take(span) == ()  # type: ignore[arg-type]
    assert (join.held, join.unmatched) == (0, 0)


def test_emitting_never_waits_for_the_join_s_lock(join: LogRecordJoin) -> None:
    """A signal handler emitting on a thread that is inside the join would wait for ever."""
    tracer_provider, logger_provider = providers()
    logger_provider.add_log_record_processor(WeaveLogRecordProcessor())
    tracer = tracer_provider.get_tracer("tests")
    with tracer.start_as_current_span("chat") as span:
        with join._state.lock:  # held, as by an interrupted emit or the export worker
            emit_content(logger_provider, "gen_ai.user.message", body={"content": "first"})
        assert [event.body for event in join.take(span)] == [{"content": "first"}]  # type: ignore[arg-type]


def test_event_name_attribute_of_older_sdks_counts(join: LogRecordJoin) -> None:
    """Before ``event_name``, the Events API named a record by its ``event.name`` attribute."""
    tracer_provider, logger_provider = providers()
    logger_provider.add_log_record_processor(WeaveLogRecordProcessor())
    with tracer_provider.get_tracer("tests").start_as_current_span("chat") as span:
        logger_provider.get_logger("old").emit(
            LogRecord(attributes={"event.name": "gen_ai.user.message", "gen_ai.system": "x"})
        )
    (event,) = join.take(span)  # type: ignore[arg-type]
    assert event.name == "gen_ai.user.message"
    assert dict(event.attributes) == {"gen_ai.system": "x"}


def test_records_whose_span_never_comes_are_bounded_and_counted() -> None:
    now = [0.0]
    join = LogRecordJoin(max_records=10, max_age_seconds=60.0, clock=lambda: now[0])
    tracer_provider, logger_provider = providers()
    logger_provider.add_log_record_processor(WeaveLogRecordProcessor(_join=join))
    tracer = tracer_provider.get_tracer("tests")
    for index in range(25):
        with tracer.start_as_current_span(f"never exported {index}"):
            emit_content(logger_provider, body=index)
    assert (join.held, join.unmatched) == (10, 15)

    now[0] = 61.0  # too old now: the next record, or the next span mapped, gives them up
    with tracer.start_as_current_span("late") as late:
        emit_content(logger_provider, body="late")
    assert (join.held, join.unmatched) == (1, 25)
    assert [event.body for event in join.take(late)] == ["late"]  # type: ignore[arg-type]


def test_records_of_unsampled_spans_are_not_kept(join: LogRecordJoin) -> None:
    tracer_provider, logger_provider = providers(sampler=ALWAYS_OFF)
    logger_provider.add_log_record_processor(WeaveLogRecordProcessor())
    with tracer_provider.get_tracer("tests").start_as_current_span("unsampled"):
        emit_content(logger_provider, body="dropped with its span")
    assert (join.held, join.unmatched) == (0, 0)


def test_records_without_a_span_are_counted(join: LogRecordJoin) -> None:
    _, logger_provider = providers()
    logger_provider.add_log_record_processor(WeaveLogRecordProcessor())
    emit_content(logger_provider, body="no span is current")
    assert (join.held, join.unmatched) == (0, 1)


def test_concurrent_emits_are_all_kept(join: LogRecordJoin) -> None:
    tracer_provider, logger_provider = providers()
    logger_provider.add_log_record_processor(WeaveLogRecordProcessor())
    tracer = tracer_provider.get_tracer("tests")
    spans = []
    lock = threading.Lock()

    def run() -> None:
        for _ in range(200):
            with tracer.start_as_current_span("chat") as span:
                emit_content(logger_provider, "gen_ai.user.message", body="q")
                emit_content(logger_provider, "gen_ai.choice", body="a")
            with lock:
                spans.append(span)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert join.held == 8 * 200 * 2
    assert all(len(join.take(span)) == 2 for span in spans)
    assert (join.held, join.unmatched) == (0, 0)


def test_a_broken_record_never_reaches_the_app(join: LogRecordJoin) -> None:
    processor = WeaveLogRecordProcessor()
    for broken in (None, object(), "text", 42):
        processor.on_emit(broken)
    assert WeaveLogExporter().export([None, object()]).name == "SUCCESS"
    assert (join.held, join.unmatched) == (0, 0)


def test_logs_entry_point_is_registered() -> None:
    (entry,) = entry_points(group="opentelemetry_logs_exporter", name="weave")
    assert entry.load() is WeaveLogExporter


# --- Through the pipeline to the receiver ------------------------------------------------


def test_content_records_reach_the_call(join: LogRecordJoin, receiver: LocalWeaveServer) -> None:
    tracer_provider, logger_provider = providers()
    logger_provider.add_log_record_processor(WeaveLogRecordProcessor())
    processor = make_processor(receiver.url)
    tracer_provider.add_span_processor(processor)
    chat_span(tracer_provider.get_tracer("tests"), logger_provider, "Ask me.", "Told you.")
    assert tracer_provider.force_flush()
    (call,) = calls_named(receiver.calls(PROJECT), f"chat {REQUEST_MODEL}")
    assert_has_content(call, "Ask me.", "Told you.")
    assert processor.stats().log_records_joined == 1
    assert join.held == 0
    tracer_provider.shutdown()


def test_records_of_filtered_spans_are_let_go(
    join: LogRecordJoin, receiver: LocalWeaveServer
) -> None:
    tracer_provider, logger_provider = providers()
    logger_provider.add_log_record_processor(WeaveLogRecordProcessor())
    processor = make_processor(receiver.url, span_filter=lambda span: False)
    tracer_provider.add_span_processor(processor)
    chat_span(tracer_provider.get_tracer("tests"), logger_provider, "Ask me.", "Told you.")
    assert tracer_provider.force_flush()
    assert receiver.calls(PROJECT) == []
    stats = processor.stats()
    assert (stats.log_records_joined, stats.log_records_unmatched, join.held) == (0, 1, 0)
    tracer_provider.shutdown()


HOSTILE_VALUES: list[Any] = [
    None,
    "",
    "\x00\ud800 not JSON {",
    b"\xff\xfe raw bytes",
    True,
    -(2**63),
    2**63 - 1,
    math.nan,
    -math.inf,
    [],
    [1, "two", b"3", None, [[[]]]],
    {},
    {"content": {"nested": [{"deep": b"\x00"}] * 3}, "": None},
    {"role": 7, "content": ["not", "a", "part"], "tool_calls": "nope"},
]


@pytest.mark.parametrize("value", HOSTILE_VALUES, ids=range(len(HOSTILE_VALUES)))
def test_any_value_a_record_may_hold_still_makes_a_call(
    value: Any, join: LogRecordJoin, receiver: LocalWeaveServer
) -> None:
    tracer_provider, logger_provider = providers()
    logger_provider.add_log_record_processor(WeaveLogRecordProcessor())
    processor = make_processor(receiver.url)
    tracer_provider.add_span_processor(processor)
    attribute = value if isinstance(value, (str, bool, int, float, bytes)) else None
    with tracer_provider.get_tracer("tests").start_as_current_span(
        "chat odd", attributes={"gen_ai.operation.name": "chat"}
    ):
        for name in sorted(_logs.CONTENT_EVENT_NAMES):
            emit_content(
                logger_provider,
                name,
                body=value,
                **{
                    key: attribute
                    for key in ("gen_ai.input.messages", "gen_ai.output.messages", "content")
                    if attribute is not None
                },
            )
    assert tracer_provider.force_flush()
    stats = processor.stats()
    assert (stats.spans_unmappable, stats.calls_exported) == (0, 1)
    assert stats.log_records_joined == len(_logs.CONTENT_EVENT_NAMES)
    assert len(calls_named(receiver.calls(PROJECT), "chat odd")) == 1
    tracer_provider.shutdown()


@pytest.fixture
def batched_feed(
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[TracerProvider, LoggerProvider]]:
    """Providers as ``opentelemetry-instrument`` builds them for ``OTEL_LOGS_EXPORTER=weave``:
    the log exporter behind the SDK's batch processor, 1.5 s late; the span processor
    exports every 50 ms, so without the wait a call would go without its records."""
    monkeypatch.setenv("OTEL_BLRP_SCHEDULE_DELAY", "1500")  # read as the SDK reads it
    tracer_provider, logger_provider = providers()
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(WeaveLogExporter()))
    yield tracer_provider, logger_provider
    logger_provider.shutdown()
    tracer_provider.shutdown()


def test_batched_records_trailing_a_model_call_still_reach_it(
    join: LogRecordJoin,
    receiver: LocalWeaveServer,
    batched_feed: tuple[TracerProvider, LoggerProvider],
) -> None:
    tracer_provider, logger_provider = batched_feed
    tracer_provider.add_span_processor(make_processor(receiver.url, schedule_delay_millis=50))
    chat_span(tracer_provider.get_tracer(SCOPE), logger_provider, "Ask me later.", "Told later.")
    assert tracer_provider.force_flush()
    (call,) = calls_named(receiver.calls(PROJECT), f"chat {REQUEST_MODEL}")
    assert_has_content(call, "Ask me later.", "Told later.")


def test_batched_records_trailing_a_span_of_a_content_scope_still_reach_it(
    join: LogRecordJoin,
    receiver: LocalWeaveServer,
    batched_feed: tuple[TracerProvider, LoggerProvider],
) -> None:
    """A span with no model-call attributes waits too once its scope was seen emitting."""
    tracer_provider, logger_provider = batched_feed
    processor = make_processor(receiver.url, schedule_delay_millis=50)
    tracer_provider.add_span_processor(processor)
    tracer = tracer_provider.get_tracer(SCOPE)
    with tracer.start_as_current_span("first"):
        emit_content(logger_provider, "gen_ai.user.message", body={"content": "first"})
    assert logger_provider.force_flush()
    with tracer.start_as_current_span("second") as second:
        emit_content(logger_provider, "gen_ai.user.message", body={"content": "second"})
    assert not second.attributes
    assert tracer_provider.force_flush()
    # Both records went to the mapping with their span, none is left behind or given up.
    assert processor.stats().log_records_joined == 2
    assert (join.held, join.unmatched) == (0, 0)


def test_no_wait_once_the_batched_feed_is_shut_down(
    join: LogRecordJoin, receiver: LocalWeaveServer
) -> None:
    """At exit the logs go first (their provider is made last): nothing is left to wait for."""
    tracer_provider, logger_provider = providers()
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(WeaveLogExporter(), schedule_delay_millis=60_000)
    )
    processor = make_processor(receiver.url, schedule_delay_millis=60_000)
    tracer_provider.add_span_processor(processor)
    chat_span(tracer_provider.get_tracer("tests"), logger_provider, "Ask.", "Answer.")
    started = time.monotonic()
    logger_provider.shutdown()
    tracer_provider.shutdown()
    assert time.monotonic() - started < 5  # the wait would be 5 s: half the export timeout
    (call,) = calls_named(receiver.calls(PROJECT), f"chat {REQUEST_MODEL}")
    assert_has_content(call, "Ask.", "Answer.")


# --- The real openai-v2 instrumentation, event_only ---------------------------------------


@contextmanager
def openai_v2(tracer_provider: TracerProvider, logger_provider: LoggerProvider) -> Iterator[None]:
    instrumentor = OPENAI_V2.instrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider, logger_provider=logger_provider)
    try:
        yield
    finally:
        instrumentor.uninstrument()
        unwrap_leftovers()


def test_openai_v2_event_only_in_process(
    join: LogRecordJoin,
    receiver: LocalWeaveServer,
    canned: CannedOpenAI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in EVENT_ONLY.items():
        monkeypatch.setenv(name, value)
    tracer_provider, logger_provider = providers()
    processor = install(
        tracer_provider,
        logger_provider,
        api_key=API_KEY,
        project=PROJECT,
        server_url=receiver.url,
        schedule_delay_millis=50,
    )
    assert isinstance(processor, WeaveSpanProcessor)
    with openai_v2(tracer_provider, logger_provider):
        client = openai.OpenAI(base_url=canned.base_url, api_key="sk-test", max_retries=0)
        assert ask(client, PLAIN_PROMPT) == REPLY
    assert tracer_provider.force_flush()
    (call,) = calls_named(receiver.calls(PROJECT), OPENAI_V2.span_name)
    attributes = json.dumps(call["attributes"])
    assert PLAIN_PROMPT not in attributes, "event_only: the content is on no span attribute"
    assert_has_content(call, PLAIN_PROMPT, REPLY)
    assert processor.stats().log_records_joined >= 1
    tracer_provider.shutdown()


# --- No code: opentelemetry-instrument with OTEL_LOGS_EXPORTER=weave ----------------------


def app_source(linger_seconds: float) -> str:
    """An app that asks once, then lingers: still running when the span processor exports,
    before the records' batch is due."""
    return textwrap.dedent(
        f"""
        import time

        import openai

        client = openai.OpenAI(max_retries=0)
        messages = [{{"role": "user", "content": {PLAIN_PROMPT!r}}}]
        reply = client.chat.completions.create(model={REQUEST_MODEL!r}, messages=messages)
        print("reply:", reply.choices[0].message.content)
        time.sleep({linger_seconds})
        """
    )


def zero_code_env(
    tmp_path: Path, receiver: LocalWeaveServer, canned: CannedOpenAI
) -> dict[str, str]:
    shadow = shadow_other_instrumentations(OPENAI_V2, tmp_path / "shadow")
    return {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(shadow), os.environ.get("PYTHONPATH")])),
        "OTEL_LOGS_EXPORTER": "weave",
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "httpx",
        "WANDB_API_KEY": API_KEY,
        "WEAVE_PROJECT": PROJECT,
        "WF_TRACE_SERVER_URL": receiver.url,
        "OPENAI_BASE_URL": canned.base_url,
        "OPENAI_API_KEY": "sk-test",
        **EVENT_ONLY,
    }


CLEARED = ("OTEL_", "OPENAI_", "TRACELOOP_", "OPENINFERENCE_")


@pytest.mark.parametrize(
    ("span_delay_ms", "log_delay_ms", "linger"),
    [
        pytest.param(5000, 1000, 0, id="everything-at-exit"),
        pytest.param(50, 1500, 3, id="spans-before-their-records"),
    ],
)
def test_zero_code_with_the_logs_exporter(
    span_delay_ms: int,
    log_delay_ms: int,
    linger: float,
    receiver: LocalWeaveServer,
    canned: CannedOpenAI,
    tmp_path: Path,
) -> None:
    app = tmp_path / "app.py"
    app.write_text(app_source(linger))
    env = {
        **zero_code_env(tmp_path, receiver, canned),
        "OTEL_BSP_SCHEDULE_DELAY": str(span_delay_ms),
        "OTEL_BLRP_SCHEDULE_DELAY": str(log_delay_ms),
    }
    result = run_instrumented(app, env, clear_prefixes=CLEARED)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"reply: {REPLY}"], result.stderr
    (call,) = calls_named(receiver.calls(PROJECT), OPENAI_V2.span_name)
    assert PLAIN_PROMPT not in json.dumps(call["attributes"])
    assert_has_content(call, PLAIN_PROMPT, REPLY)


def test_zero_code_exit_does_not_wait_for_records(
    receiver: LocalWeaveServer, canned: CannedOpenAI, tmp_path: Path
) -> None:
    """``opentelemetry-instrument`` shuts the logger provider down before the tracer provider
    (made first, so its ``atexit`` hook runs last): the last records are in before the last
    spans are mapped, and no export waits out the batch delay (60 s here)."""
    app = tmp_path / "app.py"
    app.write_text(app_source(0))
    env = {
        **zero_code_env(tmp_path, receiver, canned),
        "OTEL_BLRP_SCHEDULE_DELAY": "60000",
        "OTEL_BSP_EXPORT_TIMEOUT": "60000",  # so that a wait would be 30 s
    }
    started = time.monotonic()
    result = run_instrumented(app, env, clear_prefixes=CLEARED)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    (call,) = calls_named(receiver.calls(PROJECT), OPENAI_V2.span_name)
    assert_has_content(call, PLAIN_PROMPT, REPLY)
    assert elapsed < 25, f"the exit took {elapsed:.1f} s: an export waited for records"
