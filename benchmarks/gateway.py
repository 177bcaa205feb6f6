"""Figures for the OTLP gateway (printed, no asserts): spans/s through one gateway process on
one core, and its memory while the Weave backend is down.

- **Throughput**: the gateway (``python -m opentelemetry.exporter.weave.gateway``) runs
  pinned to core 0 (``taskset -c 0``, else ``os.sched_setaffinity``); the backend is the
  benchmarks' loopback sink (``_sink.py``, its own process); the client is another process
  pinned to core 1 in which ``--senders`` threads each drive one stock ``OTLPSpanExporter``
  (protobuf over HTTP, the exporter that retries 429/503), exporting pre-built spans in
  batches of 512. Spans are the benchmarks' LLM-like workload (``_workload.py``: traces of a
  root and 9 chat spans, about 1 KB of messages each). *Spans/s* is spans over the time from
  the first export to the sink having counted every call; *gateway CPU µs/span* is the
  gateway process's CPU time (user + system, every thread) over the same interval, per span.
- **Backend down**: the gateway's Weave URL is a closed port (connection refused), its queue
  bounds the defaults. The client offers ``--memory-spans`` spans at ``--memory-rate``
  spans/s in protobuf bodies of 51 whole traces (510 spans, fresh trace and span ids each)
  and counts the answers (200, 429/503); the driver samples the gateway's RSS every 0.25 s
  and its ``/stats`` every second. *Growth once full* is the highest RSS after the queue
  first held 98% of the most it held, less the RSS then.

``python benchmarks/gateway.py`` (about a minute; needs ``pip install -e '.[gateway,bench]'``)
prints the figures; ``--write`` also writes them to ``benchmarks/gateway_results.md``.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import multiprocessing
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from _sink import control, serve

BATCH_SIZE = 512
RESULTS = Path(__file__).resolve().parent / "gateway_results.md"
_LISTENING = re.compile(r"listening on (http://\S+)")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_SETTING_PREFIXES = ("OTEL_", "WEAVE_", "WANDB_", "WF_")


def _clean_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(_SETTING_PREFIXES)}


def _pin(core: int) -> None:
    if hasattr(os, "sched_setaffinity") and core < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {core})


@contextmanager
def gateway(server_url: str, **settings: str) -> Iterator[tuple[str, int]]:
    """A gateway process on core 0 sending to ``server_url``; yields its URL and pid."""
    env = {
        **_clean_environment(),
        "WANDB_API_KEY": "benchmark-key-0123456789",
        "WEAVE_PROJECT": "bench/gateway",
        "WF_TRACE_SERVER_URL": server_url,
        "WEAVE_OTEL_WRITE_MODE": "calls_complete",
        **settings,
    }
    command = [sys.executable, "-m", "opentelemetry.exporter.weave.gateway", "--port", "0"]
    taskset = shutil.which("taskset")
    process = subprocess.Popen(
        [taskset, "-c", "0", *command] if taskset else command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if not taskset and hasattr(os, "sched_setaffinity"):
        # Before the interpreter has started any thread: every later one inherits it.
        os.sched_setaffinity(process.pid, {0})
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        while True:
            line = lines.get(timeout=60)
            if line is None:
                raise RuntimeError(f"the gateway exited with {process.wait()}")
            if match := _LISTENING.search(line):
                break
        yield match.group(1), process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (every thread), seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _spans(n: int) -> list[Any]:
    from _workload import Workload
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "benchmark-app"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    Workload().emit(provider.get_tracer("benchmark", "1.0"), n)
    provider.shutdown()
    return list(memory.get_finished_spans())


def throughput_client(url: str, n: int, senders: int, conn: Connection) -> None:
    """Export ``n`` spans to the gateway from ``senders`` threads, one OTLPSpanExporter each;
    send the start time, the time the last export returned and the failures."""
    _pin(1)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import SpanExportResult

    spans = _spans(n)
    batches = [spans[i : i + BATCH_SIZE] for i in range(0, n, BATCH_SIZE)]
    work: queue.Queue[list[Any]] = queue.Queue()
    for batch in batches:
        work.put(batch)
    failures = [0]

    def send() -> None:
        exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces", timeout=120)
        while True:
            try:
                batch = work.get_nowait()
            except queue.Empty:
                break
            if exporter.export(batch) is not SpanExportResult.SUCCESS:
                failures[0] += 1
        exporter.shutdown()

    gc.collect()
    conn.send("ready")
    conn.recv()
    started = time.monotonic()
    threads = [threading.Thread(target=send) for _ in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    conn.send({"started": started, "returned": time.monotonic(), "failed_batches": failures[0]})
    conn.close()


def run_throughput(ctx: Any, n: int, senders: int) -> dict[str, Any]:
    receiver, sender = ctx.Pipe(duplex=False)
    sink = ctx.Process(target=serve, args=(sender,), daemon=True)
    sink.start()
    sender.close()
    port = receiver.recv()
    try:
        with gateway(f"http://127.0.0.1:{port}", WEAVE_GATEWAY_TRACE_WAIT="0") as (url, pid):
            control(port, "POST", "/_reset", {"expected": n})
            parent, child = ctx.Pipe()
            client = ctx.Process(target=throughput_client, args=(url, n, senders, child))
            client.start()
            assert parent.recv() == "ready"
            cpu_before = cpu_seconds(pid)
            parent.send("go")
            timing = parent.recv()
            counted = control(port, "GET", "/_wait?timeout=300")
            cpu_after = cpu_seconds(pid)
            rss_peak = status_kib(pid, "VmHWM")
            client.join()
    finally:
        sink.terminate()
        sink.join()
    done_at = counted["done_at"]
    elapsed = (done_at - timing["started"]) if done_at else float("nan")
    return {
        "spans": n,
        "senders": senders,
        "delivered": counted["delivered"],
        "requests": counted["requests"],
        "failed_batches": timing["failed_batches"],
        "accepted_s": timing["returned"] - timing["started"],
        "delivered_s": elapsed,
        "spans_per_s": counted["delivered"] / elapsed if done_at else 0.0,
        "cpu_us_per_span": (cpu_after - cpu_before) / n * 1e6,
        "rss_peak_mib": rss_peak / 1024,
    }


def _request_template() -> Any:
    """One export request of whole traces, as near the batch size as they come (510 spans)."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    return encode_spans(_spans(BATCH_SIZE))


