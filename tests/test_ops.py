"""Op refs: names and digests as Weave makes them, and the op-ref stage over real HTTP."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import Tracer

from opentelemetry.exporter.weave._call import WeaveCall, _SealedCall
from opentelemetry.exporter.weave._mapping import span_to_call
from opentelemetry.exporter.weave._ops import (
    FILES_CREATE_ROUTE,
    OBJ_CREATE_ROUTE,
    OBJS_QUERY_ROUTE,
    PLACEHOLDER_FILE_DIGEST,
    PLACEHOLDER_OP_DIGEST,
    PLACEHOLDER_OP_SOURCE,
    _named,
    bytes_digest,
    object_digest,
    op_val,
    safe_op_name,
)
from opentelemetry.exporter.weave._pipeline import ExportPipeline
from opentelemetry.exporter.weave.testing import LocalWeaveServer

from .fault_server import Reply, ScriptedServer
from .helpers import API_KEY, NO_WAIT_RETRIES, PROJECT, Record, settings_for

OP_ROUTES = (OBJS_QUERY_ROUTE, FILES_CREATE_ROUTE, OBJ_CREATE_ROUTE)
REF_PREFIX = f"weave:///{PROJECT}/op/"


def test_the_placeholder_digests_are_weaves() -> None:
    assert bytes_digest(PLACEHOLDER_OP_SOURCE.encode()) == PLACEHOLDER_FILE_DIGEST
    assert PLACEHOLDER_FILE_DIGEST == "RZUe6YW6bibaEmKo0QXy3XAt0yd6hMMo9hj9KXgaXrY"
    assert object_digest(op_val(PLACEHOLDER_FILE_DIGEST)) == PLACEHOLDER_OP_DIGEST
    assert PLACEHOLDER_OP_DIGEST == "XNI9iHYwcffKfuDa2rGjQoIxUOw7cnWmLEiNufRD8RY"


@pytest.mark.parametrize(
    ("span_name", "op_name"),
    [
        ("chat gpt-4o-mini", "chat_gpt-4o-mini"),
        ("invoke_agent Weather/Bot", "invoke_agent_weather_bot"),
        ("name:with=invalid<chars>", "namewithinvalidchars"),
        ("tool.call_2-b", "tool.call_2-b"),
        ("Ünïcode", "ünïcode"),
        ("İx", "ix"),  # lowercases to "i" and a combining dot, which no object id may hold
        ("💬", ""),  # nothing left: no op can be named that
        ("x" * 300, "x" * 128),
    ],
)
def test_safe_op_name(span_name: str, op_name: str) -> None:
    assert safe_op_name(span_name) == op_name


def _spans(record_spans: Record, *names: str) -> list[ReadableSpan]:
    def emit(tracer: Tracer) -> None:
        for name in names:
            with tracer.start_as_current_span(name):
                pass

    return record_spans(emit)


def _op_requests(server: LocalWeaveServer) -> list[str]:
    return [r.path for r in server.requests() if r.path in OP_ROUTES]


def _export(pipeline: ExportPipeline, spans: list[ReadableSpan]) -> None:
    report = pipeline.export_batch(spans, time.monotonic() + 10)
    assert report.ok, report


@pytest.mark.parametrize("write_mode", ["call_end", "upsert_batch", "calls_complete", "auto"])
def test_refs_are_made_once_per_name_in_every_write_mode(
    receiver: LocalWeaveServer, record_spans: Record, write_mode: str
) -> None:
    pipeline = ExportPipeline(settings_for(receiver.url, write_mode=write_mode, op_refs=True))
    _export(pipeline, _spans(record_spans, "chat gpt-4o", "Tool Call", "chat gpt-4o"))
    first = _op_requests(receiver)
    # One query for the batch's names, the placeholder file once, one create per name.
    assert sorted(first) == sorted(
        [OBJS_QUERY_ROUTE, FILES_CREATE_ROUTE, OBJ_CREATE_ROUTE, OBJ_CREATE_ROUTE]
    )
    _export(pipeline, _spans(record_spans, "Tool Call", "chat gpt-4o"))
    assert _op_requests(receiver) == first, "cached refs cost no request"

    calls = receiver.calls(PROJECT)
    assert len(calls) == 5
    digest = PLACEHOLDER_OP_DIGEST
    assert {call["op_name"] for call in calls} == {
        f"{REF_PREFIX}chat_gpt-4o:{digest}",
        f"{REF_PREFIX}tool_call:{digest}",
    }
    assert {call["display_name"] for call in calls} == {"chat gpt-4o", "Tool Call"}
    assert {op["object_id"] for op in receiver.ops(PROJECT)} == {"chat_gpt-4o", "tool_call"}
    assert [f["content"] for f in receiver.files(PROJECT)] == [PLACEHOLDER_OP_SOURCE.encode()]
    assert len(receiver.calls_of_op(f"{REF_PREFIX}tool_call:*", PROJECT)) == 2
    stats = pipeline.stats()
    assert (stats.ops_created, stats.ops_found, stats.ops_fallback) == (2, 0, 0)
    assert stats.calls_exported == 5


def _pipeline_with_ref_of(
    receiver: LocalWeaveServer, record_spans: Record, name: str
) -> ExportPipeline:
    """A pipeline that has exported a call of ``name``: the name has its op's ref."""
    pipeline = ExportPipeline(settings_for(receiver.url, op_refs=True))
    _export(pipeline, _spans(record_spans, name))
    return pipeline


