"""Proof under faults: real HTTP on 127.0.0.1 to servers that misbehave on command.

For each fault: what is delivered, what is dropped and why, and that the exporter's counters
agree with the server's own log of what it saw and answered. Retries are told apart in that
log by the ``X-Weave-Retry-Id`` header, which only a re-sent request carries.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import formatdate
from itertools import cycle
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import Tracer

from opentelemetry.exporter.weave import WeaveSpanExporter, WeaveSpanProcessor
from opentelemetry.exporter.weave.testing import LocalWeaveServer

from .conftest import API_KEY, PROJECT, make_processor, make_tracer
from .fault_server import Reply, ScriptedServer, Seen, TLSServer

LOGGER = "opentelemetry.exporter.weave"
RETRY_ID = "x-weave-retry-id"
V2_ROUTE = f"/v2/{PROJECT}/calls/complete"
# The route each mode's first request of a call (or batch) goes to.
FIRST_ROUTE = {
    "call_end": "/call/start",
    "upsert_batch": "/call/upsert_batch",
    "calls_complete": V2_ROUTE,
}
BATCH_MODES = ["upsert_batch", "calls_complete"]

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


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def messages(caplog: pytest.LogCaptureFixture, containing: str) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == LOGGER and containing in record.getMessage()
    ]


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    """Starts processors behind their own providers; shuts them all down after the test."""
    providers = []

    def start(url: str, **options: Any) -> tuple[WeaveSpanProcessor, Tracer]:
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


@pytest.mark.parametrize("mode", ["call_end", "calls_complete"])
def test_server_down_at_start_then_up_delivers_every_span_once(
    mode: str, tracing: Tracing, stopped_receiver: tuple[LocalWeaveServer, str]
) -> None:
    server, url = stopped_receiver
    processor, tracer = tracing(url, write_mode=mode, export_timeout_millis=20_000)
    ids = emit(tracer, 5)
    wait_until(lambda: processor.stats().export_batches == 1)
    time.sleep(1.0)  # the worker keeps knocking on a closed port
    server.start()
    assert processor.force_flush(20_000)
    log = receiver_log(server)

    assert sorted(server.start_writes(PROJECT).items()) == sorted((i, 1) for i in ids)
    assert sorted(server.end_writes(PROJECT).items()) == sorted((i, 1) for i in ids)
    assert server.orphan_ends() == []
    assert sorted(accepted_calls(log)) == sorted(ids)
    assert all(logged.status == 200 for logged in log)
    stats = processor.stats()
    assert stats.calls_exported == len(accepted_calls(log)) == 5
    assert stats.calls_failed == 0
    if mode == "call_end":
        assert len(log) == 2 * 5  # a start and an end per call, no more
        # Every start got through only on a retry (its first tries were refused); no end did.
        assert sorted(logged.path for logged in retried(log)) == ["/call/start"] * 5
    else:
        assert [logged.path for logged in log] == [V2_ROUTE]
        assert retried(log) == log
    # The refused tries never reached the server, so it saw fewer retries than were made.
    assert stats.requests_retried >= len(retried(log))


# 2. Slower than the HTTP timeout.


@pytest.mark.parametrize("mode", ["call_end", "upsert_batch"])
def test_answer_slower_than_the_http_timeout_is_abandoned_and_retried(
    mode: str, tracing: Tracing
) -> None:
    route = FIRST_ROUTE[mode]
    with ScriptedServer() as server:
        server.script(route, [Reply(200, delay_seconds=3.0)])
        processor, tracer = tracing(
            server.url, write_mode=mode, http_timeout_seconds=0.5, max_concurrency=1
        )
        ids = emit(tracer, 3)
        assert processor.force_flush(10_000)
        log = scripted_log(server, http_timeout_seconds=0.5)
        slow, again = [seen for seen in server.seen if seen.path == route][:2]

    assert again.body == slow.body  # the same request, sent again ...
    assert RETRY_ID not in slow.headers
    assert len(again.headers[RETRY_ID]) == 32  # ... marked as a retry
    assert again.at - slow.at < 2.5  # abandoned at the 0.5 s timeout, not after the 3 s answer
    first_attempts = 2 * len(ids) if mode == "call_end" else 1
    stats = processor.stats()
    assert stats.requests_retried == len(retried(log)) == len(log) - first_attempts == 1
    assert sorted(accepted_calls(log)) == sorted(ids)
    assert stats.calls_exported == 3
    assert stats.calls_failed == 0


def test_answer_trickled_past_the_export_deadline_does_not_hold_the_export(
    record_spans: Callable[[Callable[[Tracer], None]], list[ReadableSpan]],
) -> None:
    """A server that sends its answer a byte at a time never trips a per-read timeout.

    ``http_timeout_seconds`` is the timeout of one request, and ``export()`` delivers within
    ``export_timeout_millis``: neither may be outlasted by an answer that keeps trickling.
    """
    spans = record_spans(lambda tracer: emit(tracer, 3))
    trickled = Reply(200, b"{" + b" " * 28 + b"}", trickle_interval_seconds=0.2)  # 6 s
    with ScriptedServer() as server:
        server.script(V2_ROUTE, [trickled])
        exporter = WeaveSpanExporter(
            api_key=API_KEY,
            project=PROJECT,
            server_url=server.url,
            write_mode="calls_complete",
            http_timeout_seconds=0.5,
            export_timeout_millis=2_000,
        )
        began = time.monotonic()
        exporter.export(spans)
        took = time.monotonic() - began
        exporter.shutdown()
        seen = len(server.seen)

    assert took < 3.5, f"export() took {took:.1f} s against a 2 s export deadline"
    stats = exporter.stats()
    assert stats.calls_exported + stats.calls_undeliverable == 3
    assert stats.requests_retried == seen - 1


# 3. Bursts of 500 and 503.


class Burst:
    """Fails the next ``size`` requests, whatever their route, with 500 and 503 in turn."""

    def __init__(self) -> None:
        self.remaining = 0
        self.failed = 0
        self._statuses = cycle((500, 503))

    def arm(self, size: int) -> None:
        self.remaining = size

    def __call__(self, seen: Seen) -> Reply | None:
        if self.remaining == 0:
            return None
        self.remaining -= 1
        self.failed += 1
        return Reply(next(self._statuses), {"reason": "overloaded"})


@pytest.mark.parametrize("mode", ["call_end", "upsert_batch", "calls_complete"])
def test_bursts_of_5xx_are_retried_until_delivered_once(mode: str, tracing: Tracing) -> None:
    burst = Burst()
    ids: list[str] = []
    with ScriptedServer() as server:
        server.responder = burst
        processor, tracer = tracing(server.url, write_mode=mode)
        for round_number, size in enumerate((3, 2)):
            burst.arm(size)
            ids += emit(tracer, 4, prefix=f"round{round_number}")
            assert processor.force_flush(10_000)
        log = scripted_log(server)

    failures = [logged for logged in log if logged.status in (500, 503)]
    assert len(failures) == burst.failed == 5
    first_attempts = 2 * len(ids) if mode == "call_end" else 2  # one request per flush
    assert len(log) == first_attempts + 5  # each failure cost exactly one more request
    stats = processor.stats()
    assert stats.requests_retried == len(retried(log)) == len(log) - first_attempts
    assert sorted(accepted_calls(log)) == sorted(ids)  # each call accepted exactly once
    assert stats.calls_exported == len(ids) == 8
    assert stats.calls_failed == 0


# 4. 429 with Retry-After, through the processor.


def retry_after(form: str) -> str:
    # An HTTP-date has whole seconds: 2 s ahead leaves more than 1 s to wait.
    return "1" if form == "seconds" else formatdate(time.time() + 2, usegmt=True)


@pytest.mark.parametrize("form", ["seconds", "http-date"])
@pytest.mark.parametrize("mode", BATCH_MODES)
def test_429_retry_after_is_waited_out_then_delivered(
    mode: str, form: str, tracing: Tracing
) -> None:
    def rate_limit_first(seen: Seen) -> Reply | None:
        if server.seen[0] is not seen:
            return None
        return Reply(429, {"reason": "rate limited"}, {"Retry-After": retry_after(form)})

    with ScriptedServer() as server:
        server.responder = rate_limit_first
        processor, tracer = tracing(server.url, write_mode=mode)
        ids = emit(tracer, 4)
        assert processor.force_flush(10_000)
        log = scripted_log(server)
        first, second = server.seen

    # Waited what the server asked for, not the 0.25-0.5 s backoff of a first retry.
    assert second.at - first.at >= 0.9
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
    with ScriptedServer() as server:
        server.script(V2_ROUTE, [Reply(429, {"reason": "quota exhausted"}, {"Retry-After": "30"})])
        processor, tracer = tracing(
            server.url, write_mode="calls_complete", export_timeout_millis=5_000
        )
        emit(tracer, 3)
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            began = time.monotonic()
            delivered = processor.force_flush(10_000)
            took = time.monotonic() - began
        log = scripted_log(server)

    assert delivered is False
    assert took < 4.0  # neither the 30 s asked for nor the 5 s deadline was waited out
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


# 6. Error bodies that are not JSON, or empty.


# body, what the logged reason must show (for an empty body: the status's reason phrase)
ODD_BODIES = {
    "html": (
        b"<html><head><title>Error</title></head><body><h1>nginx says no</h1>"
        + b"." * 20_000
        + b"</body></html>",
        "nginx says no",
    ),
    "empty": (b"", "Forbidden"),
    "truncated-json": (b'{"reason": "upstream conn', '{"reason": "upstream conn'),
    "binary": (b"\x00\xff\xfe\x80 not text", "not text"),
}


@pytest.mark.parametrize("kind", sorted(ODD_BODIES))
def test_odd_5xx_body_is_retried_then_delivered(
    kind: str, tracing: Tracing, caplog: pytest.LogCaptureFixture
) -> None:
    body, _ = ODD_BODIES[kind]
    with ScriptedServer() as server:
        server.script(V2_ROUTE, [Reply(502, body)])
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


@pytest.mark.parametrize("kind", sorted(ODD_BODIES))
def test_odd_4xx_body_is_a_final_refusal_with_a_readable_reason(
    kind: str, tracing: Tracing, caplog: pytest.LogCaptureFixture
) -> None:
    body, reason = ODD_BODIES[kind]
    refusing = True

    def refuse_starts(seen: Seen) -> Reply | None:
        return Reply(403, body) if refusing and seen.path == "/call/start" else None

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
    assert len(log) == 3 + 2  # three refused starts, not retried, and the later call
    stats = processor.stats()
    assert (stats.calls_rejected, stats.calls_exported, stats.requests_retried) == (3, 1, 0)
    (line,) = messages(caplog, "HTTP 403")
    assert "refused 3 call(s) at /call/start" in line
    assert reason in line
    assert len(line) < 1_200  # a 20 kB error page is cut, not logged whole


# 7. Connection reset mid-request.


@pytest.mark.parametrize("mode", ["call_end", "calls_complete"])
def test_connection_reset_mid_request_is_retried_then_delivered(
    mode: str, tracing: Tracing
) -> None:
    with ScriptedServer() as server:
        if mode == "call_end":  # one start and one end are cut off
            server.script("/call/start", [Reply(reset=True)])
            server.script("/call/end", [Reply(reset=True)])
        else:  # the batch is cut off twice
            server.script(V2_ROUTE, [Reply(reset=True), Reply(reset=True)])
        processor, tracer = tracing(server.url, write_mode=mode, max_concurrency=1)
        ids = emit(tracer, 3)
        assert processor.force_flush(10_000)
        log = scripted_log(server)

    resets = [index for index, logged in enumerate(log) if logged.status is None]
    assert len(resets) == 2
    for index in resets:  # the server read each request whole, and got it again at once
        assert log[index + 1].body == log[index].body
        assert log[index + 1].retry_id is not None
    first_attempts = 2 * len(ids) if mode == "call_end" else 1
    assert len(log) == first_attempts + 2
    stats = processor.stats()
    assert stats.requests_retried == len(retried(log)) == 2
    assert sorted(accepted_calls(log)) == sorted(ids)
    assert (stats.calls_exported, stats.calls_failed) == (3, 0)


def test_connection_reset_until_the_deadline_is_counted_undeliverable(
    tracing: Tracing, caplog: pytest.LogCaptureFixture
) -> None:
    with ScriptedServer() as server:
        server.responder = lambda seen: Reply(reset=True)
        processor, tracer = tracing(
            server.url, write_mode="calls_complete", export_timeout_millis=2_500
        )
        emit(tracer, 3)
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            assert processor.force_flush(10_000) is False
        log = scripted_log(server)

    assert len(log) >= 2
    assert all(logged.status is None for logged in log)
    stats = processor.stats()
    assert stats.requests_retried == len(retried(log)) == len(log) - 1
    assert (stats.calls_exported, stats.calls_undeliverable) == (0, 3)
    (line,) = messages(caplog, "did not take")
    assert f"3 call(s) at {V2_ROUTE}" in line
    assert "no answer: ReadError" in line  # reset while reading the answer, not a clean close


# 8. TLS with a certificate nobody here trusts.


@pytest.fixture
def untrusted_tls(tmp_path: Path) -> Iterator[tuple[TLSServer, trustme.CA]]:
    """HTTPS whose chain ends in a self-signed root the client does not trust.

    Each handshake is held back 1 s, so that an export done on the app's thread would show.
    """
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    chain = tmp_path / "chain.pem"
    chain.write_bytes(leaf.private_key_and_cert_chain_pem.bytes() + ca.cert_pem.bytes())
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain)
    with TLSServer(context, handshake_delay_seconds=1.0) as server:
        yield server, ca


def test_untrusted_certificate_fails_at_once_with_a_clear_reason_and_no_retries(
    untrusted_tls: tuple[TLSServer, trustme.CA],
    tracing: Tracing,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, ca = untrusted_tls
    processor, tracer = tracing(server.url, write_mode="call_end", export_timeout_millis=8_000)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        began = time.monotonic()
        emit(tracer, 3)  # on_end on the app's thread
        emitting = time.monotonic() - began
        began = time.monotonic()
        delivered = processor.force_flush(8_000)
        flushing = time.monotonic() - began
    # Final: a retry would have connected before the client could give up on it.
    connections = server.connections
    wait_until(lambda: len(server.outcomes()) == connections)
    handshakes = server.outcomes()
    # The server is sound: a client that trusts its root gets through.
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    with httpx.Client(verify=trusting) as client:
        assert client.post(f"{server.url}/call/start", content=b"{}").status_code == 200

    assert emitting < 1.0  # on_end did not wait for a single (1 s) handshake
    assert delivered is False
    assert flushing < 5.0  # given up at once, not retried until the 8 s deadline
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
    processor, tracer = tracing(
        url,
        write_mode="call_end",
        max_queue_size=10,
        max_export_batch_size=5,
        schedule_delay_millis=60_000,  # the worker wakes for full batches and flushes only
        export_timeout_millis=20_000,
    )
    # A full batch: the worker takes it and retries it against the closed port ...
    first = emit(tracer, 5, prefix="first")
    wait_until(lambda: processor.stats().export_batches == 1)
    # ... while the app goes on: the queue fills to its bound, the rest is dropped.
    queued = emit(tracer, 10, prefix="queued")
    overflow = emit(tracer, 7, prefix="overflow")
    during = processor.stats()
    assert (during.spans_enqueued, during.spans_dropped_queue_full) == (15, 7)
    time.sleep(1.0)
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
    resent = {call_ids(logged)[0] for logged in retried(log)}
    assert resent == set(first)
    assert stats.requests_retried >= len(retried(log)) == 5
    # The drops were reported (once, however the wording goes), with their number.
    (warning,) = messages(caplog, "queue")
    assert "7" in warning
