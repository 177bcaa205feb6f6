"""openai-v2 2.4b0 in ``event_only`` mode: the content travels as log records, not on spans.

Inside an app span ``ask_twice``: one plain chat completion and one streamed, against the canned
OpenAI server; then one request that it refuses (HTTP 400). util-genai 1.1b0 puts each call's
messages on one ``gen_ai.client.inference.operation.details`` log record carrying the chat
span's ids; the records are captured with an in-memory exporter.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import openai
from opentelemetry import _logs
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import opentelemetry.exporter.weave as weave_exporter
from tests.frameworks.runtime import start_tracing
from tests.openai_server import FAIL_TRIGGER, CannedOpenAI

REQUEST_MODEL = "gpt-4o-mini"
SYSTEM_PROMPT = "Answer in one sentence."
PLAIN_PROMPT = "What is the canned answer? Asked plainly."
STREAM_PROMPT = "What is the canned answer? Asked for a stream."
FAIL_PROMPT = f"Please {FAIL_TRIGGER} this request."
CAPTURES = Path("/work/tasks/captures")


def messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]


def main() -> None:
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
    OpenAIInstrumentor().instrument(tracer_provider=provider, logger_provider=logger_provider)
    tracer = provider.get_tracer("scenario.openai_v2_events")
    with CannedOpenAI() as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
        with tracer.start_as_current_span("ask_twice"):
            plain = client.chat.completions.create(
                model=REQUEST_MODEL, messages=messages(PLAIN_PROMPT), temperature=0.3
            )
            print(plain.choices[0].message.content)
            stream = client.chat.completions.create(
                model=REQUEST_MODEL,
                messages=messages(STREAM_PROMPT),
                stream=True,
                stream_options={"include_usage": True},
            )
            print("".join(c.choices[0].delta.content or "" for c in stream if c.choices))
        try:
            client.chat.completions.create(model=REQUEST_MODEL, messages=messages(FAIL_PROMPT))
        except openai.BadRequestError as error:
            print(f"refused as planned: {error}")
        else:
            raise SystemExit("the canned server should have refused the request")
    logger_provider.shutdown()
    provider.shutdown()
    if os.environ.get("WEAVE_TEST_CAPTURE") == "1":
        CAPTURES.mkdir(parents=True, exist_ok=True)
        capture = {
            "spans": [json.loads(span.to_json()) for span in spans.get_finished_spans()],
            "log_records": [json.loads(record.to_json()) for record in logs.get_finished_logs()],
        }
        (CAPTURES / "openai_v2_events.json").write_text(json.dumps(capture, indent=1))


if __name__ == "__main__":
    main()
