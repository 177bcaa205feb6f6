"""The delivery wrappers, each alone over a fake poster or inner sender: no sockets, no sleeps."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence

import pytest

from opentelemetry.exporter.weave import WriteMode
from opentelemetry.exporter.weave._call import (
    CALL_END_ROUTE,
    CALL_START_ROUTE,
    CALLS_COMPLETE_MODE_REQUIRED,
    UPSERT_BATCH_ROUTE,
    WeaveCall,
    calls_complete_body,
    calls_complete_route,
    upsert_batch_body,
)
from opentelemetry.exporter.weave._config import SETTINGS
from opentelemetry.exporter.weave._delivery import (
    _SLOW_CALL_SECONDS,
    AutoUpgrade,
    CallEndWriter,
    CallFailure,
    CallSender,
    DeliveryReport,
    Packing,
    SplitOnRefusal,
    write_mode_for,
)
from opentelemetry.exporter.weave._stats import LossReason
from opentelemetry.exporter.weave._transport import PostResult

from .helpers import (
    FakeClock,
    RecordingPoster,
    RecordingSender,
    http_error,
    make_call,
    make_calls,
    settings_for,
)

LOGGER = "opentelemetry.exporter.weave"
NOW = FakeClock().monotonic()
DEADLINE = NOW + 30
V2_ROUTE = calls_complete_route(*settings_for().project_id.split("/"))
BATCHED_ROUTES = {
    "upsert_batch": (UPSERT_BATCH_ROUTE, upsert_batch_body),
    "calls_complete": (V2_ROUTE, calls_complete_body),
}
V2_REQUIRED = http_error(400, "use v2", body={"error_code": CALLS_COMPLETE_MODE_REQUIRED})

Answer = Callable[[str, bytes], PostResult]
Body = Callable[[Sequence[WeaveCall]], bytes]


def ids_in(path: str, body: bytes) -> list[str]:
    """The ids of the calls a write request carries, in body order (a start's, for upsert)."""
    sent = json.loads(body)
    if path == CALL_START_ROUTE:
        return [sent["start"]["id"]]
    if path == CALL_END_ROUTE:
        return [sent["end"]["id"]]
    if path == UPSERT_BATCH_ROUTE:
        return [item["req"]["start"]["id"] for item in sent["batch"] if item["mode"] == "start"]
    return [item["id"] for item in sent["batch"]]


def ids(calls: Sequence[WeaveCall]) -> list[str]:
    return [call.start.id for call in calls]


def failed_ids(report: DeliveryReport) -> list[str]:
    return [failure.call.start.id for failure in report.failures]


def writer(poster: RecordingPoster, max_concurrency: int = 4) -> CallEndWriter:
    return CallEndWriter(poster, max_concurrency, FakeClock().monotonic)


def refusing(refused_id: str, route: str, result: PostResult) -> Answer:
    """Answers ``result`` to requests to ``route`` that carry the call ``refused_id``."""

    def answer(path: str, body: bytes) -> PostResult:
        if path == route and refused_id in ids_in(path, body):
            return result
        return PostResult(200)

    return answer


# CallEndWriter: each call's start, then its end.


def test_start_is_sent_and_accepted_before_its_end() -> None:
    events: list[tuple[str, str]] = []

    def answer(path: str, body: bytes) -> PostResult:
        (call_id,) = ids_in(path, body)
        # Logged as the start's answer is given: the end must come after it.
        events.append(("answered" if path == CALL_START_ROUTE else "end sent", call_id))
        return PostResult(200)

    report = writer(RecordingPoster(answer)).send(make_calls(4), DEADLINE)

    starts = {call_id: at for at, (event, call_id) in enumerate(events) if event == "answered"}
    ends = {call_id: at for at, (event, call_id) in enumerate(events) if event == "end sent"}
    assert len(starts) == 4
    assert starts.keys() == ends.keys()
    for call_id, ended_at in ends.items():
        assert starts[call_id] < ended_at
    assert (report.delivered, report.failures) == (4, ())


def test_no_end_when_its_start_was_refused() -> None:
    answers = [http_error(400, "op_name too long")]
    poster = RecordingPoster(
        lambda path, body: (
            answers.pop() if path == CALL_START_ROUTE and answers else PostResult(200)
        )
    )

    report = writer(poster, max_concurrency=1).send(make_calls(4), DEADLINE)

    start_ids = [
        ids_in(*request)[0] for request in poster.requests if request[0] == CALL_START_ROUTE
    ]
    end_ids = [ids_in(*request)[0] for request in poster.requests if request[0] == CALL_END_ROUTE]
    refused = start_ids[0]
    assert refused not in end_ids
    assert sorted(end_ids) == sorted(start_ids[1:])
    assert failed_ids(report) == [refused]
    assert report.delivered == 3


@pytest.mark.parametrize("route", [CALL_START_ROUTE, CALL_END_ROUTE])
def test_a_failure_names_the_route_that_refused(route: str) -> None:
    calls = make_calls(3)
    refusal = http_error(403, "read-only")

    report = writer(RecordingPoster(refusing(calls[1].start.id, route, refusal))).send(
        calls, DEADLINE
    )

    assert report.failures == (CallFailure(calls[1], route, refusal),)
    assert report.delivered == 2


@pytest.mark.parametrize(
    ("start", "end", "retries", "delivered"),
    [
        pytest.param(PostResult(200, attempts=3), PostResult(200, attempts=2), 3, 1, id="both-ok"),
        pytest.param(
            PostResult(200, attempts=3), PostResult(503, attempts=4), 5, 0, id="end-failed"
        ),
        pytest.param(PostResult(503, attempts=4), PostResult(200, attempts=9), 3, 0, id="no-end"),
    ],
)
def test_retries_are_summed_from_the_attempts_of_each_request(
    start: PostResult, end: PostResult, retries: int, delivered: int
) -> None:
    poster = RecordingPoster(lambda path, body: start if path == CALL_START_ROUTE else end)

    report = writer(poster).send([make_call()], DEADLINE)

    assert (report.retries, report.delivered) == (retries, delivered)


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(CallEndWriter, id="CallEndWriter"),
        pytest.param(
            lambda poster, width, monotonic: sender_for(
                WriteMode.CALL_END, poster, max_concurrency=width, monotonic=monotonic
            ),
            id="write_mode_for",
        ),
    ],
)
def test_calls_go_out_concurrently_up_to_max_concurrency(
    build: Callable[[RecordingPoster, int, Callable[[], float]], CallSender],
) -> None:
    width = 3
    lock = threading.Lock()
    in_flight = peak = 0
    senders: set[threading.Thread] = set()
    all_in = threading.Event()
    all_started = threading.Event()

    def monotonic() -> float:
        # The writer reads its clock to wait for its senders, once it has started the first;
        # the others start while the first posts are held (each a slow call).
        all_started.set()
        return NOW

    def answer(path: str, body: bytes) -> PostResult:
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
            senders.add(threading.current_thread())
            if in_flight == width:
                all_in.set()
        # The first posts are held until `width` are in flight together and every sender has
        # started, so that a sender too many finds calls left and shows in `peak`. If `width`
        # never are in flight, the first to give up lets everyone through: `peak` fails.
        if not (all_in.wait(2) and all_started.wait(2)):
            all_in.set()
        with lock:
            in_flight -= 1
        return PostResult(200)

    report = build(RecordingPoster(answer), width, monotonic).send(make_calls(10), DEADLINE)

    assert report.delivered == 10
    assert peak == width
    assert len(senders) == width


