"""The spans both pipelines get: LLM-like traces of a root agent span and 9 chat spans.

Each span carries about 1 KB of messages (``gen_ai.input.messages`` and
``gen_ai.output.messages`` as JSON text, as OpenTelemetry GenAI instrumentations write them),
the model, token usage and a few more GenAI attributes. The attribute dicts are built once,
before any timing; emitting a span is what an instrumented app does: start, set, end.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

from opentelemetry.trace import SpanKind, Tracer

SPANS_PER_TRACE = 10
_VARIANTS = 64
_TEXT = (
    "the order shipped yesterday and should arrive within three business days please "
    "check the tracking link in your confirmation email for live updates about delivery "
    "our support team is available around the clock if anything looks wrong with it"
)
_WORDS = _TEXT.split(" ")


def _text(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    length = 0
    while length < chars:
        word = rng.choice(_WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:chars]


def _messages(rng: random.Random) -> tuple[str, str]:
    """About 700 bytes of input messages and 300 of output, as GenAI JSON text."""
    inputs = [
        {"role": "system", "parts": [{"type": "text", "content": _text(rng, 180)}]},
        {"role": "user", "parts": [{"type": "text", "content": _text(rng, 220)}]},
        {"role": "assistant", "parts": [{"type": "text", "content": _text(rng, 120)}]},
        {"role": "user", "parts": [{"type": "text", "content": _text(rng, 60)}]},
    ]
    outputs = [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": _text(rng, 240)}],
            "finish_reason": "stop",
        }
    ]
    return json.dumps(inputs), json.dumps(outputs)


class Workload:
    """Pre-built attribute sets; :meth:`emit` makes ``n`` spans with them."""

    def __init__(self, seed: int = 7) -> None:
        rng = random.Random(seed)
        self.roots: list[dict[str, Any]] = []
        self.chats: list[dict[str, Any]] = []
        for index in range(_VARIANTS):
            inputs, outputs = _messages(rng)
            self.roots.append(
                {
                    "gen_ai.operation.name": "invoke_agent",
                    "gen_ai.agent.name": "support-bot",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.conversation.id": f"conv-{index:04d}",
                    "gen_ai.input.messages": inputs,
                    "gen_ai.output.messages": outputs,
                }
            )
            inputs, outputs = _messages(rng)
            input_tokens = rng.randint(150, 400)
            output_tokens = rng.randint(40, 120)
            self.chats.append(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o-mini",
                    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                    "gen_ai.response.id": f"chatcmpl-{rng.getrandbits(64):016x}",
                    "gen_ai.response.finish_reasons": ("stop",),
                    "gen_ai.request.temperature": 0.2,
                    "gen_ai.usage.input_tokens": input_tokens,
                    "gen_ai.usage.output_tokens": output_tokens,
                    "server.address": "api.openai.com",
                    "gen_ai.input.messages": inputs,
                    "gen_ai.output.messages": outputs,
                }
            )

    def emit(self, tracer: Tracer, n: int) -> None:
        """``n`` spans (a multiple of 10): ``n // 10`` traces of a root and 9 children."""
        roots, chats = self.roots, self.chats
        children = SPANS_PER_TRACE - 1
        for trace in range(n // SPANS_PER_TRACE):
            with tracer.start_as_current_span(
                "invoke_agent support-bot", attributes=roots[trace % _VARIANTS]
            ):
                for child in range(children):
                    span = tracer.start_span(
                        "chat gpt-4o-mini",
                        kind=SpanKind.CLIENT,
                        attributes=chats[(trace * children + child) % _VARIANTS],
                    )
                    span.end()


def message_bytes(attributes: Sequence[dict[str, Any]]) -> float:
    """Mean bytes of message text per span in ``attributes``."""
    total = sum(
        len(a["gen_ai.input.messages"]) + len(a["gen_ai.output.messages"]) for a in attributes
    )
    return total / len(attributes)
