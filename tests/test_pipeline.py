"""``ExportPipeline`` and ``WeaveSpanExporter``: the stages a batch goes through, and its report.

The delivery stages are replaced by a recording sender (``write_mode_for`` patched), so these
tests run the per-span stages for real — select → map → redact → roll up — with no sockets;
one exporter test goes over real HTTP to a scripted server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

from opentelemetry.exporter.weave import ExportStats, WeaveSpanExporter, _pipeline
from opentelemetry.exporter.weave._call import WeaveCall
from opentelemetry.exporter.weave._delivery import CallFailure, DeliveryReport
from opentelemetry.exporter.weave._mapping import SPAN_PARENT, span_to_call
from opentelemetry.exporter.weave._pipeline import BatchReport, ExportPipeline, _log_failures
from opentelemetry.exporter.weave._rollup import SummaryRollup
from opentelemetry.exporter.weave._transport import PostResult

from .fault_server import Reply, ScriptedServer
from .helpers import (
    API_KEY,
    PROJECT,
    FakeClock,
    Record,
    RecordingSender,
    http_error,
    make_call,
    make_calls,
    make_tracer,
    settings_for,
)

START = 1000.0
LOGGER = "opentelemetry.exporter.weave"


@dataclass
class DeadlineSender(RecordingSender):
    """A ``RecordingSender`` that also records the deadline of each batch."""

    deadlines: list[float] = field(default_factory=list)

    def send(self, calls: Sequence[WeaveCall], deadline: float) -> DeliveryReport:
        self.deadlines.append(deadline)
        return super().send(calls, deadline)

    def op_names(self) -> list[str]:
        return [call.start.op_name for batch in self.batches for call in batch]

    def calls_by_name(self) -> dict[str, WeaveCall]:
        return {call.start.op_name: call for batch in self.batches for call in batch}


@pytest.fixture
def sender(monkeypatch: pytest.MonkeyPatch) -> DeadlineSender:
    """What every pipeline built in the test delivers to, in place of the write mode."""
    recording = DeadlineSender()
    monkeypatch.setattr(_pipeline, "write_mode_for", lambda *args: recording)
    return recording


class StageLog:
    """Records, in order, each stage a span or its call goes through."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple[str, str]] = []
        self.selected: list[ReadableSpan] = []
        original_map = span_to_call
        original_roll_up = SummaryRollup.roll_up

        def mapping(
            span: ReadableSpan, project_id: str, parent_id: Any = SPAN_PARENT, **context: Any
        ) -> WeaveCall:
            self.events.append(("map", span.name))
            return original_map(span, project_id, parent_id, **context)

        def roll_up(rollup: SummaryRollup, call: WeaveCall, into_parent: bool = True) -> WeaveCall:
            self.events.append(("roll up", call.start.op_name))
            return original_roll_up(rollup, call, into_parent)

        monkeypatch.setattr(_pipeline, "span_to_call", mapping)
        monkeypatch.setattr(SummaryRollup, "roll_up", roll_up)

    def span_filter(self, left_out: str = "") -> Callable[[ReadableSpan], bool]:
        def wanted(span: ReadableSpan) -> bool:
            self.events.append(("select", span.name))
            self.selected.append(span)
            return span.name != left_out

        return wanted

    def redaction_callback(self, field_name: str, value: Any) -> Any:
        self.events.append(("redact", field_name))
        return value


@pytest.fixture
def stages(monkeypatch: pytest.MonkeyPatch) -> StageLog:
    return StageLog(monkeypatch)


def spans_named(record_spans: Record, *names: str) -> list[ReadableSpan]:
    def emit(tracer: Tracer) -> None:
        for name in names:
            with tracer.start_as_current_span(name):
                pass

    return record_spans(emit)


def redacted_then_rolled_up(name: str) -> list[tuple[str, str]]:
    return [
        ("map", name),
        ("redact", "inputs"),
        ("redact", "output"),
        ("redact", "attributes"),
        ("roll up", name),
    ]


def test_each_span_is_selected_then_mapped_redacted_and_rolled_up(
    sender: DeadlineSender, stages: StageLog, record_spans: Record
) -> None:
    spans = spans_named(record_spans, "only")
    pipeline = ExportPipeline(
        settings_for(span_filter=stages.span_filter(), redaction_callback=stages.redaction_callback)
    )
    report = pipeline.export_batch(spans, START)
    assert stages.events == [("select", "only"), *redacted_then_rolled_up("only")]
    assert stages.selected == spans  # the spans themselves, not calls made of them
    assert report.ok
    assert sender.op_names() == ["only"]
    assert sender.deadlines == [START]


