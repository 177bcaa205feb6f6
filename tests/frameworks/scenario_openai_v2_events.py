"""openai-v2 2.4b0 in ``event_only`` mode: the content travels as log records, not on spans.

Inside an app span ``ask_twice``: one plain chat completion and one streamed, against the canned
OpenAI server; then one request that it refuses (HTTP 400). util-genai 1.1b0 puts each call's
messages on one ``gen_ai.client.inference.operation.details`` log record carrying the chat
span's ids; with ``WEAVE_TEST_CAPTURE=1`` they are captured too (``runtime``).
"""

from __future__ import annotations

import openai
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

from tests.frameworks.runtime import expect_failure, start_tracing
from tests.openai_server import FAIL_TRIGGER, CannedOpenAI

REQUEST_MODEL = "gpt-4o-mini"
SYSTEM_PROMPT = "Answer in one sentence."
PLAIN_PROMPT = "What is the canned answer? Asked plainly."
STREAM_PROMPT = "What is the canned answer? Asked for a stream."
FAIL_PROMPT = f"Please {FAIL_TRIGGER} this request."


def messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]


def main() -> None:
    tracing = start_tracing(capture="openai_v2_events", logs=True)
    OpenAIInstrumentor().instrument(
        tracer_provider=tracing.provider, logger_provider=tracing.logger_provider
    )
    tracer = tracing.provider.get_tracer("scenario.openai_v2_events")
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
        expect_failure(
            openai.BadRequestError,
            client.chat.completions.create,
            model=REQUEST_MODEL,
            messages=messages(FAIL_PROMPT),
        )
    tracing.finish()


if __name__ == "__main__":
    main()
