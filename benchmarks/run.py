"""Benchmarks: this package's processor against the stock OTLP pipeline.

    python benchmarks/run.py            # full run (about 3 minutes)
    python benchmarks/run.py --quick    # short run (about a minute)

Every pipeline gets the same spans of two workloads (``_workload.py``: "synthetic" LLM-like
traces, and "openai", real openai-v2 chat spans replayed from ``openai_spans.json``) and sends
them to the same loopback sink, which runs in a process of its own; every measured run is a
fresh process, and the runs take turns (A, B, C, D, then B, C, D, A, ...). Printed: a table per
workload with ratios against the stock pipeline on the same spans (the median of each round's
ratio), the garbage collector's time, whether each goal of issue 12 is met, and the machine.
The figures are also written to ``benchmarks/results.md``. Needs the ``bench`` extra:
``pip install -e '.[bench]'``; the ``bench-peers`` extra adds the peer rows (Langfuse's
processor, Logfire), left out otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.util
import logging
import multiprocessing
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from _sink import control, serve
from _workload import WORKLOADS, OpenAIWorkload

STOCK = "otlp"
WEAVE_MODES = ("call_end", "upsert_batch", "calls_complete")
LANGFUSE, LOGFIRE = "langfuse", "logfire"
PEERS = {LANGFUSE: "langfuse", LOGFIRE: "logfire"}
"""Peer pipelines (the ``bench-peers`` extra), each run when its module is installed; each
module's distribution has its name, and is named with the machine."""
PIPELINES = (STOCK, *WEAVE_MODES, *PEERS)
LABELS = {
    STOCK: "stock: BatchSpanProcessor + OTLPSpanExporter",
    "call_end": "weave: call_end",
    "upsert_batch": "weave: upsert_batch",
    "calls_complete": "weave: calls_complete",
    LANGFUSE: "peer: LangfuseSpanProcessor",
    LOGFIRE: "peer: Logfire",
}
BATCH_SIZE = 512
SCHEDULE_DELAY_MS = 5000.0
EXPORT_TIMEOUT_MS = 30000.0
# Issue 12's "done when", for calls_complete against stock on the same spans: emit time, and
# the time until all is delivered and the process CPU per span, each at most this many times.
GOAL_MODE = "calls_complete"
EMIT_GOAL = 0.8
COST_GOALS = {"synthetic": 1.1, "openai": 1.0}
MEMORY_RATE = 2000  # spans per second while the backend is down
MEMORY_QUEUE = 2048  # both pipelines' default queue size
# Short, so that several batches reach their deadline and are dropped during a memory run.
MEMORY_EXPORT_TIMEOUT_MS = 3000.0
FLAT_MIB = 2.0  # "flat": the last third's peak RSS is less than this above the middle third's
_OTLP_MODULE = "opentelemetry.exporter.otlp.proto.http"
RESULTS = Path(__file__).resolve().parent / "results.md"
PACKAGES = (
    "opentelemetry-exporter-weave",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-http",
    "protobuf",
    "requests",
    "pydantic",
    "pydantic-core",
    "httpx",
)


# ---------------------------------------------------------------- the measured processes


def _clean_environment() -> None:
    """No setting from this shell may change any pipeline, nor any package installed beside."""
    for name in list(os.environ):
        if name.startswith(("OTEL_", "WEAVE_", "WANDB_", "WF_")):
            del os.environ[name]
    # Logfire installs a pydantic plugin: every process building a pydantic model (this
    # package's settings) would import Logfire, some 370 modules more for the collector to walk.
    os.environ["PYDANTIC_DISABLE_PLUGINS"] = "__all__"