def test_a_span_the_filter_leaves_out_is_never_mapped_or_redacted(
    sender: DeadlineSender, stages: StageLog, record_spans: Record
) -> None:
    spans = spans_named(record_spans, "kept", "left-out")
    pipeline = ExportPipeline(
        settings_for(
            span_filter=stages.span_filter(left_out="left-out"),
            redaction_callback=stages.redaction_callback,
        )
    )
    report = pipeline.export_batch(spans, START)
    assert stages.events == [
        ("select", "kept"),
        *redacted_then_rolled_up("kept"),
        ("select", "left-out"),
    ]
    assert (report.spans, report.filtered, report.unmappable) == (2, 1, 0)
    assert report.ok  # left out on purpose is not a loss
    assert sender.op_names() == ["kept"]
    stats = pipeline.stats()
    assert (stats.spans_filtered, stats.calls_exported) == (1, 1)


def test_a_reparented_span_carries_its_new_parent_into_mapping_and_roll_up(
    sender: DeadlineSender, record_spans: Record
) -> None:
    def emit(tracer: Tracer) -> None:
        with tracer.start_as_current_span("root"):
            noise = tracer.start_span("noise")
            late_child = tracer.start_span("late-child", context=trace.set_span_in_context(noise))
            noise.end()  # left out before its child ended: the child joins the root
            late_child.end()

    pipeline = ExportPipeline(settings_for(span_filter=lambda span: span.name != "noise"))
    assert pipeline.export_batch(record_spans(emit), START).ok
    calls = sender.calls_by_name()
    assert set(calls) == {"root", "late-child"}
    assert calls["late-child"].start.parent_id == calls["root"].start.id
    assert calls["root"].end.summary["status_counts"] == {"success": 2, "error": 0}


def map_bad_spans_with(
    monkeypatch: pytest.MonkeyPatch, change: Callable[[WeaveCall], WeaveCall]
) -> None:
    """The pipeline's mapping, with ``change`` applied to the calls of spans named ``bad``."""
    original_map = span_to_call

    def mapping(
        span: ReadableSpan, project_id: str, parent_id: Any = SPAN_PARENT, **context: Any
    ) -> WeaveCall:
        call = original_map(span, project_id, parent_id, **context)
        return change(call) if span.name == "bad" else call

    monkeypatch.setattr(_pipeline, "span_to_call", mapping)


