"""Content that instrumentations emit as OTel log records, joined to the call of their span.

openai-v2 and google-genai in ``event_only`` mode, legacy openai-v2 with content on, and
OpenLLMetry with ``use_attributes=False`` put a call's messages on log records (WEAVE_WIRE §8),
which no span processor sees. The records carry their span's trace and span id; the one
:class:`LogRecordJoin` of the process keeps those of the GenAI content events, keyed by that
pair, until the export pipeline maps the span and takes them as the call's ``content_events``.

Two ways in, both feeding the same join:

- in-process, :class:`WeaveLogRecordProcessor` on the ``LoggerProvider`` (or :func:`install`
  for both providers): ``on_emit`` keeps the record at once, so it is there before its span
  ends (instrumentations emit content before they end the span);
- zero-code, :class:`WeaveLogExporter` (``OTEL_LOGS_EXPORTER=weave``): the SDK wraps it in a
  ``BatchLogRecordProcessor``, so records arrive up to ``OTEL_BLRP_SCHEDULE_DELAY`` (1 s by
  default) after their span ended, maybe after its call was mapped. So, while such a feed is
  open, the pipeline waits before mapping a batch that holds a model call (or a span of a
  scope seen emitting content) ended since the feed's latest batch began: on its worker, once
  per batch, until a batch begins after that span's end, at most that delay (and half the
  export's time left). At exit nothing waits: ``opentelemetry-instrument`` builds the
  ``LoggerProvider`` after the ``TracerProvider``, so ``atexit`` shuts it down first, and its
  last records are in before the last spans are mapped; a shut-down feed is waited for no
  more. In code, prefer the processor: a ``BatchLogRecordProcessor`` built with a delay of
  its own, not the variable's, is waited for only as long as the variable says.

Bounded: at most ``max_records`` records are held, none longer than ``max_age_seconds``; a
record whose span never came (or was not exported) is counted as unmatched when it goes.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk._logs import LogRecordProcessor
from opentelemetry.sdk.trace import ReadableSpan

from opentelemetry.exporter.weave._chat import ContentEvent
from opentelemetry.exporter.weave._sanitize import json_safe

try:
    from opentelemetry.sdk._logs.export import LogRecordExporter as _LogExporterBase
    from opentelemetry.sdk._logs.export import LogRecordExportResult as _ExportResult
except ImportError:  # older SDKs: the names deprecated since
    from opentelemetry.sdk._logs.export import LogExporter as _LogExporterBase
    from opentelemetry.sdk._logs.export import (  # type: ignore[assignment]
        LogExportResult as _ExportResult,
    )

if TYPE_CHECKING:
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.trace import TracerProvider
    from typing_extensions import Unpack

    from opentelemetry.exporter.weave._config import WeaveOptions, WeaveSettings
    from opentelemetry.exporter.weave._processor import WeaveSpanProcessor

__all__ = [
    "CONTENT_EVENT_NAMES",
    "LogRecordJoin",
    "WeaveLogExporter",
    "WeaveLogRecordProcessor",
    "install",
    "process_log_join",
]


CONTENT_EVENT_NAMES = frozenset(
    {
        # OTel GenAI conventions: one event holding the whole exchange (util-genai >= 1.0) ...
        "gen_ai.client.inference.operation.details",
        # ... and the older one event per message, which OpenLLMetry emits too.
        "gen_ai.system.message",
        "gen_ai.user.message",
        "gen_ai.assistant.message",
        "gen_ai.tool.message",
        "gen_ai.choice",
    }
)
"""The event names whose records carry a call's messages; every other record is ignored."""

DEFAULT_MAX_RECORDS = 4096
DEFAULT_MAX_AGE_SECONDS = 600.0
_MODEL_CALL_KEYS = ("gen_ai.operation.name", "gen_ai.request.model", "llm.request.type")
"""Attributes of a model call's span, whose content records may trail it: checked besides
the scopes seen, as a process's first calls end before any record of theirs arrived."""
_MAX_SCOPES = 256
"""Instrumentation scopes remembered as emitting content records: a handful in practice."""
_DEFAULT_BATCH_DELAY_MILLIS = 1000.0
"""``BatchLogRecordProcessor``'s schedule delay when ``OTEL_BLRP_SCHEDULE_DELAY`` is unset."""
_MAX_BATCH_DELAY_SECONDS = 60.0
_BATCH_DELAY_MARGIN_SECONDS = 0.25
"""Beyond the schedule delay, for the batch processor's thread to be scheduled and export."""

