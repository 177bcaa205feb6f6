"""Retrying one-attempt posts: which answers are retried, what is waited, when it stops.

A scripted attempt stands in for HTTP and a fake clock for time: no sockets, no sleeps.
"""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass, field

import pytest

from opentelemetry.exporter.weave._retry import RETRY_ID_HEADER, Retrying, RetryPolicy
from opentelemetry.exporter.weave._transport import PostResult

from .helpers import NO_WAIT_RETRIES, FakeClock, ScriptedAttempt, http_error

PATH = "/call/start"
BODY = b'{"start": {}}'
DEADLINE_SECONDS = 600.0
CONNECTION_REFUSED = PostResult(
    None, "ConnectError: [Errno 111] Connection refused", retryable=True
)
UNTRUSTED_CERTIFICATE = PostResult(
    None,
    "ConnectError: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed",
    retryable=False,
)


@dataclass
class Rig:
    """A ``Retrying`` over a scripted attempt, on a fake clock."""

    clock: FakeClock
    attempt: ScriptedAttempt
    retrying: Retrying = field(init=False)
    policy: RetryPolicy | None = None

    def __post_init__(self) -> None:
        self.retrying = Retrying(self.attempt, self.policy, self.clock)

    def post(self, seconds: float = DEADLINE_SECONDS) -> PostResult:
        return self.retrying.post(PATH, BODY, self.clock.monotonic() + seconds)

    def sent(self) -> list[tuple[str, bytes]]:
        return [(path, body) for path, body, _, _ in self.attempt.attempts]

    def timeouts(self) -> list[float]:
        return [timeout for _, _, timeout, _ in self.attempt.attempts]

    def retry_ids(self) -> list[str | None]:
        return [headers.get(RETRY_ID_HEADER) for _, _, _, headers in self.attempt.attempts]


def rig(
    *script: PostResult, policy: RetryPolicy | None = None, seconds_per_attempt: float = 0.0
) -> Rig:
    clock = FakeClock()
    attempt = ScriptedAttempt(list(script), clock, seconds_per_attempt)
    return Rig(clock, attempt, policy)


def test_an_accepted_first_attempt_is_the_answer() -> None:
    retrier = rig()
    result = retrier.post()
    assert result.ok
    assert result.attempts == 1
    assert retrier.attempt.attempts == [(PATH, BODY, DEADLINE_SECONDS, {})]  # no retry id
    assert retrier.clock.waits == []


@pytest.mark.parametrize(
    "failures",
    [
        [http_error(503), http_error(502), http_error(500)],
        [http_error(408)],
        [http_error(409)],
        [http_error(429)],
        [http_error(504)],
        [CONNECTION_REFUSED],
    ],
    ids=["503-502-500", "408", "409", "429", "504", "connection-refused"],
)
def test_retryable_answers_are_retried_until_accepted(failures: list[PostResult]) -> None:
    retrier = rig(*failures)
    result = retrier.post()
    assert result.ok
    assert result.attempts == len(failures) + 1
    assert retrier.sent() == [(PATH, BODY)] * (len(failures) + 1)  # the same request again
    assert len(retrier.clock.waits) == len(failures)  # a wait before each retry


@pytest.mark.parametrize(
    "answer",
    [
        http_error(400, "op_name too long"),
        http_error(401, "bad key"),
        http_error(403, "project is read-only"),
        http_error(404, "no such route"),
        http_error(413, "too large"),
        http_error(422, "bad item"),
        UNTRUSTED_CERTIFICATE,
    ],
    ids=["400", "401", "403", "404", "413", "422", "untrusted-certificate"],
)
def test_a_final_answer_ends_the_request_after_one_attempt(answer: PostResult) -> None:
    retrier = rig(answer)
    result = retrier.post()
    assert result == answer  # status, reason and all, after attempts=1
    assert len(retrier.attempt.attempts) == 1
    assert retrier.clock.waits == []