def build_processor(
    pipeline: str, base_url: str, max_queue_size: int, export_timeout_ms: float = EXPORT_TIMEOUT_MS
) -> Any:
    """The pipeline's span processor, all configured alike (batch, delay, timeout, queue)."""
    if pipeline == LANGFUSE:
        from langfuse._client.span_processor import LangfuseSpanProcessor

        # It passes no queue size to its BatchSpanProcessor, which then reads the variable.
        os.environ["OTEL_BSP_MAX_QUEUE_SIZE"] = str(max_queue_size)
        return LangfuseSpanProcessor(
            public_key="pk-lf-benchmark",
            secret_key="sk-lf-benchmark",
            base_url=base_url,
            timeout=int(export_timeout_ms / 1000),
            flush_at=BATCH_SIZE,
            flush_interval=SCHEDULE_DELAY_MS / 1000,
            # Every span, as the other pipelines send (by default it keeps GenAI spans only).
            should_export_span=lambda span: True,
        )
    if pipeline == STOCK:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # The processor does not pass its export timeout on: the exporter has its own.
        exporter = OTLPSpanExporter(
            endpoint=f"{base_url}/v1/traces", timeout=export_timeout_ms / 1000
        )
        return BatchSpanProcessor(
            exporter,
            max_queue_size=max_queue_size,
            schedule_delay_millis=SCHEDULE_DELAY_MS,
            max_export_batch_size=BATCH_SIZE,
            export_timeout_millis=export_timeout_ms,
        )
    from opentelemetry.exporter.weave import WeaveSpanProcessor

    return WeaveSpanProcessor(
        api_key="benchmark-key",
        project="bench/bench",
        server_url=base_url,
        write_mode=pipeline,
        max_queue_size=max_queue_size,
        schedule_delay_millis=SCHEDULE_DELAY_MS,
        max_export_batch_size=BATCH_SIZE,
        export_timeout_millis=export_timeout_ms,
    )


def _provider(processor: Any) -> Any:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider(resource=Resource.create({"service.name": "benchmark-app"}))
    provider.add_span_processor(processor)
    return provider


def _logfire_provider(base_url: str, max_queue_size: int) -> Any:
    """Logfire's own tracer provider, as ``logfire.configure`` makes it, sending to the sink."""
    import logfire

    # Its BatchSpanProcessor reads these (it is given none of them). Its pending spans (one
    # at each span's start) share the queue: room for twice the spans, none dropped.
    os.environ["OTEL_BSP_MAX_QUEUE_SIZE"] = str(2 * max_queue_size)
    os.environ["OTEL_BSP_MAX_EXPORT_BATCH_SIZE"] = str(BATCH_SIZE)
    os.environ["OTEL_BSP_SCHEDULE_DELAY"] = str(int(SCHEDULE_DELAY_MS))
    os.environ["OTEL_BSP_EXPORT_TIMEOUT"] = str(int(EXPORT_TIMEOUT_MS))
    logfire.configure(
        send_to_logfire=True,
        token="pylf_v1_us_benchmark",
        service_name="benchmark-app",
        console=False,
        metrics=False,
        inspect_arguments=False,
        advanced=logfire.AdvancedOptions(base_url=base_url),
    )
    return logfire.DEFAULT_LOGFIRE_INSTANCE.config.get_tracer_provider()


