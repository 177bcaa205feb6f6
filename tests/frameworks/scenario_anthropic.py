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
from pathlib import Path

import anthropic
from opentelemetry import _logs
from opentelemetry.instrumentation.anthropic import AnthropicInstrumentor
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import opentelemetry.exporter.weave as weave_exporter
from tests.canned_anthropic import FAIL_TRIGGER, CannedAnthropic
from tests.frameworks.runtime import start_tracing

REQUEST_MODEL = "claude-haiku-4-5"
CONVERSATION_ID = "conv-anthropic-weather"
QUESTION = "What is the weather in Paris?"
FAIL_PROMPT = f"Please {FAIL_TRIGGER} this request."
CAPTURES = Path("/work/tasks/captures")


@anthropic.beta_tool
def get_weather(city: str) -> str:
    """The current weather in a city.

    Args:
        city: The city's name.
    """
    return f"sunny, 21 degrees in {city}"


def main() -> None:
    use_attributes = os.environ.get("SCENARIO_OPENLLMETRY_ATTRIBUTES", "true") == "true"
    provider, _ = start_tracing()
    spans = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    logs = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    # The log-record join is being built; until the package has it, records are only captured.
    weave_log_processor = getattr(weave_exporter, "WeaveLogRecordProcessor", None)
    if weave_log_processor is not None:
        logger_provider.add_log_record_processor(weave_log_processor())
    _logs.set_logger_provider(logger_provider)
    AnthropicInstrumentor(use_attributes=use_attributes).instrument(
        tracer_provider=provider, logger_provider=logger_provider
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
        try:
            client.messages.create(
                model=REQUEST_MODEL,
                max_tokens=64,
                messages=[{"role": "user", "content": FAIL_PROMPT}],
            )
        except anthropic.BadRequestError as error:
            print(f"refused as planned: {error}")
        else:
            raise SystemExit("the canned server should have refused the request")
    logger_provider.shutdown()
    provider.shutdown()
    if os.environ.get("WEAVE_TEST_CAPTURE") == "1":
        name = "anthropic" if use_attributes else "anthropic_log_records"
        CAPTURES.mkdir(parents=True, exist_ok=True)
        capture = {
            "spans": [json.loads(span.to_json()) for span in spans.get_finished_spans()],
            "log_records": [json.loads(record.to_json()) for record in logs.get_finished_logs()],
        }
        (CAPTURES / f"{name}.json").write_text(json.dumps(capture, indent=1))


if __name__ == "__main__":
    main()
