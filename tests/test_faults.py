"""Proof under faults: real HTTP on 127.0.0.1 to servers that misbehave on command.

For each fault, one end-to-end case: what is delivered, what is dropped and why, and that the
exporter's counters agree with the server's own log of what it saw and answered. Retries are
told apart in that log by the ``X-Weave-Retry-Id`` header, which only a re-sent request
carries. Retries do not wait out real backoff: ``NO_WAIT_RETRIES``, or a fake clock where the
waiting is what is tested. The rules each fault exercises are unit-tested at their own layer
(``test_retry.py``, ``test_transport.py``, ``test_delivery.py``).
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import cycle
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import Tracer

from opentelemetry.exporter.weave import WeaveSpanExporter, WeaveSpanProcessor
from opentelemetry.exporter.weave._retry import RetryPolicy
from opentelemetry.exporter.weave.testing import LocalWeaveServer

from .fault_server import Reply, ScriptedServer, Seen, TLSServer, untrusted_certificate
from .helpers import (
    API_KEY,
    NO_WAIT_RETRIES,
    PROJECT,
    FakeClock,
    make_processor,
    make_tracer,
    wait_until,
)

LOGGER = "opentelemetry.exporter.weave"
RETRY_ID = "x-weave-retry-id"
V2_ROUTE = f"/v2/{PROJECT}/calls/complete"
ERROR_PAGE = (
    b"<html><head><title>Error</title></head><body><h1>nginx says no</h1>"
    + b"." * 20_000
    + b"</body></html>"
)

Tracing = Callable[..., tuple[WeaveSpanProcessor, Tracer]]


@dataclass(frozen=True)
class Logged:
    """One request as the server logged it, with the status the client got (None: none)."""

    path: str
    status: int | None
    body: bytes
    retry_id: str | None

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def receiver_log(server: LocalWeaveServer) -> list[Logged]:
    return [
        Logged(request.path, request.status, request.body, request.headers.get(RETRY_ID))
        for request in server.requests()
    ]


def scripted_log(server: ScriptedServer, http_timeout_seconds: float = 10.0) -> list[Logged]:
    """A reply that reset the connection, or came after the client's timeout, reached no one."""
    log = []
    for seen, reply in list(server.answers):
        lost = reply.reset or reply.delay_seconds >= http_timeout_seconds
        status = None if lost else reply.status
        log.append(Logged(seen.path, status, seen.body, seen.headers.get(RETRY_ID)))
    return log


def call_ids(logged: Logged) -> list[str]:
    """The ids of the calls a write request carries."""
    body = json.loads(logged.body)
    if logged.path == "/call/start":
        return [body["start"]["id"]]
    if logged.path == "/call/end":
        return [body["end"]["id"]]
    if logged.path == "/call/upsert_batch":
        return [item["req"]["start"]["id"] for item in body["batch"] if item["mode"] == "start"]
    assert logged.path == V2_ROUTE, logged.path
    return [item["id"] for item in body["batch"]]


def accepted_calls(log: list[Logged]) -> list[str]:
    """Call ids the server accepted, once per acceptance (a call_end call: when its end was)."""
    return [
        call_id
        for logged in log
        if logged.accepted and logged.path != "/call/start"
        for call_id in call_ids(logged)
    ]


def retried(log: list[Logged]) -> list[Logged]:
    return [logged for logged in log if logged.retry_id is not None]


def emit(tracer: Tracer, count: int, prefix: str = "span", **attributes: Any) -> list[str]:
    """``count`` root spans named ``prefix-i``; their span ids, in end order."""
    ids = []
    for index in range(count):
        with tracer.start_as_current_span(f"{prefix}-{index}", attributes=attributes) as span:
            ids.append(f"{span.get_span_context().span_id:016x}")
    return ids


def messages(caplog: pytest.LogCaptureFixture, containing: str) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == LOGGER and containing in record.getMessage()
    ]


