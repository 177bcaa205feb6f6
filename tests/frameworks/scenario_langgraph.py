"""LangGraph's ``create_react_agent`` traced by OpenInference's LangChain instrumentation.

The model is a ``GenericFakeChatModel`` scripted with ``AIMessage``s that carry tool calls and
usage. Two turns of one conversation (``thread_id`` in the config, kept by an in-memory
checkpointer): turn 1 calls ``get_weather`` for Paris and answers; turn 2 asks for a city the
tool refuses, so the tool and the graph run fail.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool, tool
from langgraph.checkpoint.memory import InMemorySaver
from openinference.instrumentation.langchain import LangChainInstrumentor

from .runtime import expect_failure, start_tracing

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


def main() -> None:
    tracing = start_tracing(capture=CAPTURE_NAME)
    instrumentor = LangChainInstrumentor()
    instrumentor.instrument(tracer_provider=tracing.provider)
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
    expect_failure(
        LookupError, agent.invoke, {"messages": [("user", f"And in {UNKNOWN_CITY}?")]}, config
    )
    instrumentor.uninstrument()
    tracing.finish()


if __name__ == "__main__":
    main()
