"""The processor end to end: a real TracerProvider, real HTTP to the local receiver.

What only the whole chain shows: calls complete and linked, an odd span costing nothing else,
shutdown and interpreter exit delivering the queue, and forked workers exporting their own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from opentelemetry.trace import Tracer

from opentelemetry.exporter.weave.testing import LocalWeaveServer

from .chat_oracle import chat_errors
from .helpers import API_KEY, PROJECT, make_processor, make_tracer


def emit_agent(tracer: Tracer) -> None:
    with tracer.start_as_current_span("agent", attributes={"wandb.display_name": "Agent"}):
        with tracer.start_as_current_span(
            "chat gpt-4o",
            attributes={
                "gen_ai.response.model": "gpt-4o",
                "gen_ai.usage.input_tokens": 10,
                "gen_ai.usage.output_tokens": 4,
                "gen_ai.input.messages": json.dumps([{"role": "user", "content": "2+2?"}]),
                "gen_ai.output.messages": json.dumps([{"role": "assistant", "content": "4"}]),
            },
        ):
            pass
        try:
            with tracer.start_as_current_span("tool.lookup"):
                raise LookupError("no such city")
        except LookupError:
            pass


def test_spans_arrive_as_complete_calls(receiver: LocalWeaveServer) -> None:
    project = "test-entity/end-to-end"
    processor = make_processor(receiver.url, project=project, op_refs=True)
    provider, tracer = make_tracer(processor)
    emit_agent(tracer)
    assert processor.force_flush(10_000)
    provider.shutdown()

    calls = {call["display_name"]: call for call in receiver.calls(project)}
    assert set(calls) == {"Agent", "chat gpt-4o", "tool.lookup"}
    agent, chat, tool = calls["Agent"], calls["chat gpt-4o"], calls["tool.lookup"]
    ops = {op["object_id"]: op["digest"] for op in receiver.ops(project)}
    assert set(ops) == {"agent", "chat_gpt-4o", "tool.lookup"}
    for call, op in ((agent, "agent"), (chat, "chat_gpt-4o"), (tool, "tool.lookup")):
        assert call["op_name"] == f"weave:///{project}/op/{op}:{ops[op]}"
    assert agent["parent_id"] is None
    assert chat["parent_id"] == tool["parent_id"] == agent["id"]
    assert chat["inputs"] == {"messages": [{"role": "user", "content": "2+2?"}]}
    assert chat["output"]["choices"][0]["message"] == {"role": "assistant", "content": "4"}
    assert chat_errors(chat) == []
    assert chat["attributes"]["weave"] == {"kind": "llm"}
    assert chat["summary"]["usage"] == {
        "gpt-4o": {"input_tokens": 10, "output_tokens": 4, "total_tokens": 14, "requests": 1}
    }
    assert json.loads(tool["exception"])["type"] == "LookupError"
    assert tool["summary"]["status_counts"] == {"success": 0, "error": 1}
    assert agent["exception"] is None
    assert all(call["ended_at"] is not None for call in calls.values())
    assert receiver.orphan_ends(project) == []
    stats = processor.stats()
    assert (stats.calls_exported, stats.ops_created, stats.ops_fallback) == (3, 3, 0)


def test_odd_span_does_not_cost_its_batch(receiver: LocalWeaveServer) -> None:
    processor = make_processor(receiver.url)
    provider, tracer = make_tracer(processor)
    with tracer.start_as_current_span("before"):
        pass
    with tracer.start_as_current_span("odd") as span:
        span.set_attribute("blob", b"\x00\xff\xfe")
        span.set_attribute("nan", float("nan"))
        span.set_attribute("input.value", "[" * 5000 + "]" * 5000)
        span.set_attribute("huge", "y" * 2_000_000)
    with tracer.start_as_current_span("after"):
        pass
    assert processor.force_flush(10_000)
    provider.shutdown()
    calls = {call["op_name"]: call for call in receiver.calls()}
    assert sorted(calls) == ["after", "before", "odd"]
    odd = calls["odd"]["attributes"]
    assert (odd["blob"], odd["nan"]) == ("\x00\\xff\\xfe", "NaN")
    assert odd["huge"].endswith("[truncated 1000000 chars]")


def test_shutdown_delivers_what_is_queued(receiver: LocalWeaveServer) -> None:
    processor = make_processor(receiver.url, schedule_delay_millis=60_000)
    provider, tracer = make_tracer(processor)
    for index in range(5):
        with tracer.start_as_current_span(f"queued-{index}"):
            pass
    provider.shutdown()
    assert len(receiver.calls()) == 5


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_preforking_server_children_export_their_own_spans_only(
    receiver: LocalWeaveServer,
) -> None:
    """A preloading server: the parent has spans queued, then forks its workers."""
    processor = make_processor(receiver.url, schedule_delay_millis=60_000)
    provider, tracer = make_tracer(processor)
    for index in range(3):
        with tracer.start_as_current_span(f"parent-before-fork-{index}"):
            pass  # still queued when the workers are forked
    children = []
    for worker in range(3):
        pid = os.fork()
        if pid == 0:  # a worker
            code = 1
            try:
                with tracer.start_as_current_span(f"from-worker-{worker}"):
                    pass
                ok = processor.force_flush(10_000)
                stats = processor.stats()
                code = 0 if ok and (stats.spans_enqueued, stats.calls_exported) == (1, 1) else 2
            finally:
                os._exit(code)
        children.append(pid)
    for pid in children:
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    with tracer.start_as_current_span("parent-after-fork"):
        pass
    assert processor.force_flush(10_000)
    provider.shutdown()
    names = sorted(call["op_name"] for call in receiver.calls())
    assert names == sorted(
        [f"from-worker-{worker}" for worker in range(3)]
        + [f"parent-before-fork-{index}" for index in range(3)]
        + ["parent-after-fork"]
    )
    assert sorted(receiver.start_writes().values()) == [1] * 7  # nothing sent twice
    assert processor.stats().calls_exported == 4  # the parent's own, not its workers'


def test_queued_spans_are_delivered_at_interpreter_exit(receiver: LocalWeaveServer) -> None:
    script = textwrap.dedent(
        """
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.exporter.weave import WeaveSpanProcessor

        provider = TracerProvider(shutdown_on_exit=False)  # only our own atexit hook runs
        provider.add_span_processor(WeaveSpanProcessor(schedule_delay_millis=60_000))
        with provider.get_tracer("exit").start_as_current_span("last-words"):
            pass
        """
    )
    env = {
        **os.environ,
        "WANDB_API_KEY": API_KEY,
        "WEAVE_PROJECT": PROJECT,
        "WF_TRACE_SERVER_URL": receiver.url,
    }
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    ((op_name, display_name),) = [
        (call["op_name"], call["display_name"]) for call in receiver.calls()
    ]
    assert display_name == "last-words"
    assert op_name.startswith(f"weave:///{PROJECT}/op/last-words:")  # op refs: on by default
