"""``WeaveSpanProcessor``: a bounded queue on the app's side, mapping and HTTP on a worker.

The processor owns the queue and its counters, and drives anything that exports a batch by
a deadline and reports what became of it (:class:`BatchExporter`): the export pipeline, or a
fake one in tests.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from opentelemetry.exporter.weave._config import WeaveSettings
from opentelemetry.exporter.weave._exporter import resolve_settings
from opentelemetry.exporter.weave._pipeline import BatchReport, ExportPipeline
from opentelemetry.exporter.weave._retry import SYSTEM_CLOCK, Clock, RetryPolicy
from opentelemetry.exporter.weave._stats import ExportStats, LossReporter

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from opentelemetry.exporter.weave._config import WeaveOptions

__all__ = ["BatchExporter", "WeaveSpanProcessor"]

logger = logging.getLogger(__package__)


class BatchExporter(Protocol):
    """What the processor's worker drives."""

    @property
    def settings(self) -> WeaveSettings: ...

    @property
    def clock(self) -> Clock: ...

    def export_batch(self, spans: Sequence[ReadableSpan], deadline: float) -> BatchReport:
        """Export ``spans`` by ``deadline`` (``clock.monotonic()``); never raises."""
        ...

    def stats(self) -> ExportStats: ...

    def after_fork(self) -> None:
        """Start over in a forked child: own connections, zero counters."""
        ...

    def close(self) -> None: ...


@dataclass
class _FlushRequest:
    deadline: float
    done: threading.Event = field(default_factory=threading.Event)
    failed: bool = False
    """Set when a batch exported after the request was made lost a span."""


@dataclass
class _QueueCounts:
    enqueued: int = 0
    dropped_queue_full: int = 0
    dropped_after_shutdown: int = 0


