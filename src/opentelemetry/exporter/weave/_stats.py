"""Exact counters of what happened to the spans, and a warning that is not a flood."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from enum import Enum
from typing import Literal

from opentelemetry.exporter.weave._config import DropCallback

__all__ = [
    "LOSS_COUNTERS",
    "CounterName",
    "ExportStats",
    "LossReason",
    "LossReporter",
    "StatsCounter",
]

logger = logging.getLogger(__package__)


@dataclass(frozen=True)
class ExportStats:
    """A snapshot of the counters.

    Every span handed to the processor ends in exactly one of: exported, dropped (queue
    full, after shutdown), filtered, unmappable, spooled, or a failed call (rejected, too
    large, undeliverable). A spooled call ends later, in this process or another one sharing
    the spool: re-sent and accepted (unspooled), refused for good, or evicted.
    """

    spans_enqueued: int = 0
    """Spans accepted by the processor's queue."""
    spans_dropped_queue_full: int = 0
    """Spans refused because the queue was full."""
    spans_dropped_after_shutdown: int = 0
    """Spans ended after ``shutdown()``, or still queued when its deadline passed."""
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
    """Calls still failing (5xx, 429, no connection) at the export deadline, or with a TLS
    certificate error (not retried)."""
    calls_truncated: int = 0
    """Calls sent with their largest fields cut to fit the request size limit."""
    requests_retried: int = 0
    """HTTP requests sent again after a retryable failure."""
    batches_split: int = 0
    """Requests halved after a 413 or 422 answer."""
    calls_spooled: int = 0
    """Calls written to the spool to be re-sent: undeliverable at the export deadline, or
    still queued at a shutdown past its deadline."""
    calls_unspooled: int = 0
    """Spooled calls re-sent and accepted (from this process's spool or one it shares)."""
    calls_spool_evicted: int = 0
    """Spooled calls given up: forced out by ``spool_max_bytes``, or unreadable."""
    rollup_parents_evicted: int = 0
    """Parents whose children's totals were given up waiting for (never ended, too old)."""
    export_batches: int = 0
    """Batches handed to the exporter."""
    ops_created: int = 0
    """Op objects created for span names (``op_refs``): a few requests each, once per process."""
    ops_found: int = 0
    """Span names whose op already existed in the project, reused."""
    ops_fallback: int = 0
    """Calls sent with their plain name instead of an op ref: the op routes failed or refused
    (or were given up on for a while after a failure), or the name holds no character an op
    name can. Never a loss: each of these calls is sent all the same."""
    calls_started_early: int = 0
    """Long-running spans shown as running: their start was sent while they were open."""
    live_ends_matched: int = 0
    """Ends of such calls delivered on their own, after their start."""
    calls_ended_at_exit: int = 0
    """Calls still open at shutdown, ended with a ``ProcessExit`` exception (running ones,
    and with ``end_open_spans_at_exit`` the others)."""
    log_records_joined: int = 0
    """Content log records (``WeaveLogRecordProcessor``, ``WeaveLogExporter``) put on their
    span's call."""
    log_records_unmatched: int = 0
    """Content log records that reached no call: their span never came within the join's
    bounds (count, age), was left out by the span filter, or they had no span. Process-wide."""

    @property
    def calls_failed(self) -> int:
        """Calls lost, for whatever reason: rejected, too large, undeliverable, spool-evicted."""
        return (
            self.calls_rejected
            + self.calls_too_large
            + self.calls_undeliverable
            + self.calls_spool_evicted
        )

    def __add__(self, other: ExportStats) -> ExportStats:
        """The counts of two parts of a pipeline (the processor's queue, the exporter) together."""
        return ExportStats(
            **{spec.name: getattr(self, spec.name) + getattr(other, spec.name) for spec in _FIELDS}
        )


_FIELDS = fields(ExportStats)