def _pipeline(pipeline: str, base_url: str, max_queue_size: int) -> tuple[Any, Any]:
    """The tracer provider spans are emitted through, and what flushes the pipeline."""
    if pipeline == LOGFIRE:
        provider = _logfire_provider(base_url, max_queue_size)
        return provider, provider
    processor = build_processor(pipeline, base_url, max_queue_size)
    return _provider(processor), processor


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class _GcTimer:
    """A ``gc.callbacks`` entry: time spent in collections (any thread's), and full ones."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full_collections = 0
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        # Collections never overlap (the collector holds the GIL and does not recurse).
        if phase == "start":
            self._began = time.perf_counter()
            return
        self.seconds += time.perf_counter() - self._began
        if info["generation"] == 2:
            self.full_collections += 1


def throughput_child(workload: str, pipeline: str, port: int, n: int, conn: Connection) -> None:
    """One measured run: emit ``n`` spans, then wait for the sink to have them all."""
    _clean_environment()
    from _workload import emitter

    provider, processor = _pipeline(pipeline, f"http://127.0.0.1:{port}", max_queue_size=n)
    emit = emitter(workload, provider)
    gc.collect()
    rss_before = _status_kib("VmRSS")
    gc_timer = _GcTimer()
    gc.callbacks.append(gc_timer)

    started = time.monotonic()
    wall0, thread0, process0 = time.perf_counter(), time.thread_time(), time.process_time()
    emit(n)
    wall1, thread1, process1 = time.perf_counter(), time.thread_time(), time.process_time()
    # What an exiting app does: send what is left (with n a multiple of the batch size, little).
    flushed = processor.force_flush(int(EXPORT_TIMEOUT_MS))
    sink = control(port, "GET", "/_wait?timeout=300")
    process2, thread2 = time.process_time(), time.thread_time()
    gc.callbacks.remove(gc_timer)

    result: dict[str, Any] = {
        "workload": workload,
        "pipeline": pipeline,
        "n": n,
        "emit_wall": wall1 - wall0,
        "emit_thread_cpu": thread1 - thread0,
        "emit_process_cpu": process1 - process0,
        "total_process_cpu": process2 - process0,
        # The pipeline's own threads (its worker, call_end's senders, ended ones too): all
        # the process's CPU but the app thread's.
        "worker_cpu": (process2 - process0) - (thread2 - thread0),
        "gc_seconds": gc_timer.seconds,
        "full_collections": gc_timer.full_collections,
        "delivered_after": (sink["done_at"] - started) if sink["done_at"] else None,
        "delivered": sink["delivered"],
        "requests": sink["requests"],
        "body_bytes": sink["body_bytes"],
        "undecodable": sink["undecodable"],
        "flushed": flushed,
        "rss_before_kib": rss_before,
        "rss_peak_kib": _status_kib("VmHWM"),
    }
    if pipeline in WEAVE_MODES:
        stats = processor.stats()
        result["lost"] = stats.spans_dropped_queue_full + stats.calls_failed
    provider.shutdown()
    conn.send(result)
    conn.close()


def memory_child(pipeline: str, seconds: float, conn: Connection) -> None:
    """Backend down: emit spans at a steady rate far past the queue size, sample RSS."""
    _clean_environment()
    logging.getLogger("opentelemetry").setLevel(logging.CRITICAL)  # retry warnings
    from _workload import SPANS_PER_TRACE, Workload

    with socket.socket() as probe:  # a port with nothing listening: connections are refused
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    processor = build_processor(
        pipeline, f"http://127.0.0.1:{closed_port}", MEMORY_QUEUE, MEMORY_EXPORT_TIMEOUT_MS
    )
    provider = _provider(processor)
    tracer = provider.get_tracer("benchmark", "1.0")
    workload = Workload()
    gc.collect()

    samples: list[tuple[float, int, int]] = []
    emitted = 0
    start = time.perf_counter()
    next_sample = start
    while (now := time.perf_counter()) - start < seconds:
        if now >= next_sample:
            samples.append((now - start, _status_kib("VmRSS"), emitted))
            next_sample += 0.25
        workload.emit(tracer, SPANS_PER_TRACE)
        emitted += SPANS_PER_TRACE
        pause = start + emitted / MEMORY_RATE - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
    samples.append((time.perf_counter() - start, _status_kib("VmRSS"), emitted))
    result: dict[str, Any] = {"pipeline": pipeline, "samples": samples, "emitted": emitted}
    if pipeline != STOCK:
        result["dropped"] = processor.stats().spans_dropped_queue_full
    conn.send(result)
    conn.close()
    # Shutting down would wait out the export timeout against the dead backend.
    os._exit(0)


# ---------------------------------------------------------------- the driver


def _in_process(ctx: Any, target: Callable[..., None], *args: Any) -> dict[str, Any]:
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(target=target, args=(*args, sender))
    process.start()
    sender.close()
    if not receiver.poll(600):
        process.kill()
        raise RuntimeError(f"{target.__name__}{args} did not finish in 600 s")
    try:
        result: dict[str, Any] = receiver.recv()
    except EOFError:  # it died before answering; its traceback is printed above
        process.join(60)
        raise RuntimeError(f"{target.__name__}{args} exited {process.exitcode}") from None
    process.join(60)
    return result


Entry = tuple[str, str]  # (workload, pipeline)


@dataclass
class Summary:
    workload: str
    pipeline: str
    n: int
    runs: list[dict[str, Any]]

    def median(self, key: str) -> float:
        return float(statistics.median(run[key] for run in self.runs))

    def spread(self, key: str) -> float:
        """Half the range, relative to the median."""
        values = [run[key] for run in self.runs]
        middle = statistics.median(values)
        return (max(values) - min(values)) / 2 / middle if middle else 0.0


def run_throughput(
    ctx: Any, port: int, counts: dict[Entry, int], runs: int
) -> dict[Entry, Summary]:
    entries = list(counts)
    results: dict[Entry, list[dict[str, Any]]] = {entry: [] for entry in entries}
    for round_index in range(runs):
        shift = round_index % len(entries)
        order = [*entries[shift:], *entries[:shift]]  # A B C D, B C D A, ...
        for workload, pipeline in order:
            n = counts[workload, pipeline]
            control(port, "POST", "/_reset", {"expected": n})
            run = _in_process(ctx, throughput_child, workload, pipeline, port, n)
            failed = run["delivered"] < n or run["undecodable"] or run.get("lost")
            if run["delivered_after"] is None or failed:
                raise RuntimeError(f"{workload}/{pipeline} did not deliver all {n} spans: {run}")
            results[workload, pipeline].append(run)
            print(
                f"  run {round_index + 1}/{runs} {workload:<9} {pipeline:<15} emit "
                f"{run['emit_wall'] * 1e3:7.0f} ms  delivered after "
                f"{run['delivered_after'] * 1e3:7.0f} ms  GC {run['gc_seconds'] * 1e3:5.0f} ms",
                flush=True,
            )
    return {entry: Summary(*entry, counts[entry], results[entry]) for entry in entries}


def run_memory(ctx: Any, seconds: float, pipelines: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for pipeline in pipelines:
        result = _in_process(ctx, memory_child, pipeline, seconds)
        out[pipeline] = _memory_figures(result)
        figures = out[pipeline]
        print(
            f"  memory {pipeline:<15} RSS at fill {figures['at_fill']:.1f} MiB, end "
            f"{figures['end']:.1f} MiB, growth {figures['growth']:+.1f} MiB",
            flush=True,
        )
    return out


def _memory_figures(result: dict[str, Any]) -> dict[str, Any]:
    samples = result["samples"]
    full_at = MEMORY_QUEUE + BATCH_SIZE  # the queue, and one batch in flight
    after_fill = [s for s in samples if s[2] >= full_at] or samples[-1:]
    duration = samples[-1][0]
    middle = [s[1] for s in samples if duration / 3 <= s[0] < 2 * duration / 3]
    last = [s[1] for s in samples if s[0] >= 2 * duration / 3]
    mib = 1 / 1024
    series = [samples[round(i * (len(samples) - 1) / 8)] for i in range(9)]
    return {
        "start": samples[0][1] * mib,
        "fill_seconds": after_fill[0][0],
        "at_fill": after_fill[0][1] * mib,
        "max_after_fill": max(s[1] for s in after_fill) * mib,
        "end": samples[-1][1] * mib,
        "growth": (max(last) - max(middle)) * mib,
        "emitted": result["emitted"],
        "dropped": result.get("dropped"),
        "seconds": duration,
        "series": [(round(t, 1), round(rss * mib, 1)) for t, rss, _ in series],
    }


# ---------------------------------------------------------------- reporting


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions = []
    for package in PACKAGES:
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    for package in PEERS.values():
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions.append(f"{package} {metadata.version(package)}")
    return (
        f"{model}, {cores} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; " + ", ".join(versions) + _source_version()
    )


def _source_version() -> str:
    """The commit measured, and whether src/ had uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
    return f" (source at {commit}{' with uncommitted changes in src/' if dirty else ''})"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.0f}"


