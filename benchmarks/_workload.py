"""The spans every pipeline gets, in two workloads of traces of 10 spans.

- ``synthetic`` (:class:`Workload`): a root agent span and 9 chat spans, each with about 1 KB
  of messages (``gen_ai.input.messages`` and ``gen_ai.output.messages`` as JSON text, as
  OpenTelemetry GenAI instrumentations write them), the model, token usage and a few more GenAI
  attributes.
- ``openai`` (:class:`OpenAIWorkload`): real openai-v2 chat spans, replayed from
  ``openai_spans.json`` (recorded by ``capture_openai.py``): each trace an app span and the 9
  chat spans the instrumentation emitted under it, with their names, kinds, instrumentation
  scopes, attributes (those given at the start at the start, the rest before the end), events,
  status and times relative to the trace's start.

Everything is built once, before any timing; emitting a span is what an instrumented app does:
start, set, end.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opentelemetry.context import Context
from opentelemetry.trace import (
    Span,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    TracerProvider,
    set_span_in_context,
)

WORKLOADS = ("synthetic", "openai")
SPANS_PER_TRACE = 10
OPENAI_SPANS = Path(__file__).resolve().parent / "openai_spans.json"
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


@dataclass(frozen=True)
class _ReplayedSpan:
    name: str
    kind: SpanKind
    tracer: Tracer
    parent: int | None
    start: int
    end: int
    start_attributes: dict[str, Any]
    attributes: dict[str, Any]
    events: tuple[tuple[str, int, dict[str, Any]], ...]
    status: Status | None


def _attribute_values(attributes: dict[str, Any]) -> dict[str, Any]:
    # JSON has no tuples; the SDK would copy a list into one on every span.
    return {k: tuple(v) if isinstance(v, list) else v for k, v in attributes.items()}


class OpenAIWorkload:
    """The recorded openai-v2 traces, replayed in turn by :meth:`emit`."""

    def __init__(self, provider: TracerProvider, path: Path = OPENAI_SPANS) -> None:
        document = json.loads(path.read_text(encoding="utf-8"))
        self.recorded_with: dict[str, Any] = document["recorded_with"]
        tracers: dict[tuple[str, ...], Tracer] = {}
        self.traces: list[list[_ReplayedSpan]] = []
        # Each trace is a list of steps: (True, index) starts span index, (False, index) ends it,
        # in the order of the recorded times; at equal times an end goes first (a sibling ended
        # before the next one started), but never before its own span's start.
        self.steps: list[list[tuple[bool, int]]] = []
        for trace in document["traces"]:
            spans = []
            for record in trace["spans"]:
                scope = tuple(record["scope"])
                if scope not in tracers:
                    name, version, schema_url = scope
                    tracers[scope] = provider.get_tracer(name, version or None, schema_url or None)
                code, description = record["status"]
                spans.append(
                    _ReplayedSpan(
                        name=record["name"],
                        kind=SpanKind[record["kind"]],
                        tracer=tracers[scope],
                        parent=record["parent"],
                        start=record["start"],
                        end=record["end"],
                        start_attributes=_attribute_values(record["start_attributes"]),
                        attributes=_attribute_values(record["attributes"]),
                        events=tuple(
                            (e["name"], e["at"], _attribute_values(e["attributes"]))
                            for e in record["events"]
                        ),
                        status=None if code == "UNSET" else Status(StatusCode[code], description),
                    )
                )
            if len(spans) != SPANS_PER_TRACE:
                raise ValueError(f"{path}: a trace of {len(spans)} spans, not {SPANS_PER_TRACE}")
            moments = [(span.start, 1, True, i) for i, span in enumerate(spans)]
            moments += [
                (span.end, 2 if span.end == span.start else 0, False, i)
                for i, span in enumerate(spans)
            ]
            self.steps.append([(starts, i) for _, _, starts, i in sorted(moments)])
            self.traces.append(spans)

    def emit(self, n: int) -> None:
        """``n`` spans (a multiple of 10): ``n // 10`` traces, the recorded ones in turn."""
        traces, all_steps = self.traces, self.steps
        for trace_number in range(n // SPANS_PER_TRACE):
            variant = trace_number % len(traces)
            spans, steps = traces[variant], all_steps[variant]
            started: list[Span | None] = [None] * SPANS_PER_TRACE
            base = time.time_ns()
            for starts, index in steps:
                recorded = spans[index]
                if starts:
                    if recorded.parent is None:
                        # An empty context: a trace of its own, whatever is current.
                        context = Context()
                    else:
                        parent = started[recorded.parent]
                        assert parent is not None, "the steps start a parent before its children"
                        context = set_span_in_context(parent)
                    started[index] = recorded.tracer.start_span(
                        recorded.name,
                        context=context,
                        kind=recorded.kind,
                        attributes=recorded.start_attributes,
                        start_time=base + recorded.start,
                    )
                    continue
                span = started[index]
                assert span is not None
                if recorded.attributes:
                    span.set_attributes(recorded.attributes)
                for name, at, attributes in recorded.events:
                    span.add_event(name, attributes, timestamp=base + at)
                if recorded.status is not None:
                    span.set_status(recorded.status)
                span.end(end_time=base + recorded.end)

    def shape(self) -> str:
        """What the replayed chat spans hold, for the report."""
        chats = [span for trace in self.traces for span in trace if span.parent is not None]
        attributes = [len(span.start_attributes) + len(span.attributes) for span in chats]
        events = sum(len(span.events) for span in chats)
        messages = message_bytes([span.attributes for span in chats])
        packages = ", ".join(f"{k} {v}" for k, v in self.recorded_with["packages"].items())
        return (
            f"{len(self.traces)} recorded traces of an app span and 9 chat spans; per chat span "
            f"{min(attributes)}-{max(attributes)} attributes, {events / len(chats):g} events, "
            f"{messages:,.0f} bytes of message JSON on average (recorded with {packages})"
        )


def emitter(workload: str, provider: TracerProvider) -> Callable[[int], None]:
    """What emits ``n`` spans of ``workload`` through ``provider``, built now, before timing."""
    if workload == "synthetic":
        tracer = provider.get_tracer("benchmark", "1.0")
        synthetic = Workload()
        return lambda n: synthetic.emit(tracer, n)
    if workload == "openai":
        return OpenAIWorkload(provider).emit
    raise ValueError(f"unknown workload {workload!r}; known: {', '.join(WORKLOADS)}")
