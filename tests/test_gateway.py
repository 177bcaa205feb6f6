"""The OTLP gateway over real HTTP on 127.0.0.1: real OTLP clients (the SDK's
``OTLPSpanExporter``, hand-built OTLP JSON), the local receiver as Weave, and the same
pipeline as the processor behind it."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import httpx
import pytest
from google.rpc import code_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

from opentelemetry.exporter.weave._config import WeaveSettings
from opentelemetry.exporter.weave._pipeline import BatchReport, ExportPipeline
from opentelemetry.exporter.weave.gateway import Gateway, GatewayServer, GatewaySettings
from opentelemetry.exporter.weave.testing import LocalWeaveServer

from .chat_oracle import chat_errors
from .helpers import API_KEY, NO_WAIT_RETRIES, PROJECT, usage_by_model, wait_until
from .test_end_to_end import emit_agent
from .test_gateway_otlp import otlp_json

PROTOBUF = {"content-type": "application/x-protobuf"}


@contextlib.contextmanager
def running_gateway(
    receiver: LocalWeaveServer,
    environ: Mapping[str, str] | None = None,
    pipeline_factory: Callable[[WeaveSettings], ExportPipeline] | None = None,
    **settings: object,
) -> Iterator[GatewayServer]:
    env = {"WANDB_API_KEY": API_KEY, "WEAVE_PROJECT": PROJECT, "WF_TRACE_SERVER_URL": receiver.url}
    env.update(environ or {})
    settings.setdefault("trace_wait_seconds", 0.05)
    gateway = Gateway(
        GatewaySettings.from_env({}, port=0, **settings),
        {name: value for name, value in env.items() if value},
        retry_policy=NO_WAIT_RETRIES,
        pipeline_factory=pipeline_factory,
    )
    with GatewayServer(gateway) as server:
        yield server


def spans_of(emit: Callable[[Tracer], None], **resource: Any) -> list[ReadableSpan]:
    """Finished spans of a real provider with this resource, in end order."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "test", **resource}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    emit(provider.get_tracer("test"))
    provider.shutdown()
    return list(memory.get_finished_spans())


def otlp_exporter(server: GatewayServer, **options: Any) -> OTLPSpanExporter:
    return OTLPSpanExporter(endpoint=f"{server.url}/v1/traces", timeout=20, **options)


def calls_by_name(receiver: LocalWeaveServer, project: str, count: int) -> dict[str, Any]:
    def ended() -> bool:
        calls = receiver.calls(project)
        return len(calls) >= count and all(call["ended_at"] for call in calls)

    wait_until(ended)
    calls = receiver.calls(project)
    assert len(calls) == count
    return {call["display_name"]: call for call in calls}


def test_otlp_protobuf_gzip_spans_arrive_as_native_calls(receiver: LocalWeaveServer) -> None:
    with running_gateway(receiver) as server:
        exporter = otlp_exporter(server, compression=Compression.Gzip)
        assert exporter.export(spans_of(emit_agent)) is SpanExportResult.SUCCESS
        calls = calls_by_name(receiver, PROJECT, 3)
    agent, chat, tool = calls["Agent"], calls["chat gpt-4o"], calls["tool.lookup"]
    ops = {op["object_id"]: op["digest"] for op in receiver.ops(PROJECT)}
    assert chat["op_name"] == f"weave:///{PROJECT}/op/chat_gpt-4o:{ops['chat_gpt-4o']}"
    assert agent["parent_id"] is None
    assert chat["parent_id"] == tool["parent_id"] == agent["id"]
    assert chat["attributes"]["weave"] == {"kind": "llm"}
    assert chat["inputs"] == {"messages": [{"role": "user", "content": "2+2?"}]}
    assert chat_errors(chat) == []
    exception = json.loads(tool["exception"])  # from the span's exception event
    assert exception["type"] == "LookupError"
    assert any("raise LookupError" in str(frame) for frame in exception["traceback"])
    # Rolled up as in the processor: the root's summary holds its subtree.
    assert usage_by_model(agent) == {
        "gpt-4o": {"input_tokens": 10, "output_tokens": 4, "total_tokens": 14, "requests": 1}
    }
    assert agent["summary"]["status_counts"] == {"success": 2, "error": 1}
    assert agent["attributes"]["otel"]["resource"]["service.name"] == "test"
    assert receiver.orphan_ends(PROJECT) == []


def test_otlp_json_with_deflate(receiver: LocalWeaveServer) -> None:
    body = json.dumps(otlp_json(parentSpanId="")).encode()
    with running_gateway(receiver) as server:
        answer = httpx.post(
            f"{server.url}/v1/traces",
            content=zlib.compress(body),
            headers={"content-type": "application/json", "content-encoding": "deflate"},
        )
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/json"
        assert answer.json() == {}  # no partial_success: every span taken
        (call,) = calls_by_name(receiver, PROJECT, 1).values()
    assert call["id"] == "eee19b7ec3c1b174"
    assert call["trace_id"] == "5b8efff798038103d269b633813fc60c"
    assert call["display_name"] == "I'm a server span"
    assert call["attributes"]["my.span.attr"] == "some value"
    assert call["started_at"].startswith("2018-12-13T14:51:00")


