"""``WeaveSpanExporter``: the export pipeline behind the SDK's ``SpanExporter`` interface."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from opentelemetry.exporter.weave._coexist import CoexistenceCheck
from opentelemetry.exporter.weave._config import WeaveSettings
from opentelemetry.exporter.weave._pipeline import ExportPipeline
from opentelemetry.exporter.weave._retry import SYSTEM_CLOCK, Clock, RetryPolicy
from opentelemetry.exporter.weave._stats import ExportStats, LossReporter

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from opentelemetry.exporter.weave._config import WeaveOptions

__all__ = ["WeaveSpanExporter", "resolve_settings"]

logger = logging.getLogger(__package__)


def resolve_settings(settings: WeaveSettings | None, options: WeaveOptions) -> WeaveSettings:
    if settings is not None and options:
        raise TypeError("pass either settings or keyword options, not both")
    return settings if settings is not None else WeaveSettings.from_env(**options)


class WeaveSpanExporter(SpanExporter):
    """Maps spans to Weave calls and delivers them, synchronously, within the export timeout.

    Use it where the SDK builds exporters for you (``OTEL_TRACES_EXPORTER=weave`` with
    ``opentelemetry-instrument``) or behind your own ``BatchSpanProcessor``. Settings come from
    the keyword arguments, else the environment (see the README's configuration table).
    """

    def __init__(
        self,
        settings: WeaveSettings | None = None,
        *,
        _retry_policy: RetryPolicy | None = None,
        _clock: Clock = SYSTEM_CLOCK,
        **options: Unpack[WeaveOptions],
    ) -> None:
        self._pipeline = ExportPipeline(resolve_settings(settings, options), _retry_policy, _clock)
        self._loss_reporter = LossReporter(self._pipeline.stats, self.settings.on_drop)
        self._is_shut_down = False
        self._coexistence = CoexistenceCheck(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings!r})"

    @property
    def settings(self) -> WeaveSettings:
        return self._pipeline.settings

    def stats(self) -> ExportStats:
        """Counters of what happened to every span this exporter was given."""
        return self._pipeline.stats()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._is_shut_down:
            logger.warning("Weave exporter already shut down; %d spans not exported", len(spans))
            return SpanExportResult.FAILURE
        clock = self._pipeline.clock
        deadline = clock.monotonic() + self.settings.export_timeout_millis / 1000
        self._coexistence.check(spans)
        report = self._pipeline.export_batch(spans, deadline)
        self._loss_reporter.report()
        return SpanExportResult.SUCCESS if report.ok else SpanExportResult.FAILURE

    def shutdown(self) -> None:
        if self._is_shut_down:
            return
        self._is_shut_down = True
        self._pipeline.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        # Nothing is buffered here: export() returns only once its calls are delivered.
        return True
