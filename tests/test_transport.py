"""One HTTP attempt over real HTTP on 127.0.0.1: headers, classification, reasons, deadlines.

Each test makes one attempt (retrying is ``test_retry.py``'s), against one scripted server the
module shares and resets between tests.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from opentelemetry.exporter.weave._call import CALL_START_ROUTE, call_start_body
from opentelemetry.exporter.weave._config import WeaveSettings
from opentelemetry.exporter.weave._transport import HttpAttempt, PostResult
from opentelemetry.exporter.weave._version import __version__

from .fault_server import Reply, ScriptedServer, Seen, TLSServer, untrusted_certificate
from .helpers import API_KEY, PROJECT, make_call, settings_for

LOGGER = "opentelemetry.exporter.weave"
BODY = call_start_body(make_call())
# Short, so that abandoned answers cost little; the answers they cut off take far longer.
GIVE_UP_SECONDS = 0.3

Connect = Callable[..., HttpAttempt]


@pytest.fixture(scope="module")
def shared_attempts() -> Iterator[dict[tuple[object, ...], HttpAttempt]]:
    attempts: dict[tuple[object, ...], HttpAttempt] = {}
    yield attempts
    for attempt in attempts.values():
        attempt.close()


@pytest.fixture
def connect(shared_attempts: dict[tuple[object, ...], HttpAttempt]) -> Iterator[Connect]:
    """An ``HttpAttempt`` to a URL with settings options.

    Shared by the module's tests (each new one loads the CA bundle, some 50 ms), unless
    ``fresh``: then it is the test's own, closed after it.
    """
    own: list[HttpAttempt] = []

    def make(url: str, *, fresh: bool = False, **options: Any) -> HttpAttempt:
        if fresh:
            own.append(HttpAttempt(settings_for(url, **options)))
            return own[-1]
        key = (url, *sorted(options.items()))
        if key not in shared_attempts:
            shared_attempts[key] = HttpAttempt(settings_for(url, **options))
        return shared_attempts[key]

    yield make
    for attempt in own:
        attempt.close()


def post(
    attempt: HttpAttempt, timeout: float = 5.0, headers: Mapping[str, str] | None = None
) -> PostResult:
    return attempt.post(CALL_START_ROUTE, BODY, timeout, headers or {})


def answer(server: ScriptedServer, connect: Connect, reply: Reply) -> PostResult:
    server.script(CALL_START_ROUTE, [reply])
    return post(connect(server.url))


# Headers.


@pytest.mark.parametrize(
    ("options", "authorization"),
    [
        ({}, "Basic " + base64.b64encode(f"api:{API_KEY}".encode()).decode()),  # the default
        ({"auth_scheme": "bearer"}, f"Bearer {API_KEY}"),
    ],
    ids=["basic", "bearer"],
)
def test_the_request_carries_auth_content_type_user_agent_and_given_headers(
    server: ScriptedServer, connect: Connect, options: dict[str, str], authorization: str
) -> None:
    result = post(connect(server.url, **options), headers={"X-Weave-Retry-Id": "r1"})
    (seen,) = server.seen
    assert result.ok
    assert (seen.path, seen.body) == (CALL_START_ROUTE, BODY)
    assert seen.headers["authorization"] == authorization
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["user-agent"] == f"opentelemetry-exporter-weave/{__version__}"
    assert seen.headers["x-weave-retry-id"] == "r1"


# Status and Retry-After.


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(200, False), (201, False)]
    + [(status, False) for status in (400, 401, 403, 404, 413, 418, 422)]
    + [(status, True) for status in (408, 409, 429, 500, 502, 503, 504)],
)
def test_status_says_whether_to_retry(
    server: ScriptedServer, connect: Connect, status: int, retryable: bool
) -> None:
    result = answer(server, connect, Reply(status))
    assert (result.status_code, result.retryable, result.attempts) == (status, retryable, 1)
    assert result.ok is (status < 300)


@pytest.mark.parametrize(
    ("status", "header", "seconds"),
    [
        (429, "7", 7.0),
        (503, " 2.5 ", 2.5),
        (400, "7", None),  # a final answer is not waited on
        # Not a sane positive wait: the backoff applies (None), not "retry at once".
        (429, "-3", None),
        (429, "-1", None),
        (429, "0", None),
        (429, "nan", None),
        (429, "inf", None),
        (429, "1e400", None),
        (429, "9" * 400, None),
        (429, formatdate(0, usegmt=True), None),  # a date gone by
        (429, "soon", None),
        (429, "", None),
    ],
    ids=[
        "seconds",
        "fraction",
        "final-status",
        "negative",
        "minus-one",
        "zero",
        "nan",
        "inf",
        "overflowing-exponent",
        "overflowing-digits",
        "past-date",
        "garbage",
        "empty",
    ],
)
def test_retry_after_is_parsed_into_seconds(
    server: ScriptedServer, connect: Connect, status: int, header: str, seconds: float | None
) -> None:
    result = answer(server, connect, Reply(status, headers={"Retry-After": header}))
    assert result.status_code == status
    assert result.retry_after == seconds


def test_retry_after_as_an_http_date_is_the_seconds_until_then(
    server: ScriptedServer, connect: Connect
) -> None:
    header = formatdate(time.time() + 30, usegmt=True)  # whole seconds: 29-30 s ahead
    result = answer(server, connect, Reply(429, headers={"Retry-After": header}))
    assert result.retry_after is not None
    assert 28.0 < result.retry_after <= 30.0


def test_no_retry_after_header_is_none(server: ScriptedServer, connect: Connect) -> None:
    assert answer(server, connect, Reply(503)).retry_after is None


# Reasons.


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"reason": "op_name too long"}, "op_name too long"),
        ({"detail": "not found"}, "not found"),
        ({"message": "quota exhausted"}, "quota exhausted"),
        ({"error": "internal"}, "internal"),
        # The first of reason, detail, message, error.
        ({"error": "4", "message": "3", "detail": "2", "reason": "1"}, "1"),
        ({"error": "4", "message": "3", "detail": "2"}, "2"),
        ({"error": "4", "message": "3"}, "3"),
        ({"detail": [{"loc": ["body"], "msg": "bad"}]}, '[{"loc": ["body"], "msg": "bad"}]'),
        ({"other": 1}, '{"other": 1}'),
        (["a", "list"], '["a", "list"]'),
    ],
    ids=[
        "reason",
        "detail",
        "message",
        "error",
        "reason-first",
        "then-detail",
        "then-message",
        "structured",
        "other-keys",
        "list",
    ],
)
def test_the_reason_comes_from_the_json_body(
    server: ScriptedServer, connect: Connect, body: Any, reason: str
) -> None:
    result = answer(server, connect, Reply(400, body))
    assert (result.status_code, result.reason) == (400, reason)
    assert result.body == body


def test_the_error_code_comes_from_the_json_body(server: ScriptedServer, connect: Connect) -> None:
    body = {"reason": "v2 only", "error_code": "CALLS_COMPLETE_MODE_REQUIRED"}
    result = answer(server, connect, Reply(400, body))
    assert result.error_code == "CALLS_COMPLETE_MODE_REQUIRED"


# status, body, what the reason must show (for an empty body: the status's reason phrase)
ODD_BODIES = {
    "html": (
        502,
        b"<html><head><title>Error</title></head><body><h1>nginx says no</h1>"
        + b"." * 20_000
        + b"</body></html>",
        "nginx says no",
    ),
    "empty": (403, b"", "Forbidden"),
    "truncated-json": (502, b'{"reason": "upstream conn', '{"reason": "upstream conn'),
    "binary": (403, b"\x00\xff\xfe\x80 not text", "not text"),
}


@pytest.mark.parametrize("kind", sorted(ODD_BODIES))
def test_an_odd_error_body_becomes_a_readable_reason(
    server: ScriptedServer, connect: Connect, kind: str
) -> None:
    status, body, shown = ODD_BODIES[kind]
    result = answer(server, connect, Reply(status, body))
    assert result.status_code == status
    assert shown in result.reason
    assert len(result.reason) <= 500  # a 20 kB error page is cut
    assert result.body is None


def test_the_teapot_body_is_the_whole_reason(server: ScriptedServer, connect: Connect) -> None:
    result = answer(server, connect, Reply(418, b"<html>teapot</html>"))
    assert (result.status_code, result.reason) == (418, "<html>teapot</html>")


@pytest.mark.parametrize(
    "body",
    [{"reason": f"bad key {API_KEY}"}, f"bad key {API_KEY}".encode()],
    ids=["json", "text"],
)
def test_the_api_key_echoed_in_a_body_is_redacted(
    server: ScriptedServer, connect: Connect, body: Any
) -> None:
    result = answer(server, connect, Reply(401, body))
    assert result.reason == "bad key ***"
    assert API_KEY not in result.reason


# No answer.


def test_connection_refused_has_no_status_and_is_retryable(
    closed_port_url: str, connect: Connect
) -> None:
    result = post(connect(closed_port_url))
    assert (result.status_code, result.retryable, result.ok) == (None, True, False)
    assert "ConnectError" in result.reason


SLOW_ANSWERS = {
    "slow": Reply(200, delay_seconds=3.0),
    # Each byte comes well within a per-read timeout; the whole answer takes 3 s.
    "trickled": Reply(200, b"{" + b" " * 28 + b"}", trickle_interval_seconds=0.1),
}
# What bounds the attempt: the timeout it is given, or the HTTP timeout setting.
BOUNDS = {
    "attempt-timeout": (GIVE_UP_SECONDS, 10.0),
    "http-timeout": (10.0, GIVE_UP_SECONDS),
}


@pytest.mark.parametrize("bound", sorted(BOUNDS))
@pytest.mark.parametrize("kind", sorted(SLOW_ANSWERS))
def test_an_answer_not_complete_in_time_is_abandoned(
    server: ScriptedServer, connect: Connect, kind: str, bound: str
) -> None:
    timeout, http_timeout_seconds = BOUNDS[bound]
    server.script(CALL_START_ROUTE, [SLOW_ANSWERS[kind]])
    result = post(connect(server.url, http_timeout_seconds=http_timeout_seconds), timeout)
    # Waited out, the answer would have been a 200.
    assert (result.status_code, result.retryable) == (None, True)
    assert "ReadTimeout" in result.reason
    assert server.paths() == [CALL_START_ROUTE]  # the request itself went through


def test_a_post_after_close_fails_without_a_retry(server: ScriptedServer, connect: Connect) -> None:
    attempt = connect(server.url, fresh=True)
    attempt.close()
    result = post(attempt)
    assert (result.status_code, result.retryable) == (None, False)
    assert "client closed" in result.reason
    assert server.seen == []


# TLS.


@pytest.fixture
def untrusted_tls(tmp_path: Path) -> Iterator[TLSServer]:
    context, _ = untrusted_certificate(tmp_path)
    with TLSServer(context) as server:
        yield server


def test_posts_one_after_another_keep_one_connection(
    server: ScriptedServer, connect: Connect
) -> None:
    attempt = connect(server.url, fresh=True, max_concurrency=4)

    assert all(post(attempt).ok for _ in range(5))
    assert len({seen.client_port for seen in server.seen}) == 1


def test_concurrent_posts_use_at_most_max_concurrency_connections(
    server: ScriptedServer, connect: Connect
) -> None:
    server.script(CALL_START_ROUTE, [Reply(delay_seconds=0.1)] * 6)
    attempt = connect(server.url, fresh=True, max_concurrency=2)

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: post(attempt), range(6)))

    assert all(result.ok for result in results)
    assert len(server.seen) == 6
    assert len({seen.client_port for seen in server.seen}) == 2


def test_a_post_finding_every_connection_busy_waits_up_to_its_timeout(
    server: ScriptedServer, connect: Connect
) -> None:
    server.script(CALL_START_ROUTE, [Reply(delay_seconds=2.0)])
    attempt = connect(server.url, fresh=True, max_concurrency=1)
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(post, attempt)
        while not server.seen:  # the one connection is in use
            time.sleep(0.01)

        waited = post(attempt, timeout=0.2)

        assert waited.status_code is None
        assert waited.retryable
        assert "PoolTimeout" in (waited.reason or "")
        assert busy.result().ok
    assert post(attempt).ok  # the connection, given back, is used again
    assert len({seen.client_port for seen in server.seen}) == 1


def test_an_untrusted_certificate_is_final(untrusted_tls: TLSServer, connect: Connect) -> None:
    result = post(connect(untrusted_tls.url))
    assert (result.status_code, result.retryable) == (None, False)  # retrying cannot fix it
    assert "CERTIFICATE_VERIFY_FAILED" in result.reason
    assert "self-signed certificate" in result.reason
    assert untrusted_tls.connections == 1


# Instrumentation.


def traced_url(span: ReadableSpan) -> object:
    attributes = span.attributes or {}
    # Old and new HTTP semantic conventions, as the instrumentation's version has it.
    return attributes.get("url.full", attributes.get("http.url"))


def test_an_instrumented_httpx_does_not_trace_the_attempts(
    server: ScriptedServer, connect: Connect
) -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(spans))
    instrumentor = HTTPXClientInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        # Made while httpx is instrumented: also caught by an instrumentation that patches
        # clients as they are made, not only one that patches the transport class.
        exported = post(connect(server.url, fresh=True))
        with httpx.Client() as client:  # proves the instrumentation is live
            client.post(f"{server.url}/probe", content=b"{}")
    finally:
        instrumentor.uninstrument()
        provider.shutdown()
    assert exported.ok
    assert server.paths() == [CALL_START_ROUTE, "/probe"]
    traced = [(span.name, traced_url(span)) for span in spans.get_finished_spans()]
    assert traced == [("POST", f"{server.url}/probe")]  # the probe, and only the probe


# Answers are untrusted input.

SUCCESS_BODIES = {
    "deeply-nested": b"[" * 100_000,
    "invalid-json": b'{"id": ',
    "binary": bytes(range(256)) * 4,
    "huge": b" " * 3_000_000,
}


@pytest.mark.parametrize("kind", sorted(SUCCESS_BODIES))
def test_a_2xx_is_a_success_whatever_its_body(
    server: ScriptedServer, connect: Connect, kind: str
) -> None:
    result = answer(server, connect, Reply(200, SUCCESS_BODIES[kind]))
    assert (result.status_code, result.ok, result.body) == (200, True, None)


@pytest.mark.parametrize("status", [200, 500])
def test_a_body_is_read_only_up_to_a_bound(
    server: ScriptedServer, connect: Connect, status: int
) -> None:
    # 100 kB sent of the 1 GB announced: read to its end, the answer would never complete.
    reply = Reply(status, b"x" * 100_000, claimed_length=10**9)
    server.script(CALL_START_ROUTE, [reply])
    result = post(connect(server.url), GIVE_UP_SECONDS)
    assert result.status_code == status
    assert result.retryable is (status == 500)


def test_a_500_nested_past_any_parser_is_a_readable_retryable_reason(
    server: ScriptedServer, connect: Connect
) -> None:
    result = answer(server, connect, Reply(500, b"[" * 100_000))
    assert (result.status_code, result.retryable, result.body) == (500, True, None)
    assert result.reason == "[" * 500


def test_a_huge_reason_phrase_is_cut(server: ScriptedServer, connect: Connect) -> None:
    result = answer(server, connect, Reply(503, b"", reason_phrase="busy " * 10_000))
    assert result.status_code == 503
    assert result.reason.startswith("busy busy")
    assert len(result.reason) == 500


def test_a_huge_retry_after_header_is_ignored(server: ScriptedServer, connect: Connect) -> None:
    result = answer(server, connect, Reply(429, headers={"Retry-After": "1" * 50_000}))
    assert (result.status_code, result.retry_after) == (429, None)


# The key never leaks: an answer may echo any form of it, anywhere.

ESCAPED_KEY = 'k3y"with\\quote/and+plus%=0123456789'


def wire_forms(key: str, scheme: str) -> list[str]:
    """What a log must never hold: each form of the key, and a 12-character piece of each."""
    basic = base64.b64encode(f"api:{key}".encode()).decode()
    forms = [key, basic, json.dumps(key)[1:-1], repr(key)[1:-1], quote(key, safe="")]
    forms.append(f"Bearer {key}" if scheme == "bearer" else f"Basic {basic}")
    return forms + [form[:12] for form in forms] + [form[-12:] for form in forms]


def echoing(kind: str) -> Callable[[Seen], Reply]:
    """A reply that echoes the request's ``Authorization`` (and the key in it) as ``kind``."""

    def reply(seen: Seen) -> Reply:
        authorization = seen.headers["authorization"]
        scheme, _, credential = authorization.partition(" ")
        key = credential if scheme == "Bearer" else base64.b64decode(credential).decode()[4:]
        echoes = {
            "reason-phrase": Reply(401, b"", reason_phrase=f"bad {authorization}"),
            "key-as-reason": Reply(401, b"", reason_phrase=f"bad key {key}"),
            "straddling-the-cut": Reply(401, ("x" * 490 + key + "y" * 100).encode()),
            "json-escaped": Reply(401, {"detail": {"got": authorization, "key": key}}),
            "header": Reply(401, {}, headers={"WWW-Authenticate": authorization}),
        }
        return echoes[kind]

    return reply