def test_once_a_name_has_its_ref_its_calls_are_named_before_they_are_encoded(
    receiver: LocalWeaveServer, record_spans: Record, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = _pipeline_with_ref_of(receiver, record_spans, "chat gpt-4o")
    encoded: list[str] = []
    encode = WeaveCall._encode

    def counted_encode(call: WeaveCall) -> dict[str, Any]:
        encoded.append(call.start.op_name)
        return encode(call)

    monkeypatch.setattr(WeaveCall, "_encode", counted_encode)
    _export(pipeline, _spans(record_spans, "chat gpt-4o", "chat gpt-4o", "new name"))

    ref = f"{REF_PREFIX}chat_gpt-4o:{PLACEHOLDER_OP_DIGEST}"
    new_ref = f"{REF_PREFIX}new_name:{PLACEHOLDER_OP_DIGEST}"
    # Each call of the known name once, under its ref; the new name's call was encoded before
    # its op was made, then again under its ref.
    assert sorted(encoded) == sorted([ref, ref, "new name", new_ref])
    sent = receiver.calls(PROJECT)[1:]
    assert sorted((call["op_name"], call["display_name"]) for call in sent) == [
        (ref, "chat gpt-4o"),
        (ref, "chat gpt-4o"),
        (new_ref, "new name"),
    ]
    stats = pipeline.stats()
    assert (stats.ops_created, stats.ops_fallback, stats.calls_exported) == (2, 0, 4)


def test_calls_whose_names_have_refs_are_delivered_without_a_half_made_again(
    receiver: LocalWeaveServer, record_spans: Record, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A sealed call is one object for the garbage collector: its halves are made only when
    # read. Delivery reads its name, id and JSON only; a half made per call would cost the
    # objects sealing saves, for every call of every batch.
    pipeline = _pipeline_with_ref_of(receiver, record_spans, "chat gpt-4o")
    halves_made: list[str] = []
    for half in ("start", "end"):
        read = getattr(_SealedCall, half)

        def counted(call: _SealedCall, read: Any = read, half: str = half) -> Any:
            halves_made.append(half)
            return read.fget(call)

        monkeypatch.setattr(_SealedCall, half, property(counted))
    _export(pipeline, _spans(record_spans, "chat gpt-4o", "chat gpt-4o"))

    assert halves_made == []
    assert len(receiver.calls(PROJECT)) == 3
    assert pipeline.stats().calls_exported == 3


def test_an_existing_op_is_reused(receiver: LocalWeaveServer, record_spans: Record) -> None:
    _export(ExportPipeline(settings_for(receiver.url, op_refs=True)), _spans(record_spans, "plan"))
    before = len(receiver.requests())
    # Another process: its cache is empty, the op exists.
    later = ExportPipeline(settings_for(receiver.url, op_refs=True))
    _export(later, _spans(record_spans, "plan"))
    paths = [r.path for r in receiver.requests()[before:]]
    assert OBJ_CREATE_ROUTE not in paths
    assert FILES_CREATE_ROUTE not in paths
    assert paths.count(OBJS_QUERY_ROUTE) == 1
    assert len(receiver.ops(PROJECT)) == 1
    assert later.stats().ops_found == 1
    assert later.stats().ops_created == 0
    assert receiver.calls(PROJECT)[-1]["op_name"] == f"{REF_PREFIX}plan:{PLACEHOLDER_OP_DIGEST}"


def test_concurrent_batches_do_not_create_twice(
    receiver: LocalWeaveServer, record_spans: Record
) -> None:
    pipeline = ExportPipeline(settings_for(receiver.url, op_refs=True))
    batches = [_spans(record_spans, "same name", f"own {index}") for index in range(4)]
    threads = [threading.Thread(target=_export, args=(pipeline, batch)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    creates = [r for r in receiver.requests() if r.path == OBJ_CREATE_ROUTE]
    created = [json.loads(r.body)["obj"]["object_id"] for r in creates]
    assert sorted(created) == sorted(["same_name", "own_0", "own_1", "own_2", "own_3"])
    assert [r.path for r in receiver.requests()].count(FILES_CREATE_ROUTE) == 1
    assert len(receiver.calls(PROJECT)) == 8
    assert all(call["op_name"].startswith(REF_PREFIX) for call in receiver.calls(PROJECT))


def test_off_sends_plain_names_and_no_op_request(
    receiver: LocalWeaveServer, record_spans: Record
) -> None:
    settings = settings_for(receiver.url, op_refs="off")
    assert settings.op_refs is False
    pipeline = ExportPipeline(settings)
    _export(pipeline, _spans(record_spans, "chat gpt-4o"))
    assert _op_requests(receiver) == []
    assert receiver.calls(PROJECT)[0]["op_name"] == "chat gpt-4o"
    assert pipeline.stats().ops_fallback == 0


def test_a_name_with_no_safe_character_stays_plain(
    receiver: LocalWeaveServer, record_spans: Record
) -> None:
    pipeline = ExportPipeline(settings_for(receiver.url, op_refs=True))
    _export(pipeline, _spans(record_spans, "💬"))
    assert _op_requests(receiver) == []
    assert receiver.calls(PROJECT)[0]["op_name"] == "💬"
    assert pipeline.stats().ops_fallback == 1


def _objs_answer(*names: str, kind: str = "op", digest: str = "D1g3st") -> Reply:
    objs = [{"object_id": name, "digest": digest, "kind": kind, "is_latest": 1} for name in names]
    return Reply(200, {"objs": objs})


FAILURES = {
    "query 500 twice": {OBJS_QUERY_ROUTE: [Reply(500), Reply(503)]},
    "query 401": {OBJS_QUERY_ROUTE: [Reply(401, {"reason": "no"})]},
    "query answer not JSON": {OBJS_QUERY_ROUTE: [Reply(200, "not json at all")]},
    "query answer of another shape": {OBJS_QUERY_ROUTE: [Reply(200, {"objs": "many"})]},
    "file refused": {FILES_CREATE_ROUTE: [Reply(403, {"reason": "read-only"})]},
    "file answer without digest": {FILES_CREATE_ROUTE: [Reply(200, {"digest": "../etc"})]},
    "name/type collision": {OBJ_CREATE_ROUTE: [Reply(400, {"reason": "Cannot publish"})]},
    "create reset": {OBJ_CREATE_ROUTE: [Reply(reset=True), Reply(reset=True)]},
}


@pytest.mark.parametrize("script", FAILURES.values(), ids=FAILURES.keys())
def test_every_failure_sends_the_call_with_its_plain_name(
    record_spans: Record, script: dict[str, list[Reply]]
) -> None:
    with ScriptedServer() as server:
        for path, replies in script.items():
            server.script(path, replies)
        if OBJS_QUERY_ROUTE not in script:
            server.script(OBJS_QUERY_ROUTE, [Reply(200, {"objs": []})])
        if FILES_CREATE_ROUTE not in script:
            server.script(FILES_CREATE_ROUTE, [Reply(200, {"digest": PLACEHOLDER_FILE_DIGEST})])
        pipeline = ExportPipeline(
            settings_for(server.url, write_mode="call_end", op_refs=True),
            retry_policy=NO_WAIT_RETRIES,
        )
        _export(pipeline, _spans(record_spans, "chat gpt-4o"))
        ops_tries = [path for path in server.paths() if path in OP_ROUTES]
        _export(pipeline, _spans(record_spans, "chat gpt-4o"))
        starts = [seen.json()["start"] for seen in server.seen if seen.path == "/call/start"]
        assert [start["op_name"] for start in starts] == ["chat gpt-4o", "chat gpt-4o"]
        assert len([p for p in server.paths() if p in OP_ROUTES]) == len(ops_tries), (
            "a failure is remembered: the next batch makes no op request"
        )
        assert len(ops_tries) <= 5  # query, file, create: each retried once at most
        stats = pipeline.stats()
        assert stats.ops_fallback == 2
        assert stats.ops_created == 0
        assert stats.calls_exported == 2


def test_an_answer_naming_another_kind_is_not_reused(record_spans: Record) -> None:
    with ScriptedServer() as server:
        server.script(OBJS_QUERY_ROUTE, [_objs_answer("plan", kind="object")])
        server.script(FILES_CREATE_ROUTE, [Reply(200, {"digest": PLACEHOLDER_FILE_DIGEST})])
        server.script(OBJ_CREATE_ROUTE, [Reply(200, {"digest": "Cr3at3d"})])
        pipeline = ExportPipeline(settings_for(server.url, write_mode="call_end", op_refs=True))
        _export(pipeline, _spans(record_spans, "plan"))
        start: dict[str, Any] = next(s.json() for s in server.seen if s.path == "/call/start")
        assert start["start"]["op_name"] == f"{REF_PREFIX}plan:Cr3at3d"


def test_op_requests_stay_within_a_slice_of_the_deadline(record_spans: Record) -> None:
    with ScriptedServer() as server:
        server.script(OBJS_QUERY_ROUTE, [Reply(200, {"objs": []}, delay_seconds=3)] * 2)
        pipeline = ExportPipeline(settings_for(server.url, write_mode="call_end", op_refs=True))
        began = time.monotonic()
        report = pipeline.export_batch(_spans(record_spans, "slow"), time.monotonic() + 4)
        assert report.ok
        # A quarter of the 4 s deadline for the ops; the call still went out in time.
        assert time.monotonic() - began < 2.5
        assert pipeline.stats().ops_fallback == 1


def test_the_receiver_refuses_a_name_holding_another_type(receiver: LocalWeaveServer) -> None:
    import httpx

    auth = ("api", API_KEY)
    base = {"project_id": PROJECT, "object_id": "shared"}
    with httpx.Client(base_url=receiver.url, auth=auth) as client:
        made = client.post(OBJ_CREATE_ROUTE, json={"obj": {**base, "val": {"a": 1}}})
        assert made.status_code == 200
        refused = client.post(
            OBJ_CREATE_ROUTE, json={"obj": {**base, "val": op_val(PLACEHOLDER_FILE_DIGEST)}}
        )
        assert refused.status_code == 400
        assert "already used" in refused.json()["reason"]
        bad_name = client.post(
            OBJ_CREATE_ROUTE, json={"obj": {**base, "object_id": "a b", "val": {}}}
        )
        assert bad_name.status_code == 422
        query = {"project_id": PROJECT, "filter": {"object_ids": ["shared"], "is_op": True}}
        assert client.post(OBJS_QUERY_ROUTE, json=query).json() == {"objs": []}
        unknown_key = client.post(OBJS_QUERY_ROUTE, json={**query, "surprise": 1})
        assert unknown_key.status_code == 422
        no_file = client.post(FILES_CREATE_ROUTE, data={"project_id": PROJECT})
        assert no_file.status_code == 422


@pytest.mark.parametrize(
    ("span_name", "attributes"),
    [
        ("chat gpt-4o", {}),
        ("chat gpt-4o", {"wandb.display_name": "Support chat"}),
        ("", {}),
        ("ünïcode name 🙂", {}),
        ("long " * 60, {}),
    ],
)
def test_a_call_mapped_under_a_known_ref_is_the_call_named_at_delivery(
    record_spans: Record, span_name: str, attributes: dict[str, str]
) -> None:
    (span,) = record_spans(lambda tracer: tracer.start_span(span_name, attributes=attributes).end())
    plain = span_to_call(span, PROJECT)
    ref = f"{REF_PREFIX}an_op:{PLACEHOLDER_OP_DIGEST}"
    asked: list[tuple[str, str]] = []

    def known(project_id: str, op_name: str) -> str:
        asked.append((project_id, op_name))
        return ref

    named = span_to_call(span, PROJECT, op_ref=known)
    assert asked == [(PROJECT, plain.op_name)]  # looked up by the project and plain op name
    assert named == _named(plain, ref)
    assert named.complete_json == _named(plain, ref).complete_json
    assert span_to_call(span, PROJECT, op_ref=lambda project_id, op_name: None) == plain
