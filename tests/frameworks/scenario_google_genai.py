"""google-genai with OpenTelemetry's google-genai instrumentation, against the canned Gemini API.

One question inside an app span ``ask_weather``: the SDK's automatic function calling sends it
with ``get_weather`` declared, the canned server calls the function, the SDK runs it (the
instrumentation wraps it in an ``execute_tool`` span) and asks again for the final answer.
Then one request that the server refuses (HTTP 400).

``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` picks where the content goes:
``SPAN_ONLY`` (span attributes) or ``EVENT_ONLY`` (``gen_ai.client.inference.operation.details``
log records, captured here with an in-memory exporter).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from google import genai
from google.genai import errors, types
from opentelemetry import _logs
from opentelemetry.instrumentation.google_genai import GoogleGenAiSdkInstrumentor
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import opentelemetry.exporter.weave as weave_exporter
from tests.canned_gemini import FAIL_TRIGGER, CannedGemini
from tests.frameworks.runtime import start_tracing

REQUEST_MODEL = "gemini-2.5-flash"
QUESTION = "What is the weather in Paris?"
FAIL_PROMPT = f"Please {FAIL_TRIGGER} this request."
CAPTURES = Path("/work/tasks/captures")


def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"sunny, 21 degrees in {city}"


def main() -> None:
    mode = os.environ.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "")
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
    GoogleGenAiSdkInstrumentor().instrument(
        tracer_provider=provider, logger_provider=logger_provider
    )
    tracer = provider.get_tracer("scenario.google_genai")
    with CannedGemini() as server:
        client = genai.Client(
            api_key="test-gemini-key",
            http_options=types.HttpOptions(base_url=server.base_url),
        )
        with tracer.start_as_current_span("ask_weather"):
            answer = client.models.generate_content(
                model=REQUEST_MODEL,
                contents=QUESTION,
                config=types.GenerateContentConfig(tools=[get_weather], temperature=0.2),
            )
        print(answer.text)
        try:
            client.models.generate_content(model=REQUEST_MODEL, contents=FAIL_PROMPT)
        except errors.ClientError as error:
            print(f"refused as planned: {error}")
        else:
            raise SystemExit("the canned server should have refused the request")
        print(f"{len(server.requests)} requests")
    logger_provider.shutdown()
    provider.shutdown()
    if os.environ.get("WEAVE_TEST_CAPTURE") == "1":
        name = "google_genai" if mode.upper() != "EVENT_ONLY" else "google_genai_event_only"
        CAPTURES.mkdir(parents=True, exist_ok=True)
        capture = {
            "content_mode": mode,
            "spans": [json.loads(span.to_json()) for span in spans.get_finished_spans()],
            "log_records": [json.loads(record.to_json()) for record in logs.get_finished_logs()],
        }
        (CAPTURES / f"{name}.json").write_text(json.dumps(capture, indent=1))


if __name__ == "__main__":
    main()
