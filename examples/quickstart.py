"""Quickstart: trace a tiny "LLM app" with OpenTelemetry and see its spans as Weave calls.

    python examples/quickstart.py

By default this needs no account: it starts a local, Weave-compatible receiver in this
process, exports the app's spans to it, and prints the calls it stored as a table.

With ``WANDB_API_KEY`` and ``WEAVE_PROJECT=entity/project`` set, it sends the same spans to
W&B Weave instead and prints where to look.

The "LLM" is fake (no network, no API key for a model provider): each call just sets the
attributes a real OpenTelemetry GenAI instrumentation would set.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind

from opentelemetry.exporter.weave import ConfigError, WeaveSpanProcessor
from opentelemetry.exporter.weave.testing import LocalWeaveServer, call_status

LOCAL_PROJECT = "demo/quickstart"
LOCAL_API_KEY = "local-demo-key"
CONVERSATION = "demo-conversation"

tracer = trace.get_tracer("quickstart")


# --- The app: an agent that asks an LLM, calls a (failing) tool, and asks the LLM again ------


def chat(model: str, messages: list[dict[str, Any]], reply: str, usage: tuple[int, int]) -> str:
    """A fake chat completion, traced the way OpenTelemetry's GenAI conventions describe."""
    with tracer.start_as_current_span(f"chat {model}", kind=SpanKind.CLIENT) as span:
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.provider.name", "openai")
        span.set_attribute("gen_ai.request.model", model)
        span.set_attribute("gen_ai.input.messages", json.dumps(messages))
        time.sleep(0.003)  # "the model thinks"
        span.set_attribute("gen_ai.response.model", f"{model}-2024-07-18")
        span.set_attribute("gen_ai.usage.input_tokens", usage[0])
        span.set_attribute("gen_ai.usage.output_tokens", usage[1])
        output = [{"role": "assistant", "parts": [{"type": "text", "content": reply}]}]
        span.set_attribute("gen_ai.output.messages", json.dumps(output))
        return reply


def search_docs(query: str) -> str:
    """A tool that fails: the span records the exception and gets status ERROR."""
    with tracer.start_as_current_span("execute_tool search_docs") as span:
        span.set_attribute("gen_ai.operation.name", "execute_tool")
        span.set_attribute("gen_ai.tool.name", "search_docs")
        span.set_attribute("input", json.dumps({"query": query}))  # becomes the call's inputs
        time.sleep(0.001)
        raise TimeoutError("search index did not answer within 1 ms")


def run_agent(question: str, answer: str) -> str:
    """One turn of the conversation: the agent's span carries the conversation's id."""
    with tracer.start_as_current_span("agent.run") as span:
        span.set_attribute("wandb.display_name", f"Support agent: {question}")
        span.set_attribute("gen_ai.operation.name", "invoke_agent")
        span.set_attribute("gen_ai.conversation.id", CONVERSATION)
        span.set_attribute("input", json.dumps({"question": question}))
        user = {"role": "user", "parts": [{"type": "text", "content": question}]}
        query = chat("gpt-4o-mini", [user], "search_docs('opening hours')", (42, 9))
        try:
            context = search_docs(query)
        except TimeoutError:
            context = "(the search failed; answer from what you know)"
        system = {"role": "system", "parts": [{"type": "text", "content": context}]}
        answer = chat("gpt-4o-mini", [system, user], answer, (61, 14))
        span.set_attribute("output", answer)  # becomes the call's output
        return answer


# --- Wiring: a real TracerProvider with the Weave processor ---------------------------------


def traced_run(processor: WeaveSpanProcessor) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "quickstart"}))
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)

    print("agent says:", run_agent("When are you open?", "We are open 9:00-17:00, Mon-Fri."))
    print("agent says:", run_agent("And on Sundays?", "We are closed on Sundays."))

    provider.shutdown()  # exports everything still queued, then stops the processor


