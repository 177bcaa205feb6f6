"""``WeaveSpanProcessor`` alone: its queue, worker, flush and shutdown, over a fake exporter.

A real ``TracerProvider`` feeds the processor; ``FakeBatchExporter`` stands in for the export
pipeline, so nothing here maps a span or opens a socket. Deadlines are read off a ``FakeClock``.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

from opentelemetry.exporter.weave import ExportStats, WeaveSpanProcessor
from opentelemetry.exporter.weave._pipeline import BatchReport

from .helpers import API_KEY, PROJECT, FakeBatchExporter, FakeClock, make_tracer, wait_until

START = 1000.0
"""Where every test's ``FakeClock`` starts."""
HOLD = 60_000
"""A schedule delay no test waits out: batches leave only when full, flushed or shut down."""


class HandOverExporter(FakeBatchExporter):
    """Also records each batch as the worker hands it over, before ``block`` holds it."""

    def __init__(self, clock: FakeClock, **options: Any) -> None:
        super().__init__(clock, **options)
        self.handed_over: list[int] = []
        self.seconds_per_export = 0.0
        """How far each export moves the clock, as if it took that long."""

    def export_batch(self, spans: Sequence[ReadableSpan], deadline: float) -> BatchReport:
        self.handed_over.append(len(spans))
        report = super().export_batch(spans, deadline)
        self.clock.advance(self.seconds_per_export)
        return report

    def batch_sizes(self) -> list[int]:
        return [len(spans) for spans, _ in self.batches]

    def deadlines(self) -> list[float]:
        return [deadline for _, deadline in self.batches]

    def exported_names(self) -> list[str]:
        return [span.name for span in self.exported()]


class Rig:
    """A processor over a ``HandOverExporter``, a tracer feeding it, and the clock of both."""

    def __init__(self, provider: TracerProvider | None = None, **options: Any) -> None:
        self.clock = FakeClock(START)
        self.exporter = HandOverExporter(self.clock, **{"schedule_delay_millis": HOLD, **options})
        self.processor = WeaveSpanProcessor(_exporter=self.exporter)
        if provider is None:
            self.provider, self.tracer = make_tracer(self.processor)
        else:
            provider.add_span_processor(self.processor)
            self.provider, self.tracer = provider, provider.get_tracer("tests")

    def emit(self, *names: str) -> None:
        for name in names:
            with self.tracer.start_as_current_span(name):
                pass

    def hold_exports(self) -> threading.Event:
        """Hold every export from now on until the returned event is set."""
        self.exporter.block = threading.Event()
        return self.exporter.block

    def wait_for_hand_over(self, count: int = 1) -> None:
        wait_until(lambda: len(self.exporter.handed_over) >= count)

    def close(self) -> None:
        if self.exporter.block is not None:
            self.exporter.block.set()
        self.provider.shutdown()


@pytest.fixture
def rig() -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def build(provider: TracerProvider | None = None, **options: Any) -> Rig:
        made.append(Rig(provider, **options))
        return made[-1]

    yield build
    for each in made:
        each.close()


def names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{index}" for index in range(count)]


class RecordOnly(Sampler):
    """Records spans without sampling them: unlike ALWAYS_OFF's, they reach the processors."""

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return SamplingResult(Decision.RECORD_ONLY)

    def get_description(self) -> str:
        return "RecordOnly"


def test_unsampled_spans_are_skipped(rig: Callable[..., Rig]) -> None:
    setup = rig(TracerProvider(sampler=RecordOnly(), shutdown_on_exit=False))
    setup.emit("invisible")
    assert setup.processor.force_flush(5_000)
    assert setup.exporter.batches == []
    assert setup.processor.stats().spans_enqueued == 0


def test_batches_respect_batch_size(rig: Callable[..., Rig]) -> None:
    setup = rig(max_export_batch_size=4, max_queue_size=100)
    setup.emit(*names("span", 10))
    assert setup.processor.force_flush(10_000)
    assert setup.exporter.batch_sizes() == [4, 4, 2]
    assert setup.exporter.exported_names() == names("span", 10)


def test_a_full_batch_leaves_without_waiting_for_the_schedule_delay(
    rig: Callable[..., Rig],
) -> None:
    setup = rig(max_export_batch_size=3)
    setup.emit(*names("span", 3))
    wait_until(lambda: setup.exporter.batches)  # far sooner than the 60 s schedule delay
    assert setup.exporter.exported_names() == names("span", 3)