def test_rejections_undecodable_bodies_and_content_types(receiver: LocalWeaveServer) -> None:
    spans = spans_of(lambda tracer: [tracer.start_span(f"s{n}").end() for n in range(2)])
    message = encode_spans(spans)
    message.resource_spans[0].scope_spans[0].spans[1].trace_id = b"\x00" * 16
    with running_gateway(receiver) as server:
        url = f"{server.url}/v1/traces"
        answer = httpx.post(url, content=message.SerializeToString(), headers=PROTOBUF)
        assert answer.status_code == 200
        response = ExportTraceServiceResponse.FromString(answer.content)
        assert response.partial_success.rejected_spans == 1
        assert "trace_id" in response.partial_success.error_message
        assert [c["display_name"] for c in calls_by_name(receiver, PROJECT, 1).values()] == ["s0"]

        garbage = httpx.post(url, content=b"\x0a\xff\xff", headers=PROTOBUF)
        assert garbage.status_code == 400
        assert status_pb2.Status.FromString(garbage.content).code == code_pb2.INVALID_ARGUMENT
        bad_json = httpx.post(url, content=b"{", headers={"content-type": "application/json"})
        assert bad_json.status_code == 400
        assert bad_json.json()["code"] == code_pb2.INVALID_ARGUMENT
        bad_gzip = httpx.post(url, content=b"xx", headers={**PROTOBUF, "content-encoding": "gzip"})
        assert bad_gzip.status_code == 400
        text = httpx.post(url, content=b"hello", headers={"content-type": "text/plain"})
        assert text.status_code == 415
        assert httpx.get(url).status_code == 405
        assert httpx.get(f"{server.url}/nowhere").status_code == 404
        stats = httpx.get(f"{server.url}/stats").json()["gateway"]
        assert (stats["spans_rejected"], stats["requests_undecodable"]) == (1, 3)


def test_project_from_resource_or_header_and_key_from_the_request(
    receiver: LocalWeaveServer,
) -> None:
    def one_span(tracer: Tracer) -> None:
        tracer.start_span("work").end()

    # The gateway's own key is wrong: only the requests' own keys get the calls in.
    with running_gateway(receiver, {"WANDB_API_KEY": "gateway-key-not-the-receivers"}) as server:
        by_resource = otlp_exporter(server, headers={"Authorization": f"Bearer {API_KEY}"})
        spans = spans_of(one_span, **{"wandb.entity": "team-a", "wandb.project": "app"})
        assert by_resource.export(spans) is SpanExportResult.SUCCESS
        by_header = otlp_exporter(
            server, headers={"wandb-api-key": API_KEY, "project_id": "team-b/other"}
        )
        assert by_header.export(spans_of(one_span)) is SpanExportResult.SUCCESS
        own_key = otlp_exporter(server)  # the gateway's key and project
        assert own_key.export(spans_of(one_span)) is SpanExportResult.SUCCESS
        bad_project = otlp_exporter(server, headers={"project_id": "no-slash"})
        assert bad_project.export(spans_of(one_span)) is SpanExportResult.SUCCESS  # partial

        assert len(calls_by_name(receiver, "team-a/app", 1)) == 1
        assert len(calls_by_name(receiver, "team-b/other", 1)) == 1

        def own_key_refused() -> bool:
            stats = httpx.get(f"{server.url}/stats").json()
            return PROJECT in stats["projects"] and stats["projects"][PROJECT]["calls_rejected"]

        wait_until(own_key_refused)
        assert receiver.calls(PROJECT) == []
        report = httpx.get(f"{server.url}/stats").json()
        assert report["gateway"]["spans_rejected"] == 1
        assert report["gateway"]["pipelines_opened"] == 3
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'weave_exporter_calls_exported_total{project="team-a/app"} 1' in metrics
        for text in (metrics, json.dumps(report)):
            assert API_KEY not in text
            assert "gateway-key" not in text


def test_pipelines_beyond_the_bound_are_closed_and_their_counts_kept(
    receiver: LocalWeaveServer,
) -> None:
    with running_gateway(receiver, max_pipelines=1) as server:
        for sent, project in enumerate(("team/one", "team/two", "team/one"), start=1):
            exporter = otlp_exporter(server, headers={"project_id": project})
            assert exporter.export(named_spans(f"span {sent}")) is SpanExportResult.SUCCESS
            wait_until(lambda: server.gateway.stats().spans_queued == 0)
        assert set(calls_by_name(receiver, "team/one", 2)) == {"span 1", "span 3"}
        assert set(calls_by_name(receiver, "team/two", 1)) == {"span 2"}
        wait_until(lambda: server.gateway.pipeline_stats()["team/one"].calls_exported == 2)
        stats = server.gateway.stats()
        assert (stats.pipelines_opened, stats.pipelines_evicted, stats.pipelines_open) == (3, 2, 1)
        assert server.gateway.pipeline_stats()["team/two"].calls_exported == 1


