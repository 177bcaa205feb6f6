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

__all__ = [
    "CONTENT_EVENTS",
    "CONVENTIONS",
    "FLATTENED_SUFFIX",
    "JSON_MIME_TYPE",
    "KEYS",
    "MIME_TYPE_KEYS",
    "Convention",
]


@dataclass(frozen=True)
class Convention:
    """The attribute keys one convention family uses for each call field."""

    name: str
    detect_prefixes: tuple[str, ...] = ()
    """Attribute prefixes that mark a span as this family's (for ``WEAVE_OTEL_SPANS=genai``)."""
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    model: tuple[str, ...] = ()
    provider: tuple[str, ...] = ()
    span_kind: tuple[str, ...] = ()
    display_name: tuple[str, ...] = ()
    thread_id: tuple[str, ...] = ()
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
    wb_run_id=("wandb.wb_run_id",),
    wb_run_step=("wandb.wb_run_step",),
    wb_run_step_end=("wandb.wb_run_step_end",),
)

OTEL_GENAI = Convention(
    name="OpenTelemetry GenAI",
    detect_prefixes=("gen_ai.",),
    inputs=("gen_ai.input.messages", "gen_ai.tool.call.arguments"),
    outputs=("gen_ai.output.messages", "gen_ai.tool.call.result"),
    model=("gen_ai.response.model", "gen_ai.request.model"),
    provider=("gen_ai.provider.name", "gen_ai.system"),
    span_kind=("gen_ai.operation.name",),
    display_name=("gen_ai.agent.name", "gen_ai.tool.name"),
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
    span_kind=("traceloop.span.kind",),
    display_name=("traceloop.entity.name",),
    input_tokens=("gen_ai.usage.prompt_tokens",),
    output_tokens=("gen_ai.usage.completion_tokens",),
    total_tokens=("llm.usage.total_tokens",),
)

OPENINFERENCE = Convention(
    name="OpenInference",
    detect_prefixes=("openinference.", "llm."),
    inputs=("input.value", "llm.input_messages.*"),
    outputs=("output.value", "llm.output_messages.*"),
    model=("llm.model_name",),
    provider=("llm.provider", "llm.system"),
    span_kind=("openinference.span.kind",),
    display_name=("tool.name",),
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
    inputs=("ai.prompt", "ai.prompt.messages", "ai.toolCall.args"),
    outputs=(
        "ai.response",
        "ai.response.text",
        "ai.response.object",
        "ai.response.toolCalls",
        "ai.toolCall.result",
    ),
    model=("ai.response.model", "ai.model.id"),
    provider=("ai.model.provider",),
    span_kind=("ai.operationId",),
    display_name=("ai.toolCall.name", "ai.telemetry.functionId"),
    input_tokens=("ai.usage.inputTokens", "ai.usage.promptTokens"),
    output_tokens=("ai.usage.outputTokens", "ai.usage.completionTokens"),
    total_tokens=("ai.usage.totalTokens",),
    cache_read_input_tokens=("ai.usage.cachedInputTokens",),
    reasoning_tokens=("ai.usage.reasoningTokens",),
)

OTHER_FRAMEWORKS = Convention(
    name="MLflow, Pydantic AI, Google ADK",
    detect_prefixes=("mlflow.", "pydantic_ai.", "gcp.vertex.agent."),
    inputs=(
        "mlflow.spanInputs",
        "pydantic_ai.all_messages",
        "gcp.vertex.agent.tool_call_args",
        "gcp.vertex.agent.llm_request",
    ),
    outputs=(
        "mlflow.spanOutputs",
        "final_result",
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
