"""A real ``openai`` app, traced by OpenTelemetry's OpenAI instrumentation, seen as Weave calls.

    pip install -e '.[instrumentations]'      # openai, opentelemetry-instrumentation-openai-v2, ...
    python examples/openai_app.py

Everything runs in this process and on 127.0.0.1, with no account and no network: a canned
OpenAI-compatible server (``canned_openai.py`` beside this file) answers the chat requests, and
the local Weave-compatible receiver stores the calls, which this script then prints as Weave
would show them. Three requests: a plain completion, a streamed one (with
``stream_options.include_usage``, so the stream reports tokens) and one the server refuses.

The setup is the manual one: a ``TracerProvider`` with a ``WeaveSpanProcessor``, and
``OpenAIInstrumentor().instrument(tracer_provider=...)``. For a real app, drop the two local
servers: ``WeaveSpanProcessor()`` reads ``WANDB_API_KEY`` and ``WEAVE_PROJECT``, and
``openai.OpenAI()`` reads ``OPENAI_API_KEY``. With no code at all, see ``openai_zero_code.md``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

import openai
from canned_openai import CannedOpenAI
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from opentelemetry.exporter.weave import WeaveSpanProcessor
from opentelemetry.exporter.weave.testing import LocalWeaveServer

PROJECT = "demo/openai-app"
API_KEY = "local-demo-key"
MODEL = "gpt-4o-mini"


# --- The app: plain openai calls, no tracing code ---------------------------------------------


def run_app(client: openai.OpenAI) -> None:
    question = [{"role": "user", "content": "What is the answer to everything?"}]
    reply = client.chat.completions.create(model=MODEL, messages=question)
    print("plain reply:   ", reply.choices[0].message.content)

    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Say it again, streamed."}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    print("streamed reply:", text)

    try:
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Please FAIL this one."}]
        )
    except openai.BadRequestError as error:
        print("refused:       ", error.status_code, error.message[:60], "...")


# --- Wiring: provider + Weave processor + the instrumentation ---------------------------------


def main() -> int:
    # Message content is captured only when asked for: set before instrumenting.
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    os.environ.setdefault("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "span_only")
    # opentelemetry-util-genai 1.1b0 sets `error.type` to a class object on a failed call, and
    # the SDK warns as it stores "<class 'openai.BadRequestError'>": keep the output readable.
    logging.getLogger("opentelemetry.attributes").setLevel(logging.ERROR)

    with LocalWeaveServer(api_key=API_KEY) as receiver, CannedOpenAI() as canned:
        provider = TracerProvider(resource=Resource.create({"service.name": "openai-app"}))
        processor = WeaveSpanProcessor(
            api_key=API_KEY, project=PROJECT, server_url=receiver.url, schedule_delay_millis=100
        )
        provider.add_span_processor(processor)
        instrumentor = OpenAIInstrumentor()
        instrumentor.instrument(tracer_provider=provider)
        try:
            run_app(openai.OpenAI(base_url=canned.base_url, api_key="sk-test", max_retries=0))
        finally:
            instrumentor.uninstrument()
            provider.shutdown()  # exports what is still queued
        calls = sorted(receiver.calls(PROJECT), key=lambda call: call["started_at"])

    print(f"\n{len(calls)} calls stored by the local Weave receiver:\n")
    for call in calls:
        print_call(call)
    return 0 if len(calls) == 3 else 1


# --- Printing a call as Weave shows it --------------------------------------------------------


def print_call(call: dict[str, Any]) -> None:
    usage = call["summary"].get("usage") or {}
    print(f"{call['op_name']}  [{status(call)}]")
    for model, counts in usage.items():
        print(
            f"  model {model}: {counts.get('input_tokens')} in, {counts.get('output_tokens')} out,"
            f" {counts.get('total_tokens')} total, {counts.get('requests')} request(s)"
        )
    print(f"  inputs: {excerpt(call['inputs'])}")
    if call["output"] is not None:
        print(f"  output: {excerpt(call['output'])}")
    if call["exception"] is not None:
        exception = json.loads(call["exception"])
        print(f"  exception: {exception['type']}: {exception['message'][:70]}...")
    print()


def status(call: dict[str, Any]) -> str:
    if call["exception"] is not None:
        return "error"
    if (call["summary"].get("status_counts") or {}).get("error", 0) > 0:
        return "descendant_error"
    return "success"


def excerpt(value: Any, limit: int = 90) -> str:
    """The message texts in ``value`` (``content``/``text`` strings), else its JSON, shortened."""
    texts: list[str] = []

    def collect(item: Any) -> None:
        if isinstance(item, dict):
            for key, inner in item.items():
                if key in ("content", "text") and isinstance(inner, str):
                    texts.append(inner)
                else:
                    collect(inner)
        elif isinstance(item, list):
            for inner in item:
                collect(inner)

    collect(value)
    text = " | ".join(texts) if texts else json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


if __name__ == "__main__":
    sys.exit(main())