def test_without_a_key_anywhere_requests_are_unauthorized(receiver: LocalWeaveServer) -> None:
    spans = spans_of(lambda tracer: tracer.start_span("work").end())
    with running_gateway(receiver, {"WANDB_API_KEY": ""}) as server:
        answer = httpx.post(
            f"{server.url}/v1/traces",
            content=encode_spans(spans).SerializeToString(),
            headers=PROTOBUF,
        )
        assert answer.status_code == 401
        keyed = otlp_exporter(server, headers={"Authorization": f"Bearer {API_KEY}"})
        assert keyed.export(spans) is SpanExportResult.SUCCESS
        calls_by_name(receiver, PROJECT, 1)


_SERVICE = """
import os, sys
from opentelemetry import propagate
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

service, model, tokens, endpoint = sys.argv[1:5]
provider = TracerProvider(resource=Resource.create({"service.name": service}))
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
tracer = provider.get_tracer(service)
incoming = {"traceparent": os.environ["TRACEPARENT"]} if "TRACEPARENT" in os.environ else {}
if incoming:
    print("ready", flush=True)  # started and imported: the test says when to send
    sys.stdin.readline()
with tracer.start_as_current_span(
    "agent" if not incoming else "tool call", context=propagate.extract(incoming)
):
    tracer.start_span(
        f"chat {model}",
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.response.model": model,
            "gen_ai.usage.input_tokens": int(tokens),
            "gen_ai.usage.output_tokens": 1,
        },
    ).end()
    if not incoming:
        carrier = {}
        propagate.inject(carrier)  # the W3C traceparent of its call to the other service
        print(carrier["traceparent"], flush=True)
        sys.stdin.readline()  # the other service answers before this span ends
provider.shutdown()
"""


@pytest.mark.parametrize("root_first", [True, False], ids=["root-first", "root-last"])
def test_a_trace_across_two_services_rolls_up_into_one_root(
    receiver: LocalWeaveServer, root_first: bool
) -> None:
    """Two processes, one trace: the frontend calls the tools service with the trace's context;
    each exports its own spans to the gateway, in either order."""
    with running_gateway(receiver, trace_wait_seconds=2.0) as server:
        endpoint = f"{server.url}/v1/traces"

        def service(name: str, model: str, tokens: int, **env: str) -> subprocess.Popen[str]:
            return subprocess.Popen(
                [sys.executable, "-c", _SERVICE, name, model, str(tokens), endpoint],
                env={**os.environ, **env},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )

        frontend = service("frontend", "gpt-4o-mini", 5)
        assert frontend.stdout is not None
        traceparent = frontend.stdout.readline().strip()
        # Both processes are up (imports done) before either sends: the second's spans come
        # well within the trace wait after the first's.
        tools = service("tools", "gpt-4o", 7, TRACEPARENT=traceparent)
        assert tools.stdout is not None
        assert tools.stdout.readline().strip() == "ready"
        first, second = (frontend, tools) if root_first else (tools, frontend)
        for process in (first, second):
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
            assert process.wait(timeout=60) == 0
        calls = calls_by_name(receiver, PROJECT, 4)
    agent, tool = calls["agent"], calls["tool call"]
    assert tool["parent_id"] == agent["id"]
    assert calls["chat gpt-4o"]["parent_id"] == tool["id"]
    assert {call["attributes"]["otel"]["resource"]["service.name"] for call in calls.values()} == {
        "frontend",
        "tools",
    }
    assert usage_by_model(agent) == {
        "gpt-4o-mini": {"input_tokens": 5, "output_tokens": 1, "total_tokens": 6, "requests": 1},
        "gpt-4o": {"input_tokens": 7, "output_tokens": 1, "total_tokens": 8, "requests": 1},
    }
    assert agent["summary"]["status_counts"] == {"success": 4, "error": 0}


class GatedPipeline(ExportPipeline):
    """A backend that blocks: each export waits for the gate first."""

    gate = threading.Event()

    def export_batch(self, spans: Sequence[ReadableSpan], deadline: float) -> BatchReport:
        assert self.gate.wait(30)
        return super().export_batch(spans, deadline)


@pytest.fixture
def gated() -> Iterator[Callable[[WeaveSettings], ExportPipeline]]:
    GatedPipeline.gate = threading.Event()
    yield lambda settings: GatedPipeline(settings, NO_WAIT_RETRIES)
    GatedPipeline.gate.set()


