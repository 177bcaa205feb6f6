"""Write modes end to end, over real HTTP to the local receiver: what each mode stores, the
automatic upgrade, roll-up across batches, size limits. Each wrapper alone: test_delivery."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

from opentelemetry.exporter.weave import WeaveSpanExporter, WeaveSpanProcessor, WriteMode
from opentelemetry.exporter.weave.testing import LocalWeaveServer

from .fault_server import Reply, ScriptedServer
from .helpers import (
    API_KEY,
    NO_WAIT_RETRIES,
    PROJECT,
    Record,
    make_processor,
    make_tracer,
    settings_for,
)

Call = dict[str, Any]
ALL_MODES = [mode.value for mode in WriteMode]
BATCH_MODES = ["upsert_batch", "calls_complete"]
V2_ROUTE = f"/v2/{PROJECT}/calls/complete"


def exporter_for(url: str, **options: Any) -> WeaveSpanExporter:
    # Op refs add requests of their own to every mode; tests/test_ops.py counts them.
    options.setdefault("op_refs", False)
    return WeaveSpanExporter(
        api_key=API_KEY, project=PROJECT, server_url=url, _retry_policy=NO_WAIT_RETRIES, **options
    )


def processor_for(url: str, **options: Any) -> WeaveSpanProcessor:
    return make_processor(url, _retry_policy=NO_WAIT_RETRIES, **options)


@pytest.fixture
def exporters() -> Iterator[Callable[..., WeaveSpanExporter]]:
    made: list[WeaveSpanExporter] = []

    def make(url: str, **options: Any) -> WeaveSpanExporter:
        made.append(exporter_for(url, **options))
        return made[-1]

    yield make
    for exporter in made:
        exporter.shutdown()


def llm(tracer: Tracer, model: str, tokens: tuple[int, int], context: Any = None) -> None:
    attributes: dict[str, AttributeValue] = {
        "gen_ai.response.model": model,
        "gen_ai.usage.input_tokens": tokens[0],
        "gen_ai.usage.output_tokens": tokens[1],
        "gen_ai.input.messages": json.dumps([{"role": "user", "content": f"ask {model}"}]),
    }
    with tracer.start_as_current_span(f"chat {model}", context=context, attributes=attributes):
        pass


def emit_sample(tracer: Tracer) -> None:
    """Three calls: an agent, its LLM call, and a tool that failed."""
    with tracer.start_as_current_span("agent"):
        llm(tracer, "gpt-4o", (10, 5))
        with tracer.start_as_current_span("tool") as tool:
            tool.set_status(Status(StatusCode.ERROR, "tool broke"))


def emit_samples(count: int) -> Callable[[Tracer], None]:
    def emit(tracer: Tracer) -> None:
        for _ in range(count):
            emit_sample(tracer)

    return emit


@pytest.fixture(scope="module")
def sample() -> tuple[list[ReadableSpan], list[Call]]:
    """The sample's spans, and the calls ``call_end`` stores for them: the reference."""
    memory = InMemorySpanExporter()
    provider, tracer = make_tracer(SimpleSpanProcessor(memory))
    emit_sample(tracer)
    provider.shutdown()
    spans = list(memory.get_finished_spans())
    with LocalWeaveServer(api_key=API_KEY) as server:
        # Settings of its own: a module fixture runs before the environment is cleaned.
        exporter = WeaveSpanExporter(settings_for(server.url, write_mode="call_end"))
        exporter.export(spans)
        exporter.shutdown()
        reference = sorted(server.calls(), key=lambda call: call["id"])
    return spans, reference


@pytest.mark.parametrize("mode", ALL_MODES)
def test_every_mode_stores_the_same_calls(
    sample: tuple[list[ReadableSpan], list[Call]],
    exporters: Callable[..., WeaveSpanExporter],
    mode: str,
) -> None:
    spans, reference = sample
    with LocalWeaveServer(api_key=API_KEY) as server:
        exporter = exporters(server.url, write_mode=mode)
        exporter.export(spans)
        stored = sorted(server.calls(), key=lambda call: call["id"])
        routes = {request.path for request in server.requests()}
    assert len(stored) == 3
    assert stored == reference
    expected_routes = {
        "call_end": {"/call/start", "/call/end"},
        "auto": {"/call/start", "/call/end"},
        "upsert_batch": {"/call/upsert_batch"},
        "calls_complete": {V2_ROUTE},
    }[mode]
    assert routes == expected_routes
    assert exporter.stats().calls_exported == 3


