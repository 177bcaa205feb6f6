"""Records the "openai" workload: real openai-v2 chat spans, written to ``openai_spans.json``.

    python benchmarks/capture_openai.py     # builds its own venv with uv, about 30 s the first time

The benchmark replays the file (``_workload.OpenAIWorkload``) and never needs ``openai``: only
this script does, in a virtual environment of its own (``.venvs/bench-openai-capture``) with
the pins of ``tests/envs/openai_v2_events.txt``. There, ``opentelemetry-instrumentation-openai-v2``
wraps a real ``openai`` client that calls the canned server (``examples/canned_openai.py``),
with the latest GenAI conventions and message content on the spans themselves
(``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental``,
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=SPAN_ONLY``).

Each trace is what a support app does for one ticket: an app span and 9 chat completions of a
growing conversation, plain and streamed, one of them offering a tool that the canned server
calls and the next carrying the tool's result. Recorded per span: name, kind, instrumentation
scope, parent (an index), start and end relative to the trace's first span, the attributes
present when the span started and those set later, events, status.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUTPUT = HERE / "openai_spans.json"
PINS = ROOT / "tests" / "envs" / "openai_v2_events.txt"
VENV = ROOT / ".venvs" / "bench-openai-capture"
IN_VENV_FLAG = "--in-capture-venv"
ENVIRONMENT = {
    "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_ONLY",
}
TRACES = 8
CHATS_PER_TRACE = 9
TOOL_CHAT = 3  # the chat that offers the tool; the one after it carries the tool's result
REQUEST_MODEL = "gpt-4o-mini"
APP_SPAN = "handle_ticket"
RECORDED_PACKAGES = (
    "openai",
    "opentelemetry-instrumentation-openai-v2",
    "opentelemetry-util-genai",
    "opentelemetry-sdk",
)

SYSTEM_PROMPT = (
    "You are the support assistant of an online shop. Answer in two or three friendly sentences, "
    "quote the order number when the customer gives one, never promise a refund yourself and "
    "hand over to a person when the customer asks for one."
)
TICKETS = (
    "Hello, I ordered a pair of running shoes last Tuesday (order 48213) and the tracking page "
    "has said 'label created' for four days now. Is the parcel lost, or is it just slow?",
    "My new kettle arrived with a cracked lid. The box looked fine from the outside, so I think "
    "it broke at the warehouse. Order 51907. What do I need to do to get a replacement?",
    "I was charged twice for the same order, 50344, once on the 3rd and once on the 4th. My "
    "bank shows both payments as completed. Can you check what happened?",
    "Can I still change the delivery address of order 49876? I am moving next week and the "
    "parcel is scheduled to arrive on Friday at my old flat.",
    "The jacket I bought (order 52210) is a size too small. Your site says returns are free "
    "within 30 days but I cannot find the return label anywhere in my account.",
    "I have been waiting for a refund for order 47731 for three weeks. The return was received "
    "on the 2nd according to the courier. When will the money be back on my card?",
    "Your newsletter promised 20% off for members but the code SPRING20 says it expired, even "
    "though the email arrived yesterday. Can you apply the discount to order 53018?",
    "The blender I received (order 50012) does not match the picture: it is the 600 W model, "
    "not the 1000 W one I paid for. I would like the right one or the difference back.",
)
FOLLOW_UPS = (
    "Thanks. Could you tell me when it will arrive, roughly?",
    "Okay, and is there anything I need to sign when it is delivered?",
    "Can you also check whether my loyalty points were added for this order?",
    "Please look up the current status in the system.",
    "Great, thank you for checking. What happens next on your side?",
    "And if it does not arrive by then, who should I contact?",
    "Is there a way to get a notification by text message instead of email?",
    "One last thing: can I get an invoice with my company's name on it?",
    "Perfect, that is all for now. Have a nice day!",
)
ORDER_TOOL = {
    "type": "function",
    "function": {
        "name": "lookup_order",
        "description": "The shipping and payment status of one order of the shop.",
        "parameters": {
            "type": "object",
            "properties": {
                "order_id": {"type": "string", "description": "the order number"},
                "include_payments": {"type": "boolean"},
            },
            "required": ["order_id", "include_payments"],
        },
    },
}


def _load_canned_server() -> Any:
    path = ROOT / "examples" / "canned_openai.py"
    spec = importlib.util.spec_from_file_location("_bench_canned_openai", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load the canned OpenAI server from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _json_value(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _trace_record(spans: list[Any], started_with: dict[int, set[str]]) -> dict[str, Any]:
    spans = sorted(spans, key=lambda span: span.start_time)
    index = {span.context.span_id: i for i, span in enumerate(spans)}
    origin = spans[0].start_time
    records = []
    for span in spans:
        at_start = started_with[span.context.span_id]
        attributes = {key: _json_value(value) for key, value in span.attributes.items()}
        scope = span.instrumentation_scope
        records.append(
            {
                "name": span.name,
                "kind": span.kind.name,
                "scope": [scope.name, scope.version, scope.schema_url],
                "parent": index[span.parent.span_id] if span.parent is not None else None,
                "start": span.start_time - origin,
                "end": span.end_time - origin,
                "start_attributes": {k: v for k, v in attributes.items() if k in at_start},
                "attributes": {k: v for k, v in attributes.items() if k not in at_start},
                "events": [
                    {
                        "name": event.name,
                        "at": event.timestamp - origin,
                        "attributes": {
                            k: _json_value(v) for k, v in (event.attributes or {}).items()
                        },
                    }
                    for event in span.events
                ],
                "status": [span.status.status_code.name, span.status.description],
            }
        )
    return {"spans": records}


def _conversation(client: Any, ticket: str) -> None:
    """One ticket's 9 chat completions, the conversation growing by each reply."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": ticket},
    ]
    for number in range(CHATS_PER_TRACE):
        streamed = number % 3 == 1
        options: dict[str, Any] = {"model": REQUEST_MODEL, "messages": messages}
        if number % 2 == 0:
            options.update(temperature=0.2, max_tokens=300)
        if number == TOOL_CHAT:
            options["tools"] = [ORDER_TOOL]
        if streamed:
            stream = client.chat.completions.create(
                **options, stream=True, stream_options={"include_usage": True}
            )
            reply = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            messages.append({"role": "assistant", "content": reply})
        else:
            message = client.chat.completions.create(**options).choices[0].message
            if message.tool_calls:
                call = message.tool_calls[0]
                messages.append(
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": call.id,
                                "type": "function",
                                "function": {
                                    "name": call.function.name,
                                    "arguments": call.function.arguments,
                                },
                            }
                        ],
                    }
                )
                result = {"status": "in transit", "carrier": "DHL", "eta": "in 2 days"}
                messages.append(
                    {"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)}
                )
                continue  # the next chat answers with the tool's result
            messages.append({"role": "assistant", "content": message.content})
        messages.append({"role": "user", "content": FOLLOW_UPS[number]})


def record() -> dict[str, Any]:
    """Runs the traces under the real instrumentation (this process has the capture venv's
    packages and ``ENVIRONMENT``); the recorded document."""
    from importlib import metadata

    import openai
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

    class Recorder(SpanProcessor):
        """Keeps each span, and which attributes it had when it started."""

        def __init__(self) -> None:
            self.started_with: dict[int, set[str]] = {}
            self.spans: list[Any] = []

        def on_start(self, span: Any, parent_context: Any = None) -> None:
            self.started_with[span.context.span_id] = set(span.attributes or {})

        def on_end(self, span: Any) -> None:
            self.spans.append(span)

    recorder = Recorder()
    provider = TracerProvider()
    provider.add_span_processor(recorder)
    OpenAIInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    tracer = provider.get_tracer("support-app", "1.0")
    canned = _load_canned_server()
    traces = []
    with canned.CannedOpenAI() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
        for number, ticket in enumerate(TICKETS[:TRACES]):
            recorder.spans.clear()
            with tracer.start_as_current_span(
                APP_SPAN, attributes={"app.ticket.number": 1000 + number}
            ):
                _conversation(client, ticket)
            traces.append(_trace_record(list(recorder.spans), recorder.started_with))
    provider.shutdown()
    return {
        "recorded_with": {
            "packages": {name: metadata.version(name) for name in RECORDED_PACKAGES},
            "environment": ENVIRONMENT,
            "server": "examples/canned_openai.py",
            "on": time.strftime("%Y-%m-%d"),
        },
        "traces": traces,
    }


def _venv_python() -> Path:
    """The capture venv's Python, built with uv (beside this Python, or on PATH) if missing."""
    python = VENV / "bin" / "python"
    done = VENV / ".built"
    if done.exists() and done.read_bytes() == PINS.read_bytes():
        return python
    beside = Path(sys.executable).parent / "uv"
    uv = str(beside) if beside.exists() else shutil.which("uv")
    if uv is None:
        raise SystemExit("capture_openai.py needs uv (pip install uv) to build its venv")
    shutil.rmtree(VENV, ignore_errors=True)
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(VENV)], check=True)
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", str(python), "-r", str(PINS)], check=True
    )
    done.write_bytes(PINS.read_bytes())
    return python


def _write(document: dict[str, Any]) -> None:
    # One span per line: small, and a re-recording shows as a readable diff.
    lines = ['{"recorded_with": ' + json.dumps(document["recorded_with"]) + ',\n "traces": [']
    for trace_number, trace in enumerate(document["traces"]):
        spans = ",\n".join(
            "  " + json.dumps(span, separators=(",", ":")) for span in trace["spans"]
        )
        comma = "," if trace_number < len(document["traces"]) - 1 else ""
        lines.append(' {"spans": [\n' + spans + "]}" + comma)
    lines.append("]}\n")
    OUTPUT.write_text("\n".join(lines), encoding="utf-8")


def main() -> int:
    if IN_VENV_FLAG in sys.argv:
        _write(record())
        return 0
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run(
        [str(_venv_python()), __file__, IN_VENV_FLAG],
        env={**environment, **ENVIRONMENT},
        check=False,
    )
    if result.returncode == 0:
        document = json.loads(OUTPUT.read_text(encoding="utf-8"))
        spans = [span for trace in document["traces"] for span in trace["spans"]]
        print(f"{len(document['traces'])} traces, {len(spans)} spans written to {OUTPUT}")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
