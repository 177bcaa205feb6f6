"""Add Weave to an app that already has OpenTelemetry set up: one line.

    python examples/existing_provider.py

The app below already prints its spans with a ``ConsoleSpanExporter``. Adding a
``WeaveSpanProcessor`` to the same provider sends every span to Weave as well; the existing
exporter keeps working. In a real app the line is just::

    provider.add_span_processor(WeaveSpanProcessor())  # WANDB_API_KEY, WEAVE_PROJECT from env

Here it points at a local receiver, so the example runs without an account.
"""

from __future__ import annotations

import json
import sys

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

from opentelemetry.exporter.weave import WeaveSpanProcessor
from opentelemetry.exporter.weave.testing import LocalWeaveServer

PROJECT = "demo/existing-provider"
API_KEY = "local-demo-key"

tracer = trace.get_tracer("existing_app")


def one_line(span: ReadableSpan) -> str:
    return f"[console] {span.name}\n"


def chat(question: str) -> str:
    with tracer.start_as_current_span("chat gpt-4o-mini") as span:
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.provider.name", "openai")
        span.set_attribute("gen_ai.request.model", "gpt-4o-mini")
        messages = [{"role": "user", "parts": [{"type": "text", "content": question}]}]
        span.set_attribute("gen_ai.input.messages", json.dumps(messages))
        span.set_attribute("gen_ai.usage.input_tokens", 12)
        span.set_attribute("gen_ai.usage.output_tokens", 3)
        return "Paris."


def handle_request(question: str) -> str:
    with tracer.start_as_current_span("handle_request"):
        return chat(question)


def main() -> int:
    with LocalWeaveServer(api_key=API_KEY) as server:
        # The app's existing setup.
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(formatter=one_line)))
        trace.set_tracer_provider(provider)

        # The one line that adds Weave.
        provider.add_span_processor(
            WeaveSpanProcessor(api_key=API_KEY, project=PROJECT, server_url=server.url)
        )

        print("answer:", handle_request("What is the capital of France?"))
        provider.shutdown()  # flushes both processors
        calls = server.calls(PROJECT)

    print(f"[weave]   received {len(calls)} calls: {', '.join(c['op_name'] for c in calls)}")
    return 0 if calls else 1


if __name__ == "__main__":
    sys.exit(main())
