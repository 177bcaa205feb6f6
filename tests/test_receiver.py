"""The local Weave receiver, exercised over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from opentelemetry.exporter.weave._call import call_end_v2_route, call_start_v2_route
from opentelemetry.exporter.weave.testing import LocalWeaveServer, ReceivedRequest, call_status

PROJECT = "entity/project"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
ROOT_ID = "b7ad6b7169203331"
CHILD_ID = "00f067aa0ba902b7"
OTHER_ID = "53995c3f42cd8ad8"
API_KEY = "local-test-key-0123456789"
COMPLETE = f"/v2/{PROJECT}/calls/complete"
CALLS_COMPLETE_MODE_REQUIRED = {
    "reason": "This project requires the calls_complete write mode",
    "error_code": "CALLS_COMPLETE_MODE_REQUIRED",
}


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


def batch_start(body: dict[str, Any]) -> dict[str, Any]:
    return {"mode": "start", "req": body}


def batch_end(body: dict[str, Any]) -> dict[str, Any]:
    return {"mode": "end", "req": body}


def complete_item(
    call_id: str = ROOT_ID, project_id: str = PROJECT, **fields: Any
) -> dict[str, Any]:
    """The whole call that start_body() and end_body() send in halves."""
    whole: dict[str, Any] = (
        start_body(call_id, project_id)["start"] | end_body(call_id, project_id)["end"]
    )
    return whole | fields


def compact(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def calls_via_v1(*bodies: dict[str, Any]) -> list[dict[str, Any]]:
    """What calls() shows after these start and end bodies went, in order, to the v1 routes."""
    with LocalWeaveServer() as reference, httpx.Client(base_url=reference.url) as http:
        for body in bodies:
            route = "/call/start" if "start" in body else "/call/end"
            assert http.post(route, json=body).status_code == 200
    return reference.calls()


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


# --- batches and whole calls ----------------------------------------------------------------


def test_upsert_batch_applies_items_in_order_as_single_calls_would(
    server: LocalWeaveServer, client: httpx.Client
) -> None:
    child_start = start_body(CHILD_ID, parent_id=ROOT_ID, display_name="Child")
    child_end = end_body(CHILD_ID, exception='{"type": "ValueError"}')
    # Ends before their starts, and the child started before the root.
    sent = [end_body(), child_end, child_start, start_body()]
    batch = [batch_start(body) if "start" in body else batch_end(body) for body in sent]

    response = client.post("/call/upsert_batch", json={"batch": batch})

    assert response.status_code == 200
    assert response.json() == {
        "res": [
            {},
            {},
            {"id": CHILD_ID, "trace_id": TRACE_ID},
            {"id": ROOT_ID, "trace_id": TRACE_ID},
        ]
    }
    assert [(c["id"], c["exception"]) for c in server.calls()] == [
        (CHILD_ID, child_end["end"]["exception"]),
        (ROOT_ID, None),
    ]
    assert server.calls() == calls_via_v1(*sent)
    assert server.orphan_ends() == []


def test_calls_complete_stores_whole_calls_exactly_as_start_plus_end(
    server: LocalWeaveServer, client: httpx.Client
) -> None:
    # Values pydantic would re-serialise, and optional fields on both sides of the split.
    child_start = start_body(
        CHILD_ID,
        parent_id=ROOT_ID,
        display_name="Child",
        started_at="2025-01-02T05:04:05+02:00",
        wb_run_id="entity/project/run1",
        wb_run_step=3,
    )
    child_end = end_body(
        CHILD_ID, ended_at="2025-01-02T03:04:06Z", exception="boom", wb_run_step_end=4
    )
    items = [
        start_body()["start"] | end_body()["end"],
        child_start["start"] | child_end["end"],
    ]

    response = client.post(COMPLETE, json={"batch": items})

    assert (response.status_code, response.json()) == (200, {})
    expected = calls_via_v1(start_body(), child_start, end_body(), child_end)
    assert [(c["id"], c["ended_at"], c["wb_run_step_end"]) for c in expected] == [
        (ROOT_ID, end_body()["end"]["ended_at"], None),
        (CHILD_ID, "2025-01-02T03:04:06Z", 4),
    ]
    assert server.calls() == expected
    assert client.get("/calls", params={"project_id": PROJECT}).json() == {"calls": expected}
    assert server.orphan_ends() == []


def test_calls_complete_refuses_an_item_of_another_project(
    server: LocalWeaveServer, client: httpx.Client
) -> None:
    batch = [complete_item(), complete_item(CHILD_ID, project_id="entity/other")]

    response = client.post(COMPLETE, json={"batch": batch})
    elsewhere = client.post("/v2/entity/other/calls/complete", json={"batch": batch[:1]})

    assert response.status_code == 400
    assert "'entity/other'" in response.json()["reason"]
    assert f"'{PROJECT}'" in response.json()["reason"]
    assert elsewhere.status_code == 400
    assert server.calls() == []
    assert server.start_writes() == {}


# --- v2 single-call routes (running calls) ---------------------------------------------------

V2_START = f"/v2/{PROJECT}/call/start"
V2_END = f"/v2/{PROJECT}/call/end"


def no_start_reason(call_id: str = ROOT_ID, project_id: str = PROJECT) -> dict[str, str]:
    """The 404 body of a v2 end whose start is not stored (Weave's in-memory server's words)."""
    return {"reason": f"Cannot end call {call_id}: no start found in project {project_id}"}


def test_v2_start_then_end_is_the_call_v1_would_store(
    server: LocalWeaveServer, client: httpx.Client
) -> None:
    started = client.post(V2_START, json=start_body())
    running = server.calls()
    ended = client.post(V2_END, json=end_body())

    assert (started.status_code, started.json()) == (200, {"id": ROOT_ID, "trace_id": TRACE_ID})
    assert [(c["id"], c["ended_at"], c["summary"]) for c in running] == [(ROOT_ID, None, {})]
    assert (ended.status_code, ended.json()) == (200, {})
    expected = calls_via_v1(start_body(), end_body())
    assert server.calls() == expected
    assert client.get("/calls", params={"project_id": PROJECT}).json() == {"calls": expected}
    assert (server.start_writes(), server.end_writes()) == ({ROOT_ID: 1}, {ROOT_ID: 1})
    assert server.orphan_ends() == []


def test_v2_end_without_a_start_is_404_and_stores_nothing(
    server: LocalWeaveServer, client: httpx.Client
) -> None:
    # A start in another project, and an end stored without its start (v1), are no start here.
    client.post("/v2/entity/other/call/start", json=start_body(project_id="entity/other"))
    client.post("/call/end", json=end_body(CHILD_ID))

    missing = client.post(V2_END, json=end_body())
    orphan = client.post(V2_END, json=end_body(CHILD_ID))

    assert (missing.status_code, missing.json()) == (404, no_start_reason())
    assert (orphan.status_code, orphan.json()) == (404, no_start_reason(CHILD_ID))
    assert server.calls(PROJECT) == []
    assert server.end_writes() == {CHILD_ID: 1}
    assert server.orphan_ends() == [end_body(CHILD_ID)["end"]]
    assert [r.status for r in server.requests()] == [200, 200, 404, 404]


def test_v2_end_after_its_start_arrives_completes_the_call(
    server: LocalWeaveServer, client: httpx.Client
) -> None:
    too_early = client.post(V2_END, json=end_body())
    client.post(V2_START, json=start_body())
    resent = client.post(V2_END, json=end_body())

    assert [too_early.status_code, resent.status_code] == [404, 200]
    [call] = server.calls()
    assert call["ended_at"] == end_body()["end"]["ended_at"]
    assert server.end_writes() == {ROOT_ID: 1}


def test_v2_routes_serve_a_calls_complete_only_project() -> None:
    with (
        LocalWeaveServer(calls_complete_only=True) as server,
        httpx.Client(base_url=server.url) as http,
    ):
        started = http.post(V2_START, json=start_body())
        ended = http.post(V2_END, json=end_body())
        v1 = http.post("/call/start", json=start_body(CHILD_ID))

    assert [started.status_code, ended.status_code] == [200, 200]
    assert (v1.status_code, v1.json()) == (400, CALLS_COMPLETE_MODE_REQUIRED)
    assert server.calls() == calls_via_v1(start_body(), end_body())


def test_v2_routes_need_credentials(secured: LocalWeaveServer) -> None:
    anonymous = httpx.post(f"{secured.url}{V2_START}", json=start_body())
    wrong = httpx.post(f"{secured.url}{V2_END}", json=end_body(), headers=bearer("nope"))
    started = httpx.post(f"{secured.url}{V2_START}", json=start_body(), headers=bearer())
    ended = httpx.post(f"{secured.url}{V2_END}", json=end_body(), headers=basic("api", API_KEY))

    assert [r.status_code for r in (anonymous, wrong, started, ended)] == [401, 401, 200, 200]
    assert (secured.start_writes(), secured.end_writes()) == ({ROOT_ID: 1}, {ROOT_ID: 1})


@pytest.mark.parametrize(
    ("route", "body", "loc", "error_type"),
    [
        (V2_START, start_body() | {"extra": 1}, ["body", "extra"], "extra_forbidden"),
        (V2_END, end_body() | {"extra": 1}, ["body", "extra"], "extra_forbidden"),
        (V2_START, {"end": end_body()["end"]}, ["body", "start"], "missing"),
        (V2_START, start_body(op_name=""), ["body", "start", "op_name"], "string_too_short"),
        (V2_END, end_body(ended_at=None), ["body", "end", "ended_at"], "datetime"),
        (
            V2_END,
            {"end": {k: v for k, v in end_body()["end"].items() if k != "summary"}},
            ["body", "end", "summary"],
            "missing",
        ),
    ],
)
def test_v2_invalid_body_is_refused_with_422_detail(
    server: LocalWeaveServer,
    client: httpx.Client,
    route: str,
    body: dict[str, Any],
    loc: list[str],
    error_type: str,
) -> None:
    response = client.post(route, json=body)

    assert response.status_code == 422
    jsonschema.validate(response.json(), VALIDATION_ERROR_SCHEMA)
    detail = response.json()["detail"]
    assert any(e["loc"] == loc and e["type"].startswith(error_type) for e in detail), detail
    assert (server.start_writes(), server.end_writes()) == ({}, {})


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        (V2_START, start_body(ROOT_ID.upper()), "id"),
        (V2_START, start_body(trace_id=TRACE_ID.upper()), "trace_id"),
        (V2_START, start_body(CHILD_ID, parent_id=ROOT_ID.upper()), "parent_id"),
        (V2_END, end_body(ROOT_ID.upper()), "id"),
        (V2_END, end_body(trace_id=TRACE_ID.upper()), "trace_id"),
    ],
)
def test_v2_uppercase_id_is_refused_with_400(
    server: LocalWeaveServer, client: httpx.Client, route: str, body: dict[str, Any], field: str
) -> None:
    # A stored start, so an end is refused for its id, not for a missing start.
    client.post(V2_START, json=start_body(OTHER_ID))

    response = client.post(route, json=body)

    assert response.status_code == 400
    assert response.json()["reason"].startswith(f"{field} must be lowercase")
    assert (server.start_writes(), server.end_writes()) == ({OTHER_ID: 1}, {})


@pytest.mark.parametrize(("route", "body"), [(V2_START, start_body), (V2_END, end_body)])
def test_v2_body_of_another_project_than_the_path_is_refused_with_400(
    server: LocalWeaveServer, client: httpx.Client, route: str, body: Any
) -> None:
    # Started in both projects, so the end is refused for its project, not a missing start.
    client.post(V2_START, json=start_body())
    client.post("/v2/entity/other/call/start", json=start_body(project_id="entity/other"))

    response = client.post(route, json=body(project_id="entity/other"))

    assert response.status_code == 400
    assert "'entity/other'" in response.json()["reason"]
    assert f"'{PROJECT}'" in response.json()["reason"]
    assert server.start_writes() == {ROOT_ID: 2}
    assert server.end_writes() == {}


def test_v2_path_segments_are_percent_decoded_into_the_project(
    server: LocalWeaveServer, client: httpx.Client
) -> None:
    project_id = "my team/app.v2"

    started = client.post("/v2/my%20team/app.v2/call/start", json=start_body(project_id=project_id))
    ended = client.post("/v2/my%20team/app%2Ev2/call/end", json=end_body(project_id=project_id))

    assert [started.status_code, ended.status_code] == [200, 200]
    [call] = server.calls(project_id)
    assert call["ended_at"] == end_body()["end"]["ended_at"]


@pytest.mark.parametrize(("entity", "project"), [("..", "a/b c"), ("my.team", "."), ("e", "%41")])
def test_v2_routes_the_exporter_builds_reach_their_project(
    server: LocalWeaveServer, client: httpx.Client, entity: str, project: str
) -> None:
    project_id = f"{entity}/{project}"

    started = client.post(
        call_start_v2_route(entity, project), json=start_body(project_id=project_id)
    )
    ended = client.post(call_end_v2_route(entity, project), json=end_body(project_id=project_id))

    assert [started.status_code, ended.status_code] == [200, 200]
    [call] = server.calls(project_id)
    assert call["ended_at"] == end_body()["end"]["ended_at"]


@pytest.mark.parametrize("path", [V2_START, V2_END])
def test_v2_wrong_method_is_405(client: httpx.Client, path: str) -> None:
    wrong_method = client.get(path)

    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "POST"


def test_running_call_is_listed_as_running_until_its_end(
    server: LocalWeaveServer, client: httpx.Client
) -> None:
    turn = start_body(thread_id="conv-1", turn_id=ROOT_ID)
    client.post(V2_START, json=turn)

    listed = client.get("/calls", params={"project_id": PROJECT}).json()["calls"]
    [thread] = client.get("/threads", params={"project_id": PROJECT}).json()["threads"]
    assert [(c["id"], c["ended_at"], call_status(c)) for c in listed] == [
        (ROOT_ID, None, "running")
    ]
    assert listed == server.calls()
    assert (thread["thread_id"], thread["last_turn_status"], thread["last_output"]) == (
        "conv-1",
        "running",
        None,
    )
    assert server.threads() == [thread]

    client.post(V2_END, json=end_body())

    [call] = server.calls()
    assert call_status(call) == "success"
    assert [t["last_turn_status"] for t in server.threads()] == ["success"]


# --- calls_complete projects and the body size limit ----------------------------------------


def test_calls_complete_only_refuses_every_v1_write_and_stores_nothing() -> None:
    with (
        LocalWeaveServer(calls_complete_only=True) as server,
        httpx.Client(base_url=server.url) as http,
    ):
        refused = [
            http.post("/call/start", json=start_body()),
            http.post("/call/end", json=end_body()),
            http.post("/call/upsert_batch", json={"batch": [batch_start(start_body())]}),
        ]
        accepted = http.post(COMPLETE, json={"batch": [complete_item()]})

    assert [(r.status_code, r.json()) for r in refused] == [(400, CALLS_COMPLETE_MODE_REQUIRED)] * 3
    assert (accepted.status_code, accepted.json()) == (200, {})
    assert server.start_writes() == {ROOT_ID: 1}
    assert server.end_writes() == {ROOT_ID: 1}
    assert server.orphan_ends() == []
    assert [(r.path, r.status) for r in server.requests()] == [
        ("/call/start", 400),
        ("/call/end", 400),
        ("/call/upsert_batch", 400),
        (COMPLETE, 200),
    ]


def test_calls_complete_mode_is_checked_after_auth_and_before_validation() -> None:
    with LocalWeaveServer(api_key=API_KEY, calls_complete_only=True) as server:
        anonymous = httpx.post(f"{server.url}/call/start", json=start_body())
        invalid = httpx.post(f"{server.url}/call/end", content=b"{not json", headers=bearer())

    assert anonymous.status_code == 401
    assert (invalid.status_code, invalid.json()) == (400, CALLS_COMPLETE_MODE_REQUIRED)


def test_calls_complete_only_can_be_switched_while_serving(
    server: LocalWeaveServer, client: httpx.Client
) -> None:
    assert server.calls_complete_only is False
    before = client.post("/call/start", json=start_body())

    server.calls_complete_only = True
    during = client.post("/call/end", json=end_body())

    server.calls_complete_only = False
    after = client.post("/call/end", json=end_body())

    assert [r.status_code for r in (before, during, after)] == [200, 400, 200]
    assert during.json() == CALLS_COMPLETE_MODE_REQUIRED
    assert server.end_writes() == {ROOT_ID: 1}


def test_body_over_max_body_bytes_is_refused_with_413_and_not_stored() -> None:
    below = compact(start_body(ROOT_ID))
    limit = len(below) + 1
    at = compact(start_body(CHILD_ID)) + b" "
    above = compact(start_body(OTHER_ID)) + b"  "
    assert (len(at), len(above)) == (limit, limit + 1)

    with (
        LocalWeaveServer(max_body_bytes=limit) as server,
        httpx.Client(base_url=server.url, headers={"Content-Type": "application/json"}) as http,
    ):
        statuses = [http.post("/call/start", content=body).status_code for body in (below, at)]
        refused = http.post("/call/start", content=above)

    assert statuses == [200, 200]
    assert refused.status_code == 413
    assert refused.json() == {"reason": f"Request body too large: {limit + 1} bytes > {limit}"}
    assert server.start_writes() == {ROOT_ID: 1, CHILD_ID: 1}
    log = server.requests()
    assert [r.status for r in log] == [200, 200, 413]
    # The refused body was dropped unread; its size is still on record.
    assert (log[2].body, log[2].headers["content-length"]) == (b"", str(limit + 1))


def test_large_body_is_read_through_then_refused_with_413_before_auth() -> None:
    # Megabytes past the limit, more than socket buffers hold: were the body left unread, the
    # server's close would reset the connection under a client still sending it.
    large = compact({"batch": [complete_item()] * 10000})
    assert len(large) > 4_000_000
    head = f"POST {COMPLETE} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(large)}\r\n\r\n"

    with LocalWeaveServer(api_key=API_KEY, max_body_bytes=1000) as server:
        with socket.create_connection(("127.0.0.1", port_of(server)), timeout=10.0) as raw:
            raw.sendall(head.encode() + large)
            status_line = raw.makefile("rb").readline()
        small = httpx.post(
            f"{server.url}{COMPLETE}", json={"batch": [complete_item()]}, headers=bearer()
        )

    # No credentials were sent: the size is checked before auth.
    assert status_line.split()[1] == b"413"
    assert small.status_code == 200
    assert server.start_writes() == {ROOT_ID: 1}
    assert [r.status for r in server.requests()] == [413, 200]


def test_max_body_bytes_can_be_changed_while_serving(
    server: LocalWeaveServer, client: httpx.Client
) -> None:
    assert server.max_body_bytes is None
    server.max_body_bytes = 10
    limited = client.post("/call/start", json=start_body())

    server.max_body_bytes = None
    unlimited = client.post("/call/start", json=start_body())

    assert [r.status_code for r in (limited, unlimited)] == [413, 200]
    assert server.start_writes() == {ROOT_ID: 1}


def test_negative_max_body_bytes_is_refused(server: LocalWeaveServer) -> None:
    with pytest.raises(ValueError, match="max_body_bytes"):
        LocalWeaveServer(max_body_bytes=-1)
    with pytest.raises(ValueError, match="max_body_bytes"):
        server.max_body_bytes = -1
    assert server.max_body_bytes is None


# --- write counts ---------------------------------------------------------------------------


def test_write_counts_show_every_start_and_end_by_any_route(
    server: LocalWeaveServer, client: httpx.Client
) -> None:
    client.post("/call/start", json=start_body(ROOT_ID))
    client.post("/call/start", json=start_body(ROOT_ID))  # a retry after a lost answer
    client.post("/call/upsert_batch", json={"batch": [batch_start(start_body(CHILD_ID))]})
    client.post(COMPLETE, json={"batch": [complete_item(OTHER_ID), complete_item(ROOT_ID)]})
    client.post("/call/start", json=start_body(ROOT_ID, project_id="entity/other"))
    client.post("/call/end", json=end_body("00000000000000aa"))

    # Repeats replace the stored call, so calls() alone cannot show them.
    assert [c["id"] for c in server.calls(PROJECT)] == [ROOT_ID, CHILD_ID, OTHER_ID]
    assert server.start_writes(PROJECT) == {ROOT_ID: 3, CHILD_ID: 1, OTHER_ID: 1}
    assert server.start_writes("entity/other") == {ROOT_ID: 1}
    assert server.start_writes() == {ROOT_ID: 4, CHILD_ID: 1, OTHER_ID: 1}
    assert server.end_writes() == {ROOT_ID: 1, OTHER_ID: 1, "00000000000000aa": 1}


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
        (
            "/call/upsert_batch",
            {"batch": [batch_start(start_body()), batch_start(start_body(CHILD_ID, op_name=""))]},
            ["body", "batch", 1, "start", "req", "start", "op_name"],
            "string_too_short",
        ),
        (
            "/call/upsert_batch",
            {"batch": [batch_start(start_body()), {"mode": "finish", "req": end_body()}]},
            ["body", "batch", 1],
            "union_tag_invalid",
        ),
        (
            "/call/upsert_batch",
            {"batch": [batch_end(end_body()) | {"extra": 1}]},
            ["body", "batch", 0, "end", "extra"],
            "extra_forbidden",
        ),
        ("/call/upsert_batch", {"batch": {}}, ["body", "batch"], "list_type"),
        (
            COMPLETE,
            {"batch": [complete_item(), complete_item(CHILD_ID, ended_at=None)]},
            ["body", "batch", 1, "ended_at"],
            "datetime",
        ),
        (
            COMPLETE,
            {"batch": [{k: v for k, v in complete_item().items() if k != "summary"}]},
            ["body", "batch", 0, "summary"],
            "missing",
        ),
        (COMPLETE, {"batch": [], "extra": 1}, ["body", "extra"], "extra_forbidden"),
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
    assert server.start_writes() == {}


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("/call/start", start_body(ROOT_ID.upper()), "id"),
        ("/call/start", start_body(trace_id=TRACE_ID.upper()), "trace_id"),
        ("/call/start", start_body(CHILD_ID, parent_id="B7AD6B7169203331"), "parent_id"),
        ("/call/end", end_body("B7AD6B7169203331"), "id"),
        # In a batch, the valid items before the bad one are not stored either.
        (
            "/call/upsert_batch",
            {"batch": [batch_start(start_body()), batch_end(end_body(CHILD_ID.upper()))]},
            "id",
        ),
        (
            "/call/upsert_batch",
            {"batch": [batch_end(end_body()), batch_start(start_body(trace_id=TRACE_ID.upper()))]},
            "trace_id",
        ),
        ("/call/end", {"end": {**end_body()["end"], "trace_id": TRACE_ID.upper()}}, "trace_id"),
        (COMPLETE, {"batch": [complete_item(ROOT_ID.upper())]}, "id"),
        (COMPLETE, {"batch": [complete_item(trace_id=TRACE_ID.upper())]}, "trace_id"),
        (
            COMPLETE,
            {"batch": [complete_item(), complete_item(CHILD_ID, parent_id=ROOT_ID.upper())]},
            "parent_id",
        ),
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
    assert server.start_writes() == {}


@pytest.mark.parametrize(
    "path",
    ["/call/upsert_everything", "/v2/entity/calls/complete", "/v2/a/b/c/calls/complete"],
)
def test_unknown_route_is_404(client: httpx.Client, path: str) -> None:
    missing = client.post(path, json={"batch": []})

    assert (missing.status_code, missing.json()) == (404, {"detail": "Not Found"})


@pytest.mark.parametrize("path", ["/call/start", "/call/upsert_batch", COMPLETE])
def test_wrong_method_is_405(client: httpx.Client, path: str) -> None:
    wrong_method = client.get(path)

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
        assert second.start_writes() == {ROOT_ID: 1, CHILD_ID: 1}
        # New calls are placed after the stored ones.
        httpx.post(f"{second.url}/call/start", json=start_body(later_id))
        assert [c["id"] for c in second.calls()] == [ROOT_ID, CHILD_ID, later_id]
        assert second.requests()[0].path == "/call/start"
        assert len(second.requests()) == 1


# --- command line ---------------------------------------------------------------------------


@dataclass
class CliRun:
    url: str
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""


@contextmanager
def cli_server(*args: str, env: dict[str, str] | None = None) -> Iterator[CliRun]:
    """Run the module's CLI on a free port until /health answers; SIGTERM it after the block."""
    port = free_port()
    command = [sys.executable, "-m", "opentelemetry.exporter.weave.testing", "--port", str(port)]
    proc = subprocess.Popen(
        [*command, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    run = CliRun(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 20.0
        health: httpx.Response | None = None
        while health is None and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            try:
                health = httpx.get(f"{run.url}/health", timeout=1.0)
            except httpx.TransportError:
                time.sleep(0.05)
        assert health is not None, "the CLI server did not answer /health in time"
        assert health.json() == {"status": "ok"}
        yield run
        proc.send_signal(signal.SIGTERM)
        run.stdout, run.stderr = proc.communicate(timeout=10.0)
        run.returncode = proc.returncode
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.skipif(sys.platform == "win32", reason="stops the server with SIGTERM")
def test_module_cli_serves_with_key_from_env_until_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "LOCAL_WEAVE_TEST_KEY": API_KEY}
    db_path = tmp_path / "cli.sqlite"

    with cli_server("--db", str(db_path), "--api-key-env", "LOCAL_WEAVE_TEST_KEY", env=env) as run:
        refused = httpx.post(f"{run.url}/call/start", json=start_body())
        accepted = httpx.post(f"{run.url}/call/start", json=start_body(), headers=bearer())

    assert (refused.status_code, accepted.status_code) == (401, 200)
    assert run.returncode == 0, run.stderr
    assert run.url in run.stdout
    assert API_KEY not in run.stdout + run.stderr
    # The call went to the --db file, readable by a later server.
    assert [c["id"] for c in LocalWeaveServer(db_path=str(db_path)).calls()] == [ROOT_ID]


@pytest.mark.skipif(sys.platform == "win32", reason="stops the server with SIGTERM")
def test_module_cli_serves_a_calls_complete_project_with_a_body_limit(tmp_path: Path) -> None:
    db_path = tmp_path / "cli.sqlite"
    item = compact({"batch": [complete_item()]})
    limit = str(len(item))
    over = item + b" "
    headers = {"Content-Type": "application/json"}

    with cli_server(
        "--db", str(db_path), "--calls-complete-only", "--max-body-bytes", limit
    ) as run:
        v1 = httpx.post(f"{run.url}/call/start", json=start_body())
        too_large = httpx.post(f"{run.url}{COMPLETE}", content=over, headers=headers)
        accepted = httpx.post(f"{run.url}{COMPLETE}", content=item, headers=headers)

    assert (v1.status_code, v1.json()) == (400, CALLS_COMPLETE_MODE_REQUIRED)
    assert too_large.status_code == 413
    assert too_large.json() == {"reason": f"Request body too large: {len(over)} bytes > {limit}"}
    assert accepted.status_code == 200
    assert run.returncode == 0, run.stderr
    assert "calls_complete only" in run.stdout
    assert f"bodies up to {limit} bytes" in run.stdout
    [call] = LocalWeaveServer(db_path=str(db_path)).calls()
    assert (call["id"], call["ended_at"]) == (ROOT_ID, end_body()["end"]["ended_at"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--api-key-env", "LOCAL_WEAVE_UNSET_KEY"], "LOCAL_WEAVE_UNSET_KEY"),
        (["--max-body-bytes", "-1"], "max_body_bytes must be None or at least 0"),
        (["--max-body-bytes", "lots"], "--max-body-bytes"),
    ],
)
def test_module_cli_refuses_bad_arguments(args: list[str], message: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "LOCAL_WEAVE_UNSET_KEY"}
    command = [sys.executable, "-m", "opentelemetry.exporter.weave.testing", "--port", "0"]

    # A subprocess with a timeout, so a server that starts anyway fails the test, not hangs it.
    result = subprocess.run(
        [*command, *args],
        env=env,
        capture_output=True,
        check=False,
        text=True,
        timeout=20.0,
    )

    assert result.returncode == 2
    assert message in result.stderr


# --- HTTP: refusals before the body, keep-alive, framing, paths, IPv6, connection cap -------

TEN_MIB = 10 * 1024 * 1024


def raw_request(method: str, path: str, *headers: str, body: bytes = b"", host: str = "x") -> bytes:
    """One HTTP/1.1 request as bytes, for what httpx would not send."""
    head = "".join(
        f"{line}\r\n" for line in (f"{method} {path} HTTP/1.1", f"Host: {host}", *headers)
    )
    return f"{head}\r\n".encode("latin-1") + body


def read_response(stream: Any) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one response read from a socket's file."""
    status = int(stream.readline().split()[1])
    headers: dict[str, str] = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, stream.read(int(headers["content-length"]))


@contextmanager
def raw_connection(server: LocalWeaveServer, timeout: float = 5.0) -> Iterator[socket.socket]:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as raw:
        yield raw


@pytest.mark.parametrize(
    ("server_options", "method", "path", "headers", "status"),
    [
        ({"api_key": API_KEY}, "POST", "/call/start", (), 401),
        ({}, "POST", "/call/nowhere", (), 404),
        ({}, "PUT", "/call/start", (), 405),
        ({"calls_complete_only": True}, "POST", "/call/start", (), 400),
    ],
    ids=["auth", "route", "method", "write-mode"],
)
def test_refusal_is_answered_before_the_body_is_read_and_the_connection_goes_on(
    server_options: dict[str, Any],
    method: str,
    path: str,
    headers: tuple[str, ...],
    status: int,
) -> None:
    with LocalWeaveServer(**server_options) as server, raw_connection(server) as raw:
        stream = raw.makefile("rb")
        # Only the head is sent: an answer that waited for the 10 MiB body would never come.
        raw.sendall(raw_request(method, path, f"Content-Length: {TEN_MIB}", *headers))
        refused, _, _ = read_response(stream)
        raw.sendall(b"\0" * TEN_MIB + raw_request("GET", "/health"))
        health, _, health_body = read_response(stream)

    assert (refused, health, json.loads(health_body)) == (status, 200, {"status": "ok"})
    assert [r.status for r in server.requests()] == [status, 200]
    assert server.requests()[0].body == b""


def test_refused_bodies_are_not_kept_in_the_request_log(secured: LocalWeaveServer) -> None:
    with httpx.Client(base_url=secured.url, timeout=30.0) as http:
        statuses = [http.post("/call/start", content=b"x" * TEN_MIB).status_code for _ in range(5)]

    assert statuses == [401] * 5
    assert [len(r.body) for r in secured.requests()] == [0] * 5


def test_request_log_keeps_the_newest_requests_within_its_count_bound() -> None:
    with (
        LocalWeaveServer(max_logged_requests=3) as server,
        httpx.Client(base_url=server.url) as http,
    ):
        for n in range(5):
            http.post("/call/start", json=start_body(f"{n:016x}"))

    assert [json.loads(r.body)["start"]["id"] for r in server.requests()] == [
        f"{n:016x}" for n in (2, 3, 4)
    ]
    assert len(server.calls()) == 5


def test_request_log_keeps_the_newest_bodies_within_its_byte_bound() -> None:
    body = compact(start_body())
    headers = {"Content-Type": "application/json"}
    with (
        LocalWeaveServer(max_logged_body_bytes=2 * len(body) + 1) as server,
        httpx.Client(base_url=server.url, headers=headers) as http,
    ):
        for _ in range(4):
            http.post("/call/start", content=body)
        http.get("/health")
        bodies_before_large = [r.body for r in server.requests()]
        # A body over the bound on its own is still kept while it is the newest.
        large = compact(start_body(inputs={"text": "x" * (3 * len(body))}))
        http.post("/call/start", content=large)

    assert bodies_before_large == [body, body, b""]
    assert [r.body for r in server.requests()] == [large]


def test_bad_log_bounds_and_connection_cap_are_refused() -> None:
    for name in ("max_connections", "max_logged_requests", "max_logged_body_bytes"):
        with pytest.raises(ValueError, match=f"{name} must be at least 1"):
            LocalWeaveServer(**{name: 0})


def test_requests_share_one_keep_alive_connection(server: LocalWeaveServer) -> None:
    with httpx.Client(base_url=server.url) as http:
        responses = [http.post("/call/start", json=start_body()) for _ in range(5)]
        closing = http.get("/health", headers={"Connection": "close"})
        after = http.get("/health")

    assert {r.http_version for r in responses} == {"HTTP/1.1"}
    assert all("close" not in r.headers.get("connection", "") for r in responses)
    assert closing.headers["connection"] == "close"
    connections = [r.connection for r in server.requests()]
    assert connections == [connections[0]] * 6 + [connections[0] + 1]
    assert after.status_code == 200


def test_pipelined_requests_on_one_socket_are_answered_in_order(server: LocalWeaveServer) -> None:
    start = compact(start_body())
    with raw_connection(server) as raw:
        raw.sendall(
            raw_request("POST", "/call/start", f"Content-Length: {len(start)}", body=start)
            + raw_request("GET", "/health", "Connection: close")
        )
        stream = raw.makefile("rb")
        first, second = read_response(stream), read_response(stream)
        rest = stream.read()

    assert (first[0], json.loads(first[2])) == (200, {"id": ROOT_ID, "trace_id": TRACE_ID})
    assert "connection" not in first[1]
    assert (second[0], second[1]["connection"]) == (200, "close")
    # Connection: close was honoured: the server closed its end after the answer.
    assert rest == b""


def test_http_1_0_client_gets_its_answer_and_a_closed_connection(
    server: LocalWeaveServer,
) -> None:
    with raw_connection(server) as raw:
        raw.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        stream = raw.makefile("rb")
        status, headers, body = read_response(stream)
        rest = stream.read()

    assert (status, json.loads(body), headers["connection"], rest) == (
        200,
        {"status": "ok"},
        "close",
        b"",
    )


def test_exporter_pool_reuses_one_connection_for_many_requests(server: LocalWeaveServer) -> None:
    from tests.helpers import PROJECT as EXPORTER_PROJECT
    from tests.helpers import make_processor, make_tracer

    processor = make_processor(server.url)
    provider, tracer = make_tracer(processor)
    try:
        for n in range(10):
            with tracer.start_as_current_span(f"span {n}"):
                pass
            # One export, so one request or more, per span.
            assert processor.force_flush(10_000)
    finally:
        provider.shutdown()

    requests = server.requests()
    assert len(server.calls(EXPORTER_PROJECT)) == 10
    assert len(requests) >= 10
    assert {r.status for r in requests} == {200}
    assert {r.connection for r in requests} == {requests[0].connection}


def chunked(*pieces: bytes) -> Iterator[bytes]:
    # An iterator has no length, so httpx sends it with Transfer-Encoding: chunked.
    yield from pieces


def test_chunked_body_is_read_and_stored(server: LocalWeaveServer, client: httpx.Client) -> None:
    body = compact(start_body())
    headers = {"Content-Type": "application/json"}

    response = client.post("/call/start", content=chunked(body[:10], body[10:]), headers=headers)

    assert (response.status_code, response.json()) == (200, {"id": ROOT_ID, "trace_id": TRACE_ID})
    [logged] = server.requests()
    assert (logged.headers["transfer-encoding"], logged.body) == ("chunked", body)
    assert server.start_writes() == {ROOT_ID: 1}


def test_chunked_body_with_extensions_and_trailers_on_a_raw_socket(
    server: LocalWeaveServer,
) -> None:
    body = compact(start_body())
    framed = (
        f"{10:x};name=value\r\n".encode()
        + body[:10]
        + f"\r\n{len(body) - 10:X}\r\n".encode()
        + body[10:]
        + b"\r\n0\r\nX-Trailer: yes\r\n\r\n"
    )
    with raw_connection(server) as raw:
        raw.sendall(
            raw_request("POST", "/call/start", "Transfer-Encoding: chunked", body=framed)
            + raw_request("GET", "/health")
        )
        stream = raw.makefile("rb")
        answers = [read_response(stream)[0], read_response(stream)[0]]

    assert answers == [200, 200]
    assert server.requests()[0].body == body


def test_chunked_body_over_max_body_bytes_is_refused_with_413() -> None:
    body = compact(start_body())
    with (
        LocalWeaveServer(max_body_bytes=len(body) - 1) as server,
        httpx.Client(base_url=server.url) as http,
    ):
        refused = http.post("/call/start", content=chunked(body[:10], body[10:]))
        accepted = http.post("/call/start", content=chunked(body[: len(body) - 1]))

    assert refused.status_code == 413
    assert refused.json() == {"reason": f"Request body too large: over {len(body) - 1} bytes"}
    # The truncated body reached validation: it was within the limit.
    assert accepted.status_code == 422
    assert server.start_writes() == {}


@pytest.mark.parametrize(
    "framed",
    [b"zz\r\nabc\r\n0\r\n\r\n", b"3\r\nabcX\r\n0\r\n\r\n", b"-1\r\n\r\n", b"1" * 70000],
    ids=["non-hex-size", "no-crlf-after-chunk", "negative-size", "endless-size-line"],
)
def test_malformed_chunked_body_is_refused_with_400(
    server: LocalWeaveServer, framed: bytes
) -> None:
    with raw_connection(server) as raw:
        raw.sendall(raw_request("POST", "/call/start", "Transfer-Encoding: chunked", body=framed))
        status, headers, _ = read_response(raw.makefile("rb"))

    assert (status, headers["connection"]) == (400, "close")
    assert server.start_writes() == {}
    assert httpx.get(f"{server.url}/health").status_code == 200


@pytest.mark.parametrize(
    ("project", "encoded"),
    [("team/my app", "team/my%20app"), ("team/café", "team/caf%C3%A9"), ("a b/c", "a%20b/c")],
)
def test_percent_encoded_project_names_are_decoded_in_the_v2_route(
    server: LocalWeaveServer, client: httpx.Client, project: str, encoded: str
) -> None:
    item = complete_item(project_id=project)

    response = client.post(f"/v2/{encoded}/calls/complete", json={"batch": [item]})
    # httpx percent-encodes the path itself.
    again = client.post(f"/v2/{project}/calls/complete", json={"batch": [item]})

    assert (response.status_code, again.status_code) == (200, 200)
    assert [c["project_id"] for c in server.calls(project)] == [project]
    assert server.start_writes(project) == {ROOT_ID: 2}
    assert server.requests()[0].path == f"/v2/{encoded}/calls/complete"


def test_path_that_is_not_percent_encoded_utf8_is_refused_with_400(
    server: LocalWeaveServer,
) -> None:
    with raw_connection(server) as raw:
        raw.sendall(raw_request("POST", "/v2/team/caf%E9/calls/complete", "Content-Length: 0"))
        status, _, body = read_response(raw.makefile("rb"))

    assert status == 400
    assert "percent-encoded UTF-8" in json.loads(body)["reason"]


def ipv6_loopback_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback here")
def test_server_listens_on_ipv6_loopback_with_a_bracketed_url() -> None:
    with LocalWeaveServer(host="::1") as server, httpx.Client(base_url=server.url) as http:
        assert server.url.startswith("http://[::1]:")
        started = http.post("/call/start", json=start_body())

    assert started.status_code == 200
    assert [c["id"] for c in server.calls()] == [ROOT_ID]


def test_connections_past_the_cap_wait_for_a_free_slot() -> None:
    with (
        LocalWeaveServer(max_connections=2) as server,
        raw_connection(server) as first,
        raw_connection(server) as second,
    ):
        # Both slots are held by keep-alive connections between requests.
        for held in (first, second):
            held.sendall(raw_request("GET", "/health"))
            assert read_response(held.makefile("rb"))[0] == 200
        with raw_connection(server) as third:
            third.sendall(raw_request("GET", "/health"))
            third.settimeout(0.5)
            # Not served while the two slots are held ...
            with pytest.raises(TimeoutError):
                third.recv(1)
            first.close()
            third.settimeout(5.0)
            # ... and served once one is given back.
            status, _, _ = read_response(third.makefile("rb"))

    assert status == 200
    assert len({r.connection for r in server.requests()}) == 3


def test_waiting_connection_makes_answers_close_their_connection() -> None:
    with LocalWeaveServer(max_connections=1) as server, raw_connection(server) as first:
        first_stream = first.makefile("rb")
        first.sendall(raw_request("GET", "/health"))
        _, kept_open, _ = read_response(first_stream)
        with raw_connection(server) as second:
            second.sendall(raw_request("GET", "/health"))
            # Wait until the second connection waits for the slot the first one holds.
            wait_for(lambda: server._running[0].connection_waiting)  # type: ignore[index]
            first.sendall(raw_request("GET", "/health"))
            _, closed, _ = read_response(first_stream)
            second_status, _, _ = read_response(second.makefile("rb"))

    assert "connection" not in kept_open
    assert closed["connection"] == "close"
    assert second_status == 200


def wait_for(condition: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def test_stop_does_not_wait_for_idle_keep_alive_connections(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry.exporter.weave.testing import _server

    # Only the wake-up on stop() can end the handler's wait before this.
    monkeypatch.setattr(_server._Handler, "timeout", 3600.0)
    server = LocalWeaveServer().start()
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/health").status_code == 200
        stopping = threading.Thread(target=server.stop)
        stopping.start()
        stopping.join(timeout=60.0)
        assert not stopping.is_alive()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (("Content-Length: abc",), 400),
        (("Content-Length: -5",), 400),
        (("Content-Length: 1e3",), 400),
        (("Content-Length: 5", "Content-Length: 6"), 400),
        (("Content-Length: 99999999999999999999999999999",), 413),
        (("Content-Length: " + "9" * 5000,), 413),
        (("Content-Length: 5", "Transfer-Encoding: chunked"), 400),
        (("Transfer-Encoding: gzip, chunked",), 501),
        # Without max_body_bytes, 1 GiB is the most a body may be.
        ((f"Content-Length: {1024**3 + 1}",), 413),
        (("X-Big: " + "x" * 70000,), 431),
        (tuple(f"X-Many-{n}: y" for n in range(101)), 431),
    ],
    ids=[
        "non-numeric",
        "negative",
        "float",
        "conflicting",
        "huge",
        "longer-than-int-parses",
        "both-framings",
        "unknown-encoding",
        "over-1-GiB",
        "long-header",
        "many-headers",
    ],
)
def test_malformed_request_is_refused_without_a_traceback_and_the_server_goes_on(
    server: LocalWeaveServer,
    headers: tuple[str, ...],
    status: int,
    capfd: pytest.CaptureFixture[str],
) -> None:
    with raw_connection(server) as raw:
        raw.sendall(raw_request("POST", "/call/start", *headers))
        answered, answer_headers, _ = read_response(raw.makefile("rb"))

    assert (answered, answer_headers["connection"]) == (status, "close")
    assert httpx.post(f"{server.url}/call/start", json=start_body()).status_code == 200
    assert server.start_writes() == {ROOT_ID: 1}
    assert capfd.readouterr().err == ""


def test_client_that_vanishes_mid_body_leaves_no_traceback(
    server: LocalWeaveServer, capfd: pytest.CaptureFixture[str]
) -> None:
    with raw_connection(server) as raw:
        raw.sendall(raw_request("POST", "/call/start", "Content-Length: 1000", body=b"{"))
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")

    assert httpx.get(f"{server.url}/health").status_code == 200
    assert server.start_writes() == {}
    assert capfd.readouterr().err == ""


def test_refused_body_past_the_discard_limit_closes_the_connection(
    secured: LocalWeaveServer,
) -> None:
    with raw_connection(secured) as raw:
        raw.sendall(raw_request("POST", "/call/start", f"Content-Length: {65 * 1024 * 1024}"))
        stream = raw.makefile("rb")
        status, headers, _ = read_response(stream)
        rest = stream.read()

    assert (status, headers["connection"], rest) == (401, "close", b"")


def test_idle_connection_is_dropped_after_the_idle_timeout(
    server: LocalWeaveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opentelemetry.exporter.weave.testing import _server

    assert _server._Handler.timeout == 5.0
    monkeypatch.setattr(_server._Handler, "timeout", 0.1)
    with raw_connection(server) as raw:
        raw.sendall(raw_request("GET", "/health"))
        stream = raw.makefile("rb")
        assert read_response(stream)[0] == 200
        # Nothing more is sent: the server closes its end.
        assert stream.read() == b""


def test_documented_defaults_of_the_bounds() -> None:
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(LocalWeaveServer).parameters.items()
    }

    assert defaults["max_connections"] == 64
    assert defaults["max_logged_requests"] == 10_000
    assert defaults["max_logged_body_bytes"] == 64 * 1024 * 1024


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback here")
def test_module_cli_names_a_busy_ipv6_address_bracketed() -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as busy:
        busy.bind(("::1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        command = [sys.executable, "-m", "opentelemetry.exporter.weave.testing"]
        result = subprocess.run(
            [*command, "--host", "::1", "--port", str(port)],
            capture_output=True,
            check=False,
            text=True,
            timeout=20.0,
        )

    assert result.returncode == 1
    assert f"cannot listen on [::1]:{port}" in result.stderr
