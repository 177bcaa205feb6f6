"""``WeaveSpanExporter``: mapping and delivery behind the SDK's ``SpanExporter`` interface."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from opentelemetry.exporter.weave._config import WeaveSettings
from opentelemetry.exporter.weave._delivery import CallEndDelivery, DeliveryReport
from opentelemetry.exporter.weave._mapping import WeaveCall, format_span_id, span_to_call
from opentelemetry.exporter.weave._stats import ExportStats, StatsCounter
from opentelemetry.exporter.weave._transport import WeaveTransport, is_retryable_status

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from opentelemetry.exporter.weave._config import WeaveOptions

__all__ = ["WeaveSpanExporter"]

logger = logging.getLogger("opentelemetry.exporter.weave")


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
        self._delivery = CallEndDelivery(self._transport, self._settings.max_concurrency)
        self._counter = StatsCounter()
        self._is_shut_down = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._settings!r})"

    @property
    def settings(self) -> WeaveSettings:
        return self._settings

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
            self._counter.add("calls_failed", len(calls))
            return DeliveryReport(delivered=0)
        self._counter.add("calls_exported", report.delivered)
        self._counter.add("calls_failed", len(report.failures))
        _log_failures(report)
        return report

    def _map(self, spans: Sequence[ReadableSpan]) -> list[WeaveCall]:
        calls: list[WeaveCall] = []
        for span in spans:
            try:
                calls.append(span_to_call(span, self._settings.project_id))
            except Exception:
                self._counter.add("spans_unmappable")
                span_id = format_span_id(span.context.span_id) if span.context else "?"
                logger.exception("Could not map span %r (%s) to a Weave call", span.name, span_id)
        return calls

    def reset_after_fork(self) -> None:
        """Fresh connections and counters for a forked child."""
        self._transport.reset_after_fork()
        self._counter = StatsCounter()

    def shutdown(self) -> None:
        if self._is_shut_down:
            return
        self._is_shut_down = True
        self._transport.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        # Nothing is buffered here: export() returns only once its calls are delivered.
        return True


def _log_failures(report: DeliveryReport) -> None:
    """One line per distinct answer, not one per call."""
    groups = Counter(
        (failure.route, failure.result.status_code, failure.result.reason)
        for failure in report.failures
    )
    for (route, status_code, reason), count in groups.items():
        if status_code is not None and not is_retryable_status(status_code):
            logger.error(
                "Weave refused %d call(s) at %s with HTTP %d (final, not retried): %s",
                count,
                route,
                status_code,
                reason,
            )
        else:
            answer = "no answer" if status_code is None else f"HTTP {status_code}"
            logger.warning(
                "Weave did not take %d call(s) at %s before the export deadline (%s): %s",
                count,
                route,
                answer,
                reason,
            )