class WeaveSpanProcessor(SpanProcessor):
    """Sends every finished, sampled span to Weave as a call.

    ``provider.add_span_processor(WeaveSpanProcessor())`` is the whole setup: settings come
    from the environment unless given as keyword arguments. ``on_end`` only appends to a
    bounded queue; a worker thread maps and exports in batches. Nothing raises into the app.
    """

    def __init__(
        self,
        settings: WeaveSettings | None = None,
        *,
        _exporter: BatchExporter | None = None,
        _retry_policy: RetryPolicy | None = None,
        _clock: Clock = SYSTEM_CLOCK,
        **options: Unpack[WeaveOptions],
    ) -> None:
        self._exporter: BatchExporter = _exporter or ExportPipeline(
            resolve_settings(settings, options), _retry_policy, _clock
        )
        settings = self._exporter.settings
        self._clock = self._exporter.clock
        self._max_queue_size = settings.max_queue_size
        self._batch_size = settings.max_export_batch_size
        self._schedule_delay = settings.schedule_delay_millis / 1000
        self._export_timeout = settings.export_timeout_millis / 1000
        self._init_state()
        self._register_hooks()

    def _init_state(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._queue: deque[ReadableSpan] = deque()
        self._counts = _QueueCounts()
        self._loss_reporter = LossReporter(self.stats, self.settings.on_drop)
        self._flush_requests: list[_FlushRequest] = []
        self._shutdown_deadline: float | None = None
        self._worker = threading.Thread(target=self._run, name="WeaveSpanProcessor", daemon=True)
        self._worker.start()

    def _register_hooks(self) -> None:
        # Weak references: the hooks must not keep a discarded processor alive.
        weak_self = weakref.ref(self)

        def on_exit() -> None:
            processor = weak_self()
            if processor is not None:
                processor.shutdown()

        def in_forked_child() -> None:
            processor = weak_self()
            # A processor shut down before the fork stays shut down in the child.
            if processor is not None and processor._shutdown_deadline is None:
                processor._reset_after_fork()

        self._on_exit: Callable[[], None] = on_exit
        atexit.register(on_exit)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=in_forked_child)

    def _reset_after_fork(self) -> None:
        # The child inherits the parent's queue, which the parent will export itself: a
        # forked child starts empty, with its own worker, connections and counters.
        self._exporter.after_fork()
        self._init_state()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings!r})"

    @property
    def settings(self) -> WeaveSettings:
        return self._exporter.settings

    def stats(self) -> ExportStats:
        """Counters of what happened to every span this processor saw."""
        with self._condition:
            counts = self._counts
            queue = ExportStats(
                spans_enqueued=counts.enqueued,
                spans_dropped_queue_full=counts.dropped_queue_full,
                spans_dropped_after_shutdown=counts.dropped_after_shutdown,
            )
        return queue + self._exporter.stats()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None or not span.context.trace_flags.sampled:
            return
        with self._condition:
            if self._shutdown_deadline is not None:
                self._counts.dropped_after_shutdown += 1
                return
            if len(self._queue) >= self._max_queue_size:
                self._counts.dropped_queue_full += 1
                return
            self._queue.append(span)
            self._counts.enqueued += 1
            if len(self._queue) == self._batch_size:
                self._condition.notify()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export everything queued now.

        True only if it was all delivered within the timeout; False if the timeout passed or
        a span of a batch exported meanwhile was lost (the counters in :meth:`stats` say how).
        """
        request = _FlushRequest(deadline=self._clock.monotonic() + timeout_millis / 1000)
        with self._condition:
            if self._shutdown_deadline is not None or not self._worker.is_alive():
                return not self._queue
            self._flush_requests.append(request)
            self._condition.notify()
        finished = request.done.wait(max(0.0, request.deadline - self._clock.monotonic()))
        return finished and not request.failed

    def shutdown(self) -> None:
        """Export what is queued, within the export timeout, then release connections."""
        with self._condition:
            if self._shutdown_deadline is not None:
                return
            self._shutdown_deadline = self._clock.monotonic() + self._export_timeout
            self._condition.notify()
        atexit.unregister(self._on_exit)
        if self._worker is not threading.current_thread():
            self._worker.join(max(0.0, self._shutdown_deadline - self._clock.monotonic()))
        self._exporter.close()

    def _run(self) -> None:
        while True:
            with self._condition:
                if self._is_idle():
                    self._condition.wait(self._schedule_delay)
                batch = [
                    self._queue.popleft() for _ in range(min(self._batch_size, len(self._queue)))
                ]
                # The flushes this batch counts for: those requested before it left the queue.
                waiting = list(self._flush_requests)
                finished: list[_FlushRequest] = []
                if not self._queue:
                    finished, self._flush_requests = self._flush_requests, []
                deadline = self._export_deadline()
                stopping = self._shutdown_deadline is not None and not self._queue
            delivered = False
            try:
                delivered = self._export(batch, deadline)
                self._loss_reporter.report()
            except Exception:  # the worker must outlive any bug of ours
                logger.exception("Weave export worker failed on a batch of %d spans", len(batch))
            finally:
                for request in waiting:
                    request.failed = request.failed or not delivered
                for request in finished:
                    request.done.set()
            if stopping:
                return

    def _is_idle(self) -> bool:
        return (
            self._shutdown_deadline is None
            and not self._flush_requests
            and len(self._queue) < self._batch_size
        )

    def _export_deadline(self) -> float:
        # A flush's timeout bounds how long its caller waits, not the export: a short flush
        # against a slow service must not give up on spans the export timeout still allows.
        deadline = self._clock.monotonic() + self._export_timeout
        if self._shutdown_deadline is not None:
            deadline = min(deadline, self._shutdown_deadline)
        return deadline

    def _export(self, batch: list[ReadableSpan], deadline: float) -> bool:
        """Whether every span of ``batch`` was delivered or left out on purpose."""
        if not batch:
            return True
        if self._shutdown_deadline is None or self._clock.monotonic() < self._shutdown_deadline:
            return self._exporter.export_batch(batch, deadline).ok
        with self._condition:
            self._counts.dropped_after_shutdown += len(batch)
        return False