@pytest.mark.parametrize("mode", BATCH_MODES)
@pytest.mark.parametrize("max_request_bytes", [None, 10_000], ids=["default-limit", "10kB"])
def test_batched_modes_pack_a_batch_in_as_few_requests_as_the_size_limit_allows(
    record_spans: Record,
    exporters: Callable[..., WeaveSpanExporter],
    mode: str,
    max_request_bytes: int | None,
) -> None:
    spans = record_spans(emit_samples(8))  # some 26 kB
    limit = {} if max_request_bytes is None else {"max_request_bytes": max_request_bytes}
    with LocalWeaveServer(api_key=API_KEY) as server:
        exporter = exporters(server.url, write_mode=mode, **limit)
        exporter.export(spans)
        requests = server.requests()
        writes = (server.start_writes(), server.end_writes())
    for written in writes:
        assert sorted(written.values()) == [1] * 24  # 24 starts and 24 ends, each once
    # Without a limit to keep to, the whole batch is one request.
    assert (len(requests) > 1) is (max_request_bytes is not None)
    assert all(len(request.body) <= exporter.settings.max_request_bytes for request in requests)
    assert {request.status for request in requests} == {200}
    assert exporter.stats().calls_exported == 24


def test_upsert_batch_sends_starts_before_ends(
    record_spans: Record, exporters: Callable[..., WeaveSpanExporter]
) -> None:
    spans = record_spans(emit_sample)
    with ScriptedServer() as server:
        exporters(server.url, write_mode="upsert_batch").export(spans)
    (request,) = server.seen
    modes = [item["mode"] for item in request.json()["batch"]]
    assert modes == ["start"] * 3 + ["end"] * 3


def test_call_end_sends_beside_slow_answers_up_to_max_concurrency(
    record_spans: Record, exporters: Callable[..., WeaveSpanExporter]
) -> None:
    answer_seconds = 0.05

    def emit(tracer: Tracer) -> None:
        for number in range(12):
            tracer.start_span(f"step {number}").end()

    spans = record_spans(emit)
    with ScriptedServer() as server:
        server.responder = lambda seen: Reply(delay_seconds=answer_seconds)
        exporter = exporters(server.url, write_mode="call_end", max_concurrency=4)
        exporter.export(spans)
    assert exporter.stats().calls_exported == 12
    starts = sorted(seen.at for seen in server.seen if seen.path == "/call/start")
    # Each answer takes 50 ms, each call two of them: the starts that came within 50 ms of one
    # another were on their way together, and one sender's never do.
    together = max(sum(1 for at in starts if last - answer_seconds < at <= last) for last in starts)
    assert together == 4


def test_auto_upgrades_once_and_loses_nothing(caplog: pytest.LogCaptureFixture) -> None:
    with LocalWeaveServer(api_key=API_KEY, calls_complete_only=True) as server:
        processor = processor_for(server.url, max_concurrency=2)
        provider, tracer = make_tracer(processor)
        with caplog.at_level(logging.INFO, logger="opentelemetry.exporter.weave"):
            emit_sample(tracer)
            assert processor.force_flush(10_000)
            emit_sample(tracer)  # a later batch goes straight to v2
            assert processor.force_flush(10_000)
        provider.shutdown()
        calls = server.calls()
        writes = server.start_writes()
        requests = server.requests()
    assert len(calls) == 6
    assert sorted(writes.values()) == [1] * 6  # nothing doubled
    refused = [r for r in requests if r.status == 400]
    assert refused
    assert all(r.path == "/call/start" for r in refused)
    v2 = [r for r in requests if r.path == V2_ROUTE]
    assert [r.status for r in v2] == [200, 200]
    assert requests.index(v2[0]) > requests.index(refused[-1])
    upgrades = [r for r in caplog.records if "accepts only complete calls" in r.getMessage()]
    assert len(upgrades) == 1
    assert upgrades[0].levelno == logging.INFO
    assert "CALLS_COMPLETE_MODE_REQUIRED" in upgrades[0].getMessage()
    stats = processor.stats()
    assert (stats.calls_exported, stats.calls_failed) == (6, 0)