def _per_span(summary: Summary, key: str) -> float:
    return summary.median(key) / summary.n


def paired_ratio(summary: Summary, stock: Summary, key: str) -> float:
    """The median over rounds of each round's ratio of ``key`` per span to stock's: runs of
    one round are seconds apart, and a shared machine's speed drifts over minutes, which a
    ratio of the two medians (of runs minutes apart) takes for the pipelines' difference."""
    return float(
        statistics.median(
            (run[key] / summary.n) / (stock_run[key] / stock.n)
            for run, stock_run in zip(summary.runs, stock.runs, strict=True)
        )
    )


def _worker_cpu(summary: Summary) -> str:
    return f"{_per_span(summary, 'worker_cpu') * 1e6:.0f}"


def throughput_rows(summaries: dict[Entry, Summary], workload: str) -> list[list[str]]:
    stock = summaries.get((workload, STOCK))
    rows = []
    for (of_workload, pipeline), summary in summaries.items():
        if of_workload != workload:
            continue
        n = summary.n
        emit = summary.median("emit_wall")
        delivery = summary.median("delivered_after")
        emit_ratio = delivery_ratio = cpu_ratio = "-"
        if stock is not None:
            # Per-span figures compare across span counts; delivery time only at equal ones.
            emit_ratio = f"{paired_ratio(summary, stock, 'emit_wall'):.2f}x"
            cpu_ratio = f"{paired_ratio(summary, stock, 'total_process_cpu'):.2f}x"
            if n == stock.n:
                delivery_ratio = f"{paired_ratio(summary, stock, 'delivered_after'):.2f}x"
        rows.append(
            [
                LABELS[pipeline],
                f"{n:,}",
                f"{_ms(emit)} ±{summary.spread('emit_wall'):.0%}",
                emit_ratio,
                _ms(summary.median("emit_thread_cpu")),
                f"{_ms(delivery)} ±{summary.spread('delivered_after'):.0%}",
                delivery_ratio,
                f"{n / delivery:,.0f}",
                f"{_per_span(summary, 'total_process_cpu') * 1e6:.0f}",
                cpu_ratio,
                _worker_cpu(summary),
                _ms(summary.median("gc_seconds")),
                f"{summary.median('full_collections'):g}",
                f"{summary.median('requests'):,.0f}",
                f"{_per_span(summary, 'body_bytes'):,.0f}",
                f"{summary.median('rss_peak_kib') / 1024:.0f}",
            ]
        )
    return rows


