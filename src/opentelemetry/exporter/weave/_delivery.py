"""Delivering mapped calls with the v1 routes: ``/call/start``, then ``/call/end``, per call."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
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
    transport's single connection pool.
    """

    def __init__(self, transport: WeaveTransport, max_concurrency: int) -> None:
        self._transport = transport
        self._max_concurrency = max_concurrency
        self._executor = self._new_executor()

    def _new_executor(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(self._max_concurrency, thread_name_prefix="weave-export")

    def reset_after_fork(self) -> None:
        """The parent's pool threads do not exist in a forked child: start a fresh pool."""
        self._executor = self._new_executor()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def deliver(self, calls: Sequence[WeaveCall], deadline: float) -> DeliveryReport:
        futures = {self._executor.submit(self._deliver_one, call, deadline): call for call in calls}
        done, not_done = wait(futures, timeout=max(0.0, deadline - time.monotonic()))
        failures: list[CallFailure] = []
        for future in not_done:
            future.cancel()
            call = futures[future]
            failures.append(
                _failure(call, CALL_START_ROUTE, PostResult(None, "export deadline reached", 0))
            )
        for future in done:
            error = future.exception()
            if error is not None:  # a bug of ours must cost this call only, not the batch
                result = PostResult(None, f"not sent: {type(error).__name__}: {error}", 0)
                failures.append(_failure(futures[future], CALL_START_ROUTE, result))
            elif (failure := future.result()) is not None:
                failures.append(failure)
        return DeliveryReport(delivered=len(calls) - len(failures), failures=tuple(failures))

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
