"""Where each convention family puts what a Weave call needs: one table per family.

The precedence rule is single and global: families are consulted in the order of
``CONVENTIONS``, each family's keys in the order listed, and the first key present on the span
wins. A key ending in ``.*`` names flattened attributes (``gen_ai.prompt.0.role``, …), rebuilt
into a list. Sources: WEAVE_WIRE.md §4 (Weave's own OTel ingestion) and §5 (token keys in the
wild), and each convention's own specification.

Weave's own ingestion tries its input keys in one interleaved list (``ai.prompt`` first); here a
family's keys are tried together. The two differ only for a span that carries the content keys
of two families at once.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

WeaveKind = Literal["llm", "tool", "agent", "search", "guardrail", "scorer"]
"""The kinds Weave's UI gives an icon (``attributes.weave.kind``)."""

__all__ = [
    "CONTENT_EVENTS",
    "CONVENTIONS",
    "FLATTENED_SUFFIX",
    "JSON_MIME_TYPE",
    "KEYS",
    "KIND_VALUES",
    "MESSAGE_EVENTS",
    "MIME_TYPE_KEYS",
    "PARAMETER_NAMES",
    "WEAVE",
    "Convention",
    "WeaveKind",
]


@dataclass(frozen=True)
class Convention:
    """The attribute keys one convention family uses for each call field."""

    name: str
    detect_prefixes: tuple[str, ...] = ()
    """Attribute prefixes that mark a span as this family's (for ``WEAVE_OTEL_SPANS=genai``)."""
    llm_inputs: tuple[str, ...] = ()
    """Message keys read before ``inputs`` on an LLM call, whose ``inputs`` keys may hold the
    framework's raw objects instead."""
    llm_outputs: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    request_parameters: tuple[str, ...] = ()
    """An LLM call's request settings, shown beside its messages (:data:`PARAMETER_NAMES`)."""
    model: tuple[str, ...] = ()
    """The model that answered: the usage key, which Weave prices by."""
    request_model: tuple[str, ...] = ()
    """The model asked for, shown beside an LLM call's messages."""
    response_id: tuple[str, ...] = ()
    finish_reasons: tuple[str, ...] = ()
    provider: tuple[str, ...] = ()
    span_kind: tuple[str, ...] = ()
    display_name: tuple[str, ...] = ()
    """Names for any call; an agent's or a tool's own name comes first on those calls."""
    agent_name: tuple[str, ...] = ()
    tool_name: tuple[str, ...] = ()
    thread_id: tuple[str, ...] = ()
    is_turn: tuple[str, ...] = ()
    wb_run_id: tuple[str, ...] = ()
    wb_run_step: tuple[str, ...] = ()
    wb_run_step_end: tuple[str, ...] = ()
    input_tokens: tuple[str, ...] = ()
    output_tokens: tuple[str, ...] = ()
    total_tokens: tuple[str, ...] = ()
    cache_read_input_tokens: tuple[str, ...] = ()
    cache_creation_input_tokens: tuple[str, ...] = ()
    reasoning_tokens: tuple[str, ...] = ()
    system_instructions: tuple[str, ...] = ()


WEAVE = Convention(
    name="weave",
    detect_prefixes=("weave.", "wandb."),
    span_kind=("weave.span.kind",),
    display_name=("wandb.display_name",),
    thread_id=("wandb.thread_id",),
    is_turn=("wandb.is_turn",),
    wb_run_id=("wandb.wb_run_id",),
    wb_run_step=("wandb.wb_run_step",),
    wb_run_step_end=("wandb.wb_run_step_end",),
)

OTEL_GENAI = Convention(
    name="OpenTelemetry GenAI",
    detect_prefixes=("gen_ai.",),
    inputs=("gen_ai.input.messages", "gen_ai.tool.call.arguments"),
    outputs=("gen_ai.output.messages", "gen_ai.tool.call.result"),
    request_parameters=(
        "gen_ai.request.temperature",
        "gen_ai.request.max_tokens",
        "gen_ai.request.top_p",
        "gen_ai.request.top_k",
        "gen_ai.request.frequency_penalty",
        "gen_ai.request.presence_penalty",
        "gen_ai.request.stop_sequences",
        "gen_ai.request.seed",
        "gen_ai.request.choice.count",
    ),
    model=("gen_ai.response.model", "gen_ai.request.model"),
    request_model=("gen_ai.request.model",),
    response_id=("gen_ai.response.id",),
    finish_reasons=("gen_ai.response.finish_reasons",),
    provider=("gen_ai.provider.name", "gen_ai.system"),
    span_kind=("gen_ai.operation.name",),
    agent_name=("gen_ai.agent.name",),
    tool_name=("gen_ai.tool.name",),
    thread_id=("gen_ai.conversation.id",),
    input_tokens=("gen_ai.usage.input_tokens",),
    output_tokens=("gen_ai.usage.output_tokens",),
    total_tokens=("gen_ai.usage.total_tokens",),
    cache_read_input_tokens=(
        "gen_ai.usage.cache_read.input_tokens",
        "gen_ai.usage.cache_read_input_tokens",
    ),
    cache_creation_input_tokens=(
        "gen_ai.usage.cache_write.input_tokens",
        "gen_ai.usage.cache_creation.input_tokens",
        "gen_ai.usage.cache_creation_input_tokens",
    ),
    reasoning_tokens=("gen_ai.usage.reasoning.output_tokens",),
    system_instructions=("gen_ai.system_instructions",),
)

