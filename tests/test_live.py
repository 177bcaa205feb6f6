"""Long-running spans: shown as running while open, one call once ended, never running for ever.

``LiveCalls`` on its own runs on a fake clock; the rest is a real ``TracerProvider`` exporting
over real HTTP to the local receiver (its v2 ``call/start`` and ``call/end``, which answer 404
for an end without its start) or to scripted servers.
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import weakref
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Tracer

from opentelemetry.exporter.weave._call import WeaveCall
from opentelemetry.exporter.weave._live import PROCESS_EXIT, LiveCalls
from opentelemetry.exporter.weave._mapping import span_to_call
from opentelemetry.exporter.weave._stats import CounterName
from opentelemetry.exporter.weave._transport import PostResult
from opentelemetry.exporter.weave.testing import LocalWeaveServer

from .fault_server import Reply, ScriptedServer
from .helpers import (
    API_KEY,
    NO_WAIT_RETRIES,
    PROJECT,
    FakeClock,
    RecordingPoster,
    make_processor,
    make_tracer,
    wait_until,
)

ENTITY, NAME = PROJECT.split("/")
V2_START, V2_END = f"/v2/{PROJECT}/call/start", f"/v2/{PROJECT}/call/end"
COMPLETE = f"/v2/{PROJECT}/calls/complete"
_projects = itertools.count()
THRESHOLD = 0.3  # seconds, for the tests on a real clock


# --- LiveCalls alone, on a fake clock ---------------------------------------------------------


class Counts(dict[str, int]):
    def add(self, name: CounterName, count: int) -> None:
        self[name] = self.get(name, 0) + count


def live_calls(poster: RecordingPoster, clock: FakeClock, counts: Counts) -> LiveCalls:
    return LiveCalls(
        poster,
        after_seconds=10,
        watch_open_spans=False,
        entity=ENTITY,
        project=NAME,
        monotonic=clock.monotonic,
        count=counts.add,
    )


def open_span(tracer_name: str = "open") -> tuple[Any, ReadableSpan]:
    provider, tracer = make_tracer()
    span = tracer.start_span(tracer_name)
    return provider, span


def call_of(span: ReadableSpan) -> WeaveCall:
    return span_to_call(span, PROJECT)


def test_a_span_is_due_once_past_the_threshold_and_only_once() -> None:
    clock, poster, counts = FakeClock(), RecordingPoster(), Counts()
    live = live_calls(poster, clock, counts)
    _, span = open_span()
    live.span_started(span)
    clock.advance(9.9)
    assert live.due() == []
    clock.advance(0.2)
    assert live.due() == [span]
    assert live.due() == []  # given out once
    live.send_start(call_of(span), span, deadline=clock.monotonic() + 5)
    assert poster.paths() == [V2_START]
    assert live.is_running(call_of(span))
    assert counts == {"calls_started_early": 1}


def test_an_ended_span_is_never_due() -> None:
    clock, counts = FakeClock(), Counts()
    live = live_calls(RecordingPoster(), clock, counts)
    _, span = open_span()
    live.span_started(span)
    span.end()  # type: ignore[attr-defined]
    clock.advance(60)
    assert live.due() == []


def test_a_span_not_sampled_is_never_due() -> None:
    # Recorded (processors see it) but not sampled: never exported, so never shown running.
    clock, counts = FakeClock(), Counts()
    live = live_calls(RecordingPoster(), clock, counts)
    provider = TracerProvider(sampler=_RecordOnly())
    span = provider.get_tracer("test").start_span("recorded only")
    sampled = open_span()[1]
    for started in (span, sampled):
        live.span_started(started)
    clock.advance(60)
    assert live.due() == [sampled]
    assert live.due() == []  # and the other one not held on to


class _RecordOnly(Sampler):
    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        return SamplingResult(Decision.RECORD_ONLY)

    def get_description(self) -> str:
        return "record only"


def test_a_start_not_acknowledged_is_not_running() -> None:
    clock, counts = FakeClock(), Counts()
    answers = iter([PostResult(400, "bad"), PostResult(None, "timed out", retryable=True)])
    live = live_calls(RecordingPoster(lambda path, body: next(answers)), clock, counts)
    _, refused = open_span("refused")
    _, unanswered = open_span("unanswered")
    live.send_start(call_of(refused), refused, deadline=clock.monotonic() + 5)
    live.send_start(call_of(unanswered), unanswered, deadline=clock.monotonic() + 5)
    # Their whole calls go once they end: an end alone could be lost by a server that answers
    # 200 to an end without its start.
    assert not live.is_running(call_of(refused))
    assert not live.is_running(call_of(unanswered))
    assert counts == {}


def test_no_v2_single_call_routes_means_v1_start_and_end() -> None:
    clock, counts = FakeClock(), Counts()

    def answer(path: str, body: bytes) -> PostResult:
        return PostResult(404, "no route") if path.startswith("/v2/") else PostResult(200)

    poster = RecordingPoster(answer)
    live = live_calls(poster, clock, counts)
    _, span = open_span()
    call = call_of(span)
    live.send_start(call, span, deadline=clock.monotonic() + 5)
    report, start_missing = live.send_ends([call], deadline=clock.monotonic() + 5)
    assert poster.paths() == [V2_START, "/call/start", "/call/end"]
    assert (report.delivered, start_missing) == (1, [])
    assert counts == {"calls_started_early": 1, "live_ends_matched": 1}


def test_an_end_whose_start_is_missing_is_handed_back_whole() -> None:
    clock, counts = FakeClock(), Counts()
    poster = RecordingPoster(lambda path, body: PostResult(404 if path == V2_END else 200))
    live = live_calls(poster, clock, counts)
    _, span = open_span()
    call = call_of(span)
    live.send_start(call, span, deadline=clock.monotonic() + 5)
    report, start_missing = live.send_ends([call], deadline=clock.monotonic() + 5)
    assert (report.delivered, report.failures, start_missing) == (0, (), [call])
    assert not live.is_running(call)


def test_the_open_spans_watched_are_bounded() -> None:
    clock, counts = FakeClock(), Counts()
    live = live_calls(RecordingPoster(), clock, counts)
    _, tracer = make_tracer()
    spans = [tracer.start_span(f"open {number}") for number in range(10_050)]
    for span in spans:
        live.span_started(span)  # type: ignore[arg-type]
    clock.advance(60)
    assert len(live.due()) == 10_000  # the rest are sent once ended, as short spans are


# --- Through a real TracerProvider and real HTTP ----------------------------------------------


def live_processor(url: str, project: str, **options: Any) -> Any:
    return make_processor(
        url, project=project, live_after_seconds=THRESHOLD, _retry_policy=NO_WAIT_RETRIES, **options
    )


def new_project() -> str:
    return f"test-entity/live-{next(_projects)}"


def test_an_ended_span_is_not_held_until_its_batch_is_exported(
    receiver: LocalWeaveServer,
) -> None:
    # Watched from its start, given up at its end: else the live span (the app's, not the
    # snapshot the queue holds) would wait with every span queued, for the collector to walk.
    # No batch exported meanwhile; live calls on by default.
    processor = make_processor(receiver.url, schedule_delay_millis=600_000)
    provider, tracer = make_tracer(processor)
    with tracer.start_as_current_span("step") as span:
        watched = weakref.ref(span)
    del span
    gc.collect()

    assert watched() is None
    provider.shutdown()
    assert [call["op_name"] for call in receiver.calls(PROJECT)] == ["step"]


def test_a_long_span_shows_as_running_then_as_one_finished_call(
    receiver: LocalWeaveServer,
) -> None:
    project = new_project()
    processor = live_processor(receiver.url, project)
    provider, tracer = make_tracer(processor)
    with tracer.start_as_current_span("agent run", attributes={"input": "plan a trip"}) as span:
        wait_until(lambda: len(receiver.calls(project)) == 1)  # while it is still open
        (running,) = receiver.calls(project)
        assert (running["display_name"], running["ended_at"]) == ("agent run", None)
        assert running["inputs"] == {"input": "plan a trip"}
        span.set_attribute("output", "done")
    provider.shutdown()
    (finished,) = receiver.calls(project)
    assert finished["id"] == running["id"]
    assert finished["ended_at"] is not None
    assert finished["output"] == "done"
    assert receiver.start_writes(project) == {running["id"]: 1}
    assert receiver.end_writes(project) == {running["id"]: 1}
    stats = processor.stats()
    assert (stats.calls_started_early, stats.live_ends_matched, stats.calls_exported) == (1, 1, 1)


def test_only_the_parent_is_live_and_its_end_carries_the_subtree(
    receiver: LocalWeaveServer,
) -> None:
    project = new_project()
    processor = live_processor(receiver.url, project)
    provider, tracer = make_tracer(processor)
    with tracer.start_as_current_span("agent"):
        wait_until(lambda: len(receiver.calls(project)) == 1)
        with tracer.start_as_current_span(
            "chat",
            attributes={"gen_ai.response.model": "m", "gen_ai.usage.input_tokens": 5},
        ):
            pass
    provider.shutdown()
    calls = {call["display_name"]: call for call in receiver.calls(project)}
    assert calls["chat"]["parent_id"] == calls["agent"]["id"]
    assert calls["agent"]["summary"]["usage"]["m"]["input_tokens"] == 5
    assert calls["agent"]["summary"]["status_counts"] == {"success": 2, "error": 0}
    assert set(receiver.start_writes(project).values()) == {1}
    assert processor.stats().calls_started_early == 1  # the child was short: sent whole


def test_a_span_ending_while_its_start_is_retried_is_one_call() -> None:
    with ScriptedServer() as server:
        # The start's first answer comes after the span has ended; then it is retried.
        server.script(V2_START, [Reply(503, delay_seconds=1.0), Reply(200)])
        processor = live_processor(server.url, PROJECT, write_mode="calls_complete")
        provider, tracer = make_tracer(processor)
        with tracer.start_as_current_span("slow"):
            wait_until(lambda: V2_START in server.paths())
        provider.shutdown()
        paths = server.paths()
    assert paths == [V2_START, V2_START, V2_END]  # one start (retried), then its end


def test_an_end_answered_404_sends_the_whole_call_once() -> None:
    with ScriptedServer() as server:
        server.script(V2_END, [Reply(404, {"reason": "no start found"})])
        processor = live_processor(server.url, PROJECT, write_mode="calls_complete")
        provider, tracer = make_tracer(processor)
        with tracer.start_as_current_span("lost start"):
            wait_until(lambda: V2_START in server.paths())
        provider.shutdown()
        paths = server.paths()
        (complete,) = [seen.json() for seen in server.seen if seen.path == COMPLETE]
    assert paths == [V2_START, V2_END, COMPLETE]
    assert [call["display_name"] for call in complete["batch"]] == ["lost start"]
    assert processor.stats().calls_exported == 1


def test_running_calls_are_ended_at_shutdown(receiver: LocalWeaveServer) -> None:
    project = new_project()
    processor = live_processor(receiver.url, project)
    provider, tracer = make_tracer(processor)
    tracer.start_span("never ends")
    wait_until(lambda: len(receiver.calls(project)) == 1)
    provider.shutdown()
    (call,) = receiver.calls(project)
    assert call["ended_at"] is not None
    assert json.loads(call["exception"]) == json.loads(PROCESS_EXIT)
    assert processor.stats().calls_ended_at_exit == 1


def exit_with_open_spans(receiver: LocalWeaveServer, project: str, **env: str) -> None:
    script = textwrap.dedent(
        """
        import time
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.exporter.weave import WeaveSpanProcessor

        provider = TracerProvider(shutdown_on_exit=False)  # only our own atexit hook runs
        provider.add_span_processor(WeaveSpanProcessor(schedule_delay_millis=50))
        tracer = provider.get_tracer("exit")
        run = tracer.start_span("agent run")  # never ended: the process dies first
        with tracer.start_as_current_span("finished step", context=__import__(
            "opentelemetry.trace", fromlist=["set_span_in_context"]
        ).set_span_in_context(run)):
            pass
        time.sleep(float(__import__("os").environ["LINGER"]))
        """
    )
    environment = {
        **os.environ,
        "WANDB_API_KEY": API_KEY,
        "WEAVE_PROJECT": project,
        "WF_TRACE_SERVER_URL": receiver.url,
        "WEAVE_OTEL_OP_REFS": "off",
        **env,
    }
    subprocess.run([sys.executable, "-c", script], env=environment, check=True, timeout=60)


def test_exit_ends_a_running_span(receiver: LocalWeaveServer) -> None:
    project = new_project()
    exit_with_open_spans(receiver, project, WEAVE_OTEL_LIVE_AFTER="0.2", LINGER="1.0")
    calls = {call["display_name"]: call for call in receiver.calls(project)}
    assert set(calls) == {"agent run", "finished step"}
    run = calls["agent run"]
    assert json.loads(run["exception"])["type"] == "ProcessExit"
    assert calls["finished step"]["parent_id"] == run["id"]
    assert run["summary"]["status_counts"] == {"success": 1, "error": 1}


def test_exit_sends_a_never_started_open_span_when_asked(receiver: LocalWeaveServer) -> None:
    project = new_project()
    exit_with_open_spans(
        receiver,
        project,
        WEAVE_OTEL_LIVE_AFTER="off",
        WEAVE_OTEL_END_OPEN_SPANS_AT_EXIT="on",
        LINGER="0",
    )
    calls = {call["display_name"]: call for call in receiver.calls(project)}
    assert set(calls) == {"agent run", "finished step"}
    assert json.loads(calls["agent run"]["exception"])["type"] == "ProcessExit"
    assert calls["finished step"]["parent_id"] == calls["agent run"]["id"]


def test_without_the_setting_a_never_started_open_span_is_not_sent(
    receiver: LocalWeaveServer,
) -> None:
    project = new_project()
    exit_with_open_spans(receiver, project, WEAVE_OTEL_LIVE_AFTER="off", LINGER="0")
    assert [call["display_name"] for call in receiver.calls(project)] == ["finished step"]


def test_no_call_shows_as_running_when_off(receiver: LocalWeaveServer) -> None:
    project = new_project()
    processor = make_processor(receiver.url, project=project, live_after_seconds=None)
    provider, tracer = make_tracer(processor)
    emit_slow(tracer)
    provider.shutdown()
    assert processor.stats().calls_started_early == 0
    assert len(receiver.calls(project)) == 1


def emit_slow(tracer: Tracer) -> None:
    with tracer.start_as_current_span("slow"):
        threading.Event().wait(2 * THRESHOLD)


def test_sigterm_ends_running_calls_when_asked(receiver: LocalWeaveServer) -> None:
    project = new_project()
    script = textwrap.dedent(
        """
        import time
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.exporter.weave import WeaveSpanProcessor

        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(WeaveSpanProcessor(schedule_delay_millis=50))
        provider.get_tracer("sigterm").start_span("served until killed")
        time.sleep(60)
        """
    )
    environment = {
        **os.environ,
        "WANDB_API_KEY": API_KEY,
        "WEAVE_PROJECT": project,
        "WF_TRACE_SERVER_URL": receiver.url,
        "WEAVE_OTEL_OP_REFS": "off",
        "WEAVE_OTEL_LIVE_AFTER": "0.2",
        "WEAVE_OTEL_END_ON_SIGTERM": "on",
    }
    child = subprocess.Popen([sys.executable, "-c", script], env=environment)
    try:
        wait_until(lambda: len(receiver.calls(project)) == 1, seconds=30)
        child.send_signal(signal.SIGTERM)
        # The signal's default follows the shutdown: the process ends by SIGTERM.
        assert child.wait(timeout=30) == -signal.SIGTERM
    finally:
        child.kill()
    (call,) = receiver.calls(project)
    assert json.loads(call["exception"])["type"] == "ProcessExit"
