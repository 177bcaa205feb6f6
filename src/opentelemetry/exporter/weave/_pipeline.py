"""The export pipeline, composed in one place: what happens to a batch of finished spans.

Per span, on the export worker: **select → map → redact → roll up** (with the thread its start
showed and its content log records). Per batch of calls: **op refs → fit to size → (spool,
opt-in) → write mode (auto-upgrade; packing) → split on 413/422 → retry → one HTTP attempt**.
Spans open past ``live_after_seconds`` show as running meanwhile (``_live.py``): their start
on its own, their end once ended, and at shutdown an end for each one still open. Both the
processor and the exporter drive this; it never raises.
Reporting losses (``on_drop``, the warning) is theirs: only they know every counter.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from opentelemetry.sdk.trace import ReadableSpan

from opentelemetry.exporter.weave._call import REQUEST_ENVELOPE_BYTES, WeaveCall, format_span_id
from opentelemetry.exporter.weave._config import SpanSet, WeaveSettings
from opentelemetry.exporter.weave._conversation import ConversationMemo
from opentelemetry.exporter.weave._delivery import (
    CallFailure,
    CallSender,
    DeliveryReport,
    write_mode_for,
)
from opentelemetry.exporter.weave._live import LiveCalls, ended_at_exit
from opentelemetry.exporter.weave._logs import process_log_join
from opentelemetry.exporter.weave._mapping import SPAN_PARENT, span_to_call
from opentelemetry.exporter.weave._ops import OpRefs
from opentelemetry.exporter.weave._redaction import Redactor
from opentelemetry.exporter.weave._retry import SYSTEM_CLOCK, Clock, Retrying, RetryPolicy
from opentelemetry.exporter.weave._rollup import SummaryRollup
from opentelemetry.exporter.weave._selection import LEFT_OUT, SpanSelection, is_genai_span
from opentelemetry.exporter.weave._size import FitToSize
from opentelemetry.exporter.weave._spool import SpoolActivity, Spooling, open_spool
from opentelemetry.exporter.weave._stats import (
    LOSS_COUNTERS,
    CounterName,
    ExportStats,
    LossReason,
    StatsCounter,
)
from opentelemetry.exporter.weave._threads import ThreadTracker
from opentelemetry.exporter.weave._transport import HttpAttempt, PostResult

__all__ = ["BatchReport", "ExportPipeline"]

logger = logging.getLogger(__package__)

_NAMED_CALLS = 5
_GIL_YIELD_INTERVAL_SECONDS = 0.0001
_APP_BUSY_SECONDS = 0.01
"""How recently an app thread started a span for the worker to take it as busy: handing the
GIL over costs the worker some 80 µs each time, worth it only while the app has work."""


@dataclass(frozen=True)
class BatchReport:
    """What became of one batch of spans."""

    spans: int
    filtered: int
    unmappable: int
    delivery: DeliveryReport

    @property
    def ok(self) -> bool:
        """Every span was either delivered as a call or left out by the span filter."""
        return (
            self.unmappable == 0
            and not self.delivery.failures
            and self.delivery.delivered == self.spans - self.filtered
        )


class ExportPipeline:
    """Maps and delivers batches of spans as the settings say; counts what happens to them."""

    def __init__(
        self,
        settings: WeaveSettings,
        retry_policy: RetryPolicy | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._counter = StatsCounter()
        # Each span's start, in span_started (the processor's on_start, on the app's thread):
        #   ThreadTracker  the thread and turn its start shows, for descendants to inherit
        # Each span, in _call_for:
        #   SpanSelection  select: the span filter, and the parent a kept span hangs under
        #   LogRecordJoin  the content log records of the span (_logs.py), for the mapping
        #   span_to_call   map: the pure mapping to a call (ConversationMemo: each
        #                  trace's last chat input, for the next to convert what it adds;
        #                  named by its op's ref where op refs know it already)
        #   Redactor       redact: the secret scrubber (a batch's messages scrubbed once,
        #                  however many calls hold them), then the user's callback
        #   SummaryRollup  roll up: the subtree's usage and status counts into each call
        self._threads = ThreadTracker()
        self._app_busy_at = -_APP_BUSY_SECONDS  # when an app thread last started a span
        self._log_join = process_log_join()
        self._conversations = ConversationMemo()
        self._selection = _selection_for(settings)
        self._redactor = Redactor(
            settings.redact, settings.redact_keys, settings.redaction_callback
        )
        self._rollup = SummaryRollup(
            settings.rollup_max_pending,
            settings.rollup_max_age_seconds,
            on_evict=lambda count: self._counter.add("rollup_parents_evicted", count),
        )
        # Each batch of calls, in export_batch:
        #   OpRefs          op refs: each call's op_name a ref to its op (below)
        # then in _deliver (built from the wire up):
        #   FitToSize       fit to size: cut the largest fields of a call over the limit
        #   Spooling        (opt-in) keep on disk what the rest gives up on, re-send it later
        #   write_mode_for  write mode: AutoUpgrade over CallEndWriter and, for the batched
        #                   routes, Packing into requests, each split on 413/422 (SplitOnRefusal)
        #   Retrying        retry: backoff, Retry-After, one idempotency id per request
        #   HttpAttempt     one HTTP attempt, bounded by its deadline
        budget = settings.max_request_bytes - REQUEST_ENVELOPE_BYTES
        self._http = HttpAttempt(settings)
        self._retrying = Retrying(self._http, retry_policy, clock)
        # Op refs (on by default): each call's op_name a ref to its op, resolved per batch
        # before delivery, on the same connections; never delays a call past a slice of the
        # batch's deadline, never costs one. The counter is looked up at each count: a forked
        # child gets new counters.
        self._op_refs = (
            OpRefs(self._http, clock.monotonic, lambda name, n: self._counter.add(name, n))  # noqa: PLW0108
            if settings.op_refs
            else None
        )
        # Long-running spans (the processor only): shown as running while open, their start
        # and end each on their own, on the same connections and retries.
        self._live = LiveCalls(
            self._retrying,
            after_seconds=settings.live_after_seconds,
            watch_open_spans=settings.end_open_spans_at_exit,
            entity=settings.entity,
            project=settings.project,
            monotonic=clock.monotonic,
            count=lambda name, n: self._counter.add(name, n),  # noqa: PLW0108 (as op refs')
        )
        write_mode = write_mode_for(settings, self._retrying, budget, clock.monotonic)
        # Spooling (opt-in) sits under FitToSize: the spool keeps calls already fitted, and
        # re-sends them through the write mode as it is then (AutoUpgrade's switch included)
        # and its retries; it spools only what those gave up on at the deadline.
        self._spooling = _spooling_for(settings, write_mode, clock, self._record_spooling)
        if self._spooling is not None:
            write_mode = self._spooling
        self._fit_to_size = FitToSize(write_mode, budget, clock.monotonic)
        self._deliver: CallSender = self._fit_to_size
        # Mapping holds per-trace state (selection, roll-up): a shutdown that spools what the
        # worker had no time for must not map beside it. Reentrant: a callback may shut down.
        self._mapping = threading.RLock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings!r})"

    def span_started(self, span: ReadableSpan) -> None:
        self._app_busy_at = time.perf_counter()
        self._threads.span_started(span)
        if self._live.watching:  # mostly not: no call on the app's thread for nothing
            self._live.span_started(span)

    def span_ended(self, span: ReadableSpan) -> None:
        # The open span given up at once: until its batch is mapped it would keep the live span
        # (the app's, not the snapshot queued) and its entry for the garbage collector to walk.
        if self._live.watching:
            self._live.forget(span)

    def send_live_starts(self, deadline: float) -> None:
        """Show the spans open past the live threshold as running: send their starts."""
        for span in self._live.due():
            with self._mapping:
                call = self._open_call_for(span)
            if call is None:
                continue
            if self._op_refs is not None:
                (call,) = self._op_refs.apply([call], deadline)
            self._live.send_start(call, span, deadline)

    def end_open_calls(self, deadline: float) -> None:
        """At shutdown: end every running call, and with ``end_open_spans_at_exit`` send
        every other open span, failed by the exit (``ProcessExit``), rolled up."""
        spans = self._live.running_spans()
        if self.settings.end_open_spans_at_exit:
            spans = sorted(
                spans + self._live.still_open(),
                key=lambda span: span.start_time or 0,
                reverse=True,  # descendants first: each is rolled up into its parent
            )
        calls: list[WeaveCall] = []
        with self._mapping:
            for span in spans:
                call = self._open_call_for(span)
                if call is not None:
                    remote = bool(span.parent and span.parent.is_remote)
                    calls.append(self._rollup.roll_up(ended_at_exit(call), not remote))
        if calls:
            self._counter.add("calls_ended_at_exit", len(calls))
            self._record(self._send(calls, deadline))

    def _open_call_for(self, span: ReadableSpan) -> WeaveCall | None:
        """Select → map → redact a span still open (not rolled up: its subtree goes on);
        None when the filter leaves it out, or its attributes changed while being read."""
        try:
            parent_id = (
                SPAN_PARENT if self._selection is None else self._selection.parent_if_exported(span)
            )
            if parent_id is LEFT_OUT:
                return None
            thread = self._threads.peek(span)
            call = span_to_call(span, self.settings.project_id, parent_id, thread=thread)
            return self._redactor.apply(call)
        except Exception:  # an app thread changing it meanwhile: its end will send it whole
            logger.debug("could not map an open span", exc_info=True)
            return None

    def _call_for(self, span: ReadableSpan) -> WeaveCall | None:
        """Select → map → redact → roll up; None for a span the filter leaves out."""
        thread = self._threads.take(span)
        content_events = self._log_join.take(span)
        parent_id = SPAN_PARENT if self._selection is None else self._selection.parent_of(span)
        if parent_id is LEFT_OUT:
            self._counter.add("log_records_unmatched", len(content_events))
            return None
        if content_events:
            self._counter.add("log_records_joined", len(content_events))
        call = span_to_call(
            span,
            self.settings.project_id,
            parent_id,
            thread=thread,
            content_events=content_events,
            conversations=self._conversations,
            # Named by its op's ref when that is known already, so that it is made and encoded
            # once: at delivery, op refs would change a call already encoded.
            op_ref=None if self._op_refs is None else self._op_refs.known_ref,
        )
        call = self._redactor.apply(call)
        # A remote parent lives in another process: nothing here will ever end it.
        return self._rollup.roll_up(call, into_parent=not (span.parent and span.parent.is_remote))

    def export_batch(self, spans: Sequence[ReadableSpan], deadline: float) -> BatchReport:
        """Map and deliver ``spans`` by ``deadline`` (the clock's ``monotonic()``).

        Never raises: a span that cannot be mapped or delivered is counted and logged.
        """
        self._counter.add("export_batches")
        # Records batched by the SDK may trail their spans by its schedule delay; bounded by
        # what is left of the deadline, halved so that delivery keeps the rest.
        self._log_join.await_records(spans, (deadline - self.clock.monotonic()) / 2)
        calls, filtered, unmappable = self._calls_for(spans)
        delivery = self._send(calls, deadline)
        self._record(delivery)
        _log_failures(delivery.failures)
        return BatchReport(len(spans), filtered, unmappable, delivery)

    def _send(self, calls: list[WeaveCall], deadline: float) -> DeliveryReport:
        """Op refs, then the ends of running calls on their own and the rest whole."""
        try:
            running: list[WeaveCall] = []
            whole: list[WeaveCall] = []
            for call in calls:
                (running if self._live.is_running(call) else whole).append(call)
            if self._op_refs is not None:
                whole = self._op_refs.apply(whole, deadline)
            ended, start_missing = self._live.send_ends(running, deadline)
            if start_missing and self._op_refs is not None:
                start_missing = self._op_refs.apply(start_missing, deadline)
            return ended + self._deliver.send(whole + start_missing, deadline)
        except Exception as error:  # the app must never see our failure
            logger.exception("Weave export failed; %d calls not delivered", len(calls))
            reason = f"not sent: {type(error).__name__}"
            return DeliveryReport.failed(calls, "(export)", PostResult(None, reason, 0))

    def _calls_for(self, spans: Sequence[ReadableSpan]) -> tuple[list[WeaveCall], int, int]:
        with self._mapping:
            try:
                return self._calls_for_unlocked(spans)
            finally:
                # What the scrubber remembers of a batch lives no longer than the batch's spans.
                self._redactor.forget_items()

    def _calls_for_unlocked(
        self, spans: Sequence[ReadableSpan]
    ) -> tuple[list[WeaveCall], int, int]:
        calls: list[WeaveCall] = []
        filtered = unmappable = 0
        last_yield = time.perf_counter()
        for span in spans:
            # Mapping is pure Python and holds the GIL. While the app is busy (it started a
            # span lately), handing the GIL over every 0.1 ms lets it run on instead of waiting
            # out the interpreter's 5 ms switch interval each time: the app's latency comes
            # first (measured, 0.5 ms made emit 0.81-0.83x stock's, 0.1 ms 0.73-0.78x, at the
            # same total time). Not while the app is idle: each sleep(0) is a real timer sleep,
            # and then waits for the GIL to come back.
            now = time.perf_counter()
            if (
                now - last_yield >= _GIL_YIELD_INTERVAL_SECONDS
                and now - self._app_busy_at < _APP_BUSY_SECONDS
            ):
                time.sleep(0)
                last_yield = time.perf_counter()
            try:
                call = self._call_for(span)
                if call is not None:
                    # Encoded here, not at delivery: a call that cannot be encoded then costs
                    # only its own span, not the batch it would have been sent in. Sealed, it
                    # waits for the request as its JSON, not as objects the GC walks.
                    call = call.sealed()
            except Exception:
                unmappable += 1
                span_id = format_span_id(span.context.span_id) if span.context else "?"
                logger.exception("Could not map span %r (%s) to a Weave call", span.name, span_id)
                continue
            if call is None:
                filtered += 1
            else:
                calls.append(call)
        self._counter.add("spans_filtered", filtered)
        self._counter.add("spans_unmappable", unmappable)
        return calls, filtered, unmappable

    def _record(self, report: DeliveryReport, delivered_as: CounterName = "calls_exported") -> None:
        add = self._counter.add
        add(delivered_as, report.delivered)
        add("calls_truncated", report.truncated)
        add("requests_retried", report.retries)
        add("batches_split", report.splits)
        for failure in report.failures:
            add(LOSS_COUNTERS[failure.kind])

    def _record_spooling(self, activity: SpoolActivity) -> None:
        self._counter.add("calls_spooled", activity.spooled)
        self._record(activity.resent, delivered_as="calls_unspooled")
        self._counter.add("calls_spool_evicted", activity.evicted)
        _log_failures(activity.resent.failures)

    def spill(self, spans: Sequence[ReadableSpan]) -> int:
        """Map ``spans`` and spool their calls unsent: the queue at a shutdown past its deadline.

        How many of ``spans`` are accounted for here (spooled, filtered or unmappable, each
        counted); the rest (all of them without a spool) are the caller's to count as dropped.
        """
        if self._spooling is None:
            return 0
        calls, filtered, unmappable = self._calls_for(spans)
        # No deadline: the export's has passed, and the spool is the last chance of these.
        fitted, truncated = self._fit_to_size.fit(calls, deadline=float("inf"))
        self._counter.add("calls_truncated", truncated)
        return self._spooling.keep(fitted) + filtered + unmappable

    def stats(self) -> ExportStats:
        # The join's own losses (records whose span never came) are the process's, not ours.
        join_losses = ExportStats(log_records_unmatched=self._log_join.unmatched)
        return self._counter.snapshot() + join_losses

    def after_fork(self) -> None:
        """Fresh connections and counters for a forked child."""
        self._http.reset_after_fork()
        self._retrying.reopen()
        self._counter = StatsCounter()
        self._live.reset()
        if self._op_refs is not None:
            self._op_refs.after_fork()
        if self._spooling is not None:
            self._spooling.after_fork()

    def close(self) -> None:
        """Stop retrying and release the connections; exports still running give up."""
        self._retrying.close()
        self._http.close()
        if self._spooling is not None:
            self._spooling.close()


def _spooling_for(
    settings: WeaveSettings,
    inner: CallSender,
    clock: Clock,
    on_activity: Callable[[SpoolActivity], None],
) -> Spooling | None:
    if settings.spool_dir is None:
        return None
    store = open_spool(settings.spool_dir, settings.spool_max_bytes)
    return None if store is None else Spooling(inner, store, clock.monotonic, on_activity)


def _selection_for(settings: WeaveSettings) -> SpanSelection | None:
    if settings.span_filter is not None:
        return SpanSelection(settings.span_filter, settings.rollup_max_pending)
    if settings.spans is SpanSet.GENAI:
        return SpanSelection(is_genai_span, settings.rollup_max_pending)
    return None  # every span: nothing to track


def _log_failures(failures: tuple[CallFailure, ...]) -> None:
    """One line per distinct answer, naming the first calls it cost, not one line per call."""
    groups: dict[tuple[str, int | None, str, LossReason], list[CallFailure]] = {}
    for failure in failures:
        key = (failure.route, failure.result.status_code, failure.result.reason, failure.kind)
        groups.setdefault(key, []).append(failure)
    for (route, status_code, reason, kind), group in groups.items():
        spans = ", ".join(
            f"{failure.call.op_name!r} ({failure.call.id})" for failure in group[:_NAMED_CALLS]
        )
        more = f" and {len(group) - _NAMED_CALLS} more" if len(group) > _NAMED_CALLS else ""
        answer = "no answer" if status_code is None else f"HTTP {status_code}"
        if kind is LossReason.UNDELIVERABLE:
            level = logging.WARNING
            template = "Weave did not take %d call(s) at %s (%s: %s): %s%s"
        else:
            level = logging.ERROR
            template = "Weave refused %d call(s) at %s with %s (final, not retried): %s: %s%s"
        logger.log(level, template, len(group), route, answer, reason, spans, more)