THROUGHPUT_HEADER = [
    "pipeline",
    "spans",
    "emit ms (app thread)",
    "emit vs stock",
    "app-thread CPU ms",
    "all delivered after ms",
    "delivery vs stock",
    "spans/s delivered",
    "CPU µs/span",
    "CPU vs stock",
    "worker threads CPU µs/span",
    "GC ms",
    "full (gen 2) GCs",
    "HTTP requests",
    "bytes/span sent",
    "peak RSS MiB",
]
MEMORY_HEADER = [
    "pipeline (backend down)",
    "RSS at start MiB",
    "queue full after s",
    "RSS when full MiB",
    "max RSS after full MiB",
    "RSS at end MiB",
    "peak growth, last third vs middle third MiB",
    "spans emitted",
    "flat",
]


def memory_rows(memory: dict[str, dict[str, Any]]) -> list[list[str]]:
    return [
        [
            LABELS[pipeline],
            f"{m['start']:.1f}",
            f"{m['fill_seconds']:.1f}",
            f"{m['at_fill']:.1f}",
            f"{m['max_after_fill']:.1f}",
            f"{m['end']:.1f}",
            f"{m['growth']:+.1f}",
            f"{m['emitted']:,}",
            "yes" if m["growth"] < FLAT_MIB else "NO",
        ]
        for pipeline, m in memory.items()
    ]