def run_locally() -> int:
    with LocalWeaveServer(api_key=LOCAL_API_KEY) as server:
        processor = WeaveSpanProcessor(
            api_key=LOCAL_API_KEY,
            project=LOCAL_PROJECT,
            server_url=server.url,
            schedule_delay_millis=100,
        )
        traced_run(processor)
        calls = server.calls(LOCAL_PROJECT)
        threads = server.threads(LOCAL_PROJECT)
        ops = server.ops(LOCAL_PROJECT)

    stats = processor.stats()
    if not calls:
        print(f"\nERROR: no calls arrived at the local receiver; export stats: {stats}")
        return 1
    print(f"\n{len(calls)} calls stored by the local receiver ({processor.settings.server_url}):\n")
    print_calls(calls)
    print(f"\n{len(ops)} ops (the Op filter lists them); threads, as the Threads view lists them:")
    for thread in threads:
        first_input = thread["first_input"].get("question")
        print(f"  {thread['thread_id']}: {thread['turn_count']} turns, first input", end=" ")
        print(f"{first_input!r}, last output {thread['last_output']!r}")
    if stats.calls_failed or len(calls) < stats.spans_enqueued:
        print(f"\nERROR: expected {stats.spans_enqueued} calls; export stats: {stats}")
        return 1
    print("\nSet WANDB_API_KEY and WEAVE_PROJECT=entity/project to send these to W&B Weave.")
    return 0


def run_against_weave() -> int:
    try:
        processor = WeaveSpanProcessor()  # every setting from the environment
    except ConfigError as exc:
        print(f"Configuration error: {exc}")
        return 2
    traced_run(processor)

    stats, settings = processor.stats(), processor.settings
    print(f"\nSent {stats.calls_exported} calls ({stats.calls_failed} failed)", end=" ")
    print(f"to project {settings.project_id} at {settings.server_url}.")
    if settings.server_url == "https://trace.wandb.ai":
        print(f"Look at https://wandb.ai/{settings.entity}/{settings.project}/weave/traces")
    else:
        print(f"Look in the Weave UI of that server, project {settings.project_id}.")
    return 0 if stats.calls_exported and not stats.calls_failed else 1


# --- Printing the calls as Weave shows them -------------------------------------------------


def print_calls(calls: list[dict[str, Any]]) -> None:
    rows = [("name", "op", "kind", "turn", "status", "model", "tokens", "latency")]
    for call, depth in walk_trees(calls):
        usage = call["summary"].get("usage") or {}
        tokens = sum(entry.get("total_tokens") or 0 for entry in usage.values())
        rows.append(
            (
                "  " * depth + (call["display_name"] or call["op_name"]),
                op_of(call["op_name"]),
                (call["attributes"].get("weave") or {}).get("kind", "-"),
                "turn" if call["turn_id"] == call["id"] else "",
                call_status(call),
                ", ".join(usage) or "-",
                str(tokens) if usage else "-",
                f"{latency_ms(call):.1f} ms" if call["ended_at"] else "-",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    numeric = {6, 7}  # right-aligned
    for row in rows:
        cells = [
            f"{cell:>{widths[column]}}" if column in numeric else f"{cell:<{widths[column]}}"
            for column, cell in enumerate(row)
        ]
        print("  ".join(cells).rstrip())


def op_of(op_name: str) -> str:
    """The op's name in a ref ``weave:///entity/project/op/name:digest``."""
    if op_name.startswith("weave:///"):
        return op_name.rsplit("/op/", 1)[-1].split(":", 1)[0]
    return f"{op_name} (plain name)"


def latency_ms(call: dict[str, Any]) -> float:
    started, ended = (parse_time(call["started_at"]), parse_time(call["ended_at"]))
    return (ended - started).total_seconds() * 1000


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def walk_trees(calls: list[dict[str, Any]]) -> list[tuple[dict[str, Any], int]]:
    """Every call with its depth, parents before children, siblings in start order."""
    ids = {call["id"] for call in calls}
    children: dict[str | None, list[dict[str, Any]]] = {}
    for call in sorted(calls, key=lambda call: call["started_at"]):
        parent = call["parent_id"] if call["parent_id"] in ids else None
        children.setdefault(parent, []).append(call)

    ordered: list[tuple[dict[str, Any], int]] = []

    def visit(parent: str | None, depth: int) -> None:
        for child in children.get(parent, []):
            ordered.append((child, depth))
            visit(child["id"], depth + 1)

    visit(None, 0)
    return ordered


def main() -> int:
    if os.environ.get("WANDB_API_KEY") and os.environ.get("WEAVE_PROJECT"):
        return run_against_weave()
    return run_locally()


if __name__ == "__main__":
    sys.exit(main())
