"""How long force_flush() and shutdown() take against a server that never answers.

    python benchmarks/deadlines.py

A socket on 127.0.0.1 accepts connections and never replies. The processor has spans queued
and a 60 s HTTP timeout; what bounds each call is its own deadline. Printed, not asserted.
"""

from __future__ import annotations

import logging
import socket
import statistics
import threading
import time
from collections.abc import Callable

from opentelemetry.sdk.trace import TracerProvider

from opentelemetry.exporter.weave import WeaveSpanProcessor

RUNS = 5
FLUSH_TIMEOUT_MS = 500
EXPORT_TIMEOUT_MS = 1000


def hanging_server() -> tuple[socket.socket, list[socket.socket]]:
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return listener, held


def queued_processor(url: str) -> WeaveSpanProcessor:
    """A processor with 100 spans queued for a server that will never answer."""
    processor = WeaveSpanProcessor(
        api_key="benchmark-key",
        project="bench/deadlines",
        server_url=url,
        http_timeout_seconds=60,
        export_timeout_millis=EXPORT_TIMEOUT_MS,
        schedule_delay_millis=60_000,
    )
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("deadlines")
    for index in range(100):
        with tracer.start_as_current_span(f"span-{index}"):
            pass
    return processor


def timed(call: Callable[[], object]) -> tuple[float, object]:
    began = time.perf_counter()
    result = call()
    return time.perf_counter() - began, result


def measure_once(url: str) -> tuple[float, object, float]:
    flushing = queued_processor(url)
    flush_seconds, flushed = timed(lambda: flushing.force_flush(FLUSH_TIMEOUT_MS))
    stopping = queued_processor(url)
    shutdown_seconds, _ = timed(stopping.shutdown)
    flushing.shutdown()
    return flush_seconds, flushed, shutdown_seconds


def main() -> None:
    logging.getLogger("opentelemetry.exporter.weave").setLevel(logging.CRITICAL)
    listener, held = hanging_server()
    host, port = listener.getsockname()[:2]
    results = [measure_once(f"http://{host}:{port}") for _ in range(RUNS)]
    listener.close()
    for connection in held:
        connection.close()
    flushes = [flush for flush, _, _ in results]
    shutdowns = [shutdown for _, _, shutdown in results]
    print(f"server that never answers; HTTP timeout 60 s; {RUNS} runs, 100 spans queued each")
    print(
        f"force_flush(timeout_millis={FLUSH_TIMEOUT_MS}): "
        f"median {statistics.median(flushes):.3f} s, max {max(flushes):.3f} s, "
        f"returned {sorted({str(ok) for _, ok, _ in results})}"
    )
    print(
        f"shutdown() with export_timeout_millis={EXPORT_TIMEOUT_MS}: median"
        f" {statistics.median(shutdowns):.3f} s, max {max(shutdowns):.3f} s"
    )


if __name__ == "__main__":
    main()
