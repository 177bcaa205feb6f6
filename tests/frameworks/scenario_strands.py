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

import json
import os
from pathlib import Path

from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from strands import Agent, tool
from strands.models.openai import OpenAIModel

from tests.frameworks.runtime import start_tracing
from tests.openai_server import FAIL_TRIGGER, CannedOpenAI

REQUEST_MODEL = "gpt-4o-mini"
AGENT_NAME = "weather_agent"
QUESTION = "What is the canned answer?"
FAIL_PROMPT = f"Please {FAIL_TRIGGER} this request."
CAPTURES = Path("/work/tasks/captures")


@tool
def get_weather(city: str) -> str:
    """The current weather in a city.

    Args:
        city: The city's name.
    """
    return f"sunny, 21 degrees in {city}"


def main() -> None:
    provider, _ = start_tracing()
    spans = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(spans))
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
        try:
            agent(FAIL_PROMPT)
        except Exception as error:  # strands wraps the provider's error in its own types
            print(f"refused as planned: {type(error).__name__}: {error}")
        else:
            raise SystemExit("the canned server should have refused the request")
    provider.shutdown()
    if os.environ.get("WEAVE_TEST_CAPTURE") == "1":
        latest = "gen_ai_latest_experimental" in os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "")
        name = "strands_latest_experimental" if latest else "strands"
        CAPTURES.mkdir(parents=True, exist_ok=True)
        capture = {
            "semconv_opt_in": os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", ""),
            "spans": [json.loads(span.to_json()) for span in spans.get_finished_spans()],
        }
        (CAPTURES / f"{name}.json").write_text(json.dumps(capture, indent=1))


if __name__ == "__main__":
    main()