def offer_client(url: str, n: int, rate: float, conn: Connection) -> None:
    """POST about ``n`` spans at ``rate`` spans/s in bodies of whole traces with fresh ids; no
    retries: a refused body is counted and the next one offered. Sends the answers' counts."""
    _pin(1)
    template = _request_template()
    per_body = sum(len(scope.spans) for r in template.resource_spans for scope in r.scope_spans)
    bodies = n // per_body
    host_port = url.removeprefix("http://")
    connection = http.client.HTTPConnection(host_port, timeout=60)
    statuses: dict[str, int] = {}
    started = time.monotonic()
    for index in range(bodies):
        prefix = index.to_bytes(6, "big")
        for resource in template.resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    span.trace_id = prefix + span.trace_id[6:]
                    span.span_id = prefix[2:] + span.span_id[4:]
                    if span.parent_span_id:
                        span.parent_span_id = prefix[2:] + span.parent_span_id[4:]
        body = template.SerializeToString()
        due = started + index * per_body / rate
        time.sleep(max(0.0, due - time.monotonic()))
        try:
            connection.request(
                "POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"}
            )
            response = connection.getresponse()
            response.read()
            key = str(response.status)
        except (OSError, http.client.HTTPException) as error:
            key = type(error).__name__
            connection.close()
            connection = http.client.HTTPConnection(host_port, timeout=60)
        statuses[key] = statuses.get(key, 0) + 1
    conn.send({"statuses": statuses, "offered": bodies * per_body, "per_body": per_body})
    conn.close()


def _closed_port_url() -> str:
    import socket

    with socket.socket() as unbound:
        unbound.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{unbound.getsockname()[1]}"


def gateway_stats(url: str) -> dict[str, Any]:
    """The gateway's own counters (``GET /stats``)."""
    connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
    try:
        connection.request("GET", "/stats")
        stats: dict[str, Any] = json.loads(connection.getresponse().read())["gateway"]
        return stats
    finally:
        connection.close()


