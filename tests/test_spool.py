"""The durable spool: the store on disk, the ``Spooling`` sender, and whole processes."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import Tracer

from opentelemetry.exporter.weave._call import WeaveCall
from opentelemetry.exporter.weave._delivery import CallEndWriter, DeliveryReport
from opentelemetry.exporter.weave._pipeline import ExportPipeline
from opentelemetry.exporter.weave._spool import (
    SPOOL_FILE_NAME,
    SpoolActivity,
    Spooling,
    SpoolStore,
    open_spool,
)
from opentelemetry.exporter.weave._transport import PostResult
from opentelemetry.exporter.weave.testing import LocalWeaveServer

from .fault_server import Reply, ScriptedServer
from .helpers import (
    API_KEY,
    NO_WAIT_RETRIES,
    PROJECT,
    FakeClock,
    Record,
    RecordingPoster,
    RecordingSender,
    http_error,
    make_call,
    make_calls,
    settings_for,
)

MiB = 1024 * 1024
DEADLINE = 2000.0  # FakeClock starts at 1000


class WallClock:
    """The store's wall-clock time, moved by hand (leases)."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def ids(calls: Sequence[WeaveCall]) -> list[str]:
    return [call.start.id for call in calls]


def store_in(directory: Path, max_bytes: int = MiB, **options: object) -> SpoolStore:
    return SpoolStore(str(directory), max_bytes, **options)  # type: ignore[arg-type]


# --- the store ---


