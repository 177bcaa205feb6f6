"""What one attempt puts on the wire: exactly what ``httpx.Client`` sent, in fewer sends.

``HttpAttempt`` drives httpx's transport itself (a client's per-request work cost more CPU
than the exchange); these tests pin that the requests did not change: the URL, every header in
its order, cookies, and that a request's head and body go out in one write.
"""

from __future__ import annotations

import base64
from typing import Any

import httpcore
import httpx
import pytest

from opentelemetry.exporter.weave import _transport
from opentelemetry.exporter.weave._call import CALL_START_ROUTE, call_start_body
from opentelemetry.exporter.weave._transport import HttpAttempt
from opentelemetry.exporter.weave._version import __version__

from .fault_server import Reply, ScriptedServer, Seen
from .helpers import API_KEY, make_call, settings_for

BODY = call_start_body(make_call())


def client_as_it_was(server_url: str) -> httpx.Client:
    """The ``httpx.Client`` that ``HttpAttempt`` sent its requests with before."""
    return httpx.Client(
        base_url=server_url,
        headers={
            "Authorization": "Basic " + base64.b64encode(f"api:{API_KEY}".encode()).decode(),
            "Accept-Encoding": "identity",
            "Content-Type": "application/json",
            "User-Agent": f"opentelemetry-exporter-weave/{__version__}",
            "X-Weave-Client-Capabilities": "trace_id_on_end",
        },
    )


def as_sent(seen: Seen) -> tuple[str, list[tuple[str, str]], bytes]:
    return seen.path, list(seen.headers.items()), seen.body


@pytest.mark.parametrize("base_path", ["", "/base/traces"], ids=["root", "under-a-path"])
@pytest.mark.parametrize(
    "extra",
    [{}, {"X-Weave-Retry-Id": "r1"}, {"Content-Type": "multipart/form-data; boundary=b0"}],
    ids=["no-extra-header", "retry-id", "content-type-replaced"],
)
def test_a_request_is_on_the_wire_what_httpx_client_sent(
    server: ScriptedServer, base_path: str, extra: dict[str, str]
) -> None:
    route = CALL_START_ROUTE
    server_url = server.url + base_path
    attempt = HttpAttempt(settings_for(server_url))
    try:
        assert attempt.post(route, BODY, 5.0, extra).ok
        assert attempt.post(route, BODY, 5.0, extra).ok  # a route's URL, kept, is the same
    finally:
        attempt.close()
    with client_as_it_was(server_url) as client:
        assert client.post(route, content=BODY, headers=extra).is_success
    ours, again, reference = (as_sent(seen) for seen in server.seen)
    assert ours == again == reference
    assert ours[0] == base_path + route


def test_cookies_the_service_sets_are_sent_back_as_a_client_sends_them(
    server: ScriptedServer,
) -> None:
    server.script(CALL_START_ROUTE, [Reply(headers={"Set-Cookie": "affinity=a1; Path=/"})])
    attempt = HttpAttempt(settings_for(server.url))
    try:
        assert attempt.post(CALL_START_ROUTE, BODY, 5.0, {}).ok
        assert attempt.post(CALL_START_ROUTE, BODY, 5.0, {}).ok
        attempt.reset_after_fork()  # a forked child starts afresh, as with a client of its own
        assert attempt.post(CALL_START_ROUTE, BODY, 5.0, {}).ok
    finally:
        attempt.close()
    first, second, after_fork = (seen.headers.get("cookie") for seen in server.seen)
    assert (first, second, after_fork) == (None, "affinity=a1", None)


# The head and the body in one write (the connection's own operations, with a fake socket).


class RecordingStream(httpcore.NetworkStream):
    def __init__(self, fail_writes: bool = False) -> None:
        self.operations: list[tuple[str, Any]] = []
        self._fail_writes = fail_writes

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.operations.append(("write", buffer))
        if self._fail_writes:
            raise httpcore.WriteError("connection reset by peer")

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self.operations.append(("read", max_bytes))
        return b"HTTP/1.1 413 Payload Too Large\r\n"

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        self.operations.append(("start_tls", server_hostname))
        return self


HEAD = b"POST /call/start HTTP/1.1\r\nHost: h\r\nContent-Length: 900\r\n\r\n"
SMALL_BODY = b"{" + b" " * 898 + b"}"
LARGE_BODY = b"x" * 200_000


def test_a_head_and_a_small_body_go_out_in_one_write() -> None:
    raw = RecordingStream()
    stream = _transport._DeadlineStream(raw)
    stream.write(HEAD)
    stream.write(SMALL_BODY)
    stream.write(b"")  # h11's end of a Content-Length message
    assert raw.operations == [("write", HEAD + SMALL_BODY)]
    stream.read(4096)
    assert raw.operations == [("write", HEAD + SMALL_BODY), ("read", 4096)]


def test_a_large_body_is_not_copied_to_be_joined() -> None:
    raw = RecordingStream()
    stream = _transport._DeadlineStream(raw)
    stream.write(HEAD)
    stream.write(LARGE_BODY)
    assert raw.operations == [("write", HEAD), ("write", LARGE_BODY)]
    stream.write(LARGE_BODY)  # large: at once
    assert raw.operations[-1] == ("write", LARGE_BODY)


def test_a_held_write_goes_out_before_the_read_that_waits_for_its_answer() -> None:
    raw = RecordingStream()
    stream = _transport._DeadlineStream(raw)
    stream.write(b"CONNECT h:443 HTTP/1.1\r\n\r\n")
    assert raw.operations == []
    assert stream.read(4096).startswith(b"HTTP/1.1")
    assert raw.operations == [("write", b"CONNECT h:443 HTTP/1.1\r\n\r\n"), ("read", 4096)]


def test_a_held_write_goes_out_before_a_tls_handshake() -> None:
    raw = RecordingStream()
    stream = _transport._DeadlineStream(raw)
    stream.write(HEAD)
    stream.start_tls(None, "h")  # type: ignore[arg-type]  # the fake needs no context
    assert raw.operations == [("write", HEAD), ("start_tls", "h")]


def test_a_failed_held_write_still_reads_the_answer_as_httpcore_does() -> None:
    # httpcore reads the answer after a request it could not finish writing: a server that
    # refused it early (413) has said why. The held write failing must not hide that answer.
    raw = RecordingStream(fail_writes=True)
    stream = _transport._DeadlineStream(raw)
    stream.write(HEAD)
    assert stream.read(4096) == b"HTTP/1.1 413 Payload Too Large\r\n"
    assert raw.operations == [("write", HEAD), ("read", 4096)]


def test_a_held_write_is_bounded_by_the_attempt_deadline() -> None:
    raw = RecordingStream()
    stream = _transport._DeadlineStream(raw)
    _transport._attempt.deadline = 0.0  # long gone
    try:
        stream.write(HEAD)  # held: no time is spent yet
        with pytest.raises(httpcore.WriteTimeout):
            stream.read(4096)
    finally:
        _transport._attempt.deadline = None
    assert raw.operations == []
