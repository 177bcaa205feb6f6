"""Retrying one-attempt posts until success, a final answer, or the deadline.

Backoff is exponential with full jitter, as Weave's own SDK retries; a ``Retry-After`` answer
is waited out (up to a cap) instead. Every retry of a request carries the same
``X-Weave-Retry-Id``, so the service can drop a duplicate of a request whose answer was lost.
Time comes from a :class:`Clock`, so tests can run a whole retry schedule without sleeping.
"""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from opentelemetry.exporter.weave._transport import PostResult

__all__ = ["SYSTEM_CLOCK", "Clock", "RetryPolicy", "Retrying"]

RETRY_ID_HEADER = "X-Weave-Retry-Id"


class OneAttempt(Protocol):
    def post(
        self, path: str, body: bytes, timeout: float, headers: Mapping[str, str]
    ) -> PostResult:
        """Send once, giving up after ``timeout`` seconds."""
        ...


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wait(self, seconds: float, interrupt: threading.Event) -> bool:
        """Wait ``seconds`` or until ``interrupt`` is set; whether it was set."""
        ...


class _SystemClock:
    # The C function itself, not a Python call around it: read at every span's start.
    monotonic = staticmethod(time.monotonic)

    def wait(self, seconds: float, interrupt: threading.Event) -> bool:
        return interrupt.wait(seconds)


SYSTEM_CLOCK: Clock = _SystemClock()


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, as Weave's own SDK retries."""

    initial_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 8.0
    max_retry_after_seconds: float = 60.0

    def backoff(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (0 for the first retry)."""
        ceiling = min(self.max_backoff_seconds, self.initial_backoff_seconds * 2**retry)
        return random.uniform(ceiling / 2, ceiling)

    def delay(self, retry: int, result: PostResult) -> float:
        """The service's ``Retry-After`` (capped) if it is a sane wait, else the backoff.

        A wait of zero, less, NaN or infinity is no wait at all: taken, it would turn retries
        into a tight loop against a service that is already failing.
        """
        wait = result.retry_after
        if wait is None or not math.isfinite(wait) or wait <= 0:
            return self.backoff(retry)
        return min(wait, self.max_retry_after_seconds)


class Retrying:
    """Posts with retries until success, a final answer, ``deadline``, or :meth:`close`."""

    def __init__(
        self,
        attempt: OneAttempt,
        policy: RetryPolicy | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._attempt = attempt
        self._policy = policy or RetryPolicy()
        self._clock = clock
        self._closed = threading.Event()

    def close(self) -> None:
        """Stop retrying: pending waits end now, and no request starts another attempt."""
        self._closed.set()

    def reopen(self) -> None:
        """Retry again (a forked child starts with a pipeline of its own)."""
        self._closed = threading.Event()

    def post(self, path: str, body: bytes, deadline: float) -> PostResult:
        """POST ``body`` to ``path`` until done or ``deadline`` (this clock's ``monotonic()``)."""
        headers: dict[str, str] = {}
        result = PostResult(None, "export deadline reached before a try", attempts=0)
        attempts = 0
        while True:
            remaining = deadline - self._clock.monotonic()
            if self._closed.is_set() and attempts == 0:
                return PostResult(None, "the exporter was shut down before a try", attempts=0)
            if remaining <= 0 or self._closed.is_set():
                return result  # the last answer is the reason that matters
            attempts += 1
            result = self._attempt.post(path, body, remaining, headers)
            if result.attempts != attempts:  # a first attempt's result is already right
                result = replace(result, attempts=attempts)
            if result.ok or not result.retryable:
                return result
            if attempts == 1:  # the same id on every retry lets the service drop duplicates
                headers = {RETRY_ID_HEADER: uuid.uuid4().hex}
            delay = self._policy.delay(attempts - 1, result)
            if self._clock.monotonic() + delay >= deadline:
                return result
            if self._clock.wait(delay, self._closed):
                return result