def test_a_service_that_answers_at_once_is_served_by_one_sender() -> None:
    calls = make_calls(10)
    senders: set[threading.Thread] = set()
    looked = threading.Semaphore(0)

    def frozen_clock() -> float:  # no call is ever on its way for any time
        if threading.current_thread() is threading.main_thread():
            looked.release()  # the writer looked whether to start another sender
        return NOW

    def answer(path: str, body: bytes) -> PostResult:
        senders.add(threading.current_thread())
        if ids_in(path, body) == [calls[0].start.id] and path == CALL_START_ROUTE:
            for _ in range(3):  # the writer looks three times while this call is on its way
                assert looked.acquire(timeout=10)
        return PostResult(200)

    writer = CallEndWriter(RecordingPoster(answer), 4, FakeClock().monotonic, wall=frozen_clock)
    report = writer.send(calls, DEADLINE)

    assert report.delivered == 10
    assert len(senders) == 1


def test_the_setting_documents_when_another_sender_starts() -> None:
    (setting,) = [setting for setting in SETTINGS if setting.name == "max_concurrency"]
    assert f"on its way for {_SLOW_CALL_SECONDS * 1000:g} ms" in setting.doc


def test_another_sender_starts_beside_a_call_that_is_slow() -> None:
    calls = make_calls(6)
    wall = [NOW]
    held, release = threading.Event(), threading.Event()
    senders: dict[str, threading.Thread] = {}

    def answer(path: str, body: bytes) -> PostResult:
        (call_id,) = ids_in(path, body)
        senders[call_id] = threading.current_thread()
        if call_id == calls[0].start.id and path == CALL_START_ROUTE:
            held.set()
            release.wait(10)  # slow: until the other calls have gone out beside it
        elif len(senders) == len(calls):
            release.set()
        return PostResult(200)

    def slow_clock() -> float:
        if held.is_set():  # the first call has been on its way long enough for a second sender
            wall[0] = NOW + 0.01
        return wall[0]

    writer = CallEndWriter(RecordingPoster(answer), 2, FakeClock().monotonic, wall=slow_clock)
    try:
        report = writer.send(calls, DEADLINE)
    finally:
        release.set()

    assert report.delivered == 6
    first = senders[calls[0].start.id]
    assert {senders[call.start.id] for call in calls[1:]} == {senders[calls[1].start.id]}
    assert senders[calls[1].start.id] is not first  # the rest went beside the slow call


