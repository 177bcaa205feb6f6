"""The OpenAI Agents SDK traced by OpenInference, on ``OpenAIChatCompletionsModel``.

The model is served by ``examples/canned_openai.py`` on 127.0.0.1. Two runs of ``weather_agent``
in one OpenInference session (``using_session``): turn 1 calls ``get_weather`` and answers;
turn 2's prompt makes the canned server refuse (HTTP 400), so the model call and the run fail.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import openai
from agents import Agent, OpenAIChatCompletionsModel, RunConfig, Runner, function_tool
from openinference.instrumentation import using_session
from openinference.instrumentation.openai_agents import OpenAIAgentsInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ..openai_server import FAIL_TRIGGER, CannedOpenAI
from .runtime import start_tracing

SESSION_ID = "agents-session-1"
REQUESTED_MODEL = "gpt-4o-mini"
CAPTURE_NAME = "openai_agents"


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def attach_capture(provider: TracerProvider) -> InMemorySpanExporter | None:
    """With ``WEAVE_TEST_CAPTURE=1``, also keep the raw spans for ``dump_capture``."""
    if os.environ.get("WEAVE_TEST_CAPTURE") != "1":
        return None
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return memory


def describe(span: ReadableSpan) -> dict[str, Any]:
    parent = span.parent
    return {
        "name": span.name,
        "kind": span.kind.name,
        "span_id": f"{span.context.span_id:016x}" if span.context else None,
        "trace_id": f"{span.context.trace_id:032x}" if span.context else None,
        "parent_span_id": f"{parent.span_id:016x}" if parent else None,
        "status": {"code": span.status.status_code.name, "description": span.status.description},
        "scope": span.instrumentation_scope.name if span.instrumentation_scope else None,
        "attributes": dict(span.attributes or {}),
        "events": [{"name": e.name, "attributes": dict(e.attributes or {})} for e in span.events],
    }


def dump_capture(memory: InMemorySpanExporter | None) -> None:
    if memory is None:
        return
    folder = Path(os.environ.get("WEAVE_TEST_CAPTURE_DIR", "/work/tasks/captures"))
    folder.mkdir(parents=True, exist_ok=True)
    spans = [describe(span) for span in memory.get_finished_spans()]
    (folder / f"{CAPTURE_NAME}.json").write_text(json.dumps(spans, indent=1, default=str))


def main() -> None:
    provider, _ = start_tracing()
    memory = attach_capture(provider)
    instrumentor = OpenAIAgentsInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    with CannedOpenAI() as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
        agent = Agent(
            name="weather_agent",
            instructions="Answer in one sentence.",
            model=OpenAIChatCompletionsModel(model=REQUESTED_MODEL, openai_client=client),
            tools=[get_weather],
        )
        config = RunConfig(workflow_name="weather workflow")
        with using_session(SESSION_ID):
            Runner.run_sync(agent, "What is the weather in Paris?", run_config=config)
            try:
                Runner.run_sync(agent, f"{FAIL_TRIGGER} on purpose", run_config=config)
            except openai.BadRequestError:
                pass
            else:
                raise AssertionError("the canned server should have refused turn 2")
    instrumentor.uninstrument()
    provider.shutdown()
    dump_capture(memory)


if __name__ == "__main__":
    main()
