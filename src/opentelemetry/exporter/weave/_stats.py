"""Exact counters of what happened to the spans, and a warning that is not a flood."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, fields

__all__ = ["ExportStats", "RateLimitedWarning", "StatsCounter"]


@dataclass(frozen=True)
class ExportStats:
    """A snapshot of the counters.

    Every span handed to the processor ends in exactly one of: exported, dropped (queue
    full, after shutdown), filtered, unmappable, or a failed call (rejected, too large,
    undeliverable).
    """

    spans_enqueued: int = 0
    """Spans accepted by the processor's queue."""
    spans_dropped_queue_full: int = 0
    """Spans refused because the queue was full."""
    spans_dropped_after_shutdown: int = 0
    """Spans ended after shutdown(), or still queued when shutdown's deadline passed."""
    spans_unmappable: int = 0
    """Spans whose mapping failed (a bug: reported, never silent)."""
    spans_filtered: int = 0
    """Spans left out by the span filter (``WEAVE_OTEL_SPANS`` or ``span_filter``)."""
    calls_exported: int = 0
    """Calls the service accepted."""
    calls_rejected: int = 0
    """Calls the service refused with a final answer (4xx other than 408/409/413/429)."""
    calls_too_large: int = 0
    """Calls refused with 413 on their own, even after truncation."""
    calls_undeliverable: int = 0
    """Calls still failing (5xx, 429, no connection) when the export deadline came."""
    calls_truncated: int = 0
    """Calls sent with their largest fields cut to fit the request size limit."""
    requests_retried: int = 0
    """HTTP requests sent again after a retryable failure."""
    batches_split: int = 0
    """Requests halved after a 413 or 422 answer."""
    rollup_parents_evicted: int = 0
    """Parents whose children's totals were given up waiting for (never ended, too old)."""
    export_batches: int = 0
    """Batches handed to the exporter."""

    @property
    def calls_failed(self) -> int:
        """Calls not delivered, for whatever reason."""
        return self.calls_rejected + self.calls_too_large + self.calls_undeliverable


class StatsCounter:
    """Thread-safe counters behind :class:`ExportStats`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys((spec.name for spec in fields(ExportStats)), 0)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def snapshot(self) -> ExportStats:
        with self._lock:
            return ExportStats(**self._counts)


class RateLimitedWarning:
    """Logs a warning at most once per ``interval_seconds``."""

    def __init__(self, logger: logging.Logger, interval_seconds: float = 60.0) -> None:
        self._logger = logger
        self._interval = interval_seconds
        self._last = -float("inf")

    def warn(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last >= self._interval:
            self._last = now
            self._logger.warning(message, *args)