@pytest.mark.parametrize("first_ends_first", [False, True])
def test_a_sender_that_cannot_start_leaves_the_calls_to_those_running(
    monkeypatch: pytest.MonkeyPatch, first_ends_first: bool
) -> None:
    calls = make_calls(4)
    held, release = threading.Event(), threading.Event()
    running: list[threading.Thread] = []
    refused: list[threading.Thread] = []

    class OneThreadOnly(threading.Thread):
        def start(self) -> None:
            if not running:
                running.append(self)
                super().start()
                return
            refused.append(self)
            release.set()  # the first sender goes on with every call
            if first_ends_first:  # and is done before this start fails
                running[0].join(10)
            raise RuntimeError("can't start new thread")

    def answer(path: str, body: bytes) -> PostResult:
        if ids_in(path, body) == [calls[0].start.id]:
            held.set()
            release.wait(10)  # slow: the writer tries to start another sender beside it
        return PostResult(200)

    writer = CallEndWriter(
        RecordingPoster(answer),
        3,
        FakeClock().monotonic,
        wall=lambda: NOW + 1 if held.is_set() else NOW,
    )
    reports: list[DeliveryReport] = []
    # Made before the patch; the clock never reaches the deadline: a writer left waiting for
    # a sender that never started would wait on.
    sending = threading.Thread(target=lambda: reports.append(writer.send(calls, DEADLINE)))
    sending.daemon = True
    monkeypatch.setattr(threading, "Thread", OneThreadOnly)
    try:
        sending.start()
        sending.join(10)
    finally:
        release.set()

    assert not sending.is_alive()  # done once the first sender was
    assert len(refused) == 1  # tried once, then no more
    (report,) = reports
    assert (report.delivered, report.failures) == (4, ())


