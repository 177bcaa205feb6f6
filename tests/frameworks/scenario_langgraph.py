"""LangGraph's ``create_react_agent`` traced by OpenInference's LangChain instrumentation.

The model is a ``GenericFakeChatModel`` scripted with ``AIMessage``s that carry tool calls and
usage. Two turns of one conversation (``thread_id`` in the config, kept by an in-memory
checkpointer): turn 1 calls ``get_weather`` for Paris and answers; turn 2 asks for a city the
tool refuses, so the tool and the graph run fail.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool, tool
from langgraph.checkpoint.memory import InMemorySaver
from openinference.instrumentation.langchain import LangChainInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from .runtime import start_tracing

with warnings.catch_warnings():
    # Moved to langchain.agents in LangGraph 1.x, which this environment does not install.
    warnings.simplefilter("ignore")
    from langgraph.prebuilt import create_react_agent

THREAD_ID = "langgraph-thread-1"
MODEL = "fake-chat-model-1"
UNKNOWN_CITY = "Atlantis"
CAPTURE_NAME = "langgraph"


class ToolCallingFakeModel(GenericFakeChatModel):
    """The scripted model; binding tools changes nothing, the script already holds the calls."""

    model_name: str = MODEL

    @property
    def _identifying_params(self) -> dict[str, Any]:
        # Invocation parameters are where instrumentations read a LangChain model's name.
        return {"model_name": self.model_name}

    def bind_tools(
        self, tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool], **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        return self


def scripted_reply(content: str, tool_city: str | None, tokens: tuple[int, int]) -> AIMessage:
    calls = (
        []
        if tool_city is None
        else [
            {"name": "get_weather", "args": {"city": tool_city}, "id": f"call_{tool_city.lower()}"}
        ]
    )
    return AIMessage(
        content=content,
        tool_calls=calls,
        usage_metadata={
            "input_tokens": tokens[0],
            "output_tokens": tokens[1],
            "total_tokens": sum(tokens),
        },
        response_metadata={"model_name": MODEL, "finish_reason": "tool_calls" if calls else "stop"},
    )


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    if city == UNKNOWN_CITY:
        raise LookupError(f"no weather station in {city}")
    return f"sunny in {city}"


def attach_capture(provider: TracerProvider) -> InMemorySpanExporter | None:
    """With ``WEAVE_TEST_CAPTURE=1``, also keep the raw spans for ``dump_capture``."""
    if os.environ.get("WEAVE_TEST_CAPTURE") != "1":
        return None
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return memory


def describe(span: ReadableSpan) -> dict[str, Any]:
    parent = span.parent
    return {
        "name": span.name,
        "kind": span.kind.name,
        "span_id": f"{span.context.span_id:016x}" if span.context else None,
        "trace_id": f"{span.context.trace_id:032x}" if span.context else None,
        "parent_span_id": f"{parent.span_id:016x}" if parent else None,
        "status": {"code": span.status.status_code.name, "description": span.status.description},
        "scope": span.instrumentation_scope.name if span.instrumentation_scope else None,
        "attributes": dict(span.attributes or {}),
        "events": [{"name": e.name, "attributes": dict(e.attributes or {})} for e in span.events],
    }


def dump_capture(memory: InMemorySpanExporter | None) -> None:
    if memory is None:
        return
    folder = Path(os.environ.get("WEAVE_TEST_CAPTURE_DIR", "/work/tasks/captures"))
    folder.mkdir(parents=True, exist_ok=True)
    spans = [describe(span) for span in memory.get_finished_spans()]
    (folder / f"{CAPTURE_NAME}.json").write_text(json.dumps(spans, indent=1, default=str))


def main() -> None:
    provider, _ = start_tracing()
    memory = attach_capture(provider)
    instrumentor = LangChainInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    model = ToolCallingFakeModel(
        messages=iter(
            [
                scripted_reply("", "Paris", (30, 8)),
                scripted_reply("It is sunny in Paris.", None, (45, 6)),
                scripted_reply("", UNKNOWN_CITY, (60, 8)),
            ]
        )
    )
    agent = create_react_agent(
        model, [get_weather], prompt="Answer in one sentence.", checkpointer=InMemorySaver()
    )
    config: Any = {"configurable": {"thread_id": THREAD_ID}}
    agent.invoke({"messages": [("user", "What is the weather in Paris?")]}, config)
    try:
        agent.invoke({"messages": [("user", f"And in {UNKNOWN_CITY}?")]}, config)
    except LookupError:
        pass
    else:
        raise AssertionError("the tool should have failed the second turn")
    instrumentor.uninstrument()
    provider.shutdown()
    dump_capture(memory)


if __name__ == "__main__":
    main()
