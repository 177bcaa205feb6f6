"""pydantic-ai with its own OpenTelemetry instrumentation, on a scripted ``FunctionModel``.

Two runs of ``weather_agent`` (instrumentation format 5, the default) in one conversation:
turn 1 calls ``get_weather`` for Paris and answers; turn 2 asks for a city the tool refuses, so
the tool span and the run fail. Then one run of ``legacy_agent`` in the deprecated format 2
with per-span usage names (``use_aggregated_usage_attribute_names=False``): its agent span
carries the run's totals beside its chat spans' own, the case that doubles usage.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import TracerProvider
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

from .runtime import expect_failure, start_tracing

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


def main() -> None:
    tracing = start_tracing(capture=CAPTURE_NAME)
    weather = make_agent(tracing.provider, "weather_agent")
    first = weather.run_sync("What is the weather in Paris?", conversation_id=CONVERSATION_ID)
    expect_failure(
        LookupError,
        weather.run_sync,
        f"And in {UNKNOWN_CITY}?",
        message_history=first.all_messages(),
        conversation_id=CONVERSATION_ID,
    )
    legacy = make_agent(
        tracing.provider, "legacy_agent", version=2, use_aggregated_usage_attribute_names=False
    )
    legacy.run_sync("What is the weather in Paris?")
    tracing.finish()


if __name__ == "__main__":
    main()
