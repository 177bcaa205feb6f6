"""strands-agents with its OpenAI model provider, streaming from the canned OpenAI server.

strands traces itself on the global TracerProvider (``invoke_agent`` > ``execute_event_loop_cycle``
> ``chat``, ``execute_tool``). The canned server never asks for a tool, so the model turn is one
streamed request and the final answer; the tool runs as a direct call
(``agent.tool.get_weather``), which strands records in the conversation and traces. Then one
run the server refuses (HTTP 400), which fails the agent.

``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`` switches strands from per-message
span events to one ``gen_ai.client.inference.operation.details`` event.
"""

from __future__ import annotations

import os

from strands import Agent, tool
from strands.models.openai import OpenAIModel

from tests.frameworks.runtime import expect_failure, start_tracing
from tests.openai_server import FAIL_TRIGGER, CannedOpenAI

REQUEST_MODEL = "gpt-4o-mini"
AGENT_NAME = "weather_agent"
QUESTION = "What is the canned answer?"
FAIL_PROMPT = f"Please {FAIL_TRIGGER} this request."


@tool
def get_weather(city: str) -> str:
    """The current weather in a city.

    Args:
        city: The city's name.
    """
    return f"sunny, 21 degrees in {city}"


def main() -> None:
    opt_in = os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "")
    latest = "gen_ai_latest_experimental" in opt_in
    tracing = start_tracing(
        capture="strands_latest_experimental" if latest else "strands",
        notes={"semconv_opt_in": opt_in},
    )
    with CannedOpenAI() as server:
        model = OpenAIModel(
            client_args={"base_url": server.base_url, "api_key": "sk-test", "max_retries": 0},
            model_id=REQUEST_MODEL,
        )
        agent = Agent(
            model=model,
            name=AGENT_NAME,
            system_prompt="Answer in one sentence.",
            tools=[get_weather],
            callback_handler=None,
        )
        print(agent.tool.get_weather(city="Paris"))
        print(agent(QUESTION))
        # strands wraps the provider's error in its own types.
        expect_failure(Exception, agent, FAIL_PROMPT)
    tracing.finish()


if __name__ == "__main__":
    main()