def run_backend_down(ctx: Any, n: int, rate: float) -> dict[str, Any]:
    with gateway(_closed_port_url()) as (url, pid):
        samples: list[tuple[float, float]] = []
        queued: list[tuple[float, int]] = []
        parent, child = ctx.Pipe()
        client = ctx.Process(target=offer_client, args=(url, n, rate, child))
        started = time.monotonic()
        rss_start = status_kib(pid, "VmRSS") / 1024
        client.start()
        while not parent.poll(0.25):
            samples.append((time.monotonic() - started, status_kib(pid, "VmRSS") / 1024))
            if len(samples) % 4 == 0:
                queued.append((samples[-1][0], gateway_stats(url)["spans_queued"]))
        answers = parent.recv()
        client.join()
        rss_end = status_kib(pid, "VmRSS") / 1024
        counters = gateway_stats(url)
    most_queued = max((count for _, count in queued), default=0)
    # Full: from the first sample with the queue within 2% of the most it held.
    full_at = next((at for at, count in queued if count >= 0.98 * most_queued), None)
    after_full = [rss for at, rss in samples if full_at is not None and at >= full_at]
    peak = max(rss for _, rss in samples) if samples else rss_end
    return {
        **answers,
        "seconds": samples[-1][0] if samples else 0.0,
        "rss_start_mib": rss_start,
        "rss_peak_mib": peak,
        "rss_end_mib": rss_end,
        "full_at_s": full_at,
        "rss_full_mib": after_full[0] if after_full else None,
        "growth_mib": (max(after_full) - after_full[0]) if after_full else None,
        "most_queued": most_queued,
        "kib_per_queued_span": (peak - rss_start) * 1024 / most_queued if most_queued else 0.0,
        "spans_received": counters["spans_received"],
        "refused_queue_full": counters["requests_refused_queue_full"],
        "timeline": samples[:: max(1, len(samples) // 10)],
    }


def machine() -> str:
    import platform

    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if "model name" in line)
    except (OSError, StopIteration):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def _figure(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(command: str, throughput: dict[str, Any], down: dict[str, Any]) -> str:
    t, d = throughput, down
    statuses = ", ".join(f"{count:,} x {status}" for status, count in sorted(d["statuses"].items()))
    timeline = ", ".join(f"{at:.0f} s {rss:.1f}" for at, rss in d["timeline"])
    return "\n".join(
        [
            "## Gateway (`python -m opentelemetry.exporter.weave.gateway`)",
            "",
            f"Command: `{command}` (needs `pip install -e '.[gateway,bench]'`)",
            "",
            f"Machine: {machine()}; run on {time.strftime('%Y-%m-%d')}",
            "",
            "One gateway process pinned to one core (core 0, `taskset -c 0`), "
            "`WEAVE_OTEL_WRITE_MODE=calls_complete`, `WEAVE_GATEWAY_TRACE_WAIT=0` (the "
            "wait only delays delivery; it costs no CPU), the benchmarks' loopback sink as the "
            "Weave backend (its own process); the client in another process on core 1: "
            f"{t['senders']} threads, each a stock `OTLPSpanExporter` (protobuf), batches of "
            f"{BATCH_SIZE}, {t['spans']:,} LLM-like spans (`_workload.py`: traces of a root "
            "and 9 chat spans, about 1 KB of messages each). *Delivered after*: from the first "
            "export to the sink having counted every call.",
            "",
            "| spans | delivered | failed batches | accepted after s | delivered after s "
            "| spans/s per gateway core | gateway CPU µs/span | gateway peak RSS MiB |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {t['spans']:,} | {t['delivered']:,} | {t['failed_batches']} "
            f"| {t['accepted_s']:.2f} | {t['delivered_s']:.2f} | {t['spans_per_s']:,.0f} "
            f"| {t['cpu_us_per_span']:.0f} | {t['rss_peak_mib']:.1f} |",
            "",
            "Backend down (the Weave URL a closed port: connection refused), the gateway's "
            "default bounds (`WEAVE_GATEWAY_MAX_QUEUE_SPANS`, `WEAVE_GATEWAY_MAX_QUEUE_BYTES`): "
            f"{d['offered']:,} spans offered at {d['offered'] / max(d['seconds'], 1e-9):,.0f} "
            f"spans/s in {d['per_body']}-span bodies (51 whole traces, fresh ids each), "
            "no client retries; "
            "answers: " + statuses + ". RSS sampled every 0.25 s, `/stats` every second; "
            "*full after*: when the queue first held 98% of the most it held; *growth once "
            "full*: the highest RSS after that, less the RSS then.",
            "",
            "| spans accepted | requests refused (queue full) | most spans queued "
            "| full after s | RSS at start MiB | RSS when full MiB | peak RSS MiB "
            "| RSS at end MiB | growth once full MiB | KiB RSS per queued span |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {d['spans_received']:,} | {d['refused_queue_full']:,} | {d['most_queued']:,} "
            f"| {_figure(d['full_at_s'], '.1f')} | {d['rss_start_mib']:.1f} "
            f"| {_figure(d['rss_full_mib'], '.1f')} | {d['rss_peak_mib']:.1f} "
            f"| {d['rss_end_mib']:.1f} | {_figure(d['growth_mib'], '+.1f')} "
            f"| {d['kib_per_queued_span']:.1f} |",
            "",
            f"RSS over time (s, MiB): {timeline}",
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=20_480, help="spans for the throughput run")
    parser.add_argument("--senders", type=int, default=4, help="exporter threads in the client")
    parser.add_argument("--memory-spans", type=int, default=307_200, help="spans offered")
    parser.add_argument("--memory-rate", type=float, default=10_000, help="spans/s offered")
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.name}")
    args = parser.parse_args(argv)
    command = "python benchmarks/gateway.py" + "".join(
        f" {arg}" for arg in (argv if argv is not None else sys.argv[1:])
    )
    ctx = multiprocessing.get_context("spawn")
    print(f"machine: {machine()}", flush=True)
    throughput = run_throughput(ctx, args.spans, args.senders)
    print(f"throughput: {throughput}", flush=True)
    down = run_backend_down(ctx, args.memory_spans, args.memory_rate)
    print(f"backend down: {down}", flush=True)
    section = markdown(command, throughput, down)
    print("\n" + section)
    if args.write:
        RESULTS.write_text(section, encoding="utf-8")
        print(f"written to {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
