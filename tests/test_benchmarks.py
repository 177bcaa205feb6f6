"""The benchmarks: the openai workload replays what the real instrumentation recorded, the
instruction counts count the work they name, the peer pipelines run."""

from __future__ import annotations

import http.client
import json
import multiprocessing
import subprocess
import sys
import time
from importlib import metadata
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from .venvs import ROOT, requirements, venv_python

BENCHMARKS = ROOT / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from _sink import control, serve  # noqa: E402
from _workload import OPENAI_SPANS, OpenAIWorkload  # noqa: E402
from run import (  # noqa: E402
    LABELS,
    THROUGHPUT_HEADER,
    Summary,
    goal_rows,
    paired_ratio,
    throughput_rows,
)


def as_recorded(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def test_the_openai_workload_replays_every_recorded_span_as_it_was() -> None:
    recorded = json.loads(OPENAI_SPANS.read_text(encoding="utf-8"))["traces"]
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))

    OpenAIWorkload(provider).emit(10 * len(recorded))

    finished = memory.get_finished_spans()
    assert len(finished) == 10 * len(recorded)
    by_trace: dict[int, list[Any]] = {}
    for span in finished:
        by_trace.setdefault(span.context.trace_id, []).append(span)
    for trace, spans in zip(
        recorded, sorted(by_trace.values(), key=lambda s: min(x.start_time for x in s)), strict=True
    ):
        spans.sort(key=lambda span: (span.start_time, span.parent is not None))
        ids = [span.context.span_id for span in spans]
        base = spans[0].start_time
        for span, record in zip(spans, trace["spans"], strict=True):
            scope = span.instrumentation_scope
            assert (span.name, span.kind.name) == (record["name"], record["kind"])
            assert [scope.name, scope.version or "", scope.schema_url or ""] == record["scope"]
            parent = None if span.parent is None else ids.index(span.parent.span_id)
            assert parent == record["parent"]
            attributes = {key: as_recorded(value) for key, value in span.attributes.items()}
            assert attributes == {**record["start_attributes"], **record["attributes"]}
            assert (span.start_time - base, span.end_time - base) == (
                record["start"],
                record["end"],
            )
            assert [span.status.status_code.name, span.status.description] == record["status"]
            assert [event.name for event in span.events] == [e["name"] for e in record["events"]]


def test_the_instruction_count_children_do_the_work_they_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import instructions

    # What each child counts: the stock encoder's protobuf, and the pipeline's calls.
    encoded: list[int] = []
    bodies: list[int] = []
    from opentelemetry.exporter.otlp.proto.common import trace_encoder

    from opentelemetry.exporter.weave import _call

    real_encode, real_body = trace_encoder.encode_spans, _call.calls_complete_body
    monkeypatch.setattr(
        trace_encoder,
        "encode_spans",
        lambda spans: encoded.append(len(spans)) or real_encode(spans),
    )
    named: set[bool] = set()

    def body(calls: list[_call.WeaveCall]) -> bytes:
        bodies.append(len(calls))
        named.update(call.start.op_name.startswith("weave:///") for call in calls)
        return real_body(calls)

    monkeypatch.setattr(_call, "calls_complete_body", body)

    for workload in ("synthetic", "openai"):
        instructions.child("stock", workload, 20, 1)
        instructions.child("weave", workload, 20, 1)

    assert encoded == [20, 20, 20, 20]  # warm-up and one counted loop, per workload
    assert bodies == [20, 20, 20, 20]
    assert named == {True}  # op refs, as in production