def test_full_queue_drops_are_counted_reported_and_warned_once(
    rig: Callable[..., Rig], caplog: pytest.LogCaptureFixture
) -> None:
    drops: list[tuple[str, int]] = []
    setup = rig(
        max_queue_size=4,
        max_export_batch_size=4,
        on_drop=lambda reason, count: drops.append((reason, count)),
    )

    def overflow(round_name: str, extra: int) -> None:
        """A full batch held in export, a full queue again behind it, ``extra`` refused."""
        release = setup.hold_exports()
        setup.emit(*names(f"{round_name}-first", 4))
        setup.wait_for_hand_over(len(setup.exporter.handed_over) + 1)
        setup.emit(*names(f"{round_name}-second", 4 + extra))
        release.set()
        assert setup.processor.force_flush(10_000)

    with caplog.at_level(logging.WARNING, logger="opentelemetry.exporter.weave"):
        overflow("one", extra=2)
        stats = setup.processor.stats()
        overflow("two", extra=1)

    assert stats.spans_enqueued == 8
    assert stats.spans_dropped_queue_full == 2
    assert stats.calls_exported == 8
    assert setup.exporter.exported_names()[:8] == names("one-first", 4) + names("one-second", 4)
    assert drops == [("queue_full", 2), ("queue_full", 1)]
    assert setup.processor.stats().spans_dropped_queue_full == 3
    warnings = [r.getMessage() for r in caplog.records if "lost spans" in r.getMessage()]
    # Rate-limited: the second overflow, seconds later, is counted and reported, not warned.
    assert warnings == ["Weave exporter lost spans; totals since start: queue_full=2 (see stats())"]


def test_stats_are_the_queue_counts_plus_the_exporters(rig: Callable[..., Rig]) -> None:
    setup = rig()
    exporter_stats = ExportStats(spans_enqueued=100, calls_exported=7, requests_retried=2)
    setup.exporter.stats = lambda: exporter_stats  # type: ignore[method-assign]
    setup.emit(*names("span", 3))
    assert setup.processor.force_flush(5_000)
    assert setup.processor.stats() == ExportStats(spans_enqueued=3) + exporter_stats


def test_force_flush_is_true_when_its_batches_were_delivered(rig: Callable[..., Rig]) -> None:
    setup = rig()
    setup.emit("one", "two")
    assert setup.exporter.batches == []  # held by the schedule delay: the flush sends them
    assert setup.processor.force_flush(5_000) is True
    assert setup.exporter.exported_names() == ["one", "two"]


def test_force_flush_is_false_when_a_batch_exported_after_the_request_lost_a_span(
    rig: Callable[..., Rig],
) -> None:
    setup = rig()
    setup.exporter.fail_next = True
    setup.emit("lost")
    assert setup.processor.force_flush(5_000) is False
    assert setup.processor.force_flush(5_000) is True  # that loss was the previous flush's


def test_a_loss_in_a_batch_taken_before_the_flush_does_not_fail_it(
    rig: Callable[..., Rig],
) -> None:
    setup = rig(max_export_batch_size=2)
    release = setup.hold_exports()
    setup.exporter.fail_next = True
    setup.emit("early-0", "early-1")  # a full batch: the worker takes it at once
    setup.wait_for_hand_over()
    setup.emit("late")
    results: list[bool] = []
    flushing = threading.Thread(target=lambda: results.append(setup.processor.force_flush(5_000)))
    flushing.start()
    # The early batch must report its loss while the flush is waiting: the race at issue.
    wait_until(lambda: not setup.processor._inbox.empty())
    release.set()
    flushing.join()
    assert results == [True]
    assert setup.exporter.fail_next is False  # the early batch did lose a span
    assert setup.exporter.exported_names() == ["early-0", "early-1", "late"]


@pytest.mark.parametrize("lost", [False, True])
def test_a_flush_during_shutdown_waits_for_its_export_and_tells_its_losses(
    rig: Callable[..., Rig], lost: bool
) -> None:
    # As from a signal handler that interrupted shutdown(): the queue is still being exported.
    setup = rig()
    release = setup.hold_exports()
    setup.exporter.fail_next = lost
    setup.emit("last")
    shutting_down = threading.Thread(target=setup.processor.shutdown)
    shutting_down.start()
    setup.wait_for_hand_over()  # shutdown's export of the span has begun, and is held
    results: list[bool] = []
    flushing = threading.Thread(target=lambda: results.append(setup.processor.force_flush(5_000)))
    flushing.start()
    flushing.join(0.2)
    assert flushing.is_alive()  # waiting for the shutdown's export, not answering at once
    release.set()
    flushing.join()
    shutting_down.join()
    assert results == [not lost]
    assert setup.exporter.exported_names() == ["last"]
    assert setup.processor.force_flush(5_000) is True  # nothing queued any more


