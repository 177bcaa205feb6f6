"""Long-running spans, shown in Weave while they run, and never left running at exit.

A call is its start plus its end (WEAVE_WIRE §1). Most spans are short: they are sent whole,
in batches, once ended. A span still open ``live_after_seconds`` after it started has its
start sent on its own, ``POST /v2/{entity}/{project}/call/start`` (every kind of project takes
it), so Weave shows the call as running, with its inputs so far; once it ends, its end follows
on ``…/call/end``. The worker does both, one after the other, so an end never goes before its
start, and only after the service acknowledged the start. A v2 end answers 404 when the start
is missing anyway (lost): the whole call is then sent the usual way, once. A service without
the v2 single-call routes (404 on the start) gets v1 ``/call/start`` and ``/call/end``.

``span_started`` runs on the app's thread (the processor's ``on_start``): one dict store, no
lock, no I/O. Everything else runs on the export worker.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

from opentelemetry.sdk.trace import ReadableSpan

from opentelemetry.exporter.weave._call import (
    CALL_END_ROUTE,
    CALL_START_ROUTE,
    WeaveCall,
    call_end_body,
    call_end_v2_route,
    call_start_body,
    call_start_v2_route,
)
from opentelemetry.exporter.weave._delivery import DeliveryReport, Poster
from opentelemetry.exporter.weave._stats import CounterName

__all__ = ["PROCESS_EXIT", "LiveCalls", "ended_at_exit"]

PROCESS_EXIT = json.dumps(
    {
        "type": "ProcessExit",
        "message": "The process exited before the span ended.",
        "traceback": [],
    }
)
"""The ``exception`` of a call ended at exit: Weave shows it failed, not running for ever."""

_MAX_OPEN_SPANS = 10_000
"""Open spans watched at once; beyond it, new ones are only ever sent once ended."""
_NOT_FOUND = 404


def ended_at_exit(call: WeaveCall) -> WeaveCall:
    """``call`` (of a span still open) ended now, failed with :data:`PROCESS_EXIT`."""
    summary = {**call.end.summary, "status_counts": {"success": 0, "error": 1}}
    return call.replace(
        exception=PROCESS_EXIT, ended_at=datetime.now(timezone.utc), summary=summary
    )


class LiveCalls:
    """Which open spans are due to show as running, which calls are running, their halves."""

    def __init__(
        self,
        poster: Poster,
        *,
        after_seconds: float | None,
        watch_open_spans: bool,
        entity: str,
        project: str,
        monotonic: Callable[[], float],
        count: Callable[[CounterName, int], None],
    ) -> None:
        self._after = after_seconds
        self.watching = watch_open_spans or after_seconds is not None
        """Whether open spans are watched: when not, :meth:`span_started` does nothing."""
        self._poster = poster
        self._v2_routes = (call_start_v2_route(entity, project), call_end_v2_route(entity, project))
        self._routes = self._v2_routes
        self._monotonic = monotonic
        self._count = count
        self._open: dict[int, tuple[ReadableSpan, float]] = {}
        """Open spans by span id, with when they started: app threads add, the worker takes."""
        self._running: dict[str, ReadableSpan] = {}
        """Call id → span of each call whose start was sent (or may have been)."""

    def reset(self) -> None:
        """Start over in a forked child: the parent ends its own calls."""
        self._open = {}
        self._running = {}
        self._routes = self._v2_routes

    def span_started(self, span: ReadableSpan) -> None:
        # On the app's thread at every span's start: whether it is sampled (three property
        # reads) is left to due(), on the worker.
        context = span.context
        if not self.watching or context is None or len(self._open) >= _MAX_OPEN_SPANS:
            return
        self._open[context.span_id] = (span, self._monotonic())

    def forget(self, span: ReadableSpan) -> None:
        """The span ended (on the app's thread, at its end): it is no longer a candidate."""
        if span.context is not None:
            self._open.pop(span.context.span_id, None)

    def due(self) -> list[ReadableSpan]:
        """Open spans past the threshold, oldest first; each is given out once. Forgets the
        spans that ended meanwhile."""
        if not self.watching:
            return []
        now = self._monotonic()
        due: list[tuple[float, ReadableSpan]] = []
        # list() of a dict copies it without running Python code: no app thread changes it
        # halfway.
        for span_id, (span, opened) in list(self._open.items()):
            context = span.context
            if span.end_time is not None or context is None or not context.trace_flags.sampled:
                # Ended (queued for the batched path, or dropped from a full queue), or not
                # sampled (never exported): never due, and not to be held here.
                self._open.pop(span_id, None)
            elif self._after is not None and now - opened >= self._after:
                self._open.pop(span_id, None)
                due.append((opened, span))
        return [span for _, span in sorted(due, key=lambda item: item[0])]

    def send_start(self, call: WeaveCall, span: ReadableSpan, deadline: float) -> None:
        """Send the start half of ``call``, the call of open ``span``; once acknowledged, the
        call is running (else it is sent whole once ended)."""
        start_route, _ = self._routes
        result = self._poster.post(start_route, call_start_body(call), deadline)
        if result.status_code == _NOT_FOUND and self._routes == self._v2_routes:
            self._routes = (CALL_START_ROUTE, CALL_END_ROUTE)  # no v2 single-call routes
            result = self._poster.post(CALL_START_ROUTE, call_start_body(call), deadline)
        # Only a start the service acknowledged has its end sent alone: some of Weave's servers
        # answer 200 to an end without its start, and lose it. Any other is sent whole.
        if result.ok:
            self._count("calls_started_early", 1)
            self._running[call.id] = span

    def is_running(self, call: WeaveCall) -> bool:
        return call.id in self._running

    def running_spans(self) -> list[ReadableSpan]:
        """The spans of the running calls whose end has not been sent, latest start first
        (so that each call's open descendants are ended, and rolled up, before it)."""
        return sorted(self._running.values(), key=lambda span: span.start_time or 0, reverse=True)

    def still_open(self) -> list[ReadableSpan]:
        """The open spans never shown as running, latest start first."""
        spans = [span for span, _ in list(self._open.values()) if span.end_time is None]
        return sorted(spans, key=lambda span: span.start_time or 0, reverse=True)

    def send_ends(
        self, calls: Sequence[WeaveCall], deadline: float
    ) -> tuple[DeliveryReport, list[WeaveCall]]:
        """Send the end half of each running call; also the calls whose start turned out
        missing (404), to be sent whole."""
        _, end_route = self._routes
        report = DeliveryReport()
        start_missing: list[WeaveCall] = []
        for call in calls:
            self._running.pop(call.id, None)
            result = self._poster.post(end_route, call_end_body(call), deadline)
            if result.ok:
                self._count("live_ends_matched", 1)
                report += DeliveryReport(delivered=1, retries=max(0, result.attempts - 1))
            elif result.status_code == _NOT_FOUND:
                start_missing.append(call)
            else:
                report += DeliveryReport.failed([call], end_route, result)
        return report, start_missing
