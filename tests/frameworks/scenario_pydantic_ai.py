"""pydantic-ai with its own OpenTelemetry instrumentation, on a scripted ``FunctionModel``.

Two runs of ``weather_agent`` (instrumentation format 5, the default) in one conversation:
turn 1 calls ``get_weather`` for Paris and answers; turn 2 asks for a city the tool refuses, so
the tool span and the run fail. Then one run of ``legacy_agent`` in the deprecated format 2
with per-span usage names (``use_aggregated_usage_attribute_names=False``): its agent span
carries the run's totals beside its chat spans' own, the case that doubles usage.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic_ai import Agent
from pydantic_ai.capabilities.instrumentation import Instrumentation
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.models.instrumented import InstrumentationSettings
from pydantic_ai.usage import RequestUsage

from .runtime import start_tracing

MODEL = "canned-model"
CONVERSATION_ID = "pyd-conversation-1"
UNKNOWN_CITY = "Atlantis"
TOOL_CALL_USAGE = RequestUsage(input_tokens=11, output_tokens=5)
ANSWER_USAGE = RequestUsage(input_tokens=20, output_tokens=4)
CAPTURE_NAME = "pydantic_ai"


def scripted_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """Asks for the weather of the city the user named, then answers with the tool's result."""
    last = messages[-1].parts[-1]
    if isinstance(last, UserPromptPart):
        city = UNKNOWN_CITY if UNKNOWN_CITY in str(last.content) else "Paris"
        call = ToolCallPart("get_weather", {"city": city}, tool_call_id="call_weather_1")
        return ModelResponse(parts=[call], usage=TOOL_CALL_USAGE)
    if isinstance(last, ToolReturnPart):
        return ModelResponse(parts=[TextPart(f"It is {last.content}.")], usage=ANSWER_USAGE)
    raise AssertionError(f"unexpected last part {last!r}")


def get_weather(city: str) -> str:
    """The weather in a city."""
    if city == UNKNOWN_CITY:
        raise LookupError(f"no weather station in {city}")
    return f"sunny in {city}"


def make_agent(provider: TracerProvider, name: str, **settings: Any) -> Agent[None, str]:
    instrumentation = InstrumentationSettings(tracer_provider=provider, **settings)
    return Agent(
        FunctionModel(scripted_model, model_name=MODEL),
        name=name,
        instructions="Answer in one sentence.",
        tools=[get_weather],
        capabilities=[Instrumentation(settings=instrumentation)],
    )


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
    weather = make_agent(provider, "weather_agent")
    first = weather.run_sync("What is the weather in Paris?", conversation_id=CONVERSATION_ID)
    try:
        weather.run_sync(
            f"And in {UNKNOWN_CITY}?",
            message_history=first.all_messages(),
            conversation_id=CONVERSATION_ID,
        )
    except LookupError:
        pass
    else:
        raise AssertionError("the tool should have failed the second turn")
    legacy = make_agent(
        provider, "legacy_agent", version=2, use_aggregated_usage_attribute_names=False
    )
    legacy.run_sync("What is the weather in Paris?")
    provider.shutdown()
    dump_capture(memory)


if __name__ == "__main__":
    main()