def test_a_bug_costs_only_the_call_it_hit() -> None:
    calls = make_calls(3)

    def answer(path: str, body: bytes) -> PostResult:
        if ids_in(path, body) == [calls[1].start.id]:
            raise RuntimeError("boom")
        return PostResult(200)

    report = writer(RecordingPoster(answer)).send(calls, DEADLINE)

    (failure,) = report.failures
    assert failure.call is calls[1]
    assert (failure.route, failure.result.status_code) == (CALL_START_ROUTE, None)
    assert failure.result.reason == "not sent: RuntimeError: boom"
    assert report.delivered == 2


def test_calls_not_finished_by_the_deadline_fail_as_deadline_reached() -> None:
    calls = make_calls(3)
    stuck = threading.Event()
    release = threading.Event()

    def answer(path: str, body: bytes) -> PostResult:
        if ids_in(path, body) == [calls[1].start.id]:
            stuck.set()
            release.wait(10)
        return PostResult(200)

    def clock_past_the_deadline_once_stuck() -> float:
        # The writer reads its clock only to wait for its senders: by then the one sender
        # has delivered the first call and is stuck in the second's start.
        stuck.wait(10)
        return DEADLINE + 1

    poster = RecordingPoster(answer)
    try:
        report = CallEndWriter(poster, 1, clock_past_the_deadline_once_stuck).send(calls, DEADLINE)
    finally:
        release.set()

    assert report.delivered == 1
    assert [failure.call for failure in report.failures] == calls[1:]
    for failure in report.failures:
        assert failure.route == CALL_START_ROUTE
        assert (failure.result.status_code, failure.result.reason) == (
            None,
            "export deadline reached",
        )
        assert failure.kind is LossReason.UNDELIVERABLE


# SplitOnRefusal: many calls in one request, halved on 413 and 422.


def splitter(route: str, body: Body, answer: Answer) -> tuple[SplitOnRefusal, RecordingPoster]:
    poster = RecordingPoster(answer)
    return SplitOnRefusal(poster, route, body), poster


batched_routes = pytest.mark.parametrize(
    ("route", "body"), list(BATCHED_ROUTES.values()), ids=list(BATCHED_ROUTES)
)


@batched_routes
def test_many_calls_go_in_one_request(route: str, body: Body) -> None:
    calls = make_calls(5)
    sender, poster = splitter(route, body, lambda path, sent: PostResult(200, attempts=3))

    report = sender.send(calls, DEADLINE)

    assert poster.requests == [(route, body(calls))]
    assert report == DeliveryReport(delivered=5, retries=2)


@batched_routes
def test_413_halves_the_request_until_it_fits(route: str, body: Body) -> None:
    calls = make_calls(8)
    limit = len(body(calls[:2]))  # the calls are all the same size: two per request fit
    statuses: list[int] = []

    def answer(path: str, sent: bytes) -> PostResult:
        result = http_error(413, "too large") if len(sent) > limit else PostResult(200)
        statuses.append(result.status_code or 0)
        return result

    sender, poster = splitter(route, body, answer)
    report = sender.send(calls, DEADLINE)

    assert statuses == [413, 413, 200, 200, 413, 200, 200]  # whole, half, quarters
    accepted = [
        ids_in(*request)
        for request, status in zip(poster.requests, statuses, strict=True)
        if status == 200
    ]
    assert sorted(call_id for request in accepted for call_id in request) == sorted(ids(calls))
    assert report == DeliveryReport(delivered=8, splits=3)