def test_force_flush_stops_waiting_at_its_timeout_but_not_the_export(
    rig: Callable[..., Rig],
) -> None:
    setup = rig(export_timeout_millis=3000)
    release = setup.hold_exports()
    setup.emit("stuck")
    assert setup.processor.force_flush(timeout_millis=20) is False
    assert setup.exporter.batches == []  # still exporting: the flush gave up waiting only
    release.set()
    wait_until(lambda: setup.exporter.batches)
    # The export's deadline is the export timeout's, not the flush's 20 ms.
    assert setup.exporter.deadlines() == [START + 3000 / 1000]
    assert setup.exporter.exported_names() == ["stuck"]


def test_shutdown_exports_what_is_queued_by_the_export_timeout_then_closes_once(
    rig: Callable[..., Rig],
) -> None:
    setup = rig(export_timeout_millis=2000)
    setup.emit(*names("queued", 3))
    setup.clock.advance(5)
    setup.processor.shutdown()
    assert setup.exporter.exported_names() == names("queued", 3)
    assert setup.exporter.deadlines() == [START + 5 + 2000 / 1000]
    assert setup.exporter.closed == 1
    setup.processor.shutdown()  # idempotent
    assert setup.exporter.closed == 1
    assert len(setup.exporter.batches) == 1
    assert setup.processor.force_flush() is True  # nothing left to flush


def test_spans_after_shutdown_are_counted_not_raised(rig: Callable[..., Rig]) -> None:
    setup = rig()
    setup.processor.shutdown()
    setup.emit("late")  # would raise out of the span's `with` block if on_end raised
    assert setup.processor.stats().spans_dropped_after_shutdown == 1
    assert setup.exporter.exported() == []