def _goal_row(goal: str, ratio: float, limit: float) -> list[str]:
    # Three decimals: at two, a ratio just above its limit reads as the limit, and "NOT met".
    return [goal, f"{ratio:.3f}x", "met" if ratio <= limit else "NOT met"]


def goal_rows(
    summaries: dict[Entry, Summary], memory: dict[str, dict[str, Any]]
) -> list[list[str]]:
    rows: list[list[str]] = []
    for workload, cost_goal in COST_GOALS.items():
        stock, mode = summaries.get((workload, STOCK)), summaries.get((workload, GOAL_MODE))
        if stock is None or mode is None:
            continue
        on = f"({GOAL_MODE}, {workload} spans)"
        emit = paired_ratio(mode, stock, "emit_wall")
        rows.append(_goal_row(f"app-thread emit ≤ {EMIT_GOAL}x stock {on}", emit, EMIT_GOAL))
        if mode.n == stock.n:
            delivery = paired_ratio(mode, stock, "delivered_after")
            rows.append(_goal_row(f"all delivered ≤ {cost_goal}x stock {on}", delivery, cost_goal))
        cpu = paired_ratio(mode, stock, "total_process_cpu")
        rows.append(_goal_row(f"process CPU per span ≤ {cost_goal}x stock {on}", cpu, cost_goal))
    for (workload, pipeline), summary in summaries.items():
        if pipeline != "call_end":
            continue
        delivery = summary.median("delivered_after")
        rows.append(
            [
                f"calls/s delivered, CPU per call (call_end, {workload} spans)",
                f"{summary.n / delivery:,.0f} calls/s "
                f"({summary.median('requests') / delivery:,.0f} requests/s), "
                f"{_per_span(summary, 'total_process_cpu') * 1e6:,.0f} µs CPU per call",
                "reported",
            ]
        )
    for pipeline, figures in memory.items():
        rows.append(
            [
                f"RSS flat once the queue is full, backend down ({pipeline})",
                f"{figures['growth']:+.1f} MiB (peak of the last third vs the middle third)",
                ("met" if figures["growth"] < FLAT_MIB else "NOT met")
                if pipeline != STOCK
                else ("flat" if figures["growth"] < FLAT_MIB else "grows") + " (reference)",
            ]
        )
    return rows