@batched_routes
@pytest.mark.parametrize(
    ("status", "kind"), [(413, LossReason.TOO_LARGE), (422, LossReason.REJECTED)]
)
def test_a_refused_request_is_halved_down_to_the_one_bad_call(
    route: str,
    body: Body,
    status: int,
    kind: LossReason,
) -> None:
    calls = make_calls(9)
    bad = calls[5] = make_call(calls[5].start.id, attributes={"poison": True})
    refusal = http_error(status, "bad value")
    sender, poster = splitter(
        route, body, lambda path, sent: refusal if b'"poison"' in sent else PostResult(200)
    )

    report = sender.send(calls, DEADLINE)

    assert report.failures == (CallFailure(bad, route, refusal),)
    assert report.failures[0].kind is kind
    assert report.delivered == 8
    assert report.splits == 3  # 9 calls → 5 → 2 → the bad one alone
    assert len(poster.requests) == 1 + 2 * report.splits  # each split sends both halves
    refused = [request for request in poster.requests if b'"poison"' in request[1]]
    assert len(refused) == report.splits + 1
    accepted = [ids_in(*request) for request in poster.requests if request not in refused]
    assert sorted(call_id for request in accepted for call_id in request) == sorted(
        call_id for call_id in ids(calls) if call_id != bad.start.id
    )


@pytest.mark.parametrize(
    "result",
    [
        http_error(400, "bad request"),
        http_error(403, "read-only"),
        http_error(503, "down"),
        PostResult(None, "ConnectError", attempts=3),
    ],
    ids=["400", "403", "503", "no-answer"],
)
def test_other_refusals_fail_the_whole_request_without_splitting(result: PostResult) -> None:
    calls = make_calls(4)
    sender, poster = splitter(UPSERT_BATCH_ROUTE, upsert_batch_body, lambda path, sent: result)

    report = sender.send(calls, DEADLINE)

    assert len(poster.requests) == 1
    assert report == DeliveryReport.failed(calls, UPSERT_BATCH_ROUTE, result)  # no splits


@batched_routes
def test_splitting_nothing_sends_nothing(route: str, body: Body) -> None:
    sender, poster = splitter(route, body, lambda path, sent: PostResult(200))

    assert sender.send([], DEADLINE) == DeliveryReport()
    assert poster.requests == []


# Packing: consecutive calls into requests under the budget.

CALL_SIZE = make_call().encoded_size


@pytest.mark.parametrize(
    ("budget", "chunk_sizes"),
    [
        (CALL_SIZE, [1, 1, 1, 1, 1]),
        (2 * CALL_SIZE, [2, 2, 1]),
        (3 * CALL_SIZE - 1, [2, 2, 1]),
        (3 * CALL_SIZE, [3, 2]),
        (100 * CALL_SIZE, [5]),
    ],
)
def test_packing_fills_each_request_up_to_the_budget(budget: int, chunk_sizes: list[int]) -> None:
    calls = make_calls(5)
    inner = RecordingSender()

    report = Packing(inner, budget).send(calls, DEADLINE)

    assert [len(batch) for batch in inner.batches] == chunk_sizes
    assert [call for batch in inner.batches for call in batch] == calls  # in order
    assert all(sum(call.encoded_size for call in batch) <= budget for batch in inner.batches)
    assert report.delivered == 5


