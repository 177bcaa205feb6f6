"""google-genai with OpenTelemetry's google-genai instrumentation, against the canned Gemini API.

One question inside an app span ``ask_weather``: the SDK's automatic function calling sends it
with ``get_weather`` declared, the canned server calls the function, the SDK runs it (the
instrumentation wraps it in an ``execute_tool`` span) and asks again for the final answer.
Then one request that the server refuses (HTTP 400).

``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`` picks where the content goes:
``SPAN_ONLY`` (span attributes) or ``EVENT_ONLY`` (``gen_ai.client.inference.operation.details``
log records).
"""

from __future__ import annotations

import os

from google import genai
from google.genai import errors, types
from opentelemetry.instrumentation.google_genai import GoogleGenAiSdkInstrumentor

from tests.canned_gemini import FAIL_TRIGGER, CannedGemini
from tests.frameworks.runtime import expect_failure, start_tracing

REQUEST_MODEL = "gemini-2.5-flash"
QUESTION = "What is the weather in Paris?"
FAIL_PROMPT = f"Please {FAIL_TRIGGER} this request."


def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"sunny, 21 degrees in {city}"


def main() -> None:
    mode = os.environ.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "")
    tracing = start_tracing(
        capture="google_genai_event_only" if mode.upper() == "EVENT_ONLY" else "google_genai",
        logs=True,
        notes={"content_mode": mode},
    )
    GoogleGenAiSdkInstrumentor().instrument(
        tracer_provider=tracing.provider, logger_provider=tracing.logger_provider
    )
    tracer = tracing.provider.get_tracer("scenario.google_genai")
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
        expect_failure(
            errors.ClientError,
            client.models.generate_content,
            model=REQUEST_MODEL,
            contents=FAIL_PROMPT,
        )
        print(f"{len(server.requests)} requests")
    tracing.finish()


if __name__ == "__main__":
    main()