def text_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    aligns = ["---", *["---:"] * (len(header) - 1)]
    lines = [header, aligns, *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


# ---------------------------------------------------------------- main


def _options(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (about a minute)")
    parser.add_argument("--spans", type=int, help="spans per run (a multiple of 10)")
    parser.add_argument(
        "--call-end-spans", type=int, help="spans per call_end run (2 requests per span: slow)"
    )
    parser.add_argument("--runs", type=int, help="runs per pipeline (the median is shown)")
    parser.add_argument("--memory-seconds", type=float, help="length of each memory run (0: none)")
    parser.add_argument(
        "--pipelines",
        default=",".join(PIPELINES),
        help=f"comma-separated subset of {','.join(PIPELINES)}",
    )
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help=f"comma-separated subset of {','.join(WORKLOADS)}",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="markdown results file")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    # Multiples of the batch size (512) and of the trace size (10): no partial batch waits.
    n = args.spans or (2560 if args.quick else 10240)
    n_call_end = args.call_end_spans or (1280 if args.quick else 2560)
    args.runs = args.runs or (3 if args.quick else 5)
    if args.memory_seconds is None:
        args.memory_seconds = 6.0 if args.quick else 16.0
    pipelines = [p.strip() for p in args.pipelines.split(",") if p.strip()]
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = (set(pipelines) - set(PIPELINES)) | (set(workloads) - set(WORKLOADS))
    if unknown or n % 10 or n_call_end % 10:
        parser.error(f"unknown pipelines or workloads {sorted(unknown)}" if unknown else "not /10")
    missing = [p for p in pipelines if p in PEERS and importlib.util.find_spec(PEERS[p]) is None]
    if missing and args.pipelines != parser.get_default("pipelines"):
        extra = "pip install -e '.[bench-peers]'"
        parser.error(f"{', '.join(missing)}: needs the bench-peers extra: {extra}")
    args.skipped = missing  # not installed, not asked for by name: left out
    pipelines = [p for p in pipelines if p not in missing]
    args.counts = {
        (workload, pipeline): n_call_end if pipeline == "call_end" else n
        for workload in workloads
        for pipeline in pipelines
        # call_end's two requests per span make it the slowest run by far: a quick run
        # measures it on the synthetic spans only.
        if not (args.quick and pipeline == "call_end" and workload != WORKLOADS[0])
    }
    args.workloads = workloads
    if STOCK in pipelines and importlib.util.find_spec(_OTLP_MODULE) is None:
        parser.error("the stock pipeline needs the bench extra: pip install -e '.[bench]'")
    args.command = "python benchmarks/run.py" + (" " + shlex.join(argv or sys.argv[1:])).rstrip()
    return args


def _start_sink(ctx: Any) -> tuple[Any, int]:
    receiver, sender = ctx.Pipe(duplex=False)
    sink = ctx.Process(target=serve, args=(sender,), daemon=True)
    sink.start()
    sender.close()
    return sink, receiver.recv()


def _openai_shape() -> str:
    from opentelemetry.sdk.trace import TracerProvider

    return OpenAIWorkload(TracerProvider()).shape()


def main(argv: Sequence[str] | None = None) -> int:
    args = _options(argv)
    counts: dict[Entry, int] = args.counts
    host = machine()
    print(f"machine: {host}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        ", ".join(f"{n:,} spans per {w}/{p} run" for (w, p), n in counts.items())
        + f"; {args.runs} runs each; batch {BATCH_SIZE}, queue = spans, "
        f"schedule delay {SCHEDULE_DELAY_MS:.0f} ms",
        flush=True,
    )
    if args.skipped:
        print(f"left out (pip install -e '.[bench-peers]' adds them): {', '.join(args.skipped)}")
    ctx = multiprocessing.get_context("spawn")
    began = time.perf_counter()
    sink, port = _start_sink(ctx)
    try:
        summaries = run_throughput(ctx, port, counts, args.runs)
    finally:
        sink.terminate()
        sink.join()
    pipelines = {pipeline for _, pipeline in counts}
    memory_pipelines = [p for p in (STOCK, "calls_complete", "call_end") if p in pipelines]
    memory = run_memory(ctx, args.memory_seconds, memory_pipelines) if args.memory_seconds else {}
    elapsed = time.perf_counter() - began

    throughput = {w: throughput_rows(summaries, w) for w in args.workloads}
    goals = goal_rows(summaries, memory)
    for workload, rows in throughput.items():
        print(f"\nThroughput, {workload} spans: median of {args.runs} runs (± half the range)")
        print(text_table(THROUGHPUT_HEADER, rows))
    if "openai" in throughput:
        print(f"openai spans: {_openai_shape()}")
    if memory:
        print(
            f"\nMemory with the backend down: {MEMORY_RATE:,} spans/s for "
            f"{args.memory_seconds:.0f} s, queue {MEMORY_QUEUE}, export timeout "
            f"{MEMORY_EXPORT_TIMEOUT_MS / 1000:.0f} s"
        )
        print(text_table(MEMORY_HEADER, memory_rows(memory)))
    print()
    print(text_table(["goal", "measured", "result"], goals))
    print(f"\nmachine: {host}")
    print(
        f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; took {elapsed:.0f} s"
    )
    if not args.no_write:
        text = _markdown(
            command=args.command,
            host=host,
            counts=counts,
            runs=args.runs,
            memory_seconds=args.memory_seconds,
            throughput=throughput,
            memory=memory,
            goals=goals,
        )
        args.output.write_text(text, encoding="utf-8")
        print(f"written to {args.output}")
    return 0


WORKLOAD_NOTES = {
    "synthetic": "Traces of a root and 9 chat spans with about 1 KB of "
    "`gen_ai.input.messages`/`gen_ai.output.messages` each (`_workload.Workload`)",
    "openai": "Real openai-v2 chat spans (latest GenAI conventions, content on the span), "
    "replayed from `openai_spans.json` as recorded by `capture_openai.py`",
}


def _markdown(
    *,
    command: str,
    host: str,
    counts: dict[Entry, int],
    runs: int,
    memory_seconds: float,
    throughput: dict[str, list[list[str]]],
    memory: dict[str, dict[str, Any]],
    goals: list[list[str]],
) -> str:
    n = max(counts.values())
    call_end = sorted({c for (_, p), c in counts.items() if p == "call_end" and c != n})
    call_end_note = (
        f" ({', '.join(f'{c:,}' for c in call_end)} in `call_end` mode: two requests per span)"
        if call_end
        else ""
    )
    parts = [
        "# Benchmarks: WeaveSpanProcessor vs the stock OTLP pipeline",
        "",
        f"Command: `{command}` (needs `pip install -e '.[bench]'`)",
        "",
        f"Machine: {host}; run on {time.strftime('%Y-%m-%d')}",
        "",
        f"{n:,} spans per run{call_end_note}, sent to the same loopback sink (a separate "
        "process); each run in a fresh process, runs of every workload and pipeline taking "
        f"turns, median of {runs} runs (± half the range); ratios are to the stock pipeline on "
        "the same spans, the median of each round's ratio (runs seconds apart, not minutes). "
        f"Every pipeline: batch {BATCH_SIZE}, queue = spans (nothing dropped), "
        f"schedule delay {SCHEDULE_DELAY_MS:.0f} ms, `force_flush()` after the last span. "
        "*Emit* is the app thread's wall time to create and end all spans "
        "(`time.perf_counter`; *vs stock* per span); *all delivered after* runs from the first "
        "span to the sink having counted every span (every call's end, for Weave); *CPU "
        "µs/span* is the measured process's CPU time (all threads) from the first span to the "
        "last delivery, per span, and *worker threads* the part of it the pipeline's own "
        "threads used (all but the app's, ended ones too: the process's CPU less the app "
        "thread's `time.thread_time`); *GC ms* the time spent in "
        "garbage collections in that "
        "process meanwhile (`gc.callbacks`), *full GCs* how many of them were of generation 2.",
        "",
    ]
    for workload, rows in throughput.items():
        parts += [f"## {workload} spans", "", f"{WORKLOAD_NOTES[workload]}.", ""]
        if workload == "openai":
            parts += [f"{_openai_shape()}.", ""]
        parts += [markdown_table(THROUGHPUT_HEADER, rows), ""]
    if memory:
        parts += [
            "## Memory with the backend down",
            "",
            f"Synthetic spans into a closed port: {MEMORY_RATE:,} spans/s for "
            f"{memory_seconds:.0f} s, queue {MEMORY_QUEUE} (both defaults), export timeout "
            f"{MEMORY_EXPORT_TIMEOUT_MS / 1000:.0f} s (so that batches keep failing and being "
            "dropped during the run), RSS sampled every 0.25 s. *Flat*: the peak RSS of the last "
            f"third of the run is less than {FLAT_MIB:g} MiB above the middle third's.",
            "",
            markdown_table(MEMORY_HEADER, memory_rows(memory)),
            "",
            "RSS over time (s, MiB):",
            "",
            *(
                f"- {LABELS[p]}: " + ", ".join(f"{t:g} s {r:g}" for t, r in m["series"])
                for p, m in memory.items()
            ),
            "",
        ]
    parts += ["## Goals (issue 12)", "", markdown_table(["goal", "measured", "result"], goals), ""]
    return "\n".join(parts)


if __name__ == "__main__":
    sys.exit(main())