@pytest.mark.parametrize("place", [0, 2, 4])
def test_an_oversized_call_goes_alone_and_keeps_its_place(place: int) -> None:
    small = make_calls(4)
    big = make_call("ffffffffffffffff", inputs={"text": "x" * (5 * CALL_SIZE)})
    calls = [*small[:place], big, *small[place:]]
    inner = RecordingSender()

    Packing(inner, 2 * CALL_SIZE).send(calls, DEADLINE)

    pairs = [small[:2], small[2:]]
    assert inner.batches == [*pairs[: place // 2], [big], *pairs[place // 2 :]]


def test_packing_adds_up_the_reports_of_its_requests() -> None:
    inner = RecordingSender(lambda calls: DeliveryReport(delivered=len(calls), retries=1))

    report = Packing(inner, 2 * CALL_SIZE).send(make_calls(5), DEADLINE)

    assert report == DeliveryReport(delivered=5, retries=3)


# AutoUpgrade: v1 until the project asks for complete calls, then v2 for good.


def v1_answering(needs_v2: set[str], refused: set[str]) -> RecordingSender:
    """A v1 sender: ``needs_v2`` calls refused for v2, ``refused`` otherwise, others delivered."""

    def answer(calls: Sequence[WeaveCall]) -> DeliveryReport:
        report = DeliveryReport(retries=2)
        for call in calls:
            if call.start.id in needs_v2:
                report += DeliveryReport.failed([call], CALL_START_ROUTE, V2_REQUIRED)
            elif call.start.id in refused:
                report += DeliveryReport.failed([call], CALL_END_ROUTE, http_error(403))
            else:
                report += DeliveryReport(delivered=1)
        return report

    return RecordingSender(answer)


def test_auto_upgrades_once_and_resends_only_what_v1_refused_for_v2(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = make_calls(4)
    v1 = v1_answering(needs_v2={calls[1].start.id, calls[2].start.id}, refused={calls[3].start.id})
    v2 = RecordingSender()
    sender = AutoUpgrade(v1, v2, "POST /v2 (e/p)")

    with caplog.at_level(logging.INFO, logger=LOGGER):
        first = sender.send(calls, DEADLINE)
        later = make_calls(2)
        second = sender.send(later, DEADLINE)

    assert v2.batches == [calls[1:3], later]
    assert v1.batches == [calls]  # after the upgrade, v1 is never asked again
    assert failed_ids(first) == [calls[3].start.id]  # the other refusal is kept
    assert first.failures[0].route == CALL_END_ROUTE
    assert (first.delivered, first.retries) == (3, 2)
    assert second == DeliveryReport(delivered=2)
    assert sender.upgraded
    (upgrade,) = [record for record in caplog.records if record.name == LOGGER]
    assert upgrade.levelno == logging.INFO
    message = upgrade.getMessage()
    assert "accepts only complete calls" in message
    assert CALLS_COMPLETE_MODE_REQUIRED in message
    assert CALL_START_ROUTE in message
    assert "POST /v2 (e/p)" in message
    assert "2 call(s)" in message


def test_auto_stays_on_v1_when_no_refusal_asks_for_v2(caplog: pytest.LogCaptureFixture) -> None:
    calls = make_calls(3)
    v1 = v1_answering(needs_v2=set(), refused={calls[0].start.id})
    v2 = RecordingSender()
    sender = AutoUpgrade(v1, v2, "v2")

    with caplog.at_level(logging.INFO, logger=LOGGER):
        report = sender.send(calls, DEADLINE)
        sender.send(calls, DEADLINE)

    assert failed_ids(report) == [calls[0].start.id]
    assert report.delivered == 2
    assert (len(v1.batches), v2.batches) == (2, [])
    assert not sender.upgraded
    assert caplog.records == []


# write_mode_for: each write mode, by the requests it makes.


def sender_for(
    mode: WriteMode,
    poster: RecordingPoster,
    budget: int = 10**6,
    max_concurrency: int = 1,
    monotonic: Callable[[], float] | None = None,
) -> CallSender:
    settings = settings_for(write_mode=mode.value, max_concurrency=max_concurrency)
    return write_mode_for(settings, poster, budget, monotonic or FakeClock().monotonic)


@pytest.mark.parametrize("mode", [WriteMode.CALL_END, WriteMode.AUTO])
def test_call_end_modes_write_each_start_then_its_end(mode: WriteMode) -> None:
    calls = make_calls(3)
    poster = RecordingPoster()

    report = sender_for(mode, poster).send(calls, DEADLINE)

    # max_concurrency=1: one call after the other, so the whole order is known.
    expected = [
        (route, call.start.id) for call in calls for route in (CALL_START_ROUTE, CALL_END_ROUTE)
    ]
    assert [(path, *ids_in(path, body)) for path, body in poster.requests] == expected
    assert report.delivered == 3


@pytest.mark.parametrize("mode", [WriteMode.UPSERT_BATCH, WriteMode.CALLS_COMPLETE])
def test_batched_modes_write_one_request_per_budget(mode: WriteMode) -> None:
    route, body = BATCHED_ROUTES[mode.value]
    calls = make_calls(3)
    poster = RecordingPoster()

    report = sender_for(mode, poster, budget=2 * CALL_SIZE).send(calls, DEADLINE)

    assert poster.requests == [(route, body(calls[:2])), (route, body(calls[2:]))]
    assert report.delivered == 3


@pytest.mark.parametrize("mode", [WriteMode.UPSERT_BATCH, WriteMode.CALLS_COMPLETE])
def test_batched_modes_split_on_refusal(mode: WriteMode) -> None:
    poster = RecordingPoster(
        lambda path, body: http_error(413) if len(ids_in(path, body)) > 1 else PostResult(200)
    )

    report = sender_for(mode, poster).send(make_calls(2), DEADLINE)

    assert (len(poster.requests), report.splits, report.delivered) == (3, 1, 2)


def test_auto_upgrades_to_calls_complete_of_the_settings_project() -> None:
    calls = make_calls(3)
    poster = RecordingPoster(
        lambda path, body: PostResult(200) if path == V2_ROUTE else V2_REQUIRED
    )

    report = sender_for(WriteMode.AUTO, poster).send(calls, DEADLINE)

    assert poster.paths() == [CALL_START_ROUTE] * 3 + [V2_ROUTE]
    assert poster.requests[-1][1] == calls_complete_body(calls)
    assert (report.delivered, report.failures) == (3, ())


@pytest.mark.parametrize("mode", [WriteMode.CALL_END, WriteMode.UPSERT_BATCH])
def test_explicit_v1_modes_are_refused_not_upgraded(mode: WriteMode) -> None:
    poster = RecordingPoster(lambda path, body: V2_REQUIRED)

    report = sender_for(mode, poster).send(make_calls(3), DEADLINE)

    assert V2_ROUTE not in poster.paths()
    assert len(report.failures) == 3
    assert report.delivered == 0


@pytest.mark.parametrize("mode", list(WriteMode))
def test_an_empty_batch_sends_nothing(mode: WriteMode) -> None:
    poster = RecordingPoster()

    assert sender_for(mode, poster).send([], DEADLINE) == DeliveryReport()
    assert poster.requests == []


@pytest.mark.parametrize("mode", list(WriteMode))
def test_every_request_runs_to_the_batch_deadline(mode: WriteMode) -> None:
    deadlines: list[float] = []

    class DeadlineRecorder(RecordingPoster):
        def post(self, path: str, body: bytes, deadline: float) -> PostResult:
            deadlines.append(deadline)
            return super().post(path, body, deadline)

    sender_for(mode, DeadlineRecorder()).send(make_calls(3), DEADLINE)

    assert deadlines
    assert set(deadlines) == {DEADLINE}


# What a failure counts as, and how reports add up.


@pytest.mark.parametrize(
    ("result", "kind"),
    [
        (http_error(413), LossReason.TOO_LARGE),
        (http_error(400), LossReason.REJECTED),
        (http_error(403), LossReason.REJECTED),
        (http_error(422), LossReason.REJECTED),
        (http_error(408), LossReason.UNDELIVERABLE),
        (http_error(429), LossReason.UNDELIVERABLE),
        (http_error(503), LossReason.UNDELIVERABLE),
        (PostResult(None, "ConnectError"), LossReason.UNDELIVERABLE),
    ],
    ids=["413", "400", "403", "422", "408", "429", "503", "no-answer"],
)
def test_failure_kind(result: PostResult, kind: LossReason) -> None:
    assert CallFailure(make_call(), CALL_START_ROUTE, result).kind is kind


def test_reports_add_up_field_by_field() -> None:
    calls = make_calls(2)
    failed = DeliveryReport.failed(calls, V2_ROUTE, PostResult(503, attempts=4))
    assert [(failure.call, failure.route) for failure in failed.failures] == [
        (call, V2_ROUTE) for call in calls
    ]
    assert failed.retries == 3
    total = failed + DeliveryReport(delivered=5, truncated=1, retries=2, splits=1)
    assert total == DeliveryReport(5, failed.failures, truncated=1, retries=5, splits=1)