@pytest.mark.parametrize("key", [API_KEY, ESCAPED_KEY], ids=["plain-key", "escaped-key"])
@pytest.mark.parametrize("scheme", ["basic", "bearer"])
@pytest.mark.parametrize(
    "kind", ["reason-phrase", "key-as-reason", "straddling-the-cut", "json-escaped", "header"]
)
def test_no_form_of_the_key_reaches_a_log_or_a_reason(
    server: ScriptedServer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    scheme: str,
    key: str,
) -> None:
    last_resort = io.StringIO()
    monkeypatch.setattr(logging, "lastResort", logging.StreamHandler(last_resort))
    server.responder = echoing(kind)
    settings = WeaveSettings.from_env(
        {}, api_key=key, project=PROJECT, server_url=server.url, auth_scheme=scheme
    )
    with caplog.at_level(logging.DEBUG):
        attempt = HttpAttempt(settings)
        try:
            result = post(attempt)
            logging.getLogger(LOGGER).warning("refused: %s", result.reason)
            try:
                raise RuntimeError(f"answer {server.answers[-1][1]!r}")
            except RuntimeError:
                logging.getLogger(LOGGER).exception("echoed")
        finally:
            attempt.close()
    assert result.status_code == 401
    logged = "\n".join([caplog.text, last_resort.getvalue(), result.reason])
    assert "HTTP Request: POST" in caplog.text  # httpx's own records were captured
    assert "RuntimeError" in caplog.text
    leaked = [form for form in wire_forms(key, scheme) if form in logged]
    assert leaked == [], logged
