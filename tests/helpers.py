"""Test doubles and helpers shared by the test modules: clocks, fakes of each layer, spans."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

from opentelemetry.exporter.weave import WeaveSettings
from opentelemetry.exporter.weave._call import WeaveCall
from opentelemetry.exporter.weave._delivery import DeliveryReport
from opentelemetry.exporter.weave._models import (
    EndedCallSchemaForInsert,
    StartedCallSchemaForInsert,
    SummaryInsertMap,
)
from opentelemetry.exporter.weave._pipeline import BatchReport
from opentelemetry.exporter.weave._retry import RetryPolicy
from opentelemetry.exporter.weave._stats import ExportStats
from opentelemetry.exporter.weave._transport import PostResult

API_KEY = "test-secret-key-0123456789"
PROJECT = "test-entity/test-project"

NO_WAIT_RETRIES = RetryPolicy(initial_backoff_seconds=0.001, max_backoff_seconds=0.002)
"""Backoff too short to matter, for tests over real HTTP that retry."""


def wait_until(condition: Callable[[], object], seconds: float = 10.0) -> None:
    """Poll ``condition`` until it is true; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def settings_for(server_url: str = "http://127.0.0.1:9", **options: Any) -> WeaveSettings:
    return WeaveSettings.from_env(
        {}, api_key=API_KEY, project=PROJECT, server_url=server_url, **options
    )


class FakeClock:
    """A monotonic clock that moves only when told to, or when something waits on it.

    ``wait`` returns at once, as if the time had passed (or the interrupt was already set),
    and records what was waited for.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.waits: list[float] = []

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def wait(self, seconds: float, interrupt: threading.Event) -> bool:
        if interrupt.is_set():
            return True
        with self._lock:
            self.waits.append(seconds)
            self._now += seconds
        return False


@dataclass
class ScriptedAttempt:
    """A one-attempt poster that answers from a script, then 200; records each attempt."""

    script: list[PostResult] = field(default_factory=list)
    clock: FakeClock | None = None
    seconds_per_attempt: float = 0.0
    """How far each attempt moves ``clock``, as if the request took that long."""
    attempts: list[tuple[str, bytes, float, dict[str, str]]] = field(default_factory=list)

    def post(
        self, path: str, body: bytes, timeout: float, headers: Mapping[str, str]
    ) -> PostResult:
        self.attempts.append((path, body, timeout, dict(headers)))
        if self.clock is not None:
            self.clock.advance(self.seconds_per_attempt)
        return self.script.pop(0) if self.script else PostResult(200)


def http_error(status: int, reason: str = "", **extra: Any) -> PostResult:
    """What the HTTP layer answers for ``status``."""
    return PostResult(status, reason, retryable=status in (408, 409, 429) or status >= 500, **extra)


@dataclass
class RecordingPoster:
    """A retrying poster stand-in: answers by route and body via ``answer``; records requests."""

    answer: Callable[[str, bytes], PostResult] = lambda path, body: PostResult(200)
    requests: list[tuple[str, bytes]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def post(self, path: str, body: bytes, deadline: float) -> PostResult:
        with self._lock:
            self.requests.append((path, body))
        return self.answer(path, body)

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]


@dataclass
class RecordingSender:
    """A call sender stand-in: delivers everything (or what ``answer`` says); records batches."""

    answer: Callable[[Sequence[WeaveCall]], DeliveryReport] = lambda calls: DeliveryReport(
        delivered=len(calls)
    )
    batches: list[list[WeaveCall]] = field(default_factory=list)

    def send(self, calls: Sequence[WeaveCall], deadline: float) -> DeliveryReport:
        self.batches.append(list(calls))
        return self.answer(calls)


_NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def make_call(
    call_id: str = "0123456789abcdef",
    parent_id: str | None = None,
    inputs: dict[str, Any] | None = None,
    output: Any = None,
    attributes: dict[str, Any] | None = None,
) -> WeaveCall:
    """A small valid call, without a span."""
    return WeaveCall(
        start=StartedCallSchemaForInsert(
            project_id=PROJECT,
            id=call_id,
            op_name="op",
            trace_id="0123456789abcdef0123456789abcdef",
            parent_id=parent_id,
            started_at=_NOW,
            attributes=attributes or {},
            inputs=inputs or {},
        ),
        end=EndedCallSchemaForInsert(
            project_id=PROJECT,
            id=call_id,
            started_at=_NOW,
            ended_at=_NOW,
            output=output,
            summary=SummaryInsertMap(),
        ),
    )


def make_calls(count: int) -> list[WeaveCall]:
    return [make_call(f"{index:016x}") for index in range(count)]


class FakeBatchExporter:
    """What the processor drives, with no mapping and no HTTP: records batches, answers ``ok``.

    ``block`` (an Event) holds every export until it is set; ``fail_next`` makes the next
    batch report a loss.
    """

    def __init__(self, clock: FakeClock | None = None, **options: Any) -> None:
        self.settings = settings_for(**options)
        self.clock = clock or FakeClock()
        self.batches: list[tuple[list[ReadableSpan], float]] = []
        self.block: threading.Event | None = None
        self.fail_next = False
        self.forked = 0
        self.closed = 0
        self._lock = threading.Lock()

    def export_batch(self, spans: Sequence[ReadableSpan], deadline: float) -> BatchReport:
        if self.block is not None:
            self.block.wait(10)
        with self._lock:
            self.batches.append((list(spans), deadline))
            failed, self.fail_next = self.fail_next, False
        delivered = len(spans) - (1 if failed and spans else 0)
        failures = DeliveryReport.failed([make_call()], "/fake", PostResult(400)).failures
        return BatchReport(
            spans=len(spans),
            filtered=0,
            unmappable=0,
            delivery=DeliveryReport(delivered=delivered, failures=failures if failed else ()),
        )

    def exported(self) -> list[ReadableSpan]:
        with self._lock:
            return [span for spans, _ in self.batches for span in spans]

    def stats(self) -> ExportStats:
        return ExportStats(calls_exported=len(self.exported()))

    def after_fork(self) -> None:
        self.forked += 1

    def close(self) -> None:
        self.closed += 1