class CountingClock:
    """Real time, counting the waits before retries, and the threads that waited.

    Shows a worker knocking on a closed port: each thread that waited had an attempt refused.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waits = 0
        self._threads: set[int] = set()

    @property
    def waits(self) -> int:
        with self._lock:
            return self._waits

    @property
    def threads(self) -> int:
        with self._lock:
            return len(self._threads)

    def monotonic(self) -> float:
        return time.monotonic()

    def wait(self, seconds: float, interrupt: threading.Event) -> bool:
        with self._lock:
            self._waits += 1
            self._threads.add(threading.get_ident())
        return interrupt.wait(seconds)


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    """Starts processors behind their own providers; shuts them all down after the test.

    Retries do not wait, unless a test passes a ``_retry_policy`` of its own.
    """
    providers = []

    def start(url: str, **options: Any) -> tuple[WeaveSpanProcessor, Tracer]:
        options.setdefault("_retry_policy", NO_WAIT_RETRIES)
        processor = make_processor(url, **options)
        provider, tracer = make_tracer(processor)
        providers.append(provider)
        return processor, tracer

    yield start
    for provider in providers:
        provider.shutdown()


@pytest.fixture
def stopped_receiver() -> Iterator[tuple[LocalWeaveServer, str]]:
    """A receiver that was up once (so its port and URL are known) and is now down."""
    server = LocalWeaveServer(api_key=API_KEY).start()
    url = server.url
    server.stop()
    yield server, url
    server.stop()


# 1. Server down at start, then up.


def test_server_down_at_start_then_up_delivers_every_span_once(
    tracing: Tracing, stopped_receiver: tuple[LocalWeaveServer, str]
) -> None:
    server, url = stopped_receiver
    clock = CountingClock()
    processor, tracer = tracing(
        url, write_mode="calls_complete", export_timeout_millis=20_000, _clock=clock
    )
    ids = emit(tracer, 5)
    wait_until(lambda: clock.waits >= 3)  # the worker keeps knocking on a closed port
    assert processor.stats().calls_exported == 0
    server.start()
    assert processor.force_flush(20_000)
    log = receiver_log(server)

    assert sorted(server.start_writes(PROJECT).items()) == sorted((i, 1) for i in ids)
    assert sorted(server.end_writes(PROJECT).items()) == sorted((i, 1) for i in ids)
    assert server.orphan_ends() == []
    assert sorted(accepted_calls(log)) == sorted(ids)
    assert all(logged.status == 200 for logged in log)
    assert [logged.path for logged in log] == [V2_ROUTE]
    assert retried(log) == log  # it got through only on a retry
    stats = processor.stats()
    assert stats.calls_exported == len(accepted_calls(log)) == 5
    assert stats.calls_failed == 0
    # Every retry was counted, the refused ones too, which never reached the server.
    assert stats.requests_retried == clock.waits > len(retried(log))


# 2. Slower than the HTTP timeout.


def test_answer_slower_than_the_http_timeout_is_abandoned_and_retried(tracing: Tracing) -> None:
    timeout = 0.2
    with ScriptedServer() as server:
        server.script("/call/start", [Reply(200, delay_seconds=3.0)])
        processor, tracer = tracing(
            server.url, write_mode="call_end", http_timeout_seconds=timeout, max_concurrency=1
        )
        ids = emit(tracer, 3)
        assert processor.force_flush(10_000)
        log = scripted_log(server, http_timeout_seconds=timeout)
        slow, again = [seen for seen in server.seen if seen.path == "/call/start"][:2]

    # The same request, sent again and marked as a retry: the client gave up on the slow
    # answer, which was a 200 it would have taken and not retried.
    assert again.body == slow.body
    assert RETRY_ID not in slow.headers
    assert len(again.headers[RETRY_ID]) == 32
    assert [logged.status for logged in log][:2] == [None, 200]
    stats = processor.stats()
    assert stats.requests_retried == len(retried(log)) == len(log) - 2 * len(ids) == 1
    assert sorted(accepted_calls(log)) == sorted(ids)
    assert stats.calls_exported == 3
    assert stats.calls_failed == 0


def test_answer_trickled_past_the_export_deadline_does_not_hold_the_export(
    record_spans: Callable[[Callable[[Tracer], None]], list[ReadableSpan]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server that sends its answer a byte at a time never trips a per-read timeout.

    The export deadline bounds the whole request, however the answer trickles: it is cut
    off there, and its calls are counted undeliverable, not delivered after 3 s.
    """

    def emit_three(tracer: Tracer) -> None:
        emit(tracer, 3)

    spans = record_spans(emit_three)
    trickled = Reply(200, b"{" + b" " * 28 + b"}", trickle_interval_seconds=0.1)  # 3 s
    with ScriptedServer() as server:
        server.script(V2_ROUTE, [trickled])
        exporter = WeaveSpanExporter(
            api_key=API_KEY,
            project=PROJECT,
            server_url=server.url,
            write_mode="calls_complete",
            http_timeout_seconds=10,
            export_timeout_millis=500,
            op_refs=False,  # its requests would take the time this test measures
            _retry_policy=NO_WAIT_RETRIES,
        )
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            result = exporter.export(spans)
        exporter.shutdown()
        seen = server.paths()

    assert result is SpanExportResult.FAILURE
    assert seen == [V2_ROUTE]  # no time was left for a retry
    stats = exporter.stats()
    assert (stats.calls_exported, stats.calls_undeliverable, stats.requests_retried) == (0, 3, 0)
    (line,) = messages(caplog, "did not take")
    assert f"3 call(s) at {V2_ROUTE}" in line
    assert "no answer: ReadTimeout" in line