OPENLLMETRY = Convention(
    name="OpenLLMetry / Traceloop",
    detect_prefixes=("traceloop.", "llm."),
    inputs=("gen_ai.prompt", "gen_ai.prompt.*", "traceloop.entity.input"),
    outputs=(
        "gen_ai.completion",
        "gen_ai.completion.*",
        "gen_ai.content.completion",
        "traceloop.entity.output",
    ),
    span_kind=("traceloop.span.kind", "llm.request.type"),
    display_name=("traceloop.entity.name",),
    input_tokens=("gen_ai.usage.prompt_tokens",),
    output_tokens=("gen_ai.usage.completion_tokens",),
    total_tokens=("llm.usage.total_tokens",),
)

OPENINFERENCE = Convention(
    name="OpenInference",
    detect_prefixes=("openinference.", "llm."),
    llm_inputs=("llm.input_messages.*",),
    llm_outputs=("llm.output_messages.*",),
    inputs=("input.value", "llm.input_messages.*"),
    outputs=("output.value", "llm.output_messages.*"),
    request_parameters=("llm.invocation_parameters",),
    model=("llm.model_name",),
    request_model=("llm.model_name",),
    finish_reasons=("llm.finish_reason",),
    provider=("llm.provider", "llm.system"),
    span_kind=("openinference.span.kind",),
    agent_name=("agent.name",),
    tool_name=("tool.name",),
    thread_id=("session.id",),
    input_tokens=("llm.token_count.prompt",),
    output_tokens=("llm.token_count.completion",),
    total_tokens=("llm.token_count.total",),
    cache_read_input_tokens=("llm.token_count.prompt_details.cache_read",),
    cache_creation_input_tokens=("llm.token_count.prompt_details.cache_write",),
    reasoning_tokens=("llm.token_count.completion_details.reasoning",),
)

VERCEL_AI = Convention(
    name="Vercel AI SDK",
    detect_prefixes=("ai.",),
    llm_inputs=("ai.prompt.messages",),
    inputs=("ai.prompt", "ai.prompt.messages", "ai.toolCall.args"),
    outputs=(
        "ai.response",
        "ai.response.text",
        "ai.response.object",
        "ai.response.toolCalls",
        "ai.toolCall.result",
    ),
    request_parameters=(
        "ai.settings.temperature",
        "ai.settings.maxOutputTokens",
        "ai.settings.maxTokens",
        "ai.settings.topP",
        "ai.settings.topK",
        "ai.settings.frequencyPenalty",
        "ai.settings.presencePenalty",
        "ai.settings.stopSequences",
        "ai.settings.seed",
    ),
    model=("ai.response.model", "ai.model.id"),
    request_model=("ai.model.id",),
    response_id=("ai.response.id",),
    finish_reasons=("ai.response.finishReason",),
    provider=("ai.model.provider",),
    span_kind=("ai.operationId",),
    display_name=("ai.telemetry.functionId",),
    tool_name=("ai.toolCall.name",),
    input_tokens=("ai.usage.inputTokens", "ai.usage.promptTokens"),
    output_tokens=("ai.usage.outputTokens", "ai.usage.completionTokens"),
    total_tokens=("ai.usage.totalTokens",),
    cache_read_input_tokens=("ai.usage.cachedInputTokens",),
    reasoning_tokens=("ai.usage.reasoningTokens",),
)

OTHER_FRAMEWORKS = Convention(
    name="MLflow, Pydantic AI, Google ADK, Anthropic SDK",
    detect_prefixes=("mlflow.", "pydantic_ai.", "gcp.vertex.agent."),
    inputs=(
        "mlflow.spanInputs",
        "pydantic_ai.all_messages",
        "tool_arguments",
        "gcp.vertex.agent.tool_call_args",
        "gcp.vertex.agent.llm_request",
    ),
    outputs=(
        "mlflow.spanOutputs",
        "final_result",
        "tool_response",
        "anthropic.tool_result.content",
        "gcp.vertex.agent.tool_response",
        "gcp.vertex.agent.llm_response",
    ),
)