def test_a_span_whose_mapping_raises_costs_only_itself(
    sender: DeadlineSender,
    record_spans: Record,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def fail(call: WeaveCall) -> WeaveCall:
        raise ValueError("mapping bug")

    map_bad_spans_with(monkeypatch, fail)
    pipeline = ExportPipeline(settings_for())
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        report = pipeline.export_batch(spans_named(record_spans, "before", "bad", "after"), START)
    assert (report.spans, report.unmappable, report.ok) == (3, 1, False)
    assert sender.op_names() == ["before", "after"]
    stats = pipeline.stats()
    assert (stats.spans_unmappable, stats.calls_exported) == (1, 2)
    (logged,) = caplog.messages
    assert logged.startswith("Could not map span 'bad' (")


def test_a_call_that_cannot_be_encoded_costs_only_its_span(
    sender: DeadlineSender,
    record_spans: Record,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Each call is encoded as it is built, so the failure is the span's, not the batch's."""
    # Whatever a later stage let through that JSON cannot hold.
    map_bad_spans_with(monkeypatch, lambda call: call.replace(attributes={"odd": object()}))
    pipeline = ExportPipeline(settings_for())
    names = [f"good{index}" for index in range(20)]
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        report = pipeline.export_batch(
            spans_named(record_spans, *names[:10], "bad", *names[10:]), START
        )
    assert (report.spans, report.unmappable) == (21, 1)
    assert sender.op_names() == names
    assert report.delivery.failures == ()
    assert (pipeline.stats().spans_unmappable, pipeline.stats().calls_exported) == (1, 20)
    (logged,) = caplog.messages
    assert logged.startswith("Could not map span 'bad' (")


def test_a_redaction_callback_returning_what_json_cannot_hold_costs_no_other_span(
    sender: DeadlineSender, record_spans: Record
) -> None:
    def callback(field_name: str, value: Any) -> Any:
        return {"odd": object()} if value == {"input": "poison"} else value

    def emit(tracer: Tracer) -> None:
        for index in range(20):
            with tracer.start_as_current_span(f"good{index}"):
                pass
            if index == 9:
                with tracer.start_as_current_span("bad", attributes={"input.value": "poison"}):
                    pass

    pipeline = ExportPipeline(settings_for(redaction_callback=callback))
    report = pipeline.export_batch(record_spans(emit), START)

    # Sanitised or left out as unmappable, the odd call never takes the others with it.
    assert [name for name in sender.op_names() if name != "bad"] == [
        f"good{index}" for index in range(20)
    ]
    assert report.delivery.failures == ()


def test_fitting_to_size_reads_the_deadline_on_the_pipeline_s_clock(
    sender: DeadlineSender, record_spans: Record
) -> None:
    clock = FakeClock(start=0.0)
    pipeline = ExportPipeline(settings_for(max_request_bytes=20_000), clock=clock)

    def emit(tracer: Tracer) -> None:
        attributes = {"input.value": "i" * 30_000, "note": "small"}
        with tracer.start_as_current_span("big", attributes=attributes):
            pass

    pipeline.export_batch(record_spans(emit), deadline=10.0)

    (call,) = sender.calls_by_name().values()
    # Time to spare on the pipeline's clock: only the large field is cut, not all of them.
    assert call.start.attributes["note"] == "small"
    assert "truncated by opentelemetry-exporter-weave: inputs.input" in call.start.inputs["input"]


def test_a_sender_that_raises_costs_the_batch_but_never_raises(
    sender: DeadlineSender, record_spans: Record, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(calls: Sequence[WeaveCall]) -> DeliveryReport:
        raise RuntimeError("delivery bug")

    sender.answer = broken
    pipeline = ExportPipeline(settings_for())
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        report = pipeline.export_batch(spans_named(record_spans, "one", "two"), START)
    assert not report.ok
    assert {(f.route, f.result.reason) for f in report.delivery.failures} == {
        ("(export)", "not sent: RuntimeError")
    }
    assert pipeline.stats().calls_undeliverable == 2
    assert "Weave export failed; 2 calls not delivered" in caplog.messages


def test_the_delivery_report_becomes_the_counters(
    sender: DeadlineSender, record_spans: Record
) -> None:
    def answer(calls: Sequence[WeaveCall]) -> DeliveryReport:
        refused = [(413, "too big"), (400, "bad"), (503, "busy")]
        failures = tuple(
            CallFailure(call, "/call/start", http_error(status, reason))
            for call, (status, reason) in zip(calls, refused, strict=False)
        )
        return DeliveryReport(delivered=2, failures=failures, truncated=1, retries=4, splits=3)

    sender.answer = answer
    pipeline = ExportPipeline(settings_for())
    pipeline.export_batch(spans_named(record_spans, *"abcde"), START)
    assert pipeline.stats() == ExportStats(
        calls_exported=2,
        calls_too_large=1,
        calls_rejected=1,
        calls_undeliverable=1,
        calls_truncated=1,
        requests_retried=4,
        batches_split=3,
        export_batches=1,
    )


def test_a_forked_child_starts_its_counters_at_zero(
    sender: DeadlineSender, record_spans: Record
) -> None:
    pipeline = ExportPipeline(settings_for())
    pipeline.export_batch(spans_named(record_spans, "parent's"), START)
    assert pipeline.stats().calls_exported == 1
    pipeline.after_fork()
    assert pipeline.stats() == ExportStats()
    assert pipeline.export_batch(spans_named(record_spans, "child's"), START).ok
    assert pipeline.stats().calls_exported == 1


_FAILURE = CallFailure(make_call(), "/call/start", http_error(400))


@pytest.mark.parametrize(
    ("report", "ok"),
    [
        pytest.param(BatchReport(0, 0, 0, DeliveryReport()), True, id="empty"),
        pytest.param(BatchReport(3, 0, 0, DeliveryReport(delivered=3)), True, id="all-delivered"),
        pytest.param(BatchReport(3, 1, 0, DeliveryReport(delivered=2)), True, id="filtered"),
        pytest.param(BatchReport(3, 3, 0, DeliveryReport()), True, id="all-filtered"),
        pytest.param(BatchReport(3, 0, 1, DeliveryReport(delivered=2)), False, id="unmappable"),
        pytest.param(
            BatchReport(3, 0, 0, DeliveryReport(delivered=2, failures=(_FAILURE,))),
            False,
            id="a-failure",
        ),
        pytest.param(BatchReport(3, 0, 0, DeliveryReport(delivered=2)), False, id="one-missing"),
    ],
)
def test_batch_report_is_ok_when_every_span_was_delivered_or_left_out(
    report: BatchReport, ok: bool
) -> None:
    assert report.ok is ok


def test_failures_are_logged_once_per_distinct_answer_naming_at_most_five_calls(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = make_calls(10)
    failures = (
        DeliveryReport.failed(calls[:7], "/call/start", http_error(403, "read-only"))
        + DeliveryReport.failed(calls[7:9], "/call/end", http_error(503, "busy"))
        + DeliveryReport.failed(calls[9:], "/call/start", PostResult(None, "ConnectError"))
    ).failures
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        _log_failures(failures)

    def named(indices: range) -> str:
        return ", ".join(f"'op' ({index:016x})" for index in indices)

    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.ERROR,
            "Weave refused 7 call(s) at /call/start with HTTP 403 (final, not retried): "
            f"read-only: {named(range(5))} and 2 more",
        ),
        (
            logging.WARNING,
            f"Weave did not take 2 call(s) at /call/end (HTTP 503: busy): {named(range(7, 9))}",
        ),
        (
            logging.WARNING,
            "Weave did not take 1 call(s) at /call/start (no answer: ConnectError): "
            f"{named(range(9, 10))}",
        ),
    ]


@pytest.fixture
def spans(record_spans: Record) -> list[ReadableSpan]:
    return spans_named(record_spans, "one")


def test_exporter_deadline_is_the_export_timeout_from_now(
    sender: DeadlineSender, spans: list[ReadableSpan]
) -> None:
    clock = FakeClock(START)
    exporter = WeaveSpanExporter(settings_for(export_timeout_millis=2500), _clock=clock)
    clock.advance(7)
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    assert sender.deadlines == [START + 7 + 2500 / 1000]


@pytest.mark.parametrize(
    ("status", "reason"), [(400, "rejected"), (413, "too_large"), (503, "undeliverable")]
)
def test_exporter_reports_each_loss_to_on_drop_once(
    sender: DeadlineSender, spans: list[ReadableSpan], status: int, reason: str
) -> None:
    drops: list[tuple[str, int]] = []
    exporter = WeaveSpanExporter(settings_for(on_drop=lambda *drop: drops.append(drop)))
    assert exporter.export(spans) is SpanExportResult.SUCCESS
    assert drops == []
    sender.answer = lambda calls: DeliveryReport.failed(calls, "/call/start", http_error(status))
    assert exporter.export(spans) is SpanExportResult.FAILURE
    assert exporter.export(spans) is SpanExportResult.FAILURE
    assert drops == [(reason, 1), (reason, 1)]


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as scripted:
        yield scripted


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


class SteppingTime:
    """``time.perf_counter`` moving 1 ms each time it is read, and the ``sleep(0)`` calls made."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.sleeps = 0

    def perf_counter(self) -> float:
        self.now += 0.001
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds == 0
        self.sleeps += 1


@pytest.mark.parametrize("app_busy", [True, False])
def test_the_gil_is_handed_over_while_mapping_only_when_the_app_started_a_span_lately(
    app_busy: bool, sender: DeadlineSender, record_spans: Record, monkeypatch: pytest.MonkeyPatch
) -> None:
    spans = spans_named(record_spans, *(f"s{index}" for index in range(20)))
    pipeline = ExportPipeline(settings_for())
    stepping = SteppingTime()
    monkeypatch.setattr(_pipeline, "time", stepping)
    if app_busy:
        # Each read of the clock is 1 ms on: the app stays "lately" busy by starting spans.
        monkeypatch.setattr(_pipeline, "span_to_call", _starting_a_span_each_time(pipeline))

    pipeline.export_batch(spans, START)

    assert sender.op_names() == [span.name for span in spans]
    if app_busy:
        assert stepping.sleeps >= 10  # about once per span: each maps in 2 ms of this clock
    else:
        assert stepping.sleeps == 0


def _starting_a_span_each_time(pipeline: ExportPipeline) -> Callable[..., WeaveCall]:
    def mapping(span: ReadableSpan, *args: Any, **kwargs: Any) -> WeaveCall:
        pipeline.span_started(span)  # as the app's on_start would, meanwhile
        return span_to_call(span, *args, **kwargs)

    return mapping
