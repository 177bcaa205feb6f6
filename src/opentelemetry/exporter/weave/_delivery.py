"""Delivering calls: one small ``send`` protocol, one class per concern.

Each stage is a :class:`CallSender` that wraps the next, so each can be tested alone with a
fake inner sender. The write modes are made of them (``write_mode_for``):

- ``call_end``: :class:`CallEndWriter`, ``POST /call/start`` then, once it succeeded,
  ``POST /call/end``, per call, calls of a batch concurrently as the service's latency asks.
- ``upsert_batch`` and ``calls_complete``: :class:`Packing` into requests under the size limit,
  each sent by :class:`SplitOnRefusal`, which halves a request refused with 413 (too large) or
  422 (a bad item) so that only a call still refused alone is lost.
- ``auto``: :class:`AutoUpgrade`, ``call_end`` until the service answers
  ``CALLS_COMPLETE_MODE_REQUIRED``, then ``calls_complete`` for good, re-sending what was refused.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from opentelemetry.exporter.weave._call import (
    CALL_END_ROUTE,
    CALL_START_ROUTE,
    CALLS_COMPLETE_MODE_REQUIRED,
    UPSERT_BATCH_ROUTE,
    WeaveCall,
    call_end_body,
    call_start_body,
    calls_complete_body,
    calls_complete_route,
    upsert_batch_body,
)
from opentelemetry.exporter.weave._config import WeaveSettings, WriteMode
from opentelemetry.exporter.weave._stats import LossReason
from opentelemetry.exporter.weave._transport import PostResult, is_retryable_status

__all__ = [
    "AutoUpgrade",
    "CallEndWriter",
    "CallFailure",
    "CallSender",
    "DeliveryReport",
    "Packing",
    "Poster",
    "SplitOnRefusal",
    "write_mode_for",
]

logger = logging.getLogger(__package__)


@dataclass(frozen=True)
class CallFailure:
    """A call that did not reach the service, and the answer that ended its delivery."""

    call: WeaveCall
    route: str
    result: PostResult

    @property
    def kind(self) -> LossReason:
        status = self.result.status_code
        if status == 413:
            return LossReason.TOO_LARGE
        if status is not None and not is_retryable_status(status):
            return LossReason.REJECTED
        return LossReason.UNDELIVERABLE


@dataclass(frozen=True)
class DeliveryReport:
    delivered: int = 0
    failures: tuple[CallFailure, ...] = ()
    truncated: int = 0
    retries: int = 0
    splits: int = 0

    def __add__(self, other: DeliveryReport) -> DeliveryReport:
        return DeliveryReport(
            delivered=self.delivered + other.delivered,
            failures=self.failures + other.failures,
            truncated=self.truncated + other.truncated,
            retries=self.retries + other.retries,
            splits=self.splits + other.splits,
        )

    @staticmethod
    def failed(calls: Sequence[WeaveCall], route: str, result: PostResult) -> DeliveryReport:
        failures = tuple(CallFailure(call, route, result) for call in calls)
        return DeliveryReport(failures=failures, retries=_retries(result))


class CallSender(Protocol):
    def send(self, calls: Sequence[WeaveCall], deadline: float) -> DeliveryReport:
        """Deliver ``calls`` until done or ``deadline``; never raises."""
        ...


class Poster(Protocol):
    def post(self, path: str, body: bytes, deadline: float) -> PostResult:
        """POST until done or ``deadline``."""
        ...


_SLOW_CALL_SECONDS = 0.002
"""How long a call may be on its way before another sender starts beside it: past this, its
sender waits (on the network, the service, a retry's backoff) more than it works. A service
that answers sooner is served by one sender as fast as by many, for a fraction of the CPU
(measured on loopback: 492 µs per call with one sender, 837 with eight contending for the
GIL: ``benchmarks/profile_hot_paths.py``)."""


class CallEndWriter:
    """Each call's start, then (only once the start succeeded) its end.

    The calls of a batch go out concurrently, at most ``max_concurrency`` at a time, as many as
    the service's latency asks for: one sender first, another whenever a call has been on its
    way for ``_SLOW_CALL_SECONDS``. Plain threads, not ``concurrent.futures``: its pools refuse
    work once the interpreter starts exiting, which is exactly when the last spans are flushed.
    ``wall`` times the calls on their way (a real clock: it paces senders, not deadlines).
    """

    def __init__(
        self,
        poster: Poster,
        max_concurrency: int,
        monotonic: Callable[[], float],
        wall: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._poster = poster
        self._max_concurrency = max_concurrency
        self._monotonic = monotonic
        self._wall = wall

    def send(self, calls: Sequence[WeaveCall], deadline: float) -> DeliveryReport:
        senders = _Senders(calls, lambda call: self._send_guarded(call, deadline), self._wall)
        width = min(self._max_concurrency, len(calls))
        if width:
            senders.start()  # if even one cannot start, nothing is sent: the caller reports it
        while width:
            left = deadline - self._monotonic()
            may_grow = senders.started < width and senders.pending
            # Once no sender is to start, the senders are waited for in one wait, not looked at.
            if left <= 0 or senders.all_sent.wait(
                min(left, _SLOW_CALL_SECONDS) if may_grow else left
            ):
                break
            if may_grow and senders.one_is_slow():
                try:
                    senders.start()
                except RuntimeError:
                    width = senders.started - 1  # those running send the rest
        total = DeliveryReport()
        late = PostResult(None, "export deadline reached", attempts=0)
        for index, call in enumerate(calls):
            total += senders.reports.get(index) or DeliveryReport.failed(
                [call], CALL_START_ROUTE, late
            )
        return total

    def _send_guarded(self, call: WeaveCall, deadline: float) -> DeliveryReport:
        try:
            return self._send_one(call, deadline)
        except Exception as error:  # a bug of ours must cost this call only, not the batch
            result = PostResult(None, f"not sent: {type(error).__name__}: {error}", attempts=0)
            return DeliveryReport.failed([call], CALL_START_ROUTE, result)

    def _send_one(self, call: WeaveCall, deadline: float) -> DeliveryReport:
        started = self._poster.post(CALL_START_ROUTE, call_start_body(call), deadline)
        if not started.ok:
            return DeliveryReport.failed([call], CALL_START_ROUTE, started)
        ended = self._poster.post(CALL_END_ROUTE, call_end_body(call), deadline)
        if not ended.ok:
            return DeliveryReport.failed([call], CALL_END_ROUTE, ended) + DeliveryReport(
                retries=_retries(started)
            )
        return DeliveryReport(delivered=1, retries=_retries(started) + _retries(ended))


class _Senders:
    """The sender threads of one batch, started one at a time, each sending calls of the batch
    until none is left; ``all_sent`` is set once every sender started has ended."""

    def __init__(
        self,
        calls: Sequence[WeaveCall],
        send_one: Callable[[WeaveCall], DeliveryReport],
        wall: Callable[[], float],
    ) -> None:
        self.pending = deque(enumerate(calls))
        self.reports: dict[int, DeliveryReport] = {}
        self.started = 0
        self.all_sent = threading.Event()
        self._send_one = send_one
        self._wall = wall
        self._under_way: dict[int, float] = {}
        """Sender → when the call it is sending began."""
        self._running = 0  # under _lock
        self._lock = threading.Lock()

    def start(self) -> None:
        """One more sender; ``RuntimeError`` if no thread can be had (the interpreter exiting,
        a limit)."""
        with self._lock:  # counted before it runs, so that it cannot end uncounted
            self._running += 1
            self.started += 1
        thread = threading.Thread(target=self._drain, args=(self.started,), name="weave-export")
        thread.daemon = True
        try:
            thread.start()
        except RuntimeError:
            self._ended()
            raise

    def one_is_slow(self) -> bool:
        """Whether a call has been on its way for ``_SLOW_CALL_SECONDS``."""
        now = self._wall()
        # A copy made in C: the senders change the dict meanwhile.
        return any(now - began >= _SLOW_CALL_SECONDS for began in list(self._under_way.values()))

    def _drain(self, sender: int) -> None:
        try:
            while True:
                try:
                    index, call = self.pending.popleft()
                except IndexError:
                    return
                self._under_way[sender] = self._wall()
                self.reports[index] = self._send_one(call)
                del self._under_way[sender]
        finally:
            self._ended()

    def _ended(self) -> None:
        with self._lock:
            self._running -= 1
            if not self._running:
                self.all_sent.set()


class SplitOnRefusal:
    """Many calls in one request to ``route``; a request refused with 413 or 422 is halved."""

    def __init__(
        self, poster: Poster, route: str, body: Callable[[Sequence[WeaveCall]], bytes]
    ) -> None:
        self.route = route
        self._poster = poster
        self._body = body

    def send(self, calls: Sequence[WeaveCall], deadline: float) -> DeliveryReport:
        if not calls:
            return DeliveryReport()
        result = self._poster.post(self.route, self._body(calls), deadline)
        if result.ok:
            return DeliveryReport(delivered=len(calls), retries=_retries(result))
        if result.status_code in (413, 422) and len(calls) > 1:
            middle = len(calls) // 2
            return (
                DeliveryReport(splits=1, retries=_retries(result))
                + self.send(calls[:middle], deadline)
                + self.send(calls[middle:], deadline)
            )
        return DeliveryReport.failed(calls, self.route, result)


class Packing:
    """Consecutive calls in requests of at most ``budget`` bytes (one call per request at least)."""

    def __init__(self, inner: CallSender, budget: int) -> None:
        self._inner = inner
        self._budget = budget

    def send(self, calls: Sequence[WeaveCall], deadline: float) -> DeliveryReport:
        report = DeliveryReport()
        for chunk in self.chunks(calls):
            report += self._inner.send(chunk, deadline)
        return report

    def chunks(self, calls: Sequence[WeaveCall]) -> list[list[WeaveCall]]:
        chunks: list[list[WeaveCall]] = []
        chunk: list[WeaveCall] = []
        size = 0
        for call in calls:
            if chunk and size + call.encoded_size > self._budget:
                chunks.append(chunk)
                chunk, size = [], 0
            chunk.append(call)
            size += call.encoded_size
        if chunk:
            chunks.append(chunk)
        return chunks


class AutoUpgrade:
    """``v1`` until the project asks for complete calls; then ``v2``, for good."""

    def __init__(self, v1: CallSender, v2: CallSender, describe_v2: str) -> None:
        self._v1 = v1
        self._v2 = v2
        self._describe_v2 = describe_v2
        self._upgraded = threading.Event()

    @property
    def upgraded(self) -> bool:
        return self._upgraded.is_set()

    def send(self, calls: Sequence[WeaveCall], deadline: float) -> DeliveryReport:
        if self.upgraded:
            return self._v2.send(calls, deadline)
        report = self._v1.send(calls, deadline)
        refused: list[CallFailure] = []
        kept: list[CallFailure] = []
        for failure in report.failures:
            needs_v2 = failure.result.error_code == CALLS_COMPLETE_MODE_REQUIRED
            (refused if needs_v2 else kept).append(failure)
        if not refused:
            return report
        if not self._upgraded.is_set():
            self._upgraded.set()
            logger.info(
                "Weave project accepts only complete calls (HTTP 400 %s on %s): this exporter "
                "now writes with %s and re-sends the %d call(s) refused",
                CALLS_COMPLETE_MODE_REQUIRED,
                refused[0].route,
                self._describe_v2,
                len(refused),
            )
        resent = self._v2.send([failure.call for failure in refused], deadline)
        return replace(report, failures=tuple(kept)) + resent


def write_mode_for(
    settings: WeaveSettings, poster: Poster, budget: int, monotonic: Callable[[], float]
) -> CallSender:
    """The write mode's senders, down to (not including) the poster."""
    mode = settings.write_mode
    if mode is WriteMode.CALL_END:
        return CallEndWriter(poster, settings.max_concurrency, monotonic)
    if mode is WriteMode.UPSERT_BATCH:
        return Packing(SplitOnRefusal(poster, UPSERT_BATCH_ROUTE, upsert_batch_body), budget)
    v2_route = calls_complete_route(settings.entity, settings.project)
    calls_complete = Packing(SplitOnRefusal(poster, v2_route, calls_complete_body), budget)
    if mode is WriteMode.CALLS_COMPLETE:
        return calls_complete
    return AutoUpgrade(
        CallEndWriter(poster, settings.max_concurrency, monotonic),
        calls_complete,
        f"POST {v2_route} ({settings.project_id})",
    )


def _retries(result: PostResult) -> int:
    return max(0, result.attempts - 1)
