"""``WeaveSpanExporter``: mapping and delivery behind the SDK's ``SpanExporter`` interface."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from opentelemetry.exporter.weave._config import SpanSet, WeaveSettings
from opentelemetry.exporter.weave._delivery import (
    CallFailure,
    DeliveryReport,
    FailureKind,
    delivery_for,
)
from opentelemetry.exporter.weave._mapping import WeaveCall, format_span_id, span_to_call
from opentelemetry.exporter.weave._redaction import Redactor
from opentelemetry.exporter.weave._rollup import SummaryRollup
from opentelemetry.exporter.weave._selection import LEFT_OUT, SpanSelection, is_genai_span
from opentelemetry.exporter.weave._stats import (
    LOSS_COUNTERS,
    ExportStats,
    LossReporter,
    StatsCounter,
)
from opentelemetry.exporter.weave._transport import WeaveTransport

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from opentelemetry.exporter.weave._config import WeaveOptions

__all__ = ["WeaveSpanExporter"]

logger = logging.getLogger("opentelemetry.exporter.weave")

_NAMED_CALLS = 5
_GIL_YIELD_INTERVAL_SECONDS = 0.0005


class WeaveSpanExporter(SpanExporter):
    """Maps spans to Weave calls and delivers them, synchronously, within the export timeout.

    Use it where the SDK builds exporters for you (``OTEL_TRACES_EXPORTER=weave`` with
    ``opentelemetry-instrument``) or behind your own ``BatchSpanProcessor``. Settings come from
    the keyword arguments, else the environment (see the README's configuration table).
    """

    def __init__(
        self, settings: WeaveSettings | None = None, **options: Unpack[WeaveOptions]
    ) -> None:
        if settings is not None and options:
            raise TypeError("pass either settings or keyword options, not both")
        self._settings = settings if settings is not None else WeaveSettings.from_env(**options)
        self._transport = WeaveTransport(self._settings)
        self._delivery = delivery_for(self._transport, self._settings)
        self._counter = StatsCounter()
        self._selection = _selection_for(self._settings)
        self._redactor = Redactor(
            self._settings.redact, self._settings.redact_keys, self._settings.redaction_callback
        )
        self._loss_reporter = LossReporter(self._counter, logger, self._settings.on_drop)
        self._rollup = SummaryRollup(
            self._settings.rollup_max_pending,
            self._settings.rollup_max_age_seconds,
            on_evict=lambda count: self._counter.add("rollup_parents_evicted", count),
        )
        self._is_shut_down = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._settings!r})"

    @property
    def settings(self) -> WeaveSettings:
        return self._settings

    def report_losses(self) -> None:
        """Warn about (rate-limited) and call ``on_drop`` for calls lost since last time."""
        self._loss_reporter.report()

    @property
    def counter(self) -> StatsCounter:
        """The live counters, shared with the processor that feeds this exporter."""
        return self._counter

    def stats(self) -> ExportStats:
        return self._counter.snapshot()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._is_shut_down:
            logger.warning("Weave exporter already shut down; %d spans not exported", len(spans))
            return SpanExportResult.FAILURE
        deadline = time.monotonic() + self._settings.export_timeout_millis / 1000
        report = self.export_until(spans, deadline)
        if report.failures or report.delivered < len(spans):
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def export_until(self, spans: Sequence[ReadableSpan], deadline: float) -> DeliveryReport:
        """Map and deliver ``spans``, giving up at ``deadline`` (``time.monotonic()``).

        Never raises: a span that cannot be mapped or delivered is counted and logged.
        """
        self._counter.add("export_batches")
        calls = self._map(spans)
        try:
            report = self._delivery.deliver(calls, deadline)
        except Exception:  # the app must never see our failure
            logger.exception("Weave export failed; %d calls not delivered", len(calls))
            self._counter.add("calls_undeliverable", len(calls))
            return DeliveryReport(delivered=0)
        self._record(report)
        _log_failures(report.failures)
        self._loss_reporter.report()
        return report

    def _record(self, report: DeliveryReport) -> None:
        add = self._counter.add
        add("calls_exported", report.delivered)
        add("calls_truncated", report.truncated)
        add("requests_retried", report.retries)
        add("batches_split", report.splits)
        for failure in report.failures:
            add(LOSS_COUNTERS[failure.kind.value])

    def _map(self, spans: Sequence[ReadableSpan]) -> list[WeaveCall]:
        calls: list[WeaveCall] = []
        last_yield = time.perf_counter()
        for span in spans:
            # Mapping is pure Python and holds the GIL. Handing it over every half millisecond
            # lets a busy app thread run on instead of waiting out the interpreter's 5 ms
            # switch interval each time. Not after every span: on Linux sleep(0) is a real
            # timer sleep of some 50 µs.
            if time.perf_counter() - last_yield >= _GIL_YIELD_INTERVAL_SECONDS:
                time.sleep(0)
                last_yield = time.perf_counter()
            try:
                call = self._map_one(span)
            except Exception:
                self._counter.add("spans_unmappable")
                span_id = format_span_id(span.context.span_id) if span.context else "?"
                logger.exception("Could not map span %r (%s) to a Weave call", span.name, span_id)
            else:
                if call is None:
                    self._counter.add("spans_filtered")
                else:
                    calls.append(call)
        return calls

    def _map_one(self, span: ReadableSpan) -> WeaveCall | None:
        """The span's call, rolled up and re-parented; None for a span filtered out."""
        call = span_to_call(span, self._settings.project_id)
        if self._redactor.active:
            call = self._redactor.apply(call)
        if self._selection is not None:
            parent_id = self._selection.parent_of(span)
            if parent_id is LEFT_OUT:
                return None
            if parent_id != call.start.parent_id:
                start = call.start.model_copy(update={"parent_id": parent_id})
                call = WeaveCall(start=start, end=call.end)
        # A remote parent lives in another process: nothing here will ever end it.
        parent_is_local = span.parent is None or not span.parent.is_remote
        return self._rollup.roll_up(call, into_parent=parent_is_local)

    def reset_after_fork(self) -> None:
        """Fresh connections and counters for a forked child."""
        self._transport.reset_after_fork()
        self._counter = StatsCounter()
        self._loss_reporter = LossReporter(self._counter, logger, self._settings.on_drop)

    def shutdown(self) -> None:
        if self._is_shut_down:
            return
        self._is_shut_down = True
        self._transport.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        # Nothing is buffered here: export() returns only once its calls are delivered.
        return True


def _selection_for(settings: WeaveSettings) -> SpanSelection | None:
    if settings.span_filter is not None:
        return SpanSelection(settings.span_filter, settings.rollup_max_pending)
    if settings.spans is SpanSet.GENAI:
        return SpanSelection(is_genai_span, settings.rollup_max_pending)
    return None  # every span: nothing to track


def _log_failures(failures: tuple[CallFailure, ...]) -> None:
    """One line per distinct answer, naming the first calls it cost, not one line per call."""
    groups: dict[tuple[str, int | None, str, FailureKind], list[CallFailure]] = {}
    for failure in failures:
        key = (failure.route, failure.result.status_code, failure.result.reason, failure.kind)
        groups.setdefault(key, []).append(failure)
    for (route, status_code, reason, kind), group in groups.items():
        spans = ", ".join(
            f"{failure.call.start.op_name!r} ({failure.call.start.id})"
            for failure in group[:_NAMED_CALLS]
        )
        more = f" and {len(group) - _NAMED_CALLS} more" if len(group) > _NAMED_CALLS else ""
        answer = "no answer" if status_code is None else f"HTTP {status_code}"
        if kind is FailureKind.UNDELIVERABLE:
            level = logging.WARNING
            template = "Weave did not take %d call(s) at %s (%s: %s): %s%s"
        else:
            level = logging.ERROR
            template = "Weave refused %d call(s) at %s with %s (final, not retried): %s: %s%s"
        logger.log(level, template, len(group), route, answer, reason, spans, more)
