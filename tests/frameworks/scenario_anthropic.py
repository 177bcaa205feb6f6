"""anthropic's tool runner, traced twice over: by the SDK itself and by OpenLLMetry.

anthropic 2.x traces every API call on the global TracerProvider unless told not to (option
``open_telemetry``, or ``ANTHROPIC_OPEN_TELEMETRY=false``); content is recorded only with
``traces.content_mode = "content"``. Its tool runner adds an ``invoke_agent`` span around the
loop and an ``execute_tool`` span per tool. OpenLLMetry's ``anthropic.chat`` span wraps the same
``messages.create``, so each request gives two sibling LLM spans with one response id.

One run: the runner asks the canned server, which calls ``get_weather``; the runner runs it and
asks again for the final answer. Then one request that the server refuses (HTTP 400).

``SCENARIO_OPENLLMETRY_ATTRIBUTES=false`` instruments OpenLLMetry with ``use_attributes=False``:
its content travels as log records instead of span attributes.
"""

from __future__ import annotations

import json
import os

import anthropic
from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor

from tests.canned_anthropic import FAIL_TRIGGER, CannedAnthropic
from tests.frameworks.runtime import expect_failure, start_tracing

REQUEST_MODEL = "claude-haiku-4-5"
CONVERSATION_ID = "conv-anthropic-weather"
QUESTION = "What is the weather in Paris?"
FAIL_PROMPT = f"Please {FAIL_TRIGGER} this request."


@anthropic.beta_tool
def get_weather(city: str) -> str:
    """The current weather in a city.

    Args:
        city: The city's name.
    """
    return f"sunny, 21 degrees in {city}"


def main() -> None:
    use_attributes = os.environ.get("SCENARIO_OPENLLMETRY_ATTRIBUTES", "true") == "true"
    capture = "anthropic" if use_attributes else "anthropic_log_records"
    tracing = start_tracing(capture=capture, logs=True)
    AnthropicInstrumentor(use_attributes=use_attributes).instrument(
        tracer_provider=tracing.provider, logger_provider=tracing.logger_provider
    )
    with CannedAnthropic() as server:
        client = anthropic.Anthropic(
            base_url=server.base_url,
            api_key="sk-ant-test",
            max_retries=0,
            open_telemetry={
                "traces": {"content_mode": "content"},
                "conversation_id": CONVERSATION_ID,
            },
        )
        runner = client.beta.messages.tool_runner(
            model=REQUEST_MODEL,
            max_tokens=256,
            tools=[get_weather],
            messages=[{"role": "user", "content": QUESTION}],
        )
        final = runner.until_done()
        print(json.dumps(final.model_dump(mode="json")))
        expect_failure(
            anthropic.BadRequestError,
            client.messages.create,
            model=REQUEST_MODEL,
            max_tokens=64,
            messages=[{"role": "user", "content": FAIL_PROMPT}],
        )
    tracing.finish()


if __name__ == "__main__":
    main()