def named_spans(*names: str) -> list[ReadableSpan]:
    return spans_of(lambda tracer: [tracer.start_span(name).end() for name in names])


def test_a_full_queue_answers_503_and_a_retrying_exporter_loses_nothing(
    receiver: LocalWeaveServer, gated: Callable[[WeaveSettings], ExportPipeline]
) -> None:
    with running_gateway(receiver, pipeline_factory=gated, max_queue_spans=2) as server:
        url = f"{server.url}/v1/traces"
        assert otlp_exporter(server).export(named_spans("a", "b")) is SpanExportResult.SUCCESS
        refused = httpx.post(
            url, content=encode_spans(named_spans("c")).SerializeToString(), headers=PROTOBUF
        )
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert status_pb2.Status.FromString(refused.content).code == code_pb2.UNAVAILABLE

        results: list[SpanExportResult] = []
        retrying = threading.Thread(
            target=lambda: results.append(otlp_exporter(server).export(named_spans("d", "e")))
        )
        retrying.start()
        wait_until(lambda: server.gateway.stats().requests_refused_queue_full >= 2)
        GatedPipeline.gate.set()  # the backend recovers
        retrying.join(30)
        assert results == [SpanExportResult.SUCCESS]
        calls = calls_by_name(receiver, PROJECT, 4)
    assert set(calls) == {"a", "b", "d", "e"}
    stats = server.gateway.stats()
    assert (stats.spans_received, stats.spans_queued, stats.bytes_queued) == (4, 0, 0)


def test_draining_answers_503_and_exports_what_it_holds(
    receiver: LocalWeaveServer, gated: Callable[[WeaveSettings], ExportPipeline]
) -> None:
    with running_gateway(
        receiver, pipeline_factory=gated, trace_wait_seconds=60, max_trace_wait_seconds=600
    ) as server:
        assert otlp_exporter(server).export(named_spans("held")) is SpanExportResult.SUCCESS
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        assert server.gateway.stats().spans_held == 1
        stopping = threading.Thread(target=server.stop)
        stopping.start()
        wait_until(lambda: server.gateway.draining)
        assert httpx.get(f"{server.url}/healthz").status_code == 503
        late = httpx.post(
            f"{server.url}/v1/traces",
            content=encode_spans(named_spans("late")).SerializeToString(),
            headers=PROTOBUF,
        )
        assert (late.status_code, late.headers["retry-after"]) == (503, "1")
        GatedPipeline.gate.set()
        stopping.join(30)
        assert not stopping.is_alive()
    assert [call["display_name"] for call in receiver.calls(PROJECT)] == ["held"]
    assert server.gateway.stats().requests_refused_draining == 1


def test_the_command_serves_reports_and_drains_on_sigterm(receiver: LocalWeaveServer) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "WEAVE_", "OTEL_"))},
        "WANDB_API_KEY": API_KEY,
        "WEAVE_PROJECT": PROJECT,
        "WF_TRACE_SERVER_URL": receiver.url,
        "WEAVE_GATEWAY_MAX_TRACE_WAIT": "600",  # held until the drain
        "WEAVE_GATEWAY_DRAIN_TIMEOUT": "20",
    }
    command = [sys.executable, "-m", "opentelemetry.exporter.weave.gateway", "--port", "0"]
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            match = re.fullmatch(r"listening on (http://127\.0\.0\.1:\d+)\n", line)
            assert match, line
            url = match[1]

            def child(tracer: Tracer) -> None:
                with tracer.start_as_current_span("root"):
                    tracer.start_span("child").end()

            child_only = [span for span in spans_of(child) if span.name == "child"]
            exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", timeout=20)
            assert exporter.export(child_only) is SpanExportResult.SUCCESS
            assert httpx.get(f"{url}/healthz").text == "ok\n"
            metrics = httpx.get(f"{url}/metrics").text
            assert "weave_gateway_spans_held 1\n" in metrics
            assert "weave_gateway_spans_received_total 1\n" in metrics
            time.sleep(0.1)
            assert receiver.calls(PROJECT) == []  # held: its root may still come
            process.send_signal(signal.SIGTERM)
            assert process.wait(30) == 0
        finally:
            if process.poll() is None:
                process.kill()
        _, stderr = process.communicate()
    assert [call["display_name"] for call in receiver.calls(PROJECT)] == ["child"]
    assert API_KEY not in stderr


def test_a_bad_setting_stops_the_command_naming_it() -> None:
    env = {**os.environ, "WEAVE_GATEWAY_TRACE_WAIT": "soon"}
    result = subprocess.run(
        [sys.executable, "-m", "opentelemetry.exporter.weave.gateway"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "WEAVE_GATEWAY_TRACE_WAIT" in result.stderr