# 3. Bursts of 500 and 503.


class Burst:
    """Fails the next ``size`` requests to a route with 500 and 503 in turn."""

    def __init__(self) -> None:
        self.route = ""
        self.remaining = 0
        self.failed = 0
        self._statuses = cycle((500, 503))

    def arm(self, route: str, size: int) -> None:
        self.route, self.remaining = route, size

    def __call__(self, seen: Seen) -> Reply | None:
        if self.remaining == 0 or seen.path != self.route:
            return None
        self.remaining -= 1
        self.failed += 1
        return Reply(next(self._statuses), {"reason": "overloaded"})


def test_bursts_of_5xx_on_starts_and_ends_are_retried_until_delivered_once(
    tracing: Tracing,
) -> None:
    burst = Burst()
    ids: list[str] = []
    with ScriptedServer() as server:
        server.responder = burst
        # One call at a time: each burst hits one request, retried until it gets through.
        processor, tracer = tracing(server.url, write_mode="call_end", max_concurrency=1)
        for round_number, (route, size) in enumerate([("/call/start", 3), ("/call/end", 2)]):
            burst.arm(route, size)
            ids += emit(tracer, 4, prefix=f"round{round_number}")
            assert processor.force_flush(10_000)
        log = scripted_log(server)

    failures = [logged for logged in log if logged.status in (500, 503)]
    assert len(failures) == burst.failed == 5
    first_attempts = 2 * len(ids)
    assert len(log) == first_attempts + 5  # each failure cost exactly one more request
    assert Counter(logged.path for logged in retried(log)) == {"/call/start": 3, "/call/end": 2}
    # One id per request, on all its retries: the start's three, then the end's two.
    retry_ids = Counter(logged.retry_id for logged in retried(log))
    assert sorted(retry_ids.values()) == [2, 3]
    assert all(len(retry_id or "") == 32 for retry_id in retry_ids)
    stats = processor.stats()
    assert stats.requests_retried == len(retried(log)) == len(log) - first_attempts
    assert sorted(accepted_calls(log)) == sorted(ids)  # each call accepted exactly once
    assert stats.calls_exported == len(ids) == 8
    assert stats.calls_failed == 0


# 4. 429 with Retry-After, through the processor.


def test_429_retry_after_is_waited_out_then_delivered(tracing: Tracing) -> None:
    clock = FakeClock()
    with ScriptedServer() as server:
        server.script(V2_ROUTE, [Reply(429, {"reason": "rate limited"}, {"Retry-After": "3"})])
        processor, tracer = tracing(server.url, write_mode="calls_complete", _clock=clock)
        ids = emit(tracer, 4)
        assert processor.force_flush(10_000)
        log = scripted_log(server)
        first, second = server.seen

    assert clock.waits == [3.0]  # what the server asked for, not the backoff of a first retry
    assert second.body == first.body
    assert RETRY_ID not in first.headers
    assert RETRY_ID in second.headers
    assert [logged.status for logged in log] == [429, 200]
    stats = processor.stats()
    assert stats.requests_retried == len(retried(log)) == 1
    assert sorted(accepted_calls(log)) == sorted(ids)
    assert stats.calls_exported == 4
    assert stats.calls_failed == 0


