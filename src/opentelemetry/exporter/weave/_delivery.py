"""Delivering mapped calls with the v1 routes: ``/call/start``, then ``/call/end``, per call."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry.exporter.weave._mapping import WeaveCall
from opentelemetry.exporter.weave._models import CallEndReq, CallStartReq
from opentelemetry.exporter.weave._transport import PostResult, WeaveTransport

__all__ = ["CALL_END_ROUTE", "CALL_START_ROUTE", "CallEndDelivery", "CallFailure", "DeliveryReport"]

CALL_START_ROUTE = "/call/start"
CALL_END_ROUTE = "/call/end"


@dataclass(frozen=True)
class CallFailure:
    """A call that did not reach the service, and the answer that ended its delivery."""

    span_id: str
    op_name: str
    route: str
    result: PostResult


@dataclass(frozen=True)
class DeliveryReport:
    delivered: int
    failures: tuple[CallFailure, ...] = ()


class CallEndDelivery:
    """Sends each call's start, then (only once the start succeeded) its end.

    The calls of a batch go out concurrently, at most ``max_concurrency`` at a time, over the
    transport's single connection pool. Plain threads, not ``concurrent.futures``: its pools
    refuse work once the interpreter starts exiting, which is exactly when the last spans are
    flushed.
    """

    def __init__(self, transport: WeaveTransport, max_concurrency: int) -> None:
        self._transport = transport
        self._max_concurrency = max_concurrency

    def deliver(self, calls: Sequence[WeaveCall], deadline: float) -> DeliveryReport:
        pending = deque(enumerate(calls))
        outcomes: dict[int, CallFailure | None] = {}

        def drain() -> None:
            while True:
                try:
                    index, call = pending.popleft()
                except IndexError:
                    return
                outcomes[index] = self._deliver_guarded(call, deadline)

        senders = [
            threading.Thread(target=drain, name="weave-export", daemon=True)
            for _ in range(min(self._max_concurrency, len(calls)))
        ]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(max(0.0, deadline - time.monotonic()))
        failures: list[CallFailure] = []
        for index, call in enumerate(calls):
            if index not in outcomes:
                late = PostResult(None, "export deadline reached", 0)
                failures.append(_failure(call, CALL_START_ROUTE, late))
            elif (failure := outcomes[index]) is not None:
                failures.append(failure)
        return DeliveryReport(delivered=len(calls) - len(failures), failures=tuple(failures))

    def _deliver_guarded(self, call: WeaveCall, deadline: float) -> CallFailure | None:
        try:
            return self._deliver_one(call, deadline)
        except Exception as error:  # a bug of ours must cost this call only, not the batch
            result = PostResult(None, f"not sent: {type(error).__name__}: {error}", 0)
            return _failure(call, CALL_START_ROUTE, result)

    def _deliver_one(self, call: WeaveCall, deadline: float) -> CallFailure | None:
        start_body = CallStartReq(start=call.start).model_dump_json().encode()
        started = self._transport.post(CALL_START_ROUTE, start_body, deadline)
        if not started.ok:
            return _failure(call, CALL_START_ROUTE, started)
        end_body = CallEndReq(end=call.end).model_dump_json().encode()
        ended = self._transport.post(CALL_END_ROUTE, end_body, deadline)
        return None if ended.ok else _failure(call, CALL_END_ROUTE, ended)


def _failure(call: WeaveCall, route: str, result: PostResult) -> CallFailure:
    return CallFailure(call.start.id, call.start.op_name, route, result)