def test_each_stage_child_does_the_work_it_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    import instructions

    from opentelemetry.exporter.weave import _call, _mapping, _redaction, _rollup

    done: list[str] = []

    def counting(stage: str, real: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            done.append(stage)
            return real(*args, **kwargs)

        return counted

    monkeypatch.setattr(_mapping, "span_to_call", counting("map", _mapping.span_to_call))
    redactor_apply = counting("scrub", _redaction.Redactor.apply)
    monkeypatch.setattr(_redaction.Redactor, "apply", redactor_apply)
    roll_up = counting("roll-up", _rollup.SummaryRollup.roll_up)
    monkeypatch.setattr(_rollup.SummaryRollup, "roll_up", roll_up)
    monkeypatch.setattr(_call.WeaveCall, "sealed", counting("seal", _call.WeaveCall.sealed))

    for stage in instructions.STAGES:
        done.clear()
        instructions.child(stage, "synthetic", 20, 1)
        # Its input made once (mapped and scrubbed calls), then the stage, warm-up and a loop.
        setup = ["map"] * 20 + ["scrub"] * 20
        assert done[: len(setup)] == setup
        assert done[len(setup) :] == [stage] * 40


def test_the_peer_pipelines_run_and_deliver_every_span() -> None:
    python = venv_python("bench_peers")
    command = [str(python), str(BENCHMARKS / "run.py"), "--quick", "--no-write", "--runs", "1"]
    command += ["--spans", "520", "--memory-seconds", "0", "--pipelines", "otlp,langfuse,logfire"]
    # run.py stops with an error when a pipeline does not deliver every span to its sink.
    finished = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)

    assert finished.returncode == 0, finished.stderr[-3000:]
    rows = [line for line in finished.stdout.splitlines() if line.startswith("peer: ")]
    assert [row.split("  ")[0] for row in rows] == [
        "peer: LangfuseSpanProcessor",
        "peer: Logfire",
    ] * 2  # each workload
    assert "langfuse 5.2.0, logfire 5.4.0" in finished.stdout


def test_the_peer_pins_are_the_bench_peers_extra() -> None:
    extra = [
        requirement.partition(";")[0].strip()
        for requirement in metadata.requires("opentelemetry-exporter-weave") or []
        if "bench-peers" in requirement.partition(";")[2]
    ]
    pinned = [line for line in requirements("bench_peers").read_text().splitlines() if "==" in line]
    assert pinned
    assert pinned == [requirement for requirement in extra if "==" in requirement]


def test_the_sink_answers_as_late_as_it_is_told() -> None:
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    sink = context.Process(target=serve, args=(sender,), daemon=True)
    sink.start()
    sender.close()
    try:
        port = receiver.recv()

        def answered_after(path: str) -> float:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            began = time.perf_counter()
            connection.request("POST", path, body=b'{"end": {}}')
            assert connection.getresponse().status == 200
            connection.close()
            return time.perf_counter() - began

        control(port, "POST", "/_reset", {"expected": 0, "answer_after_ms": 300})
        assert answered_after("/call/end") >= 0.3
        control(port, "POST", "/_reset", {"expected": 1})
        assert answered_after("/call/end") < 0.3  # at once again: no delay unless told
        assert control(port, "GET", "/_stats")["delivered"] == 1
    finally:
        sink.terminate()
        sink.join()


def test_ratios_to_stock_are_the_median_of_each_rounds_ratio() -> None:
    def summary(pipeline: str, n: int, cpu_seconds: list[float]) -> Any:
        figures = ("emit_wall", "emit_thread_cpu", "delivered_after", "worker_cpu")
        counts = ("gc_seconds", "full_collections", "requests", "body_bytes", "rss_peak_kib")
        runs = [
            {**dict.fromkeys(figures, 1.0), **dict.fromkeys(counts, 1), "total_process_cpu": cpu}
            for cpu in cpu_seconds
        ]
        return Summary("synthetic", pipeline, n, runs)

    # Round by round 1.5x, 1.05x and 1.0x stock's CPU per span; the two medians are equal.
    stock = summary("otlp", 10, [100.0, 300.0, 200.0])
    weave = summary("calls_complete", 10, [150.0, 315.0, 200.0])
    assert paired_ratio(weave, stock, "total_process_cpu") == pytest.approx(1.05)
    # Per span: a run of half the spans at half the CPU costs as much per span.
    half_runs = summary("call_end", 5, [75.0, 157.5, 100.0])
    assert paired_ratio(half_runs, stock, "total_process_cpu") == pytest.approx(1.05)

    summaries = {("synthetic", "otlp"): stock, ("synthetic", "calls_complete"): weave}
    cpu_goal = next(row for row in goal_rows(summaries, {}) if row[0].startswith("process CPU"))
    assert cpu_goal[1:] == ["1.050x", "met"]
    (weave_row,) = (
        row for row in throughput_rows(summaries, "synthetic") if row[0] == LABELS["calls_complete"]
    )
    assert weave_row[THROUGHPUT_HEADER.index("CPU vs stock")] == "1.05x"