GENERIC = Convention(
    name="generic",
    inputs=("input", "inputs"),
    outputs=("output", "outputs"),
)

CONVENTIONS: tuple[Convention, ...] = (
    WEAVE,
    OTEL_GENAI,
    OPENLLMETRY,
    OPENINFERENCE,
    VERCEL_AI,
    OTHER_FRAMEWORKS,
    GENERIC,
)


def _merged(conventions: tuple[Convention, ...]) -> Convention:
    """One Convention whose key tuples follow the precedence rule."""
    merged: dict[str, tuple[str, ...]] = {}
    for spec in fields(Convention):
        if spec.name != "name":
            keys = (key for convention in conventions for key in getattr(convention, spec.name))
            merged[spec.name] = tuple(dict.fromkeys(keys))
    return Convention(name="merged", **merged)


KEYS = _merged(CONVENTIONS)

FLATTENED_SUFFIX = ".*"

# OpenInference says how its `input.value` / `output.value` text is to be read.
MIME_TYPE_KEYS = {"input.value": "input.mime_type", "output.value": "output.mime_type"}
JSON_MIME_TYPE = "application/json"

# Older instrumentations put the content on span events instead of attributes: the event's
# attributes are read as if they were the span's, after the span's own.
CONTENT_EVENTS = ("gen_ai.content.prompt", "gen_ai.content.completion")

# The parameter name each request-parameter key shows under in an LLM call's inputs; a key
# missing here holds a JSON object of parameters (OpenInference's `llm.invocation_parameters`).
PARAMETER_NAMES = {
    "gen_ai.request.temperature": "temperature",
    "gen_ai.request.max_tokens": "max_tokens",
    "gen_ai.request.top_p": "top_p",
    "gen_ai.request.top_k": "top_k",
    "gen_ai.request.frequency_penalty": "frequency_penalty",
    "gen_ai.request.presence_penalty": "presence_penalty",
    "gen_ai.request.stop_sequences": "stop",
    "gen_ai.request.seed": "seed",
    "gen_ai.request.choice.count": "n",
    "ai.settings.temperature": "temperature",
    "ai.settings.maxOutputTokens": "max_tokens",
    "ai.settings.maxTokens": "max_tokens",
    "ai.settings.topP": "top_p",
    "ai.settings.topK": "top_k",
    "ai.settings.frequencyPenalty": "frequency_penalty",
    "ai.settings.presencePenalty": "presence_penalty",
    "ai.settings.stopSequences": "stop",
    "ai.settings.seed": "seed",
}

# What each span-kind key's values say about the call's Weave kind (values compared in lower
# case); a value missing here (a chain, a workflow, an outer `ai.generateText`) has no kind.
KIND_VALUES: dict[str, dict[str, WeaveKind]] = {
    "weave.span.kind": {
        kind: kind for kind in ("llm", "tool", "agent", "search", "guardrail", "scorer")
    },
    "gen_ai.operation.name": {
        "chat": "llm",
        "text_completion": "llm",
        "generate_content": "llm",
        "embeddings": "llm",
        "execute_tool": "tool",
        "invoke_agent": "agent",
        "create_agent": "agent",
    },
    "traceloop.span.kind": {"agent": "agent", "tool": "tool"},
    "llm.request.type": {
        "chat": "llm",
        "completion": "llm",
        "embedding": "llm",
        "rerank": "llm",
    },
    "openinference.span.kind": {
        "llm": "llm",
        "embedding": "llm",
        "tool": "tool",
        "agent": "agent",
        "retriever": "search",
        "reranker": "search",
        "guardrail": "guardrail",
        "evaluator": "scorer",
    },
    "ai.operationId": {
        "ai.generateText.doGenerate": "llm",
        "ai.streamText.doStream": "llm",
        "ai.generateObject.doGenerate": "llm",
        "ai.streamObject.doStream": "llm",
        "ai.embed.doEmbed": "llm",
        "ai.embedMany.doEmbed": "llm",
        "ai.toolCall": "tool",
    },
}

# Events that carry an LLM call's messages, on the span or as log records (WEAVE_WIRE §8):
# one per message (older GenAI conventions, strands), or all of them in one.
MESSAGE_EVENTS = frozenset(
    {
        "gen_ai.system.message",
        "gen_ai.user.message",
        "gen_ai.assistant.message",
        "gen_ai.tool.message",
        "gen_ai.choice",
        "gen_ai.client.inference.operation.details",
    }
)