# A policy, and the ceiling of the wait before each of eight retries.
SCHEDULES = [
    (RetryPolicy(), [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0]),
    (
        RetryPolicy(initial_backoff_seconds=0.1, max_backoff_seconds=0.3),
        [0.1, 0.2, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3],
    ),
]


@pytest.mark.parametrize(("policy", "ceilings"), SCHEDULES, ids=["default", "custom"])
def test_each_backoff_is_drawn_between_half_its_ceiling_and_the_ceiling(
    policy: RetryPolicy, ceilings: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[tuple[float, float]] = []

    def highest(low: float, high: float) -> float:
        drawn.append((low, high))
        return high

    monkeypatch.setattr(random, "uniform", highest)
    retrier = rig(*[http_error(503)] * len(ceilings), policy=policy)
    assert retrier.post().attempts == len(ceilings) + 1
    assert drawn == [(ceiling / 2, ceiling) for ceiling in ceilings]
    assert retrier.clock.waits == ceilings


@pytest.mark.parametrize(("policy", "ceilings"), SCHEDULES, ids=["default", "custom"])
def test_backoff_waits_are_jittered_within_their_bounds(
    policy: RetryPolicy, ceilings: list[float]
) -> None:
    retrier = rig(*[http_error(503)] * len(ceilings), policy=policy)
    retrier.post()
    waits = retrier.clock.waits
    assert len(waits) == len(ceilings)
    assert all(c / 2 <= wait <= c for wait, c in zip(waits, ceilings, strict=True)), waits
    assert waits != ceilings  # drawn, not the ceiling every time


@pytest.mark.parametrize(
    ("asked", "policy", "waited"),
    [
        (7.0, RetryPolicy(), 7.0),
        (600.0, RetryPolicy(), 60.0),  # capped at 60 s by default
        (600.0, RetryPolicy(max_retry_after_seconds=5.0), 5.0),
    ],
    ids=["asked", "capped-by-default", "capped-by-policy"],
)
def test_retry_after_is_waited_instead_of_the_backoff(
    asked: float, policy: RetryPolicy, waited: float
) -> None:
    retrier = rig(http_error(429, "slow down", retry_after=asked), policy=policy)
    result = retrier.post()
    assert result.ok
    assert result.attempts == 2
    assert retrier.clock.waits == [waited]


@pytest.mark.parametrize("asked", [0.0, -1.0, float("nan"), float("inf"), float("-inf")], ids=str)
def test_a_retry_after_that_is_no_sane_wait_leaves_the_backoff_on(asked: float) -> None:
    # Taken as the wait, each would make the retries come at once (or never).
    answers = [http_error(429, "slow down", retry_after=asked)] * 4
    retrier = rig(*answers, policy=RetryPolicy(initial_backoff_seconds=1.0))
    assert retrier.post().ok
    waits = retrier.clock.waits
    ceilings = [1.0, 2.0, 4.0, 8.0]
    assert all(c / 2 <= wait <= c for wait, c in zip(waits, ceilings, strict=True)), waits


@pytest.mark.parametrize(
    ("answer", "seconds"),
    [
        (http_error(429, "later", retry_after=30.0), 2.0),
        (http_error(503, "overloaded"), 0.2),  # a first backoff is 0.25-0.5 s
    ],
    ids=["retry-after", "backoff"],
)
def test_a_wait_past_the_deadline_is_not_waited(answer: PostResult, seconds: float) -> None:
    retrier = rig(answer)
    result = retrier.post(seconds)
    assert result == answer  # the last answer, its status and reason kept
    assert len(retrier.attempt.attempts) == 1
    assert retrier.clock.waits == []


@pytest.mark.parametrize(
    "answer", [http_error(503, "overloaded"), CONNECTION_REFUSED], ids=["503", "refused"]
)
def test_retrying_stops_at_the_deadline_with_the_last_answer(answer: PostResult) -> None:
    # Attempts of 1 s each against a 5 s deadline: the fifth ends past it.
    retrier = rig(*[answer] * 100, policy=NO_WAIT_RETRIES, seconds_per_attempt=1.0)
    result = retrier.post(5.0)
    assert not result.ok
    assert (result.status_code, result.reason) == (answer.status_code, answer.reason)
    assert result.attempts == len(retrier.attempt.attempts) == 5


def test_a_deadline_already_passed_makes_no_attempt() -> None:
    retrier = rig()
    result = retrier.post(0.0)
    assert (result.status_code, result.attempts, result.ok) == (None, 0, False)
    assert "deadline" in result.reason
    assert retrier.attempt.attempts == []


def test_each_attempt_is_given_the_time_left_to_the_deadline() -> None:
    retrier = rig(http_error(503), http_error(503), seconds_per_attempt=1.5)
    assert retrier.post(10.0).attempts == 3
    first_wait, second_wait = retrier.clock.waits
    assert retrier.timeouts() == pytest.approx(
        [10.0, 10.0 - 1.5 - first_wait, 10.0 - 3.0 - first_wait - second_wait]
    )


def test_every_retry_of_a_request_carries_the_same_retry_id() -> None:
    retrier = rig(http_error(503), http_error(502))
    retrier.post()
    first, second, third = retrier.retry_ids()
    assert first is None  # a first attempt is no retry
    assert second is not None
    assert re.fullmatch(r"[0-9a-f]{32}", second)
    assert third == second


def test_two_requests_have_different_retry_ids() -> None:
    retrier = rig(http_error(503), PostResult(200), http_error(503))
    retrier.post()
    retrier.post()
    first_try, first_retry, second_try, second_retry = retrier.retry_ids()
    assert first_try is None
    assert second_try is None
    assert first_retry is not None
    assert second_retry is not None
    assert first_retry != second_retry


class InterruptibleClock(FakeClock):
    """Waits for real until interrupted, so that a test can close a retry while it waits."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = threading.Event()
        self.interrupted = False

    def wait(self, seconds: float, interrupt: threading.Event) -> bool:
        self.waits.append(seconds)
        self.waiting.set()
        # Bounded: if close() failed to interrupt, the test fails instead of hanging.
        self.interrupted = interrupt.wait(10)
        return self.interrupted


def test_close_ends_a_pending_wait_and_starts_no_further_attempt() -> None:
    clock = InterruptibleClock()
    attempt = ScriptedAttempt([http_error(503, "overloaded")])
    retrying = Retrying(attempt, RetryPolicy(initial_backoff_seconds=30), clock)
    results: list[PostResult] = []
    poster = threading.Thread(
        target=lambda: results.append(retrying.post(PATH, BODY, clock.monotonic() + 600))
    )
    poster.start()
    assert clock.waiting.wait(5)
    retrying.close()
    poster.join(5)

    assert not poster.is_alive()
    assert clock.interrupted
    (result,) = results
    assert (result.status_code, result.reason, result.attempts) == (503, "overloaded", 1)
    assert len(attempt.attempts) == 1


def test_close_during_an_attempt_starts_no_further_attempt() -> None:
    retrier = rig(http_error(503, "overloaded"))
    scripted = retrier.attempt.post

    def post_then_close(*args: object, **kwargs: object) -> PostResult:
        result = scripted(*args, **kwargs)  # type: ignore[arg-type]
        retrier.retrying.close()  # shutdown, while the request was in flight
        return result

    retrier.attempt.post = post_then_close  # type: ignore[method-assign]
    result = retrier.post()
    assert (result.status_code, result.attempts) == (503, 1)
    assert len(retrier.attempt.attempts) == 1
    assert retrier.clock.waits == []


def test_a_closed_retrier_makes_no_attempt_until_reopened() -> None:
    retrier = rig()
    retrier.retrying.close()
    closed = retrier.post()
    assert (closed.status_code, closed.attempts, closed.ok) == (None, 0, False)
    assert retrier.attempt.attempts == []
    retrier.retrying.reopen()  # as a forked child does
    assert retrier.post().ok
    assert len(retrier.attempt.attempts) == 1
