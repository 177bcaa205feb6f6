"""The local Weave receiver, exercised over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from opentelemetry.exporter.weave.testing import LocalWeaveServer, ReceivedRequest

PROJECT = "entity/project"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
ROOT_ID = "b7ad6b7169203331"
CHILD_ID = "00f067aa0ba902b7"
API_KEY = "local-test-key-0123456789"


def start_body(call_id: str = ROOT_ID, project_id: str = PROJECT, **fields: Any) -> dict[str, Any]:
    start: dict[str, Any] = {
        "project_id": project_id,
        "id": call_id,
        "op_name": "chat gpt-4o-mini",
        "trace_id": TRACE_ID,
        "started_at": "2025-01-02T03:04:05.123456+00:00",
        "attributes": {"gen_ai.provider.name": "openai"},
        "inputs": {"messages": [{"role": "user", "content": "hi"}]},
    }
    return {"start": start | fields}


def end_body(call_id: str = ROOT_ID, project_id: str = PROJECT, **fields: Any) -> dict[str, Any]:
    end: dict[str, Any] = {
        "project_id": project_id,
        "id": call_id,
        "ended_at": "2025-01-02T03:04:06.000001+00:00",
        "summary": {
            "usage": {"gpt-4o-mini": {"requests": 1, "input_tokens": 5, "output_tokens": 7}},
            "status_counts": {"success": 1},
            "weave_extra": "kept",
        },
        "output": {"content": "hello"},
    }
    return {"end": end | fields}


# HTTPValidationError, the 422 body of the service's OpenAPI.
VALIDATION_ERROR_SCHEMA = {
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["loc", "msg", "type"],
                "properties": {
                    "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        }
    },
}


def bearer(key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def server() -> Iterator[LocalWeaveServer]:
    with LocalWeaveServer() as running:
        yield running


@pytest.fixture
def client(server: LocalWeaveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=5.0) as http:
        yield http


@pytest.fixture
def secured() -> Iterator[LocalWeaveServer]:
    with LocalWeaveServer(api_key=API_KEY) as running:
        yield running


def port_of(server: LocalWeaveServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# --- calls ----------------------------------------------------------------------------------


def test_start_then_end_is_listed_as_one_merged_call(
    server: LocalWeaveServer, client: httpx.Client
) -> None:
    started = client.post("/call/start", json=start_body())
    assert started.status_code == 200
    assert started.json() == {"id": ROOT_ID, "trace_id": TRACE_ID}

    ended = client.post("/call/end", json=end_body())
    assert ended.status_code == 200
    assert ended.json() == {}

    start, end = start_body()["start"], end_body()["end"]
    assert server.calls() == [
        {
            **start,
            "display_name": None,
            "parent_id": None,
            "thread_id": None,
            "turn_id": None,
            "wb_run_id": None,
            "wb_run_step": None,
            "ended_at": end["ended_at"],
            "exception": None,
            "output": end["output"],
            "summary": end["summary"],
            "wb_run_step_end": None,
        }
    ]
    assert server.orphan_ends() == []


def test_call_values_are_the_json_the_client_sent(
    server: LocalWeaveServer, client: httpx.Client
) -> None:
    # Pydantic would re-serialise these differently (UTC offset, microseconds, dropped key).
    sent_start = start_body(started_at="2025-01-02T05:04:05+02:00", display_name="Chat")
    sent_end = end_body(ended_at="2025-01-02T03:04:06Z", exception='{"type": "ValueError"}')
    sent_end["end"]["summary"]["usage"]["gpt-4o-mini"]["reasoning_tokens"] = 3

    client.post("/call/start", json=sent_start)
    client.post("/call/end", json=sent_end)

    [call] = server.calls()
    assert call["started_at"] == "2025-01-02T05:04:05+02:00"
    assert call["display_name"] == "Chat"
    assert call["ended_at"] == "2025-01-02T03:04:06Z"
    assert call["exception"] == '{"type": "ValueError"}'
    assert call["summary"]["usage"]["gpt-4o-mini"] == {
        "requests": 1,
        "input_tokens": 5,
        "output_tokens": 7,
        "reasoning_tokens": 3,
    }
    assert call["summary"]["weave_extra"] == "kept"


def test_started_call_without_end_is_listed_as_running(
    server: LocalWeaveServer, client: httpx.Client
) -> None:
    client.post("/call/start", json=start_body())

    [call] = server.calls()
    assert call["op_name"] == "chat gpt-4o-mini"
    assert (call["ended_at"], call["exception"], call["output"], call["wb_run_step_end"]) == (
        None,
        None,
        None,
        None,
    )
    assert call["summary"] == {}


def test_end_without_start_is_hidden_but_kept_as_an_orphan(
    server: LocalWeaveServer, client: httpx.Client
) -> None:
    response = client.post("/call/end", json=end_body())

    assert response.status_code == 200
    assert server.calls() == []
    assert server.orphan_ends() == [end_body()["end"]]
    assert server.orphan_ends("other/project") == []


def test_end_before_start_merges_once_the_start_arrives(
    server: LocalWeaveServer, client: httpx.Client
) -> None:
    client.post("/call/end", json=end_body())
    assert server.calls() == []

    client.post("/call/start", json=start_body())

    [call] = server.calls()
    assert call["op_name"] == "chat gpt-4o-mini"
    assert call["ended_at"] == end_body()["end"]["ended_at"]
    assert call["summary"] == end_body()["end"]["summary"]
    assert server.orphan_ends() == []


def test_calls_are_in_start_order_and_filtered_by_project(
    server: LocalWeaveServer, client: httpx.Client
) -> None:
    client.post("/call/start", json=start_body(ROOT_ID))
    client.post("/call/start", json=start_body(CHILD_ID, parent_id=ROOT_ID))
    client.post("/call/start", json=start_body(ROOT_ID, project_id="entity/other"))
    # Ends in reverse order must not reorder the calls.
    client.post("/call/end", json=end_body(CHILD_ID))
    client.post("/call/end", json=end_body(ROOT_ID))

    assert [(c["project_id"], c["id"]) for c in server.calls()] == [
        (PROJECT, ROOT_ID),
        (PROJECT, CHILD_ID),
        ("entity/other", ROOT_ID),
    ]
    assert [c["id"] for c in server.calls(PROJECT)] == [ROOT_ID, CHILD_ID]
    assert [c["parent_id"] for c in server.calls(PROJECT)] == [None, ROOT_ID]
    [other] = server.calls("entity/other")
    assert other["ended_at"] is None
    assert server.calls("nobody/nothing") == []


def test_repeated_start_replaces_the_call_but_keeps_its_place(
    server: LocalWeaveServer, client: httpx.Client
) -> None:
    client.post("/call/start", json=start_body(ROOT_ID))
    client.post("/call/start", json=start_body(CHILD_ID))
    client.post("/call/start", json=start_body(ROOT_ID, op_name="retried"))

    assert [(c["id"], c["op_name"]) for c in server.calls()] == [
        (ROOT_ID, "retried"),
        (CHILD_ID, "chat gpt-4o-mini"),
    ]


def test_concurrent_starts_are_all_stored(server: LocalWeaveServer) -> None:
    ids = [f"{n:016x}" for n in range(64)]
    statuses: list[int] = []

    with httpx.Client(base_url=server.url, timeout=10.0) as http:

        def send(call_id: str) -> None:
            statuses.append(http.post("/call/start", json=start_body(call_id)).status_code)

        threads = [threading.Thread(target=send, args=(call_id,)) for call_id in ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert statuses == [200] * len(ids)
    assert sorted(c["id"] for c in server.calls()) == ids
    assert len(server.requests()) == len(ids)


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "body", "loc", "error_type"),
    [
        ("/call/start", b"{not json", ["body"], "json_invalid"),
        ("/call/end", b"", ["body"], "json_invalid"),
        ("/call/start", {**start_body(), "extra": 1}, ["body", "extra"], "extra_forbidden"),
        ("/call/end", {**end_body(), "start": {}}, ["body", "start"], "extra_forbidden"),
        (
            "/call/start",
            {"start": {k: v for k, v in start_body()["start"].items() if k != "op_name"}},
            ["body", "start", "op_name"],
            "missing",
        ),
        ("/call/end", end_body(ended_at="yesterday"), ["body", "end", "ended_at"], "datetime"),
        (
            "/call/end",
            end_body(summary={"status_counts": {"finished": 1}}),
            ["body", "end", "summary", "status_counts", "finished", "[key]"],
            "enum",
        ),
    ],
)
def test_invalid_body_is_refused_with_422_detail(
    server: LocalWeaveServer,
    client: httpx.Client,
    route: str,
    body: bytes | dict[str, Any],
    loc: list[str],
    error_type: str,
) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()

    response = client.post(route, content=content, headers={"Content-Type": "application/json"})

    assert response.status_code == 422
    jsonschema.validate(response.json(), VALIDATION_ERROR_SCHEMA)
    detail = response.json()["detail"]
    assert any(e["loc"] == loc and e["type"].startswith(error_type) for e in detail), detail
    assert server.calls() == []
    assert server.orphan_ends() == []


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("/call/start", start_body(ROOT_ID.upper()), "id"),
        ("/call/start", start_body(trace_id=TRACE_ID.upper()), "trace_id"),
        ("/call/start", start_body(CHILD_ID, parent_id="B7AD6B7169203331"), "parent_id"),
        ("/call/end", end_body("B7AD6B7169203331"), "id"),
    ],
)
def test_uppercase_id_is_refused_with_400(
    server: LocalWeaveServer,
    client: httpx.Client,
    route: str,
    body: dict[str, Any],
    field: str,
) -> None:
    response = client.post(route, json=body)

    assert response.status_code == 400
    assert response.json()["reason"].startswith(f"{field} must be lowercase")
    assert server.calls() == []
    assert server.orphan_ends() == []


def test_unknown_route_is_404_and_wrong_method_is_405(client: httpx.Client) -> None:
    missing = client.post("/call/upsert_everything", json={})
    wrong_method = client.get("/call/start")

    assert (missing.status_code, missing.json()) == (404, {"detail": "Not Found"})
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "POST"


def test_malformed_content_length_is_refused_with_400(server: LocalWeaveServer) -> None:
    with socket.create_connection(("127.0.0.1", port_of(server)), timeout=5.0) as raw:
        raw.sendall(b"POST /call/start HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
        status_line = raw.makefile("rb").readline()

    assert status_line.split()[1] == b"400"
    assert server.calls() == []


# --- auth -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        bearer("wrong-key"),
        basic("api", "wrong-key"),
        basic("someone", API_KEY),
        {"Authorization": "Basic not-base64!"},
        {"Authorization": f"Token {API_KEY}"},
        {"Authorization": API_KEY},
    ],
    ids=["none", "bad-bearer", "bad-basic", "basic-wrong-user", "garbled", "scheme", "bare"],
)
def test_missing_or_bad_credentials_are_refused_with_401(
    secured: LocalWeaveServer, headers: dict[str, str]
) -> None:
    with httpx.Client(base_url=secured.url, headers=headers) as http:
        started = http.post("/call/start", json=start_body())
        # Auth is checked before the body: an invalid body still answers 401.
        invalid = http.post("/call/end", content=b"{not json")
        listed = http.get("/calls")

    assert [r.status_code for r in (started, invalid, listed)] == [401, 401, 401]
    reason = started.json()["reason"]
    assert reason
    assert API_KEY not in reason
    assert secured.calls() == []


@pytest.mark.parametrize(
    "headers",
    [
        bearer(),
        basic("api", API_KEY),
        {"Authorization": f"bearer  {API_KEY}"},
    ],
    ids=["bearer", "basic", "lowercase-scheme"],
)
def test_valid_credentials_are_accepted(secured: LocalWeaveServer, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=secured.url, headers=headers) as http:
        started = http.post("/call/start", json=start_body())
        ended = http.post("/call/end", json=end_body())
        listed = http.get("/calls", params={"project_id": PROJECT})

    assert [r.status_code for r in (started, ended, listed)] == [200, 200, 200]
    assert [c["id"] for c in listed.json()["calls"]] == [ROOT_ID]


def test_without_api_key_any_or_no_auth_is_accepted(client: httpx.Client) -> None:
    anonymous = client.post("/call/start", json=start_body(ROOT_ID))
    with_junk = client.post(
        "/call/start", json=start_body(CHILD_ID), headers={"Authorization": "Basic junk"}
    )

    assert (anonymous.status_code, with_junk.status_code) == (200, 200)


def test_health_needs_no_credentials(secured: LocalWeaveServer) -> None:
    response = httpx.get(f"{secured.url}/health")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


# --- reading over HTTP and the request log --------------------------------------------------


def test_get_calls_lists_the_merged_calls_over_http(
    server: LocalWeaveServer, client: httpx.Client
) -> None:
    client.post("/call/start", json=start_body(ROOT_ID))
    client.post("/call/start", json=start_body(CHILD_ID, project_id="entity/other"))
    client.post("/call/end", json=end_body(ROOT_ID))

    everything = client.get("/calls")
    one_project = client.get("/calls", params={"project_id": PROJECT})

    assert everything.status_code == 200
    assert everything.json() == {"calls": server.calls()}
    assert len(everything.json()["calls"]) == 2
    assert one_project.json() == {"calls": server.calls(PROJECT)}
    assert [c["id"] for c in one_project.json()["calls"]] == [ROOT_ID]
    assert one_project.json()["calls"][0]["summary"] == end_body()["end"]["summary"]


def test_requests_are_logged_in_arrival_order_with_their_answers(
    secured: LocalWeaveServer,
) -> None:
    with httpx.Client(base_url=secured.url, headers=bearer()) as http:
        http.post("/call/start", json=start_body())
        http.post("/call/end", json=end_body(), headers={"X-Weave-Retry-Id": "r1"})
        http.get("/nowhere")
        http.get("/calls", params={"project_id": PROJECT})
    httpx.post(f"{secured.url}/call/start", json=start_body(CHILD_ID))

    log = secured.requests()

    assert [(r.method, r.path, r.status) for r in log] == [
        ("POST", "/call/start", 200),
        ("POST", "/call/end", 200),
        ("GET", "/nowhere", 404),
        ("GET", "/calls", 200),
        ("POST", "/call/start", 401),
    ]
    assert all(isinstance(r, ReceivedRequest) for r in log)
    assert [r.received_at for r in log] == sorted(r.received_at for r in log)
    assert log[0].headers["authorization"] == f"Bearer {API_KEY}"
    assert log[0].headers["content-type"] == "application/json"
    assert log[1].headers["x-weave-retry-id"] == "r1"
    assert "authorization" not in log[4].headers
    assert json.loads(log[0].body) == start_body()
    assert json.loads(log[1].body) == end_body()
    assert log[2].body == b""


def test_request_repr_does_not_show_the_api_key(secured: LocalWeaveServer) -> None:
    httpx.post(f"{secured.url}/call/start", json=start_body(), headers=bearer())

    [logged] = secured.requests()

    assert logged.headers["authorization"] == f"Bearer {API_KEY}"
    assert API_KEY not in repr(logged)
    assert "/call/start" in repr(logged)


def test_nothing_is_written_to_stderr_per_request(
    client: httpx.Client, capfd: pytest.CaptureFixture[str]
) -> None:
    client.post("/call/start", json=start_body())
    client.get("/nowhere")
    client.post("/call/end", content=b"{not json")

    assert capfd.readouterr().err == ""


# --- lifecycle and persistence --------------------------------------------------------------


def test_url_needs_a_running_server_and_start_twice_is_refused() -> None:
    server = LocalWeaveServer()
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url

    with server:
        assert server.url.startswith("http://127.0.0.1:")
        assert not server.url.endswith(":0")
        with pytest.raises(RuntimeError, match="already running"):
            server.start()

    with pytest.raises(RuntimeError, match="not running"):
        _ = server.url


def test_stopped_server_refuses_connections_and_keeps_its_data() -> None:
    with LocalWeaveServer() as server:
        url = server.url
        httpx.post(f"{url}/call/start", json=start_body())

    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health", timeout=2.0)
    assert [c["id"] for c in server.calls()] == [ROOT_ID]
    assert len(server.requests()) == 1


def test_restart_keeps_the_url_and_the_calls() -> None:
    server = LocalWeaveServer().start()
    try:
        url = server.url
        httpx.post(f"{url}/call/start", json=start_body())
        server.stop()

        server.start()
        assert server.url == url
        assert httpx.post(f"{url}/call/end", json=end_body()).status_code == 200
        [call] = server.calls()
        assert call["ended_at"] == end_body()["end"]["ended_at"]
    finally:
        server.stop()


def test_sqlite_file_keeps_calls_across_servers(tmp_path: Path) -> None:
    db_path = str(tmp_path / "calls.sqlite")
    later_id = "00000000000000bb"
    orphan_id = "00000000000000aa"
    with LocalWeaveServer(db_path=db_path) as first:
        httpx.post(f"{first.url}/call/start", json=start_body(ROOT_ID))
        httpx.post(f"{first.url}/call/start", json=start_body(CHILD_ID, parent_id=ROOT_ID))
        httpx.post(f"{first.url}/call/end", json=end_body(ROOT_ID))
        httpx.post(f"{first.url}/call/end", json=end_body(orphan_id))
        before = first.calls()

    with LocalWeaveServer(db_path=db_path) as second:
        assert second.calls() == before
        assert [e["id"] for e in second.orphan_ends()] == [orphan_id]
        # New calls are placed after the stored ones.
        httpx.post(f"{second.url}/call/start", json=start_body(later_id))
        assert [c["id"] for c in second.calls()] == [ROOT_ID, CHILD_ID, later_id]
        assert second.requests()[0].path == "/call/start"
        assert len(second.requests()) == 1


# --- command line ---------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="stops the server with SIGTERM")
def test_module_cli_serves_with_key_from_env_until_sigterm(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "LOCAL_WEAVE_TEST_KEY": API_KEY}
    db_path = tmp_path / "cli.sqlite"
    command = [
        sys.executable,
        "-m",
        "opentelemetry.exporter.weave.testing",
        "--port",
        str(port),
        "--db",
        str(db_path),
        "--api-key-env",
        "LOCAL_WEAVE_TEST_KEY",
    ]
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 20.0
        health: httpx.Response | None = None
        while health is None and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            try:
                health = httpx.get(f"{url}/health", timeout=1.0)
            except httpx.TransportError:
                time.sleep(0.05)
        assert health is not None, "the CLI server did not answer /health in time"
        assert health.json() == {"status": "ok"}

        refused = httpx.post(f"{url}/call/start", json=start_body())
        accepted = httpx.post(f"{url}/call/start", json=start_body(), headers=bearer())
        assert (refused.status_code, accepted.status_code) == (401, 200)

        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=10.0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    assert proc.returncode == 0, stderr
    assert url in stdout
    assert API_KEY not in stdout + stderr
    # The call went to the --db file, readable by a later server.
    assert [c["id"] for c in LocalWeaveServer(db_path=str(db_path)).calls()] == [ROOT_ID]


def test_module_cli_refuses_an_unset_key_variable() -> None:
    env = {k: v for k, v in os.environ.items() if k != "LOCAL_WEAVE_UNSET_KEY"}
    command = [sys.executable, "-m", "opentelemetry.exporter.weave.testing", "--port", "0"]

    # A subprocess with a timeout, so a server that starts anyway fails the test, not hangs it.
    result = subprocess.run(
        [*command, "--api-key-env", "LOCAL_WEAVE_UNSET_KEY"],
        env=env,
        capture_output=True,
        check=False,
        text=True,
        timeout=20.0,
    )

    assert result.returncode == 2
    assert "LOCAL_WEAVE_UNSET_KEY" in result.stderr