def test_429_retry_after_beyond_the_deadline_gives_up_at_once(
    tracing: Tracing, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    with ScriptedServer() as server:
        server.script(V2_ROUTE, [Reply(429, {"reason": "quota exhausted"}, {"Retry-After": "30"})])
        processor, tracer = tracing(
            server.url, write_mode="calls_complete", export_timeout_millis=5_000, _clock=clock
        )
        emit(tracer, 3)
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            delivered = processor.force_flush(10_000)
        log = scripted_log(server)

    assert delivered is False
    assert clock.waits == []  # neither the 30 s asked for nor the 5 s deadline was waited out
    assert [logged.status for logged in log] == [429]
    stats = processor.stats()
    assert (stats.calls_exported, stats.calls_undeliverable, stats.requests_retried) == (0, 3, 0)
    (line,) = messages(caplog, "quota exhausted")
    assert "3 call(s)" in line
    assert "HTTP 429" in line


# 5. 413 and 422 in upsert_batch mode.


def test_413_in_upsert_batch_halves_until_it_fits_and_drops_only_the_call_too_large(
    tracing: Tracing, caplog: pytest.LogCaptureFixture
) -> None:
    limit = 12_000
    with LocalWeaveServer(api_key=API_KEY, max_body_bytes=limit) as server:
        processor, tracer = tracing(
            server.url, write_mode="upsert_batch", schedule_delay_millis=60_000
        )
        ids = emit(tracer, 4, prefix="small", pad="x" * 2_500)
        (big,) = emit(tracer, 1, prefix="big", pad="y" * 20_000)
        ids += emit(tracer, 4, prefix="late", pad="x" * 2_500)
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            assert processor.force_flush(10_000) is False  # one call could not be delivered
        log = receiver_log(server)
        start_writes = server.start_writes(PROJECT)

    stats = processor.stats()
    too_large = [logged for logged in log if logged.status == 413]
    assert all(logged.status in (200, 413) for logged in log)
    assert stats.batches_split >= 2
    assert len(log) == 1 + 2 * stats.batches_split  # each split sends both halves
    assert len(too_large) == stats.batches_split + stats.calls_too_large
    assert stats.calls_too_large == 1
    assert sorted(start_writes.items()) == sorted((i, 1) for i in ids)
    assert big not in start_writes
    assert sorted(accepted_calls(log)) == sorted(ids)
    assert stats.calls_exported == 8
    assert (stats.calls_rejected, stats.calls_undeliverable, stats.requests_retried) == (0, 0, 0)
    assert all(len(logged.body) <= limit for logged in log if logged.accepted)
    (line,) = messages(caplog, "HTTP 413")
    assert "1 call(s) at /call/upsert_batch" in line
    assert f"'big-0' ({big})" in line
    assert "too large" in line


def test_422_in_upsert_batch_isolates_the_bad_call(
    tracing: Tracing, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse_poison(seen: Seen) -> Reply | None:
        if b'"poison"' in seen.body:
            detail = [{"loc": ["body", "batch"], "msg": "value is not valid", "type": "x"}]
            return Reply(422, {"detail": detail})
        return None

    with ScriptedServer() as server:
        server.responder = refuse_poison
        processor, tracer = tracing(
            server.url, write_mode="upsert_batch", schedule_delay_millis=60_000
        )
        ids = emit(tracer, 5, prefix="good")
        (bad,) = emit(tracer, 1, prefix="poisoned", poison=True)
        ids += emit(tracer, 3, prefix="more")
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            assert processor.force_flush(10_000) is False
        log = scripted_log(server)

    stats = processor.stats()
    refused = [logged for logged in log if logged.status == 422]
    assert stats.batches_split >= 3  # 9 calls halved down to the bad one alone
    assert len(log) == 1 + 2 * stats.batches_split
    assert len(refused) == stats.batches_split + stats.calls_rejected
    assert stats.calls_rejected == 1
    assert all(bad in call_ids(logged) for logged in refused)
    assert sorted(accepted_calls(log)) == sorted(ids)
    assert bad not in accepted_calls(log)
    assert stats.calls_exported == 8
    assert stats.requests_retried == len(retried(log)) == 0  # 422 is final, never retried
    (line,) = messages(caplog, "HTTP 422")
    assert "1 call(s) at /call/upsert_batch" in line
    assert f"'poisoned-0' ({bad})" in line
    assert "value is not valid" in line


# 6. Error bodies that are not JSON (how each odd body reads: test_transport.py).


def test_html_5xx_body_is_retried_then_delivered_without_a_warning(
    tracing: Tracing, caplog: pytest.LogCaptureFixture
) -> None:
    with ScriptedServer() as server:
        server.script(V2_ROUTE, [Reply(502, ERROR_PAGE)])
        processor, tracer = tracing(server.url, write_mode="calls_complete")
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            ids = emit(tracer, 3)
            assert processor.force_flush(10_000)
        log = scripted_log(server)

    assert [logged.status for logged in log] == [502, 200]
    stats = processor.stats()
    assert stats.requests_retried == len(retried(log)) == 1
    assert sorted(accepted_calls(log)) == sorted(ids)
    assert (stats.calls_exported, stats.calls_failed) == (3, 0)
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_html_4xx_body_is_a_final_refusal_logged_once_with_a_readable_reason(
    tracing: Tracing, caplog: pytest.LogCaptureFixture
) -> None:
    refusing = True

    def refuse_starts(seen: Seen) -> Reply | None:
        return Reply(403, ERROR_PAGE) if refusing and seen.path == "/call/start" else None

    with ScriptedServer() as server:
        server.responder = refuse_starts
        processor, tracer = tracing(server.url, write_mode="call_end")
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            refused_ids = emit(tracer, 3, prefix="refused")
            assert processor.force_flush(10_000) is False
        refusing = False
        # The worker lived through it: the next span goes out as usual.
        (later,) = emit(tracer, 1, prefix="later")
        assert processor.force_flush(10_000)
        log = scripted_log(server)

    refusals = [logged for logged in log if logged.status == 403]
    assert sorted(i for logged in refusals for i in call_ids(logged)) == sorted(refused_ids)
    assert accepted_calls(log) == [later]
    # Three refused starts, not retried and with no end, then the later call.
    assert [logged.path for logged in log] == ["/call/start"] * 4 + ["/call/end"]
    stats = processor.stats()
    assert (stats.calls_rejected, stats.calls_exported, stats.requests_retried) == (3, 1, 0)
    assert stats.calls_failed == 3
    (line,) = messages(caplog, "HTTP 403")  # one line for the batch, not one per call
    assert "refused 3 call(s) at /call/start" in line
    assert "nginx says no" in line
    assert len(line) < 1_200  # a 20 kB error page is cut, not logged whole


# 7. Connection reset mid-request.


def test_connection_reset_mid_request_is_retried_then_delivered(tracing: Tracing) -> None:
    with ScriptedServer() as server:
        # One start and one end are cut off.
        server.script("/call/start", [Reply(reset=True)])
        server.script("/call/end", [Reply(reset=True)])
        processor, tracer = tracing(server.url, write_mode="call_end", max_concurrency=1)
        ids = emit(tracer, 3)
        assert processor.force_flush(10_000)
        log = scripted_log(server)

    resets = [index for index, logged in enumerate(log) if logged.status is None]
    assert [log[index].path for index in resets] == ["/call/start", "/call/end"]
    for index in resets:  # the server read each request whole, and got it again at once
        assert log[index + 1].body == log[index].body
        assert log[index + 1].retry_id is not None
    assert len(log) == 2 * len(ids) + 2
    stats = processor.stats()
    assert stats.requests_retried == len(retried(log)) == 2
    assert sorted(accepted_calls(log)) == sorted(ids)
    assert (stats.calls_exported, stats.calls_failed) == (3, 0)


def test_connection_reset_until_the_deadline_is_counted_undeliverable(
    tracing: Tracing, caplog: pytest.LogCaptureFixture
) -> None:
    # The real backoff, on a fake clock: a few retries use up the 2.5 s, in no time.
    clock = FakeClock()
    with ScriptedServer() as server:
        server.responder = lambda seen: Reply(reset=True)
        processor, tracer = tracing(
            server.url,
            write_mode="calls_complete",
            export_timeout_millis=2_500,
            _retry_policy=RetryPolicy(),
            _clock=clock,
        )
        emit(tracer, 3)
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            assert processor.force_flush(10_000) is False
        log = scripted_log(server)

    assert len(log) >= 2
    assert all(logged.status is None for logged in log)
    assert len(clock.waits) == len(log) - 1  # a backoff before each retry ...
    assert sum(clock.waits) < 2.5  # ... none of it past the deadline
    stats = processor.stats()
    assert stats.requests_retried == len(retried(log)) == len(log) - 1
    assert (stats.calls_exported, stats.calls_undeliverable) == (0, 3)
    (line,) = messages(caplog, "did not take")
    assert f"3 call(s) at {V2_ROUTE}" in line
    assert "no answer: ReadError" in line  # reset while reading the answer, not a clean close


# 8. TLS with a certificate nobody here trusts.


@pytest.fixture
def untrusted_tls(tmp_path: Path) -> Iterator[tuple[TLSServer, trustme.CA]]:
    context, ca = untrusted_certificate(tmp_path)
    with TLSServer(context) as server:
        yield server, ca


def test_untrusted_certificate_fails_at_once_with_a_clear_reason_and_no_retries(
    untrusted_tls: tuple[TLSServer, trustme.CA],
    tracing: Tracing,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, ca = untrusted_tls
    processor, tracer = tracing(
        server.url,
        write_mode="call_end",
        export_timeout_millis=8_000,
        schedule_delay_millis=60_000,  # the worker wakes for the flush only
    )
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        emit(tracer, 3)  # on_end on the app's thread ...
        # ... only queued the spans: no connection, so no handshake, was made on it.
        assert (processor.stats().spans_enqueued, server.connections) == (3, 0)
        delivered = processor.force_flush(8_000)
    # Final: retries (which do not wait here) would have connected again and again until
    # the 8 s deadline.
    connections = server.connections
    wait_until(lambda: len(server.outcomes()) == connections)
    handshakes = server.outcomes()
    # The server is sound: a client that trusts its root gets through.
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    with httpx.Client(verify=trusting) as client:
        assert client.post(f"{server.url}/call/start", content=b"{}").status_code == 200

    assert delivered is False
    assert connections == 3, handshakes  # one per call's start; no end; no retries
    assert all(outcome.startswith("failed") for outcome in handshakes), handshakes
    wait_until(lambda: len(server.outcomes()) == 4)
    assert server.outcomes()[3:] == ["ok"]
    stats = processor.stats()
    assert (stats.calls_undeliverable, stats.calls_exported, stats.requests_retried) == (3, 0, 0)
    (line,) = messages(caplog, "3 call(s)")
    assert "/call/start" in line
    assert "CERTIFICATE_VERIFY_FAILED" in line
    assert "self-signed certificate" in line


# 9. Backend down for a while, then back: the queue bound.


def test_spans_up_to_the_queue_bound_survive_an_outage_exactly_once(
    tracing: Tracing,
    stopped_receiver: tuple[LocalWeaveServer, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, url = stopped_receiver
    clock = CountingClock()
    processor, tracer = tracing(
        url,
        write_mode="call_end",
        max_queue_size=10,
        max_export_batch_size=5,
        max_concurrency=5,  # a sender thread per call of a batch
        schedule_delay_millis=60_000,  # the worker wakes for full batches and flushes only
        export_timeout_millis=20_000,
        _clock=clock,
    )
    # A full batch: the worker takes it and retries it against the closed port ...
    first = emit(tracer, 5, prefix="first")
    wait_until(lambda: processor.stats().export_batches == 1)
    # ... while the app goes on: the queue fills to its bound, the rest is dropped.
    queued = emit(tracer, 10, prefix="queued")
    overflow = emit(tracer, 7, prefix="overflow")
    during = processor.stats()
    assert (during.spans_enqueued, during.spans_dropped_queue_full) == (15, 7)
    # Each sender thread sticks to its call until it is done: five threads that waited are
    # the five calls, each refused at least once.
    wait_until(lambda: clock.threads == 5)
    assert processor.stats().calls_exported == 0
    server.start()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert processor.force_flush(20_000)
    log = receiver_log(server)
    start_writes = server.start_writes(PROJECT)

    assert sorted(start_writes.items()) == sorted((i, 1) for i in first + queued)
    assert not set(overflow) & set(start_writes)
    assert sorted(server.end_writes(PROJECT).values()) == [1] * 15
    stats = processor.stats()
    emitted = len(first + queued + overflow)
    assert stats.spans_enqueued + stats.spans_dropped_queue_full == emitted
    assert (stats.spans_enqueued, stats.spans_dropped_queue_full) == (15, 7)
    assert stats.calls_exported == len(accepted_calls(log)) == 15
    assert stats.calls_failed == 0
    assert stats.export_batches == 3  # the first batch, then the queue in two
    assert len(log) == 2 * 15
    assert all(logged.status == 200 for logged in log)
    # Only the first batch's starts met the outage: they alone got through on a retry.
    assert [logged.path for logged in retried(log)] == ["/call/start"] * 5
    resent = {call_ids(logged)[0] for logged in retried(log)}
    assert resent == set(first)
    assert stats.requests_retried == clock.waits > len(retried(log)) == 5
    # The drops were reported (once, however the wording goes), with their number.
    (warning,) = messages(caplog, "queue")
    assert "7" in warning


# 10. Hostile answers: a server's answer is untrusted input.


def test_a_2xx_whose_body_no_parser_takes_is_a_success_and_the_ends_follow(
    tracing: Tracing,
) -> None:
    with ScriptedServer() as server:
        server.responder = lambda seen: Reply(200, b"[" * 100_000)
        processor, tracer = tracing(server.url, write_mode="call_end")
        ids = emit(tracer, 3)
        assert processor.force_flush(10_000)
        log = scripted_log(server)

    assert sorted(logged.path for logged in log) == ["/call/end"] * 3 + ["/call/start"] * 3
    assert sorted(accepted_calls(log)) == sorted(ids)
    stats = processor.stats()
    assert (stats.calls_exported, stats.calls_undeliverable, stats.calls_failed) == (3, 0, 0)


@pytest.mark.parametrize("retry_after", ["-1", "nan", "0", "Thu, 01 Jan 1970 00:00:00 GMT"])
def test_a_retry_after_that_is_no_sane_wait_leaves_the_backoff_on(
    tracing: Tracing, retry_after: str
) -> None:
    clock = FakeClock()
    with ScriptedServer() as server:
        server.script(V2_ROUTE, [Reply(429, headers={"Retry-After": retry_after})] * 3)
        processor, tracer = tracing(
            server.url,
            write_mode="calls_complete",
            _retry_policy=RetryPolicy(initial_backoff_seconds=1.0),
            _clock=clock,
        )
        ids = emit(tracer, 2)
        assert processor.force_flush(10_000)
        log = scripted_log(server)

    assert [logged.status for logged in log] == [429, 429, 429, 200]
    assert sorted(accepted_calls(log)) == sorted(ids)
    # Backoff waits, each within its jitter bounds: not three retries at once.
    ceilings = [1.0, 2.0, 4.0]
    assert len(clock.waits) == 3
    assert all(c / 2 <= w <= c for w, c in zip(clock.waits, ceilings, strict=True)), clock.waits


def echo_authorization(kind: str) -> Callable[[Seen], Reply]:
    def reply(seen: Seen) -> Reply:
        authorization = seen.headers["authorization"]
        if kind == "reason-phrase":
            return Reply(401, b"", reason_phrase=f"no: {authorization} / {API_KEY}")
        return Reply(401, ("x" * 490 + API_KEY + authorization).encode())

    return reply


@pytest.mark.parametrize("scheme", ["basic", "bearer"])
@pytest.mark.parametrize("kind", ["reason-phrase", "straddling-the-cut"])
def test_a_refusal_echoing_the_credential_logs_no_form_of_it(
    tracing: Tracing, caplog: pytest.LogCaptureFixture, kind: str, scheme: str
) -> None:
    basic = base64.b64encode(f"api:{API_KEY}".encode()).decode()
    forms = [API_KEY, basic, API_KEY[:10], API_KEY[-10:], basic[:12], basic[-12:]]
    with ScriptedServer() as server, caplog.at_level(logging.DEBUG):
        server.responder = echo_authorization(kind)
        processor, tracer = tracing(server.url, write_mode="calls_complete", auth_scheme=scheme)
        emit(tracer, 2)
        assert processor.force_flush(10_000) is False

    (line,) = messages(caplog, "HTTP 401")
    assert [form for form in forms if form in caplog.text] == [], line
