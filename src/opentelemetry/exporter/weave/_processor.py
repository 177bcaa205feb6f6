"""``WeaveSpanProcessor``: a bounded queue on the app's side, mapping and HTTP on a worker.

The processor owns the queue and its counters, and drives anything that exports a batch by
a deadline and reports what became of it (:class:`BatchExporter`): the export pipeline, or a
fake one in tests.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import queue
import signal
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Protocol

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from opentelemetry.exporter.weave._coexist import CoexistenceCheck
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

    def span_started(self, span: ReadableSpan) -> None:
        """Note a span's start; runs on the app's thread: O(1), no lock, no I/O."""
        ...

    def span_ended(self, span: ReadableSpan) -> None:
        """Note a span's end, sampled or not (as :meth:`span_started`)."""
        ...

    def send_live_starts(self, deadline: float) -> None:
        """Send the starts of the open spans due to show as running; never raises."""
        ...

    def end_open_calls(self, deadline: float) -> None:
        """At shutdown, end the calls still running (and open spans, if so set)."""
        ...

    def export_batch(self, spans: Sequence[ReadableSpan], deadline: float) -> BatchReport:
        """Export ``spans`` by ``deadline`` (``clock.monotonic()``); never raises."""
        ...

    def spill(self, spans: Sequence[ReadableSpan]) -> int:
        """Keep ``spans`` for a later process, unsent (the spool); how many it accounted for."""
        ...

    def stats(self) -> ExportStats: ...

    def after_fork(self) -> None:
        """Start over in a forked child: own connections, zero counters."""
        ...

    def close(self) -> None: ...


@dataclass
class _FlushRequest:
    deadline: float
    done: queue.SimpleQueue[bool] = field(default_factory=queue.SimpleQueue)
    """Where the worker answers once the queue was emptied. Not a ``threading.Event``: its
    ``set()`` waits for a lock that its ``wait()`` holds for a moment, so a signal handler
    flushing in that moment would keep the worker from answering, and itself waiting."""
    failed: bool = False
    """Set when a batch exported after the request was made lost a span."""


class _Tally:
    """A count that any thread, or a signal handler interrupting it, adds to without a lock.

    ``next()`` on an ``itertools.count`` is one call into C, which the GIL makes atomic;
    ``+= 1`` on an attribute is several bytecodes, between which another thread or a signal
    handler can add too, and one of the two additions is lost.
    """

    def __init__(self) -> None:
        self._counter = itertools.count()

    def add(self, count: int = 1) -> None:
        for _ in range(count):
            next(self._counter)

    @property
    def value(self) -> int:
        # An itertools.count shows its next value in its repr, its one reading that does not
        # advance it.
        return int(repr(self._counter)[len("count(") : -1])


_WAKE_UP = None
"""What ``on_end`` puts in the worker's inbox when a batch is full."""
_SHUTDOWN_POLL_SECONDS = 0.001
"""How often a flush during shutdown looks whether the worker is done."""