CounterName = Literal[
    "spans_enqueued",
    "spans_dropped_queue_full",
    "spans_dropped_after_shutdown",
    "spans_unmappable",
    "spans_filtered",
    "calls_exported",
    "calls_rejected",
    "calls_too_large",
    "calls_undeliverable",
    "calls_truncated",
    "requests_retried",
    "batches_split",
    "calls_spooled",
    "calls_unspooled",
    "calls_spool_evicted",
    "rollup_parents_evicted",
    "export_batches",
    "ops_created",
    "ops_found",
    "ops_fallback",
    "calls_started_early",
    "live_ends_matched",
    "calls_ended_at_exit",
    "log_records_joined",
    "log_records_unmatched",
]
"""The name of each :class:`ExportStats` counter (a test keeps the two in step)."""


class LossReason(str, Enum):
    """Why calls were lost: the ``reason`` that ``on_drop(reason, count)`` is called with."""

    QUEUE_FULL = "queue_full"
    AFTER_SHUTDOWN = "after_shutdown"
    UNMAPPABLE = "unmappable"
    REJECTED = "rejected"
    TOO_LARGE = "too_large"
    UNDELIVERABLE = "undeliverable"
    SPOOL_FULL = "spool_full"


LOSS_COUNTERS: Mapping[LossReason, CounterName] = {
    LossReason.QUEUE_FULL: "spans_dropped_queue_full",
    LossReason.AFTER_SHUTDOWN: "spans_dropped_after_shutdown",
    LossReason.UNMAPPABLE: "spans_unmappable",
    LossReason.REJECTED: "calls_rejected",
    LossReason.TOO_LARGE: "calls_too_large",
    LossReason.UNDELIVERABLE: "calls_undeliverable",
    LossReason.SPOOL_FULL: "calls_spool_evicted",
}
"""The counter that counts each loss reason."""


class StatsCounter:
    """Thread-safe counters behind :class:`ExportStats`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = dict.fromkeys((spec.name for spec in _FIELDS), 0)

    def add(self, name: CounterName, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def snapshot(self) -> ExportStats:
        # No lock: stats() may be called from a signal handler that interrupted an add() on
        # this very thread. Copying a dict is one step under the GIL, so the copy is consistent.
        return ExportStats(**self._counts.copy())


class LossReporter:
    """Turns growth of the loss counters in ``snapshot()`` into ``on_drop`` calls and a warning.

    The warning is rate-limited.

    Runs on export worker threads only, never on the app's.
    """

    def __init__(self, snapshot: Callable[[], ExportStats], on_drop: DropCallback | None) -> None:
        self._snapshot = snapshot
        self._on_drop = on_drop
        self._warning = RateLimitedWarning()
        self._reported = dict.fromkeys(LOSS_COUNTERS, 0)
        self._lock = threading.Lock()
        self._callback_failed = False

    def report(self) -> None:
        """Report what the counter lost since the last report: call after each export."""
        stats = self._snapshot()
        totals = {reason: getattr(stats, name) for reason, name in LOSS_COUNTERS.items()}
        with self._lock:
            new = {r: n - self._reported[r] for r, n in totals.items() if n > self._reported[r]}
            self._reported = totals
        if not new:
            return
        self._warning.warn(
            "Weave exporter lost spans; totals since start: %s (see stats())",
            ", ".join(f"{reason.value}={count}" for reason, count in totals.items() if count),
        )
        if self._on_drop is not None:
            for reason, count in new.items():
                self._notify(self._on_drop, reason, count)

    def _notify(self, on_drop: DropCallback, reason: LossReason, count: int) -> None:
        try:
            on_drop(reason.value, count)
        except Exception:
            if not self._callback_failed:
                self._callback_failed = True
                logger.exception("The Weave on_drop callback raised; it is called still")


class RateLimitedWarning:
    """Logs a warning at most once per ``interval_seconds``."""

    def __init__(
        self, interval_seconds: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval = interval_seconds
        self._clock = clock
        self._last = -float("inf")

    def warn(self, message: str, *args: object) -> None:
        now = self._clock()
        if now - self._last >= self._interval:
            self._last = now
            logger.warning(message, *args)