SpanKey = tuple[int, int]
"""``(trace_id, span_id)``, as ints."""


@dataclass
class _Held:
    events: list[ContentEvent]
    kept_at: float


_Kept = tuple[SpanKey | None, ContentEvent, str | None]


@dataclass
class _JoinState:
    """What a forked child starts over with: a fresh lock, nothing held."""

    inbox: queue.SimpleQueue[list[_Kept]] = field(default_factory=queue.SimpleQueue)
    """What app threads emitted, not filed yet: ``SimpleQueue.put`` takes no lock a signal
    handler on the same thread could wait for, which ``lock`` would be."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Condition = field(init=False)
    """Notified whenever records are kept, and when a batched feed closes."""
    held: OrderedDict[SpanKey, _Held] = field(default_factory=OrderedDict)
    """Oldest first: eviction by count and by age takes from the front."""
    held_records: int = 0
    unmatched: int = 0
    scopes: set[str] = field(default_factory=set)
    """Instrumentation scopes seen emitting content records."""
    batched_feeds: int = 0
    """Open :class:`WeaveLogExporter` s: records may still be on their way in a batch."""
    batch_delay_seconds: float = 0.0
    last_batch_started_ns: int = 0
    """Wall time at which the latest batch from a feed began: it holds every record emitted
    before then (the batch processor exports its queue oldest first)."""

    def __post_init__(self) -> None:
        self.arrived = threading.Condition(self.lock)


class LogRecordJoin:
    """Content records held by span until the span's call is mapped; bounded, thread-safe.

    Every operation is O(1) amortized (eviction pops from the front of an ordered dict). An
    app thread's records go into a lock-free inbox; the threads that read (the export worker)
    or feed batches file them under one short lock. Nothing waits but :meth:`await_records`,
    on the export worker.
    """

    def __init__(
        self,
        max_records: int = DEFAULT_MAX_RECORDS,
        max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_records = max_records
        self._max_age = max_age_seconds
        self._clock = clock
        self._state = _JoinState()

    def after_fork(self) -> None:
        # The parent maps its own spans with its records; another thread may have held the
        # lock at the fork.
        self._state = _JoinState()

    @property
    def unmatched(self) -> int:
        """Records kept and given up: their span never came in time, or they had no span."""
        return self._state.unmatched

    @property
    def held(self) -> int:
        """Records held now."""
        state = self._state
        with state.lock:
            self._file(state, [])
            return state.held_records

    def keep(self, records: Iterable[Any]) -> None:
        """Keep the content records among ``records`` (the SDK's log record wrappers), as
        they are emitted, on the app's thread: no lock. Never raises on what the SDK hands
        over; ignores the rest."""
        found = [kept for record in records if (kept := _kept_record(record)) is not None]
        if found:
            self._state.inbox.put(found)

    def keep_batch(self, records: Iterable[Any]) -> None:
        """:meth:`keep` for a batch from a batched feed (its own thread), which began now."""
        found = [kept for record in records if (kept := _kept_record(record)) is not None]
        state = self._state
        with state.lock:
            self._file(state, found)
            state.last_batch_started_ns = max(state.last_batch_started_ns, time.time_ns())
            state.arrived.notify_all()

    def _file(self, state: _JoinState, found: list[_Kept]) -> None:
        """File ``found`` and what the inbox holds, then evict; under the lock."""
        batches = [found]
        while True:
            try:
                batches.append(state.inbox.get_nowait())
            except queue.Empty:
                break
        now = self._clock()
        for key, event, scope in itertools.chain.from_iterable(batches):
            if key is None:
                state.unmatched += 1
                continue
            held = state.held.get(key)
            if held is None:
                state.held[key] = _Held([event], now)
            else:
                held.events.append(event)
            state.held_records += 1
            if scope is not None and len(state.scopes) < _MAX_SCOPES:
                state.scopes.add(scope)
        self._evict(state, now)

    def _evict(self, state: _JoinState, now: float) -> None:
        oldest_kept = now - self._max_age
        while state.held:
            key, held = next(iter(state.held.items()))
            if state.held_records <= self._max_records and held.kept_at >= oldest_kept:
                return
            del state.held[key]
            state.held_records -= len(held.events)
            state.unmatched += len(held.events)

    def take(self, span: ReadableSpan) -> tuple[ContentEvent, ...]:
        """The content events of ``span``, in emission order, no longer held."""
        state = self._state
        if not state.held and state.inbox.empty():
            # Nothing held or coming (no log records at all, most processes): no lock. A record
            # arriving meanwhile is filed by the next take, as one arriving just after it.
            return ()
        key = _key_of_span(span)
        if key is None:
            return ()
        with state.lock:
            self._file(state, [])
            held = state.held.pop(key, None)
            if held is None:
                return ()
            state.held_records -= len(held.events)
        # Plain values outside the lock, on the export worker: not on the app's thread.
        return tuple(_plain_event(event) for event in held.events)

    def await_records(self, spans: Sequence[ReadableSpan], limit_seconds: float) -> None:
        """Wait, if their records may still be in a batch, for a batch that holds them.

        Only while a :class:`WeaveLogExporter` is open, and only for model calls (by their
        attributes) and spans of a scope seen emitting content records, ended after the
        latest batch began and less than the batch delay ago: once for the whole batch, at
        most that delay and ``limit_seconds``. A span with some records held waits too: the
        last of a call's per-message records may be in the next batch.
        """
        state = self._state
        if not state.batched_feeds or not spans:
            return
        with state.lock:
            self._file(state, [])
            latest_end = self._latest_end_awaited(state, spans)
            if latest_end is None:
                return
            wall_left = (latest_end - time.time_ns()) / 1e9 + state.batch_delay_seconds
            deadline = time.monotonic() + min(limit_seconds, wall_left)
            while state.batched_feeds and state.last_batch_started_ns <= latest_end:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                state.arrived.wait(remaining)

    @staticmethod
    def _latest_end_awaited(state: _JoinState, spans: Sequence[ReadableSpan]) -> int | None:
        """The latest end time among spans whose records may be in a batch still."""
        not_before = max(
            state.last_batch_started_ns, time.time_ns() - int(state.batch_delay_seconds * 1e9)
        )
        latest: int | None = None
        for span in spans:
            end = span.end_time
            if end is None or end < not_before or (latest is not None and end <= latest):
                continue
            scope = span.instrumentation_scope
            attributes = span.attributes or {}
            if (scope is not None and scope.name in state.scopes) or any(
                key in attributes for key in _MODEL_CALL_KEYS
            ):
                latest = end
        return latest

    def open_batched_feed(self, batch_delay_seconds: float) -> None:
        state = self._state
        with state.lock:
            state.batched_feeds += 1
            state.batch_delay_seconds = max(state.batch_delay_seconds, batch_delay_seconds)

    def close_batched_feed(self) -> None:
        """A feed shut down has delivered its last batch: nothing is on its way from it."""
        state = self._state
        with state.lock:
            state.batched_feeds = max(0, state.batched_feeds - 1)
            state.arrived.notify_all()


def _kept_record(record: Any) -> tuple[SpanKey | None, ContentEvent, str | None] | None:
    """``(span key, or None for a record of no span; event; scope name)`` for a content
    record; None for any other record, and for one of an unsampled span (which is not
    exported either: nothing to join, nothing lost)."""
    log_record = getattr(record, "log_record", None)
    event = _content_event(log_record)
    if event is None:
        return None
    scope = getattr(getattr(record, "instrumentation_scope", None), "name", None)
    scope = scope if isinstance(scope, str) else None
    trace_id = getattr(log_record, "trace_id", None)
    span_id = getattr(log_record, "span_id", None)
    if not isinstance(trace_id, int) or not isinstance(span_id, int) or not span_id:
        return None, event, scope
    trace_flags = getattr(log_record, "trace_flags", None)
    if trace_flags is not None and not getattr(trace_flags, "sampled", True):
        return None
    return (trace_id, span_id), event, scope


def _key_of_span(span: ReadableSpan) -> SpanKey | None:
    context = span.context
    return None if context is None else (context.trace_id, context.span_id)


def _plain_event(event: ContentEvent) -> ContentEvent:
    """The event with JSON-safe values: the SDK hands sequences as tuples, mappings as its
    own types, and lets a record hold bytes, NaN or lone surrogates, which the message
    converter need not know about."""
    attributes = {key: json_safe(value) for key, value in event.attributes.items()}
    return ContentEvent(event.name, attributes, json_safe(event.body))


def _content_event(log_record: Any) -> ContentEvent | None:
    """The record as a content event, or None if it is none.

    The event name is ``event_name`` on SDK 1.3x and later, the ``event.name`` attribute
    before (the Events API's records).
    """
    if log_record is None:
        return None
    raw_attributes = getattr(log_record, "attributes", None)
    attributes: Mapping[str, Any] = raw_attributes if isinstance(raw_attributes, Mapping) else {}
    name = getattr(log_record, "event_name", None) or attributes.get("event.name")
    if not isinstance(name, str) or name not in CONTENT_EVENT_NAMES:
        return None
    # A plain copy: the SDK's BoundedAttributes may be shared or changed after the emit.
    own = {key: value for key, value in attributes.items() if key != "event.name"}
    return ContentEvent(name, own, getattr(log_record, "body", None))


_PROCESS_JOIN = LogRecordJoin()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_PROCESS_JOIN.after_fork)


def process_log_join() -> LogRecordJoin:
    """The join of this process: under ``opentelemetry-instrument`` the span and the log
    exporters are built apart, with no arguments, so they can share nothing else."""
    return _PROCESS_JOIN


class WeaveLogRecordProcessor(LogRecordProcessor):
    """Hands GenAI content records to the span pipeline, which puts them on their calls.

    ``logger_provider.add_log_record_processor(WeaveLogRecordProcessor())`` next to the
    ``WeaveSpanProcessor`` (or :func:`install`). ``on_emit`` is O(1): it keeps the record in
    memory, bounded, and never raises; it sends nothing itself.
    """

    def __init__(self, *, _join: LogRecordJoin | None = None) -> None:
        self._join = _join or process_log_join()

    def on_emit(self, log_record: Any) -> None:
        # Any: the SDK hands a ReadWriteLogRecord, or a LogData before 1.3x.
        try:
            self._join.keep((log_record,))
        except Exception:  # never into the app
            return

    emit = on_emit
    """The name SDKs before 1.3x call (with a ``LogData``)."""

    def shutdown(self) -> None:
        # Nothing to stop; the records held stay for the spans still to be exported.
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class WeaveLogExporter(_LogExporterBase):
    """The zero-code way in: ``OTEL_LOGS_EXPORTER=weave`` with ``opentelemetry-instrument``.

    Takes no settings: it sends nothing, it hands the content records to the span exporter
    of the same process (``OTEL_TRACES_EXPORTER=weave``), whatever batching the SDK puts
    around it.
    """

    def __init__(self, *, _join: LogRecordJoin | None = None) -> None:
        self._join = _join or process_log_join()
        self._is_shut_down = False
        self._join.open_batched_feed(_batch_delay_seconds())

    def export(self, batch: Sequence[Any]) -> Any:
        if not self._is_shut_down:
            try:
                self._join.keep_batch(batch)
            except Exception:  # the SDK's export thread must go on
                return _ExportResult.FAILURE
        return _ExportResult.SUCCESS

    def shutdown(self) -> None:
        if not self._is_shut_down:
            self._is_shut_down = True
            self._join.close_batched_feed()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _batch_delay_seconds() -> float:
    """How late the SDK's ``BatchLogRecordProcessor`` may hand records over, with a margin."""
    raw = os.environ.get("OTEL_BLRP_SCHEDULE_DELAY", "").strip()
    try:
        millis = float(raw) if raw else _DEFAULT_BATCH_DELAY_MILLIS
    except ValueError:
        millis = _DEFAULT_BATCH_DELAY_MILLIS  # the SDK falls back to its default too
    if not 0 <= millis <= _MAX_BATCH_DELAY_SECONDS * 1000:
        millis = _DEFAULT_BATCH_DELAY_MILLIS
    return millis / 1000 + _BATCH_DELAY_MARGIN_SECONDS


def install(
    tracer_provider: TracerProvider,
    logger_provider: LoggerProvider,
    settings: WeaveSettings | None = None,
    **options: Unpack[WeaveOptions],
) -> WeaveSpanProcessor:
    """Add a ``WeaveSpanProcessor`` to ``tracer_provider`` and a
    :class:`WeaveLogRecordProcessor` to ``logger_provider``; the span processor is returned.

    The log processor goes in first: a record emitted while the span processor is being
    added still finds it.
    """
    # Imported here: the processor's pipeline imports this module.
    from opentelemetry.exporter.weave._processor import WeaveSpanProcessor

    span_processor = WeaveSpanProcessor(settings, **options)
    logger_provider.add_log_record_processor(WeaveLogRecordProcessor())
    tracer_provider.add_span_processor(span_processor)
    return span_processor
