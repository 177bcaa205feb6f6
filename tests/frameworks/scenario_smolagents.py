"""smolagents' ``ToolCallingAgent`` on a scripted ``Model``, traced by OpenInference.

Two runs in one OpenInference session (``using_session``): turn 1 calls ``get_weather`` and
then ``final_answer`` (two model requests); in turn 2 the tool refuses the city asked about
and the model answers anyway after seeing the error.
"""

from __future__ import annotations

import json
from typing import Any

import smolagents
from openinference.instrumentation import using_session
from openinference.instrumentation.smolagents import SmolagentsInstrumentor
from smolagents import ChatMessage, Model, ToolCallingAgent, tool
from smolagents.models import ChatMessageToolCall, ChatMessageToolCallFunction, MessageRole
from smolagents.monitoring import LogLevel, TokenUsage

from .runtime import start_tracing

SESSION_ID = "smol-session-1"
MODEL = "scripted-model-1"
UNKNOWN_CITY = "Atlantis"
CAPTURE_NAME = "smolagents"


class ScriptedModel(Model):
    """Calls ``get_weather`` for the city asked about, then ``final_answer`` with what it got.

    It decides by the last message only: with ``reset=False`` the memory holds turn 1 too.
    """

    def generate(
        self,
        messages: list[ChatMessage | dict[str, Any]],
        stop_sequences: list[str] | None = None,
        response_format: dict[str, str] | None = None,
        tools_to_call_from: list[Any] | None = None,
        **kwargs: Any,
    ) -> ChatMessage:
        last = messages[-1]
        text = json.dumps(last.dict() if isinstance(last, ChatMessage) else last)
        if "sunny in Paris" in text:
            name, arguments, usage = "final_answer", {"answer": "It is sunny in Paris."}, (45, 6)
        elif "no weather station" in text:
            name, arguments, usage = "final_answer", {"answer": "Nobody knows."}, (70, 5)
        elif UNKNOWN_CITY in text:
            name, arguments, usage = "get_weather", {"city": UNKNOWN_CITY}, (60, 8)
        else:
            name, arguments, usage = "get_weather", {"city": "Paris"}, (30, 8)
        call = ChatMessageToolCall(
            id=f"call_{name}_{usage[0]}",
            type="function",
            function=ChatMessageToolCallFunction(name=name, arguments=arguments),
        )
        return ChatMessage(
            role=MessageRole.ASSISTANT,
            content=None,
            tool_calls=[call],
            token_usage=TokenUsage(input_tokens=usage[0], output_tokens=usage[1]),
        )


@tool
def get_weather(city: str) -> str:
    """The weather in a city.

    Args:
        city: The city's name.
    """
    if city == UNKNOWN_CITY:
        raise LookupError(f"no weather station in {city}")
    return f"sunny in {city}"


def main() -> None:
    tracing = start_tracing(capture=CAPTURE_NAME)
    # The instrumentation wraps generate() of the Model classes smolagents exports, so a
    # custom Model is traced only when exported there too.
    smolagents.ScriptedModel = ScriptedModel  # type: ignore[attr-defined]
    instrumentor = SmolagentsInstrumentor()
    instrumentor.instrument(tracer_provider=tracing.provider)
    agent = ToolCallingAgent(
        tools=[get_weather],
        model=ScriptedModel(model_id=MODEL),
        name="weather_agent",
        max_steps=3,
        verbosity_level=LogLevel.OFF,
    )
    with using_session(SESSION_ID):
        agent.run("What is the weather in Paris?")
        # smolagents hands a tool's error back to the model, which then answers: the run
        # succeeds. (A model error is not used: the instrumentation never ends the run's span
        # when run() raises, so that trace would lose its root.)
        agent.run(f"And in {UNKNOWN_CITY}?", reset=False)
    instrumentor.uninstrument()
    tracing.finish()


if __name__ == "__main__":
    main()
