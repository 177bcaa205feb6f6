"""The OpenAI Agents SDK traced by OpenInference, on ``OpenAIChatCompletionsModel``.

The model is served by ``examples/canned_openai.py`` on 127.0.0.1. Two runs of ``weather_agent``
in one OpenInference session (``using_session``): turn 1 calls ``get_weather`` and answers;
turn 2's prompt makes the canned server refuse (HTTP 400), so the model call and the run fail.
"""

from __future__ import annotations

import openai
from agents import Agent, OpenAIChatCompletionsModel, RunConfig, Runner, function_tool
from openinference.instrumentation import using_session
from openinference.instrumentation.openai_agents import OpenAIAgentsInstrumentor

from ..openai_server import FAIL_TRIGGER, CannedOpenAI
from .runtime import expect_failure, start_tracing

SESSION_ID = "agents-session-1"
REQUESTED_MODEL = "gpt-4o-mini"
CAPTURE_NAME = "openai_agents"


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def main() -> None:
    tracing = start_tracing(capture=CAPTURE_NAME)
    instrumentor = OpenAIAgentsInstrumentor()
    instrumentor.instrument(tracer_provider=tracing.provider)
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
            expect_failure(
                openai.BadRequestError,
                Runner.run_sync,
                agent,
                f"{FAIL_TRIGGER} on purpose",
                run_config=config,
            )
    instrumentor.uninstrument()
    tracing.finish()


if __name__ == "__main__":
    main()
