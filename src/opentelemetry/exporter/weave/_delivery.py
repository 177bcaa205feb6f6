"""Delivering mapped calls in each write mode, within the size limit and the deadline.

- ``call_end``: ``POST /call/start`` then, once it succeeded, ``POST /call/end``, per call,
  calls of a batch concurrently.
- ``upsert_batch``: ``POST /call/upsert_batch``, the starts of a chunk before its ends.
- ``calls_complete``: ``POST /v2/{entity}/{project}/calls/complete``, whole calls.
- ``auto``: ``call_end`` until the service answers ``CALLS_COMPLETE_MODE_REQUIRED``, then
  ``calls_complete`` for good, re-sending what was refused.

Batched modes pack calls into requests under the size limit, halve a request refused with 413
(too large) or 422 (a bad item), and drop only a single call that is still refused.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import Enum
from urllib.parse import quote

from pydantic import BaseModel

from opentelemetry.exporter.weave._config import WeaveSettings, WriteMode
from opentelemetry.exporter.weave._mapping import WeaveCall
from opentelemetry.exporter.weave._size import EncodedCall, fit_call
from opentelemetry.exporter.weave._transport import PostResult, WeaveTransport, is_retryable_status

__all__ = [
    "CALLS_COMPLETE_MODE_REQUIRED",
    "CallFailure",
    "Delivery",
    "DeliveryReport",
    "FailureKind",
    "delivery_for",
]

logger = logging.getLogger("opentelemetry.exporter.weave")

CALL_START_ROUTE = "/call/start"
CALL_END_ROUTE = "/call/end"
UPSERT_BATCH_ROUTE = "/call/upsert_batch"
CALLS_COMPLETE_MODE_REQUIRED = "CALLS_COMPLETE_MODE_REQUIRED"
# Room for the request envelope around the calls: `{"batch":[`, commas, `]}`.
_ENVELOPE_BYTES = 1024


class FailureKind(str, Enum):
    REJECTED = "rejected"
    TOO_LARGE = "too_large"
    UNDELIVERABLE = "undeliverable"


@dataclass(frozen=True)
class CallFailure:
    """A call that did not reach the service, and the answer that ended its delivery."""

    call: WeaveCall
    route: str
    result: PostResult

    @property
    def kind(self) -> FailureKind:
        status = self.result.status_code
        if status == 413:
            return FailureKind.TOO_LARGE
        if status is not None and not is_retryable_status(status):
            return FailureKind.REJECTED
        return FailureKind.UNDELIVERABLE


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


def _json(model: BaseModel, exclude: set[str] | None = None) -> bytes:
    return model.__pydantic_serializer__.to_json(model, exclude=exclude)


class Delivery(ABC):
    """One write mode."""

    @abstractmethod
    def deliver(self, calls: Sequence[WeaveCall], deadline: float) -> DeliveryReport:
        """Send ``calls`` until done or ``deadline`` (``time.monotonic()``); never raises."""


class _SizedDelivery(Delivery):
    """A mode that sends its own encoding of each call, cut to fit the size limit."""

    def __init__(self, transport: WeaveTransport, settings: WeaveSettings) -> None:
        self._transport = transport
        self._settings = settings
        self._budget = settings.max_request_bytes - _ENVELOPE_BYTES

    @abstractmethod
    def encode(self, call: WeaveCall) -> tuple[bytes, ...]:
        """The JSON parts this mode sends for ``call``."""

    @abstractmethod
    def _send(self, calls: list[EncodedCall], deadline: float) -> DeliveryReport:
        """Send encoded calls, none over the size budget."""

    def deliver(self, calls: Sequence[WeaveCall], deadline: float) -> DeliveryReport:
        encoded = [fit_call(call, self.encode, self._budget) for call in calls]
        truncated = sum(1 for item in encoded if item.truncated_fields)
        return self._send(encoded, deadline) + DeliveryReport(truncated=truncated)


class CallEndDelivery(_SizedDelivery):
    """Each call's start, then (only once the start succeeded) its end.

    The calls of a batch go out concurrently, at most ``max_concurrency`` at a time, over the
    transport's single connection pool. Plain threads, not ``concurrent.futures``: its pools
    refuse work once the interpreter starts exiting, which is exactly when the last spans are
    flushed.
    """

    def encode(self, call: WeaveCall) -> tuple[bytes, ...]:
        return (
            b'{"start":' + _json(call.start) + b"}",
            b'{"end":' + _json(call.end) + b"}",
        )

    def _send(self, calls: list[EncodedCall], deadline: float) -> DeliveryReport:
        pending = deque(enumerate(calls))
        reports: dict[int, DeliveryReport] = {}

        def drain() -> None:
            while True:
                try:
                    index, call = pending.popleft()
                except IndexError:
                    return
                reports[index] = self._send_guarded(call, deadline)

        senders = [
            threading.Thread(target=drain, name="weave-export", daemon=True)
            for _ in range(min(self._settings.max_concurrency, len(calls)))
        ]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(max(0.0, deadline - time.monotonic()))
        total = DeliveryReport()
        late = PostResult(None, "export deadline reached", 0)
        for index, call in enumerate(calls):
            total += reports.get(index) or _failed([call], CALL_START_ROUTE, late)
        return total

    def _send_guarded(self, call: EncodedCall, deadline: float) -> DeliveryReport:
        try:
            return self._send_one(call, deadline)
        except Exception as error:  # a bug of ours must cost this call only, not the batch
            result = PostResult(None, f"not sent: {type(error).__name__}: {error}", 0)
            return _failed([call], CALL_START_ROUTE, result)

    def _send_one(self, call: EncodedCall, deadline: float) -> DeliveryReport:
        start_body, end_body = call.parts
        started = self._transport.post(CALL_START_ROUTE, start_body, deadline)
        if not started.ok:
            return _failed([call], CALL_START_ROUTE, started)
        ended = self._transport.post(CALL_END_ROUTE, end_body, deadline)
        if not ended.ok:
            return _failed([call], CALL_END_ROUTE, ended) + DeliveryReport(
                retries=_retries(started)
            )
        return DeliveryReport(delivered=1, retries=_retries(started) + _retries(ended))


class _BatchDelivery(_SizedDelivery):
    """Many calls per request: packed under the size limit, halved on 413 and 422."""

    def __init__(self, transport: WeaveTransport, settings: WeaveSettings, route: str) -> None:
        super().__init__(transport, settings)
        self.route = route

    @abstractmethod
    def _body(self, calls: list[EncodedCall]) -> bytes: ...

    def _send(self, calls: list[EncodedCall], deadline: float) -> DeliveryReport:
        report = DeliveryReport()
        for chunk in _packed(calls, self._budget):
            report += self._send_chunk(chunk, deadline)
        return report

    def _send_chunk(self, chunk: list[EncodedCall], deadline: float) -> DeliveryReport:
        result = self._transport.post(self.route, self._body(chunk), deadline)
        if result.ok:
            return DeliveryReport(delivered=len(chunk), retries=_retries(result))
        if result.status_code in (413, 422) and len(chunk) > 1:
            middle = len(chunk) // 2
            return (
                DeliveryReport(splits=1, retries=_retries(result))
                + self._send_chunk(chunk[:middle], deadline)
                + self._send_chunk(chunk[middle:], deadline)
            )
        return _failed(chunk, self.route, result)


class UpsertBatchDelivery(_BatchDelivery):
    def __init__(self, transport: WeaveTransport, settings: WeaveSettings) -> None:
        super().__init__(transport, settings, UPSERT_BATCH_ROUTE)

    def encode(self, call: WeaveCall) -> tuple[bytes, ...]:
        return (
            b'{"mode":"start","req":{"start":' + _json(call.start) + b"}}",
            b'{"mode":"end","req":{"end":' + _json(call.end) + b"}}",
        )

    def _body(self, calls: list[EncodedCall]) -> bytes:
        starts = [call.parts[0] for call in calls]
        ends = [call.parts[1] for call in calls]
        return b'{"batch":[' + b",".join(starts + ends) + b"]}"


class CallsCompleteDelivery(_BatchDelivery):
    def __init__(self, transport: WeaveTransport, settings: WeaveSettings) -> None:
        entity, project = quote(settings.entity, safe=""), quote(settings.project, safe="")
        super().__init__(transport, settings, f"/v2/{entity}/{project}/calls/complete")

    def encode(self, call: WeaveCall) -> tuple[bytes, ...]:
        # A complete call is the start's fields and the end's, each named once.
        start = _json(call.start)
        end = _json(call.end, exclude={"project_id", "id", "started_at"})
        return (start[:-1] + b"," + end[1:],)

    def _body(self, calls: list[EncodedCall]) -> bytes:
        return b'{"batch":[' + b",".join(call.parts[0] for call in calls) + b"]}"


class AutoDelivery(Delivery):
    """``call_end`` until the project asks for ``calls_complete``; then that, for good."""

    def __init__(self, transport: WeaveTransport, settings: WeaveSettings) -> None:
        self._project_id = settings.project_id
        self._v1 = CallEndDelivery(transport, settings)
        self._v2 = CallsCompleteDelivery(transport, settings)
        self._upgraded = threading.Event()

    @property
    def upgraded(self) -> bool:
        return self._upgraded.is_set()

    def deliver(self, calls: Sequence[WeaveCall], deadline: float) -> DeliveryReport:
        if self.upgraded:
            return self._v2.deliver(calls, deadline)
        report = self._v1.deliver(calls, deadline)
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
                "Weave project %s accepts only complete calls (HTTP 400 %s on %s): this exporter "
                "now writes with POST %s and re-sends the %d call(s) refused",
                self._project_id,
                CALLS_COMPLETE_MODE_REQUIRED,
                refused[0].route,
                self._v2.route,
                len(refused),
            )
        resent = self._v2.deliver([failure.call for failure in refused], deadline)
        return replace(report, failures=tuple(kept)) + resent


def delivery_for(transport: WeaveTransport, settings: WeaveSettings) -> Delivery:
    modes: dict[WriteMode, Callable[[WeaveTransport, WeaveSettings], Delivery]] = {
        WriteMode.AUTO: AutoDelivery,
        WriteMode.CALL_END: CallEndDelivery,
        WriteMode.UPSERT_BATCH: UpsertBatchDelivery,
        WriteMode.CALLS_COMPLETE: CallsCompleteDelivery,
    }
    return modes[settings.write_mode](transport, settings)


def _packed(calls: list[EncodedCall], budget: int) -> list[list[EncodedCall]]:
    """Consecutive chunks of calls, each within ``budget`` bytes (one call per chunk at least)."""
    chunks: list[list[EncodedCall]] = []
    chunk: list[EncodedCall] = []
    size = 0
    for call in calls:
        item_size = call.size + len(call.parts)  # with its commas
        if chunk and size + item_size > budget:
            chunks.append(chunk)
            chunk, size = [], 0
        chunk.append(call)
        size += item_size
    if chunk:
        chunks.append(chunk)
    return chunks


def _retries(result: PostResult) -> int:
    return max(0, result.attempts - 1)


def _failed(calls: Sequence[EncodedCall], route: str, result: PostResult) -> DeliveryReport:
    failures = tuple(CallFailure(call.call, route, result) for call in calls)
    return DeliveryReport(failures=failures, retries=_retries(result))