def test_shutdown_gives_up_at_its_deadline_and_drops_what_is_still_queued(
    rig: Callable[..., Rig],
) -> None:
    drops: dict[str, int] = {}

    def on_drop(reason: str, count: int) -> None:
        drops[reason] = drops.get(reason, 0) + count

    setup = rig(max_export_batch_size=2, export_timeout_millis=50, on_drop=on_drop)
    setup.exporter.seconds_per_export = 0.02
    release = setup.hold_exports()
    setup.emit("in-flight-0", "in-flight-1")
    setup.wait_for_hand_over()
    setup.emit(*names("queued", 5))
    setup.processor.shutdown()  # its deadline: START + 50 ms
    # Shutdown returned while the export it waited for was still held: it did not wait it out.
    assert setup.exporter.batches == []
    assert setup.exporter.closed == 1
    release.set()
    # Exports end at START + 20, 40, 60 ms: the batch taken at 60 ms is past the deadline.
    wait_until(lambda: setup.processor.stats().spans_dropped_after_shutdown == 1)
    assert setup.exporter.exported_names() == ["in-flight-0", "in-flight-1", *names("queued", 4)]
    # Batches taken during shutdown get what is left of its deadline, not a new export timeout.
    assert setup.exporter.deadlines() == [START + 50 / 1000] * 3
    stats = setup.processor.stats()
    assert (stats.spans_enqueued, stats.calls_exported) == (7, 6)
    wait_until(lambda: drops == {"after_shutdown": 1})


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_forked_child_resets_its_exporter_and_starts_with_an_empty_queue(
    rig: Callable[..., Rig],
) -> None:
    setup = rig()
    setup.emit("parent-queued")  # held by the schedule delay when the child is forked
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            fresh = setup.exporter.forked == 1 and setup.processor.stats().spans_enqueued == 0
            setup.emit("child")
            flushed = setup.processor.force_flush(5_000)
            code = 0 if fresh and flushed and setup.exporter.exported_names() == ["child"] else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert setup.exporter.forked == 0  # the parent's exporter is its own still
    assert setup.processor.force_flush(5_000)
    assert setup.exporter.exported_names() == ["parent-queued"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_a_processor_shut_down_before_a_fork_stays_shut_down_in_the_child(
    rig: Callable[..., Rig],
) -> None:
    setup = rig()
    setup.processor.shutdown()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            setup.emit("after-shutdown")
            stats = setup.processor.stats()
            code = 0 if (stats.spans_enqueued, stats.spans_dropped_after_shutdown) == (0, 1) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_the_exit_hook_shuts_the_processor_down(
    rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks: list[Callable[[], None]] = []
    monkeypatch.setattr(atexit, "register", hooks.append)  # the processor registers its hook
    setup = rig()
    setup.emit("last-words")
    (on_exit,) = hooks
    on_exit()
    assert setup.exporter.exported_names() == ["last-words"]
    assert setup.exporter.closed == 1


def test_repr_hides_the_key(rig: Callable[..., Rig]) -> None:
    processor = rig().processor
    assert API_KEY not in repr(processor)
    assert PROJECT in repr(processor)
    assert API_KEY not in repr(processor.stats())


class FailingInbox:
    """The worker's inbox, whose next waits raise: the worker must go on exporting."""

    def __init__(self, inbox: Any, failures: int) -> None:
        self._inbox = inbox
        self.failures = failures

    def get(self, *args: Any, **kwargs: Any) -> Any:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the worker's wait broke")
        return self._inbox.get(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inbox, name)


def test_the_worker_survives_its_own_wait_failing(
    rig: Callable[..., Rig], caplog: pytest.LogCaptureFixture
) -> None:
    setup = rig(max_export_batch_size=2)
    inbox = FailingInbox(setup.processor._inbox, failures=3)
    setup.processor._inbox = inbox  # type: ignore[assignment]
    setup.processor._inbox.put(None)  # wake the worker: its next wait is the failing one
    wait_until(lambda: inbox.failures == 0)
    setup.emit(*names("after", 4))
    wait_until(lambda: len(setup.exporter.batches) == 2)
    assert setup.exporter.exported_names() == names("after", 4)
    assert setup.processor.force_flush(5_000)
    assert "Weave export worker failed" in caplog.text


def test_a_huge_flush_timeout_is_a_long_wait_not_an_error(rig: Callable[..., Rig]) -> None:
    setup = rig()
    setup.emit("one")
    assert setup.processor.force_flush(timeout_millis=10**13) is True
    assert setup.processor.force_flush(timeout_millis=float("inf")) is True  # type: ignore[arg-type]


def test_the_counts_are_exact_under_many_app_threads(rig: Callable[..., Rig]) -> None:
    setup = rig(max_queue_size=50, max_export_batch_size=10)
    threads, per_thread = 8, 2_000
    span = setup.tracer.start_span("shared")
    span.end()

    def end_many() -> None:
        for _ in range(per_thread):
            setup.processor.on_end(span)

    workers = [threading.Thread(target=end_many) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert setup.processor.force_flush(10_000)
    stats = setup.processor.stats()
    handed_over = threads * per_thread + 1
    assert stats.spans_enqueued + stats.spans_dropped_queue_full == handed_over
    assert stats.calls_exported == stats.spans_enqueued
    assert stats.spans_dropped_queue_full > 0  # the bound held against them all
    assert max(setup.exporter.batch_sizes()) <= 10


def test_spans_ended_while_the_worker_stops_are_counted(rig: Callable[..., Rig]) -> None:
    setup = rig()
    setup.processor.shutdown()
    assert setup.processor._worker_done
    setup.processor._shutdown_deadline = None  # as if this on_end passed the check just before
    setup.emit("late")
    stats = setup.processor.stats()
    assert (stats.spans_enqueued, stats.spans_dropped_after_shutdown) == (1, 1)
    assert not setup.processor._queue


class SpoolingExporter(FakeBatchExporter):
    """A fake with a spool: keeps every span handed to ``spill`` but the last."""

    def __init__(self, **options: Any) -> None:
        super().__init__(spool_dir="/spool", **options)
        self.spilled: list[ReadableSpan] = []

    def spill(self, spans: Sequence[ReadableSpan]) -> int:
        self.spilled += spans
        return len(spans) - 1


def test_with_a_spool_a_worker_re_sends_it_at_once_even_with_no_span() -> None:
    exporter = SpoolingExporter(schedule_delay_millis=60_000)
    processor = WeaveSpanProcessor(_exporter=exporter)

    wait_until(lambda: exporter.batches)
    assert [spans for spans, _ in exporter.batches] == [[]]
    processor.shutdown()


def test_with_a_spool_what_a_late_shutdown_left_queued_is_spilled_not_dropped() -> None:
    exporter = SpoolingExporter(
        schedule_delay_millis=60_000, max_export_batch_size=2, export_timeout_millis=50
    )
    processor = WeaveSpanProcessor(_exporter=exporter)
    provider, tracer = make_tracer(processor)
    wait_until(lambda: exporter.batches)  # the start-up re-send, done
    exporter.block = threading.Event()
    for name in ("in-flight-0", "in-flight-1", "queued-0", "queued-1", "queued-2"):
        tracer.start_span(name).end()
    wait_until(lambda: len(processor._queue) == 3)  # the worker holds the first batch

    processor.shutdown()  # its 50 ms pass with that batch still held

    assert [span.name for span in exporter.spilled] == ["queued-0", "queued-1", "queued-2"]
    assert processor.stats().spans_dropped_after_shutdown == 1  # the one spill did not keep
    exporter.block.set()
    provider.shutdown()
