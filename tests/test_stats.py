"""The counters, their names, loss reporting to ``on_drop``, and the rate-limited warning."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import fields
from types import FrameType
from typing import Any, get_args

import pytest

from opentelemetry.exporter.weave._stats import (
    LOSS_COUNTERS,
    CounterName,
    ExportStats,
    LossReason,
    LossReporter,
    RateLimitedWarning,
    StatsCounter,
)

LOGGER = "opentelemetry.exporter.weave"
TraceFunction = Callable[[FrameType, str, Any], Any]
FIELD_NAMES = [spec.name for spec in fields(ExportStats)]


def test_counter_names_are_the_stats_fields() -> None:
    assert sorted(get_args(CounterName)) == sorted(FIELD_NAMES)


def test_every_loss_reason_has_its_own_counter() -> None:
    assert set(LOSS_COUNTERS) == set(LossReason)
    assert set(LOSS_COUNTERS.values()) <= set(get_args(CounterName))
    assert len(set(LOSS_COUNTERS.values())) == len(LOSS_COUNTERS)


def test_stats_add_field_by_field() -> None:
    first = ExportStats(**{name: index + 1 for index, name in enumerate(FIELD_NAMES)})
    second = ExportStats(**{name: 100 * (index + 1) for index, name in enumerate(FIELD_NAMES)})
    total = first + second
    assert [getattr(total, name) for name in FIELD_NAMES] == [
        101 * (index + 1) for index in range(len(FIELD_NAMES))
    ]


def test_calls_failed_is_every_undelivered_call() -> None:
    stats = ExportStats(calls_rejected=1, calls_too_large=20, calls_undeliverable=300)
    assert stats.calls_failed == 321


@pytest.fixture
def switches_inside_add() -> Iterator[None]:
    """Let threads switch between any two bytecodes of ``StatsCounter.add``.

    The interpreter only switches threads at calls and jumps, never inside ``+=`` on a dict:
    a tracer run between opcodes is such a call, so an unlocked ``+=`` would lose counts.
    """
    add_code = StatsCounter.add.__code__

    def per_opcode(frame: FrameType, event: str, arg: object) -> TraceFunction:
        return per_opcode

    def tracer(frame: FrameType, event: str, arg: object) -> TraceFunction | None:
        if frame.f_code is not add_code:
            return None
        frame.f_trace_opcodes = True
        return per_opcode

    interval, previous = sys.getswitchinterval(), threading.gettrace()
    sys.setswitchinterval(1e-6)
    threading.settrace(tracer)
    yield
    threading.settrace(previous)
    sys.setswitchinterval(interval)


@pytest.mark.usefixtures("switches_inside_add")
def test_counter_adds_from_many_threads_lose_nothing() -> None:
    counter = StatsCounter()

    def add_many() -> None:
        for _ in range(1_000):
            counter.add("calls_exported")
            counter.add("requests_retried", 2)

    threads = [threading.Thread(target=add_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counter.snapshot() == ExportStats(calls_exported=8_000, requests_retried=16_000)


class Losses:
    """A counter snapshot a test sets, and what ``on_drop`` was called with."""

    def __init__(self) -> None:
        self.now = ExportStats()
        self.drops: list[tuple[object, int]] = []

    def snapshot(self) -> ExportStats:
        return self.now

    def on_drop(self, reason: str, count: int) -> None:
        self.drops.append((reason, count))


def test_loss_reporter_reports_what_was_lost_since_the_last_report(
    caplog: pytest.LogCaptureFixture,
) -> None:
    losses = Losses()
    reporter = LossReporter(losses.snapshot, losses.on_drop)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        reporter.report()
        assert losses.drops == []  # nothing lost yet
        losses.now = ExportStats(spans_dropped_queue_full=2, calls_rejected=1, calls_exported=9)
        reporter.report()
        assert losses.drops == [("queue_full", 2), ("rejected", 1)]
        losses.now = ExportStats(spans_dropped_queue_full=5, calls_rejected=1, calls_exported=20)
        reporter.report()
        reporter.report()  # nothing new since
    assert losses.drops == [("queue_full", 2), ("rejected", 1), ("queue_full", 3)]
    assert {type(reason) for reason, _ in losses.drops} == {str}  # not the enum
    assert caplog.messages == [  # rate-limited: the second loss, moments later, is not warned
        "Weave exporter lost spans; totals since start: queue_full=2, rejected=1 (see stats())"
    ]


def test_a_raising_on_drop_is_logged_once_and_called_still(
    caplog: pytest.LogCaptureFixture,
) -> None:
    losses = Losses()

    def broken(reason: str, count: int) -> None:
        losses.on_drop(reason, count)
        raise RuntimeError("callback bug")

    reporter = LossReporter(losses.snapshot, broken)
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        for lost in (1, 2, 3):
            losses.now = ExportStats(calls_undeliverable=lost)
            reporter.report()
    assert losses.drops == [("undeliverable", 1)] * 3
    assert caplog.messages == ["The Weave on_drop callback raised; it is called still"]


def test_rate_limited_warning_logs_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    warning = RateLimitedWarning(60.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for moment in (0.0, 30.0, 59.9, 60.0, 61.0, 119.9, 120.0):
            now[0] = moment
            warning.warn("lost %d at %s", 1, moment)
    assert caplog.messages == ["lost 1 at 0.0", "lost 1 at 60.0", "lost 1 at 120.0"]
