"""Where this package spends its time per span: the worker's steps and the app thread's.

    python benchmarks/profile_hot_paths.py            # about a minute
    python benchmarks/profile_hot_paths.py --quick

Part 1 times each step on its own (no profiler: plain ``perf_counter``, best of 3), in µs per
span, against the stock pipeline's equivalent. Part 2 runs cProfile over whole exports (the
``call_end`` sender threads included) and prints the top functions. The spans are the ones
``run.py`` emits; HTTP goes to the same loopback sink, in its own process.

It reaches into private modules (``_call``, ``_redaction``, ...) to time steps one by one:
a step that no longer exists is reported as skipped.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import json
import multiprocessing
import os
import pstats
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from _sink import control, serve
from _workload import WORKLOADS, Workload, emitter
from run import machine

PROJECT_ID = "bench/bench"
BATCH = 512
_rows: list[tuple[str, str, str]] = []


def per_item(
    fn: Callable[[Any], Any],
    items: Sequence[Any],
    repeat: int = 3,
    setup: Callable[[], Any] | None = None,
) -> float:
    """Best-of-``repeat`` µs per item of ``fn(item)`` over ``items``."""
    best = float("inf")
    for _ in range(repeat):
        if setup is not None:
            setup()
        gc.collect()
        start = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - start)
    return best / len(items) * 1e6


def timed(fn: Callable[[Any], Any], items: Sequence[Any], repeat: int = 1) -> tuple[float, float]:
    """Best-of-``repeat`` (wall, process CPU) µs per item of ``fn(item)`` over ``items``."""
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        gc.collect()
        wall, cpu = time.perf_counter(), time.process_time()
        for item in items:
            fn(item)
        elapsed = (time.perf_counter() - wall, time.process_time() - cpu)
        best = min(best, elapsed)
    return best[0] / len(items) * 1e6, best[1] / len(items) * 1e6


def row(what: str, micros: float | str, note: str = "") -> None:
    value = micros if isinstance(micros, str) else f"{micros:8.1f}"
    _rows.append((what, value, note))
    print(f"  {what:<62} {value:>9} µs  {note}", flush=True)


def section(title: str) -> None:
    print(f"\n{title}", flush=True)


def attempt(what: str, step: Callable[[], None]) -> None:
    try:
        step()
    except Exception as error:  # a private step renamed or gone: say so, go on
        row(what, "skipped", f"{type(error).__name__}: {error}")


# ---------------------------------------------------------------- the spans


def make_spans(n: int, workload: str = "synthetic") -> list[Any]:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "benchmark-app"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    emitter(workload, provider)(n)
    return list(memory.get_finished_spans())


def batches(items: Sequence[Any], size: int = BATCH) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def settings_for(base_url: str, mode: str, **extra: Any) -> Any:
    from opentelemetry.exporter.weave import WeaveSettings

    return WeaveSettings.from_env(
        {},
        api_key="benchmark-key",
        project=PROJECT_ID,
        server_url=base_url,
        write_mode=mode,
        **extra,
    )


# ---------------------------------------------------------------- part 1: steps


def worker_steps(spans: list[Any], base_url: str) -> None:
    from opentelemetry.exporter.weave import span_to_call

    n = len(spans)
    calls = [span_to_call(span, PROJECT_ID) for span in spans]
    section(f"Worker side, this package: µs per span ({n} spans, best of 3)")
    row("span_to_call (whole mapping)", per_item(lambda s: span_to_call(s, PROJECT_ID), spans))
    chats = [span for span in spans if "gen_ai.input.messages" in (span.attributes or {})]
    attempt("  json.loads of the 2 message attributes", lambda: _json_loads(chats))
    attempt("  json_safe walk of the 2 decoded messages", lambda: _json_safe(chats))
    attempt("  safe_json_from of the 2 message attributes", lambda: _safe_json_from(chats))
    attempt("redaction (default scrubber): Redactor.apply", lambda: _redaction(calls))
    attempt("roll-up: SummaryRollup.roll_up", lambda: _rollup(calls))
    for mode in ("calls_complete", "upsert_batch", "call_end"):
        attempt(f"encode, {mode}: fit_call + the route's encoder", lambda m=mode: _encode(calls, m))
    attempt("  to_json of start and end", lambda: _to_json(calls))
    attempt("  of which the 3 datetimes' formatting", lambda: _datetimes(calls))
    attempt("HTTP", lambda: _http(calls, base_url))


def pipeline_stages(spans: list[Any]) -> None:
    """Each stage of ``ExportPipeline._calls_for`` timed where it runs, on spans mapped once.

    Timed on its own, a stage runs over the same calls again and again, their texts' hashes
    known and their objects in the caches: it looks cheaper than it is in the pipeline. Here
    each stage's function is wrapped in a timer for one pass over fresh spans (op refs left
    out: they need the op routes' answers); the timers' own cost, the difference of the
    passes with and without them, is shown apart.
    """
    from opentelemetry.exporter.weave import _call, _pipeline

    section(f"In the pipeline: µs per span of each stage of _calls_for ({len(spans)} spans)")
    untimed = min(_calls_for_pass(_fresh_pipeline(), spans) for _ in range(3))
    spent: dict[str, int] = dict.fromkeys(
        ("threads", "content log records", "map", "redact", "roll up", "encode and seal"), 0
    )

    def timer(stage: str, step: Callable[..., Any]) -> Callable[..., Any]:
        def timed_step(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter_ns()
            try:
                return step(*args, **kwargs)
            finally:
                spent[stage] += time.perf_counter_ns() - start

        return timed_step

    pipeline = _fresh_pipeline()
    pipeline._threads.take = timer("threads", pipeline._threads.take)
    pipeline._log_join.take = timer("content log records", pipeline._log_join.take)
    pipeline._redactor.apply = timer("redact", pipeline._redactor.apply)
    pipeline._rollup.roll_up = timer("roll up", pipeline._rollup.roll_up)
    span_to_call, sealed = _pipeline.span_to_call, _call.WeaveCall.sealed
    _pipeline.span_to_call = timer("map", span_to_call)  # type: ignore[assignment]
    _call.WeaveCall.sealed = timer("encode and seal", sealed)  # type: ignore[method-assign]
    try:
        timed_total = _calls_for_pass(pipeline, spans)
    finally:
        _pipeline.span_to_call, _call.WeaveCall.sealed = span_to_call, sealed  # type: ignore[method-assign]
    row("_calls_for, whole (no timers)", untimed)
    for stage, nanoseconds in spent.items():
        row(f"  {stage}", nanoseconds / 1e3 / len(spans))
    stages = sum(spent.values()) / 1e3 / len(spans)
    row("  the rest: the loop, selection, counters", timed_total - stages)
    row("  (the timers themselves)", timed_total - untimed)


def conversation_lengths() -> None:
    """``_calls_for`` per span as an agent's conversation grows: traces of an app span and
    ``turns`` chat spans, the k-th sending the conversation so far (2 + 2k messages)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    def message(role: str, text: str) -> dict[str, Any]:
        return {"role": role, "parts": [{"type": "text", "content": text}]}

    def compact(value: Any) -> str:
        return json.dumps(value, separators=(",", ":"))

    section("A growing conversation: µs per span of _calls_for (traces of 4,096 spans)")
    for turns in (5, 10, 20, 40):
        memory = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        tracer = provider.get_tracer("opentelemetry.util.genai.handler", "1.1b0")
        for trace in range(4096 // (turns + 1)):
            conversation = [
                message("system", "You are the support assistant of an online shop."),
                message("user", "Hello, my order 48213 has said 'label created' for days."),
            ]
            with tracer.start_as_current_span("app"):
                for turn in range(turns):
                    reply = [{**message("assistant", f"Answer {turn}."), "finish_reason": "stop"}]
                    attributes = {
                        "gen_ai.operation.name": "chat",
                        "gen_ai.request.model": "gpt-4o-mini",
                        "gen_ai.provider.name": "openai",
                        "gen_ai.input.messages": compact(conversation),
                        "gen_ai.output.messages": compact(reply),
                        "gen_ai.usage.input_tokens": 20 + 10 * turn,
                        "gen_ai.usage.output_tokens": 5,
                        "gen_ai.response.id": f"chatcmpl-{trace}-{turn}",
                    }
                    with tracer.start_as_current_span(
                        "chat gpt-4o-mini", kind=SpanKind.CLIENT, attributes=attributes
                    ):
                        pass
                    conversation += [
                        message("assistant", f"Answer {turn}."),
                        message("user", f"And what about point {turn}?"),
                    ]
        spans = list(memory.get_finished_spans())
        row(
            f"{turns} chat calls per trace (up to {2 * turns} messages)",
            min(_calls_for_pass(_fresh_pipeline(), spans) for _ in range(3)),
        )


def _fresh_pipeline() -> Any:
    """A pipeline with nothing remembered, op refs left out (they need the op routes)."""
    from opentelemetry.exporter.weave._pipeline import ExportPipeline

    pipeline = ExportPipeline(settings_for("http://127.0.0.1:9", "calls_complete"))
    pipeline._op_refs = None
    return pipeline


def _calls_for_pass(pipeline: Any, spans: list[Any]) -> float:
    """µs per span of one pass of ``pipeline._calls_for`` over ``spans``, batch by batch."""
    start = time.perf_counter_ns()
    for batch in batches(spans):
        pipeline._calls_for(batch)
    return (time.perf_counter_ns() - start) / 1e3 / len(spans)


def _json_loads(spans: list[Any]) -> None:
    def decode(span: Any) -> None:
        json.loads(span.attributes["gen_ai.input.messages"])
        json.loads(span.attributes["gen_ai.output.messages"])

    row("  json.loads of the 2 message attributes", per_item(decode, spans))


def _json_safe(spans: list[Any]) -> None:
    from opentelemetry.exporter.weave._sanitize import json_safe

    decoded = [
        (
            json.loads(span.attributes["gen_ai.input.messages"]),
            json.loads(span.attributes["gen_ai.output.messages"]),
        )
        for span in spans
    ]
    micros = per_item(lambda pair: (json_safe(pair[0]), json_safe(pair[1])), decoded)
    row("  json_safe walk of the 2 decoded messages", micros, "a copy of what json.loads made")


def _safe_json_from(spans: list[Any]) -> None:
    from opentelemetry.exporter.weave._sanitize import safe_json_from

    def decode(span: Any) -> None:
        safe_json_from(span.attributes["gen_ai.input.messages"])
        safe_json_from(span.attributes["gen_ai.output.messages"])

    row("  safe_json_from of the 2 message attributes", per_item(decode, spans), "decode, safe")


def _redaction(calls: list[Any]) -> None:
    from opentelemetry.exporter.weave._redaction import Redactor

    redactor = Redactor()
    row("redaction (default scrubber): Redactor.apply", per_item(redactor.apply, calls))

    def scrub_only(call: Any) -> None:
        redactor.scrub(call.start.inputs)
        redactor.scrub(call.end.output)
        redactor.scrub(call.start.attributes)

    row("  scrub() of inputs, output, attributes", per_item(scrub_only, calls))


def _rollup(calls: list[Any]) -> None:
    from opentelemetry.exporter.weave._rollup import SummaryRollup

    holder: list[Any] = []

    def fresh() -> None:
        holder[:] = [SummaryRollup(10_000, 3600.0)]

    def roll_up(call: Any) -> None:
        holder[0].roll_up(call)

    micros = per_item(roll_up, calls, setup=fresh)
    row("roll-up: SummaryRollup.roll_up", micros, "1 root in 10 gets its 9 children's sums")


def _encode(calls: list[Any], mode: str) -> None:
    from opentelemetry.exporter.weave._call import (
        WeaveCall,
        call_end_body,
        call_start_body,
        calls_complete_body,
        upsert_batch_body,
    )
    from opentelemetry.exporter.weave._size import fit_call

    encoders = {
        "calls_complete": lambda call: calls_complete_body([call]),
        "upsert_batch": lambda call: upsert_batch_body([call]),
        "call_end": lambda call: (call_start_body(call), call_end_body(call)),
    }
    budget = 31 * 1024 * 1024

    def encode(call: Any) -> None:
        # A fresh call each time: a call caches its fields' JSON once encoded.
        fitted, _ = fit_call(WeaveCall(start=call.start, end=call.end), budget)
        encoders[mode](fitted)

    micros = per_item(encode, calls)
    row(f"encode, {mode}: fit_call + the route's encoder", micros, "pydantic-core to_json")


def _to_json(calls: list[Any]) -> None:
    from opentelemetry.exporter.weave._call import WeaveCall

    def start(call: Any) -> None:
        _ = WeaveCall(start=call.start, end=call.end).start_json

    def end(call: Any) -> None:
        _ = WeaveCall(start=call.start, end=call.end).end_json

    def plain(call: Any) -> None:  # what the same JSON costs with the stdlib's encoder
        json.dumps(call.start.inputs)
        json.dumps(call.start.attributes)
        json.dumps(call.end.output)

    row("  start_json (pydantic-core to_json)", per_item(start, calls))
    row("  end_json (pydantic-core to_json)", per_item(end, calls))
    row("  json.dumps of inputs, attributes, output (stdlib)", per_item(plain, calls))


def _datetimes(calls: list[Any]) -> None:
    from opentelemetry.exporter.weave._call import utc_iso

    def three(call: Any) -> None:
        utc_iso(call.start.started_at)
        utc_iso(call.end.started_at)
        utc_iso(call.end.ended_at)

    row("  of which the 3 datetimes' formatting", per_item(three, calls))


def _http(calls: list[Any], base_url: str) -> None:
    from opentelemetry.exporter.weave._call import (
        call_end_body,
        calls_complete_body,
        calls_complete_route,
    )
    from opentelemetry.exporter.weave._retry import Retrying
    from opentelemetry.exporter.weave._transport import HttpAttempt

    settings = settings_for(base_url, "calls_complete")
    http = HttpAttempt(settings)
    poster = Retrying(http)
    route = calls_complete_route(settings.entity, settings.project)
    body = calls_complete_body(calls[:BATCH])
    deadline = time.monotonic() + 600
    poster.post(route, body, deadline)  # the connection
    bodies = [body] * 20
    micros, cpu = timed(lambda b: poster.post(route, b, deadline), bodies)
    row(
        f"HTTP: one {len(body) / 1e6:.2f} MB calls_complete request (httpx), CPU",
        f"{cpu / BATCH:.1f}",
        f"per span; per request {cpu / 1000:.1f} ms CPU, {micros / 1000:.1f} ms wall (back to "
        "back: the sink is still decoding the last body)",
    )
    small = call_end_body(calls[0])
    smalls = [small] * 1000
    micros, cpu = timed(lambda b: poster.post("/call/end", b, deadline), smalls)
    row(
        f"HTTP: one {len(small)} B call_end request (httpx), 1 thread",
        f"{micros:.1f}",
        f"per request; {cpu:.0f} µs CPU; call_end sends 2 per span",
    )
    http.close()


def stock_steps(spans: list[Any], base_url: str) -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    section("Worker side, stock OTLP: µs per span")
    groups = batches(spans)
    micros = per_item(lambda b: encode_spans(b).SerializePartialToString(), groups)
    row("encode_spans(batch).SerializePartialToString()", micros / BATCH)
    exporter = OTLPSpanExporter(endpoint=f"{base_url}/v1/traces")
    micros = per_item(exporter.export, groups)
    row("OTLPSpanExporter.export (encode + POST, requests)", micros / BATCH)
    exporter.shutdown()


def whole_exports(spans: list[Any], base_url: str, port: int) -> None:
    from opentelemetry.exporter.weave import WeaveSpanExporter

    section("Whole export per batch of 512 (wall, and process CPU), µs per span")
    variants: list[tuple[str, str, dict[str, Any], int]] = [
        ("calls_complete", "calls_complete", {}, 0),
        ("calls_complete, redact=False", "calls_complete", {"redact": False}, 0),
        ("upsert_batch", "upsert_batch", {}, 0),
        ("call_end", "call_end", {}, 0),
        ("call_end, max_concurrency=1", "call_end", {"max_concurrency": 1}, 0),
        # A service across a network: each answer 20 ms after its request (64 calls).
        ("call_end, 20 ms away", "call_end", {}, _LATENCY_MS),
        ("call_end, 20 ms away, 1 sender", "call_end", {"max_concurrency": 1}, _LATENCY_MS),
    ]
    for label, mode, extra, answer_after_ms in variants:

        def export(
            label: str = label,
            mode: str = mode,
            extra: dict[str, Any] = extra,
            answer_after_ms: int = answer_after_ms,
        ) -> None:
            chosen = spans if mode != "call_end" else spans[: 2 * BATCH]
            if answer_after_ms:
                chosen = spans[:_LATENCY_CALLS]  # 2 answers per call, one after the other
            exporter = WeaveSpanExporter(settings_for(base_url, mode, **extra))
            settings = {"expected": 0, "answer_after_ms": answer_after_ms}
            control(port, "POST", "/_reset", settings)
            micros, cpu = timed(
                lambda b: exporter._pipeline.export_batch(b, time.monotonic() + 600),
                batches(chosen),
                2,
            )
            size = min(BATCH, len(chosen))
            row(f"ExportPipeline.export_batch, {label}", micros / size, f"CPU {cpu / size:.0f}")
            exporter.shutdown()

        attempt(f"ExportPipeline.export_batch, {label}", export)
    control(port, "POST", "/_reset", {"expected": 0})


_LATENCY_MS = 20
_LATENCY_CALLS = 64


# ---------------------------------------------------------------- the app thread


def app_thread(n: int, base_url: str) -> None:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from opentelemetry.exporter.weave import WeaveSpanProcessor

    class _Discard(SpanExporter):
        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    section("App thread: µs per span (workers idle: batch size = queue size; best of 5)")
    spans = make_spans(n)
    big = 10 * n
    weave = WeaveSpanProcessor(
        settings_for(base_url, "calls_complete", max_queue_size=big, max_export_batch_size=big)
    )
    stock = BatchSpanProcessor(_Discard(), max_queue_size=big, max_export_batch_size=big)
    processors = {"stock": stock, "weave": weave}

    def clear() -> None:  # nothing to send: drop what the last round queued
        for processor in processors.values():
            queue = getattr(processor, "_queue", None)
            if queue is None:
                queue = getattr(getattr(processor, "_batch_processor", None), "_queue", None)
            if queue is not None:
                queue.clear()

    workload = Workload()
    tracers = {}
    for name, processor in (("no processor", None), *processors.items()):
        provider = TracerProvider(resource=Resource.create({"service.name": "benchmark-app"}))
        if processor is not None:
            provider.add_span_processor(processor)
        tracers[name] = provider.get_tracer("benchmark", "1.0")
    best: dict[str, float] = {}
    for _ in range(5):  # interleaved rounds: a busy moment hits every variant alike
        for name, processor in processors.items():
            key = f"on_end, {name}"
            best[key] = min(best.get(key, 1e9), per_item(processor.on_end, spans, 1, clear))
        for name, tracer in tracers.items():
            key = f"create, set ~1 KB, end one span: {name}"
            micros = per_item(lambda _, t=tracer: workload.emit(t, 10), range(n // 10), 1, clear)
            best[key] = min(best.get(key, 1e9), micros / 10)
    for key, micros in best.items():
        row(key, micros)
    clear()
    stock.shutdown()
    weave.shutdown()


# ---------------------------------------------------------------- part 2: cProfile


class _AllThreads:
    """cProfile over this thread and every thread started while it is on, merged.

    With ``cpu=True`` timed in each thread's CPU time (``time.thread_time``, a system call per
    event: slower, and inflating small calls more), so that threads waiting on locks or sockets
    while others run cost nothing; else in wall time.
    """

    def __init__(self, cpu: bool = False) -> None:
        self._timer = time.thread_time if cpu else time.perf_counter
        self.profiles: list[cProfile.Profile] = []
        self._lock = threading.Lock()
        self._run = threading.Thread.run

    def __enter__(self) -> _AllThreads:
        profiles, lock, run, timer = self.profiles, self._lock, self._run, self._timer

        def profiled_run(thread: threading.Thread) -> None:
            profile = cProfile.Profile(timer)
            with lock:
                profiles.append(profile)
            profile.enable()
            try:
                run(thread)
            finally:
                profile.disable()

        threading.Thread.run = profiled_run  # type: ignore[method-assign]
        main = cProfile.Profile(self._timer)
        self.profiles.append(main)
        main.enable()
        return self

    def __exit__(self, *exc: object) -> None:
        self.profiles[0].disable()
        threading.Thread.run = self._run  # type: ignore[method-assign]

    def stats(self) -> pstats.Stats:
        out = io.StringIO()
        stats = pstats.Stats(self.profiles[0], stream=out)
        for profile in self.profiles[1:]:
            stats.add(profile)
        return stats


def profiles(spans: list[Any], base_url: str, port: int, top: int) -> None:
    from opentelemetry.exporter.weave import WeaveSpanExporter

    for mode, count in (("calls_complete", len(spans)), ("call_end", 2 * BATCH)):
        exporter = WeaveSpanExporter(settings_for(base_url, mode))
        control(port, "POST", "/_reset", {"expected": 0})
        # call_end's 8 sender threads mostly wait: only CPU time says what they cost.
        with _AllThreads(cpu=mode == "call_end") as profiler:
            for batch in batches(spans[:count]):
                exporter._pipeline.export_batch(batch, time.monotonic() + 600)
        exporter.shutdown()
        stats = profiler.stats()
        total = sum(timing[2] for timing in stats.stats.values())  # type: ignore[attr-defined]
        section(
            f"cProfile, ExportPipeline.export_batch in {mode} mode, {count} spans, all "
            f"threads: top {top} by own {'CPU' if mode == 'call_end' else 'wall'} time (total "
            f"{total:.2f} s under the profiler, which inflates many small Python calls)"
        )
        _print_steps(stats, count)
        _print_top(stats, top, count)


# The steps of an export, as (file suffix, function name): their cumulative share.
_STEPS = (
    ("_pipeline.py", "export_batch"),
    ("_pipeline.py", "_calls_for"),
    ("_mapping.py", "span_to_call"),
    ("_mapping.py", "take_content"),
    ("_mapping.py", "_call_attributes"),
    ("_mapping.py", "_usage"),
    ("_redaction.py", "apply"),
    ("_rollup.py", "roll_up"),
    ("_size.py", "send"),
    ("_size.py", "fit_call"),
    ("_call.py", "calls_complete_body"),
    ("_call.py", "upsert_batch_body"),
    ("_retry.py", "post"),
    ("_transport.py", "post"),
)


def _print_steps(stats: pstats.Stats, spans: int) -> None:
    table = stats.stats  # type: ignore[attr-defined]
    total = sum(timing[2] for timing in table.values())
    print("  steps, cumulative (share of all profiled time, every thread):")
    for suffix, name in _STEPS:
        cumulative = sum(
            timing[3] for (f, _, n), timing in table.items() if n == name and f.endswith(suffix)
        )
        if cumulative:
            share = cumulative / total if total else 0.0
            print(
                f"    {suffix + ':' + name:<30} {cumulative:7.3f} s {share:6.1%}  "
                f"{cumulative / spans * 1e6:8.1f} µs/span (profiled)"
            )
    print()


def _print_top(stats: pstats.Stats, top: int, spans: int) -> None:
    entries = sorted(
        stats.stats.items(),  # type: ignore[attr-defined]
        key=lambda item: item[1][2],
        reverse=True,
    )
    print(f"  {'own s':>7} {'cum s':>7} {'calls':>9}  {'own µs/span':>11}  function")
    for (filename, line, name), (_, calls, own, cumulative, _) in entries[:top]:
        where = _short(filename)
        print(
            f"  {own:7.3f} {cumulative:7.3f} {calls:9d}  {own / spans * 1e6:11.1f}  "
            f"{where}:{line}({name})"
        )


def _short(filename: str) -> str:
    for marker in ("/opentelemetry/exporter/weave/", "/site-packages/", "/lib/python"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


# ---------------------------------------------------------------- main


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--spans", type=int, help="spans to map (a multiple of 10)")
    parser.add_argument("--top", type=int, default=25, help="functions listed per profile")
    parser.add_argument(
        "--workload", choices=WORKLOADS, default="synthetic", help="the spans mapped (run.py's)"
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    n = args.spans or (1280 if args.quick else 5120)
    for name in list(os.environ):
        if name.startswith(("OTEL_", "WEAVE_", "WANDB_", "WF_")):
            del os.environ[name]

    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    sink = ctx.Process(target=serve, args=(sender,), daemon=True)
    sink.start()
    sender.close()
    port = receiver.recv()
    base_url = f"http://127.0.0.1:{port}"
    print(f"machine: {machine()}; {args.workload} spans")
    try:
        spans = make_spans(n, args.workload)
        worker_steps(spans, base_url)
        pipeline_stages(spans)
        conversation_lengths()
        stock_steps(spans, base_url)
        whole_exports(spans, base_url, port)
        app_thread(n, base_url)
        profiles(spans, base_url, port, args.top)
    finally:
        sink.terminate()
        sink.join()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
