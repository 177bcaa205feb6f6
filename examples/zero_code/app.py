"""A plain app with no OpenTelemetry SDK setup: it only asks the API for a tracer.

Run as it is, its spans go nowhere. Run under ``opentelemetry-instrument`` with
``OTEL_TRACES_EXPORTER=weave`` and every span becomes a Weave call; see README.md here.
"""

from __future__ import annotations

import json

from opentelemetry import trace

tracer = trace.get_tracer("zero_code_app")


def chat(question: str) -> str:
    with tracer.start_as_current_span("chat gpt-4o-mini") as span:
        span.set_attribute("gen_ai.operation.name", "chat")
        span.set_attribute("gen_ai.provider.name", "openai")
        span.set_attribute("gen_ai.request.model", "gpt-4o-mini")
        messages = [{"role": "user", "parts": [{"type": "text", "content": question}]}]
        span.set_attribute("gen_ai.input.messages", json.dumps(messages))
        reply = "Because of Rayleigh scattering."
        output = [{"role": "assistant", "parts": [{"type": "text", "content": reply}]}]
        span.set_attribute("gen_ai.output.messages", json.dumps(output))
        span.set_attribute("gen_ai.response.model", "gpt-4o-mini-2024-07-18")
        span.set_attribute("gen_ai.usage.input_tokens", 11)
        span.set_attribute("gen_ai.usage.output_tokens", 6)
        return reply


def main() -> None:
    with tracer.start_as_current_span("answer_question") as span:
        span.set_attribute("wandb.display_name", "Why is the sky blue?")
        print(chat("Why is the sky blue?"))


if __name__ == "__main__":
    main()
