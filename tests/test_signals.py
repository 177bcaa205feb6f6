"""A signal handler that calls ``shutdown()`` or ``force_flush()`` never hangs the app.

The handler runs on the thread it interrupted, wherever that thread is: inside ``on_end``,
``force_flush`` or ``shutdown``. Each case runs in a child process with real signals, so a
deadlock fails its test at the timeout instead of hanging the suite.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs POSIX signals")

ROOT = Path(__file__).resolve().parent.parent
HANG_SECONDS = 120
"""Far longer than any case takes: reaching it means the child hung."""

CHILD = textwrap.dedent(
    """
    import os, signal, sys

    from opentelemetry.exporter.weave import WeaveSpanProcessor
    from tests.helpers import FakeBatchExporter, FakeClock, make_tracer

    case, action = sys.argv[1], sys.argv[2]
    exporter = FakeBatchExporter(
        FakeClock(), schedule_delay_millis=60_000, max_queue_size=64, max_export_batch_size=8
    )
    processor = WeaveSpanProcessor(_exporter=exporter)
    provider, tracer = make_tracer(processor)
    handled = []
    flushed = []

    def handler(signum, frame):
        handled.append(signum)
        if action == "shutdown":
            processor.shutdown()
        else:
            flushed.append(processor.force_flush(20_000))
        if signum == signal.SIGALRM:  # the next one, 0.2 ms after this handler returns
            signal.setitimer(signal.ITIMER_REAL, 0.0002)

    class Interrupting:
        # A span whose context raises the signal: the handler runs inside on_end.
        def __init__(self, span):
            self._span = span

        @property
        def context(self):
            os.kill(os.getpid(), signal.SIGUSR1)
            return self._span.context

    signal.signal(signal.SIGUSR1, handler)
    signal.signal(signal.SIGALRM, handler)
    span = tracer.start_span("s")
    span.end()
    calls = 1  # that end() handed the span over
    if case == "inside-on-end":
        processor.on_end(Interrupting(span))
        calls += 1
    else:
        # A signal 0.2 ms after the last was handled lands anywhere in the methods called.
        signal.setitimer(signal.ITIMER_REAL, 0.0002)
        while len(handled) < 100:
            if case == "on-end":
                processor.on_end(span)
                calls += 1
            elif case == "force-flush":
                flushed.append(processor.force_flush(20_000))
            else:
                processor.shutdown()
        signal.setitimer(signal.ITIMER_REAL, 0)
    processor.shutdown()
    stats = processor.stats()
    # Every span handed over ends exactly once: exported, or dropped and counted.
    ends = stats.calls_exported + stats.spans_dropped_queue_full
    assert ends + stats.spans_dropped_after_shutdown == calls, (stats, calls)
    # A flush interrupted by another is not made to wait for it: each is answered in time.
    assert all(flushed), flushed.count(False)
    print("handled", len(handled))
    """
)


def run_child(case: str, action: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CHILD, case, action],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=HANG_SECONDS,
        check=False,
    )


@pytest.mark.parametrize("action", ["shutdown", "force_flush"])
@pytest.mark.parametrize("case", ["inside-on-end", "on-end", "force-flush", "shutdown"])
def test_a_handler_interrupting_the_processor_does_not_hang(case: str, action: str) -> None:
    try:
        child = run_child(case, action)
    except subprocess.TimeoutExpired:
        pytest.fail(f"a {action}() signal handler hung the app inside {case}")
    assert child.returncode == 0, child.stderr
    assert child.stdout.startswith("handled "), child.stdout