def test_calls_come_back_as_they_were_stored(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    calls = [make_call("a" * 16, inputs={"q": "hi"}, output={"a": [1, 2]}), make_call("b" * 16)]
    store.put(calls)

    claimed = store.claim(10, MiB, lease_seconds=60).calls

    assert [(c.start_json, c.end_json) for c in claimed] == [
        (c.start_json, c.end_json) for c in calls
    ]


def test_the_spool_survives_its_store_object(tmp_path: Path) -> None:
    store_in(tmp_path).put(make_calls(3))

    assert ids(store_in(tmp_path).claim(10, MiB, 60).calls) == ids(make_calls(3))


def test_spooling_a_call_again_replaces_it(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    store.put([make_call("a" * 16, output="old"), make_call("b" * 16)])
    store.put([make_call("a" * 16, output="new")])

    claimed = store.claim(10, MiB, 60).calls

    assert store.stored()[0] == 2
    assert ids(claimed) == ["b" * 16, "a" * 16]  # the new version is the newest
    assert claimed[1].end.output == "new"


def test_past_the_cap_the_oldest_calls_go_first_and_are_counted(tmp_path: Path) -> None:
    calls = make_calls(5)
    one = len(calls[0].start_json) + len(calls[0].end_json) + 64
    store = store_in(tmp_path, max_bytes=3 * one)

    evicted = [store.put([call]) for call in calls]

    assert evicted == [0, 0, 0, 1, 1]
    assert ids(store.claim(10, MiB, 60).calls) == ids(calls[2:])
    assert store.stored() == (3, 3 * one)


def test_a_call_larger_than_the_cap_is_counted_as_forced_out(tmp_path: Path) -> None:
    store = store_in(tmp_path, max_bytes=100)

    assert store.put([make_call(inputs={"big": "x" * 500})]) == 1
    assert store.stored() == (0, 0)


def test_a_claim_is_bounded_by_count_and_bytes(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    calls = make_calls(10)
    store.put(calls)
    one = len(calls[0].start_json) + len(calls[0].end_json) + 64

    assert ids(store.claim(4, MiB, 60).calls) == ids(calls[:4])
    assert ids(store.claim(10, 2 * one, 60).calls) == ids(calls[4:6])
    assert ids(store.claim(10, 1, 60).calls) == ids(calls[6:7])  # one call at least


def test_two_stores_on_one_directory_never_claim_the_same_call(tmp_path: Path) -> None:
    first, second = store_in(tmp_path), store_in(tmp_path)
    first.put(make_calls(6))

    a = first.claim(3, MiB, 60).calls
    b = second.claim(10, MiB, 60).calls
    assert not set(ids(a)) & set(ids(b))
    assert sorted(ids(a) + ids(b)) == ids(make_calls(6))
    assert second.claim(10, MiB, 60).calls == ()

    first.settle(a)
    second.release(b)
    assert ids(first.claim(10, MiB, 60).calls) == ids(b)


def test_the_claims_of_a_killed_process_expire_with_their_lease(tmp_path: Path) -> None:
    clock = WallClock()
    killed, survivor = store_in(tmp_path, now=clock), store_in(tmp_path, now=clock)
    killed.put(make_calls(2))
    assert len(killed.claim(10, MiB, lease_seconds=30).calls) == 2  # then never settles

    clock.now += 29
    assert survivor.claim(10, MiB, 30).calls == ()
    clock.now += 2
    assert ids(survivor.claim(10, MiB, 30).calls) == ids(make_calls(2))


def test_the_claims_of_a_process_that_is_gone_end_at_once(tmp_path: Path) -> None:
    store_in(tmp_path).put(make_calls(2))
    claimer = (
        "import sys\n"
        "from opentelemetry.exporter.weave._spool import SpoolStore\n"
        "store = SpoolStore(sys.argv[1], 1 << 20)\n"
        "assert len(store.claim(10, 1 << 20, lease_seconds=3600).calls) == 2\n"
    )
    gone = subprocess.run([sys.executable, "-c", claimer, str(tmp_path)], check=False)
    assert gone.returncode == 0  # it claimed both for an hour, and exited without sending

    assert ids(store_in(tmp_path).claim(10, MiB, 60).calls) == ids(make_calls(2))


def test_the_claims_of_a_live_process_hold(tmp_path: Path) -> None:
    store_in(tmp_path).put(make_calls(2))
    claimer = (
        "import sys\n"
        "from opentelemetry.exporter.weave._spool import SpoolStore\n"
        "store = SpoolStore(sys.argv[1], 1 << 20)\n"
        "assert len(store.claim(10, 1 << 20, lease_seconds=3600).calls) == 2\n"
        "print('claimed', flush=True)\n"
        "sys.stdin.read()\n"
    )
    alive = subprocess.Popen(
        [sys.executable, "-c", claimer, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert alive.stdout is not None
        assert alive.stdout.readline() == "claimed\n"
        assert store_in(tmp_path).claim(10, MiB, 60).calls == ()
    finally:
        alive.communicate("", timeout=30)


def test_settling_keeps_a_call_spooled_again_since_it_was_claimed(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    store.put([make_call(output="old")])
    claimed = store.claim(10, MiB, 60).calls
    store_in(tmp_path).put([make_call(output="newer")])  # another process, meanwhile

    store.settle(claimed)

    assert [c.end.output for c in store.claim(10, MiB, 60).calls] == ["newer"]


def test_a_corrupt_spool_file_is_moved_aside_not_deleted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    garbage = b"this is not a database\x00" * 100
    (tmp_path / SPOOL_FILE_NAME).write_bytes(garbage)
    (tmp_path / "notes.txt").write_text("someone else's file")

    with caplog.at_level(logging.WARNING, "opentelemetry.exporter.weave"):
        store = store_in(tmp_path)
    store.put(make_calls(1))

    assert "unreadable" in caplog.text
    aside = [path for path in tmp_path.iterdir() if ".corrupt-" in path.name]
    assert [path.read_bytes() for path in aside] == [garbage]
    assert (tmp_path / "notes.txt").read_text() == "someone else's file"
    assert store.stored()[0] == 1


def test_a_spool_busy_in_another_process_is_not_taken_for_corrupt(tmp_path: Path) -> None:
    store_in(tmp_path).put(make_calls(1))
    writer = sqlite3.connect(tmp_path / SPOOL_FILE_NAME, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")  # another process, mid-transaction

    store = store_in(tmp_path)

    writer.execute("ROLLBACK")
    writer.close()
    assert [path.name for path in tmp_path.iterdir() if ".corrupt-" in path.name] == []
    assert store.stored()[0] == 1


def test_another_applications_database_is_left_alone_and_the_spool_is_off(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    foreign = sqlite3.connect(tmp_path / SPOOL_FILE_NAME)
    foreign.execute("CREATE TABLE theirs (x)")
    foreign.commit()
    foreign.close()
    before = (tmp_path / SPOOL_FILE_NAME).read_bytes()

    with caplog.at_level(logging.WARNING, "opentelemetry.exporter.weave"):
        assert open_spool(str(tmp_path), MiB) is None

    assert "another application" in caplog.text
    assert (tmp_path / SPOOL_FILE_NAME).read_bytes() == before


def _open_when_released(directory: str, barrier: Any, opened: Any) -> None:
    barrier.wait()
    opened.put(open_spool(directory, MiB) is not None)


def test_processes_opening_one_new_spool_at_once_all_get_it(tmp_path: Path) -> None:
    # A file with our tables and not yet our id would be another application's: each opener
    # must see the file before or after another one made it, never halfway.
    fork = multiprocessing.get_context("fork")
    for trial in range(20):
        directory = str(tmp_path / f"spool-{trial}")
        barrier, opened = fork.Barrier(4), fork.Queue()
        openers = [
            fork.Process(target=_open_when_released, args=(directory, barrier, opened))
            for _ in range(4)
        ]
        for opener in openers:
            opener.start()
        results = [opened.get(timeout=30) for _ in openers]
        for opener in openers:
            opener.join(30)
        assert results == [True] * 4, f"trial {trial}"


def test_a_new_spool_file_is_in_wal_mode_and_gives_pages_back(tmp_path: Path) -> None:
    store_in(tmp_path).put(make_calls(1))
    with contextlib.closing(sqlite3.connect(tmp_path / SPOOL_FILE_NAME)) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert connection.execute("PRAGMA auto_vacuum").fetchone() == (2,)  # incremental


def test_an_unusable_directory_is_a_config_error_naming_the_setting(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    from opentelemetry.exporter.weave import ConfigError

    with pytest.raises(ConfigError, match="spool_dir"):
        open_spool(str(tmp_path / "file" / "spool"), MiB)


def test_a_write_after_close_still_reaches_the_disk(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    store.close()  # the pipeline closed while a last export was still finishing

    store.put(make_calls(2))

    assert store_in(tmp_path).stored()[0] == 2


def test_a_forked_child_gets_its_own_connection_and_lock(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    store._lock.acquire()  # as if a parent's thread held it at the fork

    store.after_fork()

    store.put(make_calls(1))
    assert store.stored()[0] == 1


def test_a_stored_call_that_no_longer_validates_is_deleted_and_counted(tmp_path: Path) -> None:
    store = store_in(tmp_path)
    store.put(make_calls(2))
    raw = sqlite3.connect(tmp_path / SPOOL_FILE_NAME)
    raw.execute("UPDATE calls SET start_json = x'7b7d' WHERE call_id = ?", (ids(make_calls(1))[0],))
    raw.commit()
    raw.close()

    claim = store.claim(10, MiB, 60)

    assert (ids(claim.calls), claim.unreadable) == (ids(make_calls(2))[1:], 1)
    assert store.stored()[0] == 1


# --- Spooling ---


def undeliverable(calls: Sequence[WeaveCall]) -> DeliveryReport:
    return DeliveryReport.failed(calls, "/call/start", http_error(503))


def rejected(calls: Sequence[WeaveCall]) -> DeliveryReport:
    return DeliveryReport.failed(calls, "/call/start", http_error(400))


class Service:
    """A sender whose answer the test switches: up, down, or refusing some ids."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.up = True
        self.refuse: set[str] = set()
        self.clock = clock
        self.seconds_per_send = 0.0
        self.sender = RecordingSender(answer=self._answer)

    def _answer(self, calls: Sequence[WeaveCall]) -> DeliveryReport:
        if self.clock is not None:
            self.clock.advance(self.seconds_per_send)
        if not self.up:
            return undeliverable(calls)
        refused = [call for call in calls if call.start.id in self.refuse]
        taken = len(calls) - len(refused)
        return DeliveryReport(delivered=taken) + rejected(refused)


def spooling(
    tmp_path: Path, service: Service, clock: FakeClock | None = None, max_bytes: int = MiB
) -> tuple[Spooling, SpoolStore, list[SpoolActivity]]:
    store = store_in(tmp_path, max_bytes)
    activities: list[SpoolActivity] = []
    clock = clock or FakeClock()
    return Spooling(service.sender, store, clock.monotonic, activities.append), store, activities


def test_undeliverable_calls_are_spooled_instead_of_lost(tmp_path: Path) -> None:
    service = Service()
    service.up = False
    sender, store, activities = spooling(tmp_path, service)
    calls = make_calls(3)

    report = sender.send(calls, DEADLINE)

    assert (report.delivered, report.failures) == (0, ())
    assert activities == [SpoolActivity(spooled=3)]
    assert store.stored()[0] == 3


def test_final_refusals_are_not_spooled(tmp_path: Path) -> None:
    service = Service()
    service.refuse = {ids(make_calls(1))[0]}
    sender, store, _ = spooling(tmp_path, service)

    report = sender.send(make_calls(2), DEADLINE)

    assert [f.call.start.id for f in report.failures] == list(service.refuse)
    assert store.stored()[0] == 0


def test_once_the_service_answers_again_spooled_calls_are_resent_oldest_first(
    tmp_path: Path,
) -> None:
    service = Service()
    sender, store, activities = spooling(tmp_path, service)
    sender.send([], DEADLINE)  # the first send found the spool empty
    service.up = False
    old = make_calls(4)
    sender.send(old[:2], DEADLINE)
    sender.send(old[2:], DEADLINE)
    service.up = True
    service.sender.batches.clear()
    new = [make_call("f" * 16)]

    report = sender.send(new, DEADLINE)

    assert report.delivered == 1
    assert [ids(batch) for batch in service.sender.batches] == [ids(new), ids(old)]
    assert activities[-1] == SpoolActivity(resent=DeliveryReport(delivered=4))
    assert store.stored()[0] == 0


def test_a_new_process_resends_at_its_first_send(tmp_path: Path) -> None:
    store_in(tmp_path).put(make_calls(3))  # left by a process that died
    service = Service()
    sender, store, activities = spooling(tmp_path, service)

    sender.send([], DEADLINE)

    assert [ids(batch) for batch in service.sender.batches] == [[], ids(make_calls(3))]
    assert activities == [SpoolActivity(resent=DeliveryReport(delivered=3))]
    assert store.stored()[0] == 0


def test_resent_calls_refused_for_good_leave_the_spool_and_are_reported(tmp_path: Path) -> None:
    calls = make_calls(3)
    store_in(tmp_path).put(calls)
    service = Service()
    service.refuse = {calls[1].start.id}
    sender, store, activities = spooling(tmp_path, service)

    sender.send([], DEADLINE)

    resent = activities[0].resent
    assert resent.delivered == 2
    assert [f.call.start.id for f in resent.failures] == [calls[1].start.id]
    assert store.stored()[0] == 0


def test_resent_calls_still_undeliverable_stay_spooled_and_unclaimed(tmp_path: Path) -> None:
    store_in(tmp_path).put(make_calls(3))
    service = Service()
    service.up = False
    sender, store, activities = spooling(tmp_path, service)

    report = sender.send([], DEADLINE)  # the first send: a drain, which finds the service down
    assert report.failures == ()
    assert activities == []
    assert store.stored()[0] == 3
    assert len(store_in(tmp_path).claim(10, MiB, 60).calls) == 3  # released, not leased


def test_a_resent_call_without_an_answer_keeps_its_claim_until_the_lease_ends(
    tmp_path: Path,
) -> None:
    wall = WallClock()
    store_in(tmp_path).put(make_calls(2))

    def no_answer(calls: Sequence[WeaveCall]) -> DeliveryReport:
        # the first call: answered 503; the second: the deadline passed mid-request
        answered = DeliveryReport.failed(calls[:1], "/call/start", http_error(503))
        late = DeliveryReport.failed(calls[1:], "/call/start", PostResult(None, "timed out"))
        return answered + late

    timed_out = RecordingSender(answer=no_answer)
    clock = FakeClock()
    store = store_in(tmp_path, now=wall)
    Spooling(timed_out, store, clock.monotonic, lambda activity: None).send([], 1010.0)

    other = store_in(tmp_path, now=wall)
    assert ids(other.claim(10, MiB, 60).calls) == ids(make_calls(1))  # released at once
    wall.now += 10 + 30 + 1  # the deadline's 10 s and the margin
    assert ids(other.claim(10, MiB, 60).calls) == ids(make_calls(2))[1:]


def test_while_the_service_answers_the_spool_is_looked_at_again_every_minute(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    service = Service()
    sender, _, _ = spooling(tmp_path, service, clock)
    sender.send([], DEADLINE)  # the first send: the spool is empty
    store_in(tmp_path).put(make_calls(2))  # another process spooled meanwhile

    sender.send([], DEADLINE)
    clock.advance(60)
    sender.send([], DEADLINE + 60)

    assert [ids(batch) for batch in service.sender.batches] == [[], [], [], ids(make_calls(2))]


def test_resending_stops_at_the_deadline_in_bounded_chunks(tmp_path: Path) -> None:
    store_in(tmp_path, max_bytes=64 * MiB).put(make_calls(600))
    clock = FakeClock()
    service = Service(clock)
    service.seconds_per_send = 1.0
    sender, store, activities = spooling(tmp_path, service, clock, max_bytes=64 * MiB)

    sender.send([], clock.monotonic() + 2.5)

    sizes = [len(batch) for batch in service.sender.batches]
    assert sizes == [0, 256, 256]  # the batch (1 s), two chunks; then the deadline has passed
    assert activities[0].resent.delivered == 512
    assert store.stored()[0] == 88


def test_a_send_while_the_service_is_down_does_not_try_the_spool(tmp_path: Path) -> None:
    store_in(tmp_path).put(make_calls(3))
    service = Service()
    service.up = False
    sender, store, _ = spooling(tmp_path, service)

    sender.send([make_call("f" * 16)], DEADLINE)

    assert [ids(batch) for batch in service.sender.batches] == [["f" * 16]]
    assert store.stored()[0] == 4


def test_a_spool_that_fails_keeps_the_loss_visible_and_never_raises(tmp_path: Path) -> None:
    service = Service()
    service.up = False
    sender, store, activities = spooling(tmp_path, service)

    def disk_error(calls: Sequence[WeaveCall]) -> int:
        raise sqlite3.OperationalError("disk I/O error")

    store.put = disk_error  # type: ignore[method-assign]

    report = sender.send(make_calls(2), DEADLINE)

    assert len(report.failures) == 2  # counted undeliverable, as without a spool
    assert activities == []


def test_what_the_cap_forces_out_is_reported(tmp_path: Path) -> None:
    service = Service()
    service.up = False
    calls = make_calls(3)
    one = len(calls[0].start_json) + len(calls[0].end_json) + 64
    sender, _, activities = spooling(tmp_path, service, max_bytes=2 * one)

    sender.send(calls, DEADLINE)

    assert activities == [SpoolActivity(spooled=3, evicted=1)]


def test_a_fork_hook_never_raises_and_the_child_opens_its_spool_at_first_use(
    tmp_path: Path,
) -> None:
    service = Service()
    service.up = False
    sender, _, activities = spooling(tmp_path, service)
    (tmp_path / SPOOL_FILE_NAME).unlink()
    (tmp_path / SPOOL_FILE_NAME).mkdir()  # unusable from now on

    sender.after_fork()  # in the child's at-fork hook: must not raise

    report = sender.send(make_calls(1), DEADLINE)
    assert len(report.failures) == 1  # the loss stays visible
    assert activities == []


def test_in_call_end_a_call_whose_end_failed_is_spooled_and_resent_whole(tmp_path: Path) -> None:
    down = {"end": True}
    poster = RecordingPoster(
        answer=lambda path, body: (
            http_error(503) if path == "/call/end" and down["end"] else PostResult(200)
        )
    )
    writer = CallEndWriter(poster, max_concurrency=1, monotonic=FakeClock().monotonic)
    sender = Spooling(writer, store_in(tmp_path), FakeClock().monotonic, lambda activity: None)
    sender.send([], DEADLINE)  # the first send: the spool is empty

    sender.send([make_call()], DEADLINE)
    down["end"] = False
    sender.send([], DEADLINE)

    assert poster.paths() == ["/call/start", "/call/end", "/call/start", "/call/end"]


def test_keep_spools_without_sending(tmp_path: Path) -> None:
    service = Service()
    sender, store, activities = spooling(tmp_path, service)

    assert sender.keep(make_calls(2)) == 2

    assert service.sender.batches == []
    assert activities == [SpoolActivity(spooled=2)]
    assert store.stored()[0] == 2


# --- the pipeline: where the spool sits, and what the counters say ---


def spans(record_spans: Record, count: int, prefix: str = "span") -> list[ReadableSpan]:
    def emit(tracer: Tracer) -> None:
        for index in range(count):
            with tracer.start_as_current_span(f"{prefix}-{index}"):
                pass

    return record_spans(emit)


def test_a_pipeline_spools_through_an_outage_and_resends_once_it_is_over(
    tmp_path: Path, outage: ScriptedServer, record_spans: Record
) -> None:
    pipeline = ExportPipeline(
        settings_for(outage.url, spool_dir=str(tmp_path), write_mode="upsert_batch"),
        retry_policy=NO_WAIT_RETRIES,
    )
    down = pipeline.export_batch(spans(record_spans, 3), time.monotonic() + 0.2)

    assert (down.ok, down.delivery.failures) == (False, ())
    assert pipeline.stats().calls_undeliverable == 0  # kept, not lost
    assert pipeline.stats().calls_spooled == 3
    assert len(spooled_ids(tmp_path)) == 3

    outage.responder = lambda seen: None  # the service is back: 200
    pipeline.export_batch(spans(record_spans, 1, "later"), time.monotonic() + 10)

    assert (pipeline.stats().calls_exported, pipeline.stats().calls_unspooled) == (1, 3)
    assert spooled_ids(tmp_path) == set()
    # The last two: an attempt cut short by the outage's deadline may have sent no body.
    sent = [seen for seen in outage.seen if seen.path == "/call/upsert_batch"][-2:]
    assert [len(seen.json()["batch"]) // 2 for seen in sent] == [1, 3]  # the new batch first
    pipeline.close()


def test_spilling_spools_spans_unsent_and_says_how_many(
    tmp_path: Path, outage: ScriptedServer, record_spans: Record
) -> None:
    pipeline = ExportPipeline(settings_for(outage.url, spool_dir=str(tmp_path)))
    without = ExportPipeline(settings_for(outage.url))

    assert pipeline.spill(spans(record_spans, 4)) == 4
    assert without.spill(spans(record_spans, 4)) == 0

    assert len(spooled_ids(tmp_path)) == 4
    assert outage.seen == []
    pipeline.close()
    without.close()


def test_what_the_cap_forces_out_is_counted_as_lost(
    tmp_path: Path, outage: ScriptedServer, record_spans: Record
) -> None:
    def pipeline_over(directory: Path, max_bytes: int) -> ExportPipeline:
        settings = settings_for(outage.url, spool_dir=str(directory), spool_max_bytes=max_bytes)
        return ExportPipeline(settings, retry_policy=NO_WAIT_RETRIES)

    sizing = pipeline_over(tmp_path / "sizing", MiB)
    sizing.export_batch(spans(record_spans, 1), time.monotonic() + 0.2)
    one_call = store_in(tmp_path / "sizing").stored()[1]
    pipeline = pipeline_over(tmp_path / "small", one_call + one_call // 2)

    pipeline.export_batch(spans(record_spans, 2), time.monotonic() + 0.2)

    stats = pipeline.stats()
    assert (stats.calls_spool_evicted, stats.calls_undeliverable) == (1, 0)
    assert stats.calls_failed == 1
    assert len(spooled_ids(tmp_path / "small")) == 1
    sizing.close()
    pipeline.close()


# --- whole processes: an outage, SIGKILL, a restart ---

_APP = """
import sys, time
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.exporter.weave import WeaveSpanProcessor

url, spool_dir, prefix, count, timeout, then = sys.argv[1:]
processor = WeaveSpanProcessor(
    api_key=API_KEY, project=PROJECT, server_url=url, spool_dir=spool_dir,
    export_timeout_millis=int(timeout), schedule_delay_millis=20,
)
provider = TracerProvider(shutdown_on_exit=False)
provider.add_span_processor(processor)
tracer = provider.get_tracer("spool-test")
for index in range(int(count)):
    with tracer.start_as_current_span(f"{prefix}-{index}"):
        pass
processor.force_flush(30_000)
print("flushed", flush=True)
if then == "hang":  # still in the outage, and still making spans, when it is killed
    while True:
        with tracer.start_as_current_span(f"{prefix}-late"):
            pass
        time.sleep(0.005)
processor.shutdown()
"""


def start_app(
    tmp_path: Path, url: str, spool_dir: Path, prefix: str, count: int, then: str
) -> subprocess.Popen[str]:
    """The app: ``count`` spans, a flush, then ``hang`` (emitting more) or ``exit``.

    In an outage (``hang``) each export gives up after 0.3 s; once the service is back, 10 s
    leave the restarted app time to re-send everything spooled.
    """
    timeout = 300 if then == "hang" else 10_000
    app = tmp_path / "app.py"
    app.write_text(f"API_KEY = {API_KEY!r}\nPROJECT = {PROJECT!r}\n" + _APP)
    env = {name: value for name, value in os.environ.items() if not name.startswith("WEAVE_")}
    return subprocess.Popen(
        [sys.executable, str(app), url, str(spool_dir), prefix, str(count), str(timeout), then],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def killed_mid_outage(app: subprocess.Popen[str]) -> None:
    assert app.stdout is not None
    assert app.stdout.readline() == "flushed\n", app.stderr.read() if app.stderr else ""
    time.sleep(0.2)  # more spans, and their failed exports, while the service is down
    app.send_signal(signal.SIGKILL)
    app.wait(10)


def finished(app: subprocess.Popen[str]) -> str:
    _, stderr = app.communicate(timeout=60)
    assert app.returncode == 0, stderr
    return stderr


def spooled_ids(spool_dir: Path) -> set[str]:
    uri = f"file:{spool_dir / SPOOL_FILE_NAME}?mode=ro"
    with contextlib.closing(sqlite3.connect(uri, uri=True)) as connection:
        return {row[0] for row in connection.execute("SELECT call_id FROM calls")}


@pytest.fixture
def outage() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        server.responder = lambda seen: Reply(503)
        yield server


def assert_each_call_stored_once(receiver: LocalWeaveServer, expected: set[str]) -> None:
    starts, ends = receiver.start_writes(), receiver.end_writes()
    assert expected <= set(starts)
    assert {call_id: starts[call_id] for call_id in expected} == dict.fromkeys(expected, 1)
    assert {call_id: ends[call_id] for call_id in expected} == dict.fromkeys(expected, 1)


def test_calls_spooled_by_a_process_killed_mid_outage_are_delivered_once_after_restart(
    tmp_path: Path, outage: ScriptedServer, receiver: LocalWeaveServer
) -> None:
    spool_dir = tmp_path / "spool"
    killed_mid_outage(start_app(tmp_path, outage.url, spool_dir, "before", 20, "hang"))
    spooled = spooled_ids(spool_dir)
    assert len(spooled) >= 20
    assert outage.seen  # the service was asked, and answered 503

    finished(start_app(tmp_path, receiver.url, spool_dir, "after", 3, "exit"))

    assert_each_call_stored_once(receiver, spooled)
    assert len(receiver.start_writes()) == len(spooled) + 3
    assert spooled_ids(spool_dir) == set()


def test_processes_sharing_a_spool_deliver_every_call_exactly_once(
    tmp_path: Path, outage: ScriptedServer, receiver: LocalWeaveServer
) -> None:
    spool_dir = tmp_path / "spool"
    down = [start_app(tmp_path, outage.url, spool_dir, f"p{n}", 30, "hang") for n in range(2)]
    for app in down:
        killed_mid_outage(app)
    spooled = spooled_ids(spool_dir)
    assert receiver.start_writes() == {}

    back = [start_app(tmp_path, receiver.url, spool_dir, f"q{n}", 1, "exit") for n in range(2)]
    for app in back:
        finished(app)

    assert len(spooled) >= 60
    assert_each_call_stored_once(receiver, spooled)
    assert len(receiver.start_writes()) == len(spooled) + 2
    assert spooled_ids(spool_dir) == set()


def test_a_process_with_a_corrupt_spool_file_exports_and_keeps_the_file(
    tmp_path: Path, receiver: LocalWeaveServer
) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    (spool_dir / SPOOL_FILE_NAME).write_bytes(b"\x00garbage" * 1000)

    stderr = finished(start_app(tmp_path, receiver.url, spool_dir, "fine", 3, "exit"))

    assert "unreadable" in stderr
    assert len(receiver.start_writes()) == 3
    assert [p.read_bytes() for p in spool_dir.glob("*.corrupt-*")] == [b"\x00garbage" * 1000]