class WeaveSpanProcessor(SpanProcessor):
    """Sends every finished, sampled span to Weave as a call.

    ``provider.add_span_processor(WeaveSpanProcessor())`` is the whole setup: settings come
    from the environment unless given as keyword arguments. ``on_end`` only appends to a
    bounded queue; a worker thread maps and exports in batches. Nothing raises into the app.

    No public method takes a lock its own thread could already hold: a signal handler may
    call ``force_flush()`` or ``shutdown()`` while the thread it interrupted is inside any of
    them. The app's threads and the worker share a deque, lock-free counters and an inbox
    (``queue.SimpleQueue``, whose ``put`` is safe in a signal handler).
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
        self._coexistence = CoexistenceCheck(self)
        self._init_state()
        self._register_hooks()

    def _init_state(self) -> None:
        self._queue: deque[ReadableSpan] = deque()
        self._enqueued = _Tally()
        self._dropped_queue_full = _Tally()
        self._dropped_after_shutdown = _Tally()
        self._inbox: queue.SimpleQueue[_FlushRequest | None] = queue.SimpleQueue()
        self._wake_up_sent = False
        """Whether a full batch's wake-up is in the inbox: on_end sends one, not one a span."""
        # next() is an atomic test-and-set: it returns 0 to the first caller only.
        self._shutdown_calls = itertools.count()
        self._shutdown_deadline: float | None = None
        self._worker_done = False
        self._worker_finished = False
        """Set last by the worker, when it has nothing left to do (a lock-free flag)."""
        self._shutdown_losses = 0
        """Batches not all delivered once shutdown began, and spans left at its end (counted
        by the worker; a flush waiting for the shutdown to end compares them)."""
        self._loss_reporter = LossReporter(self.stats, self.settings.on_drop)
        self._flush_requests: list[_FlushRequest] = []
        """The worker's: the flushes received and not finished yet."""
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
        if self.settings.end_on_sigterm:
            _end_on_sigterm(weak_self)
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
        queue_counts = ExportStats(
            spans_enqueued=self._enqueued.value,
            spans_dropped_queue_full=self._dropped_queue_full.value,
            spans_dropped_after_shutdown=self._dropped_after_shutdown.value,
        )
        return queue_counts + self._exporter.stats()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        # What the start says about its thread: its descendants end, and are mapped, first.
        try:
            self._exporter.span_started(span)
        except Exception:
            logger.debug("could not note a span's start", exc_info=True)

    def on_end(self, span: ReadableSpan) -> None:
        # No lock: each step is one atomic operation on the deque or a tally, and the counts
        # stay exact whatever runs in between, another app thread or a signal handler.
        try:
            self._exporter.span_ended(span)
        except Exception:
            logger.debug("could not note a span's end", exc_info=True)
        if span.context is None or not span.context.trace_flags.sampled:
            return
        if self._shutdown_deadline is not None:
            self._dropped_after_shutdown.add()
            return
        spans = self._queue
        spans.append(span)
        queued = len(spans)
        if queued > self._max_queue_size:
            # Appending first and giving back the newest keeps the bound when many threads
            # append at once; each drop is counted by the thread that made it.
            try:
                spans.pop()
            except IndexError:  # the worker took them all meanwhile, this span included
                pass
            else:
                self._dropped_queue_full.add()
                return
        self._enqueued.add()
        if queued >= self._batch_size and not self._wake_up_sent:
            self._wake_up_sent = True
            self._inbox.put(_WAKE_UP)
        if self._worker_done:
            # Shut down since the check above, and the worker gone: nobody else will.
            self._drop_queued()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export everything queued now.

        True only if it was all delivered within the timeout; False if the timeout passed or
        a span of a batch exported meanwhile was lost (the counters in :meth:`stats` say how).
        """
        if self._shutdown_deadline is not None:
            return self._flush_while_shutting_down(timeout_millis / 1000)
        if not self._worker.is_alive():
            return not self._queue
        request = _FlushRequest(deadline=self._clock.monotonic() + timeout_millis / 1000)
        self._inbox.put(request)
        try:
            request.done.get(timeout=_wait_seconds(request.deadline - self._clock.monotonic()))
        except queue.Empty:
            return False
        return not request.failed

    def _flush_while_shutting_down(self, timeout: float) -> bool:
        """After shutdown began, the worker exports what is queued by the shutdown's deadline
        and takes no more flush requests: waited for, its losses meanwhile told. Polled, not
        joined: the shutdown this flush may interrupt (from a signal handler) can be inside
        ``join()`` itself, holding the lock that a join waits for."""
        worker = self._worker
        if worker is threading.current_thread() or not worker.is_alive():
            return not self._queue
        losses = self._shutdown_losses
        self._inbox.put(_WAKE_UP)  # the shutdown interrupted may not have woken it yet
        give_up = time.monotonic() + timeout
        while not self._worker_finished and worker.is_alive():
            left = give_up - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, _SHUTDOWN_POLL_SECONDS))
        return not self._queue and self._shutdown_losses == losses

    def shutdown(self) -> None:
        """Export what is queued, within the export timeout, then release connections."""
        if next(self._shutdown_calls):  # the first call shuts down, the others return
            return
        self._shutdown_deadline = self._clock.monotonic() + self._export_timeout
        self._inbox.put(_WAKE_UP)
        atexit.unregister(self._on_exit)
        if self._worker is not threading.current_thread():
            self._worker.join(_wait_seconds(self._shutdown_deadline - self._clock.monotonic()))
            if self._worker.is_alive() and self.settings.spool_dir is not None:
                # Still exporting at the deadline, and the process may exit now: what the
                # worker has not taken goes to the spool before it is too late.
                self._spill(self._take_queued())
        self._exporter.close()

    def _run(self) -> None:
        if self.settings.spool_dir is not None:
            # A process that makes no span still sends what an earlier one left in the spool.
            try:
                self._exporter.export_batch([], self._export_deadline())
            except Exception:
                logger.exception("Weave could not re-send the spool")
        while True:
            try:
                if self._export_next_batch():
                    break
            except Exception:  # the worker must outlive any bug of ours, its waits' included
                logger.exception("Weave export worker failed")
        try:
            self._exporter.end_open_calls(self._export_deadline())
        except Exception:
            logger.exception("Weave could not end the calls still running")
        self._worker_done = True
        try:
            self._spill(self._take_queued())
        finally:
            self._worker_finished = True

    def _export_next_batch(self) -> bool:
        """Wait for a batch (or the schedule delay), export it; True once shut down and empty."""
        self._receive(self._schedule_delay if self._is_idle() else 0.0)
        batch = self._take_batch()
        # The flushes this batch counts for: those requested before it left the queue.
        waiting = list(self._flush_requests)
        finished: list[_FlushRequest] = []
        if not self._queue:
            finished, self._flush_requests = self._flush_requests, []
        deadline = self._export_deadline()
        stopping = self._shutdown_deadline is not None and not self._queue
        delivered = False
        try:
            if not stopping:
                self._exporter.send_live_starts(deadline)
        except Exception:  # the worker must outlive any bug of ours
            logger.exception("Weave could not send the starts of long-running spans")
        try:
            delivered = self._export(batch, deadline)
            self._loss_reporter.report()
        except Exception:  # the worker must outlive any bug of ours
            logger.exception("Weave export worker failed on a batch of %d spans", len(batch))
        finally:
            if not delivered and self._shutdown_deadline is not None:
                self._shutdown_losses += 1
            for request in waiting:
                request.failed = request.failed or not delivered
            for request in finished:
                request.done.put(True)
        return stopping

    def _receive(self, timeout: float) -> None:
        """Take what the inbox holds, waiting up to ``timeout`` for something to arrive."""
        try:
            message = self._inbox.get(timeout=timeout) if timeout else self._inbox.get_nowait()
            while True:
                if message is not None:
                    self._flush_requests.append(message)
                message = self._inbox.get_nowait()
        except queue.Empty:
            pass
        finally:
            # Cleared once the inbox is empty and before the queue is read: a span appended
            # after this sends a wake-up of its own, one appended before is in the batch read.
            self._wake_up_sent = False

    def _take_batch(self) -> list[ReadableSpan]:
        batch: list[ReadableSpan] = []
        try:
            while len(batch) < self._batch_size:
                batch.append(self._queue.popleft())
        except IndexError:
            pass
        return batch

    def _take_queued(self) -> list[ReadableSpan]:
        """Everything still queued (popleft is atomic: no span goes to two threads)."""
        spans: list[ReadableSpan] = []
        try:
            while True:
                spans.append(self._queue.popleft())
        except IndexError:
            return spans

    def _spill(self, spans: list[ReadableSpan]) -> None:
        """Spans shutdown had no time to export: spooled if there is a spool, else dropped."""
        kept = 0
        if spans:
            self._shutdown_losses += 1
            try:
                kept = self._exporter.spill(spans)
            except Exception:  # never raises into shutdown()
                logger.exception("Weave could not keep %d spans for later", len(spans))
        self._dropped_after_shutdown.add(len(spans) - kept)

    def _drop_queued(self) -> None:
        """Count what is left in the queue as dropped after shutdown."""
        self._dropped_after_shutdown.add(len(self._take_queued()))

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
        self._coexistence.check(batch)  # here, on the worker: the app's threads never wait on it
        if self._shutdown_deadline is None or self._clock.monotonic() < self._shutdown_deadline:
            return self._exporter.export_batch(batch, deadline).ok
        self._spill(batch)
        return False


def _end_on_sigterm(weak_processor: weakref.ReferenceType[WeaveSpanProcessor]) -> None:
    """On SIGTERM, shut the processor down (its running calls get their end), then let the
    signal do what it did before: the previous handler, or the end of the process."""
    if threading.current_thread() is not threading.main_thread():
        logger.warning("end_on_sigterm needs the processor made on the main thread; not set")
        return
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        processor = weak_processor()
        if processor is not None:
            processor.shutdown()
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)


def _wait_seconds(seconds: float) -> float:
    """``seconds`` as a timeout ``threading`` accepts: none past ``TIMEOUT_MAX``, none below 0."""
    return min(max(0.0, seconds), threading.TIMEOUT_MAX)