def test_explicit_v1_mode_on_a_v2_project_is_refused_not_upgraded(
    record_spans: Record, exporters: Callable[..., WeaveSpanExporter]
) -> None:
    spans = record_spans(emit_sample)
    with LocalWeaveServer(api_key=API_KEY, calls_complete_only=True) as server:
        exporter = exporters(server.url, write_mode="upsert_batch")
        exporter.export(spans)
        assert server.calls() == []
    assert exporter.stats().calls_rejected == 3


def emit_three_levels(tracer: Tracer, flush: Callable[[], object]) -> None:
    """root → (agent → (gpt-4o, claude-3, failing tool)), root → gpt-4o; leaves flushed first."""
    root = tracer.start_span("root")
    root_context = trace.set_span_in_context(root)
    agent = tracer.start_span("agent", context=root_context)
    agent_context = trace.set_span_in_context(agent)
    llm(tracer, "gpt-4o", (10, 5), agent_context)
    llm(tracer, "claude-3", (7, 3), agent_context)
    with tracer.start_as_current_span("tool", context=agent_context) as tool:
        tool.set_status(Status(StatusCode.ERROR, "tool broke"))
    flush()  # the leaves are exported long before their ancestors
    agent.end()
    flush()
    llm(tracer, "gpt-4o", (1, 1), root_context)
    flush()
    root.end()
    flush()


def assert_rolled_up(calls: list[dict[str, Any]]) -> None:
    by_name = {call["op_name"]: call for call in calls if call["op_name"] != "chat gpt-4o"}
    root, agent = by_name["root"]["summary"], by_name["agent"]["summary"]
    assert root["usage"] == {
        "gpt-4o": {"input_tokens": 11, "output_tokens": 6, "total_tokens": 17, "requests": 2},
        "claude-3": {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10, "requests": 1},
    }
    assert root["status_counts"] == {"success": 5, "error": 1}
    assert agent["usage"] == {
        "gpt-4o": {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15, "requests": 1},
        "claude-3": {"input_tokens": 7, "output_tokens": 3, "total_tokens": 10, "requests": 1},
    }
    assert agent["status_counts"] == {"success": 3, "error": 1}
    assert by_name["root"]["exception"] is None  # shown as descendant_error, not error
    assert by_name["tool"]["summary"]["status_counts"] == {"success": 0, "error": 1}


@pytest.mark.parametrize("mode", ALL_MODES)
def test_roll_up_across_batches_in_every_mode(mode: str) -> None:
    with LocalWeaveServer(api_key=API_KEY) as server:
        processor = processor_for(server.url, write_mode=mode, schedule_delay_millis=60_000)
        provider, tracer = make_tracer(processor)
        emit_three_levels(tracer, lambda: processor.force_flush(10_000))
        provider.shutdown()
        calls = server.calls()
    assert len(calls) == 6
    assert processor.stats().export_batches == 4
    assert_rolled_up(calls)


def test_roll_up_through_the_plain_exporter(
    record_spans: Record, exporters: Callable[..., WeaveSpanExporter]
) -> None:
    """The zero-code path: the SDK's BatchSpanProcessor calls export() batch by batch."""
    spans = record_spans(lambda tracer: emit_three_levels(tracer, lambda: None))
    with LocalWeaveServer(api_key=API_KEY) as server:
        exporter = exporters(server.url)
        for span in spans:  # one span per export() call, in end order
            exporter.export([span])
        assert_rolled_up(server.calls())


def test_an_oversized_call_is_stored_truncated_with_a_marker(
    record_spans: Record, exporters: Callable[..., WeaveSpanExporter]
) -> None:
    huge = json.dumps([{"role": "user", "content": "z" * 60_000}])

    def emit(tracer: Tracer) -> None:
        attributes = {"gen_ai.input.messages": huge, "note": "small"}
        with tracer.start_as_current_span("big", attributes=attributes):
            pass

    spans = record_spans(emit)
    with LocalWeaveServer(api_key=API_KEY) as server:
        exporter = exporters(server.url, write_mode="upsert_batch", max_request_bytes=20_000)
        exporter.export(spans)
        (call,) = server.calls()
        (request,) = server.requests()
    marker = call["inputs"]["messages"]
    assert isinstance(marker, str)
    assert "truncated by opentelemetry-exporter-weave: inputs.messages was" in marker
    assert marker.startswith('[{"role": "user", "content": "zzz')
    assert call["attributes"]["note"] == "small"  # only what had to go was cut
    assert len(request.body) <= 20_000
    assert exporter.stats().calls_truncated == 1
    assert exporter.stats().calls_exported == 1
