"""Where each convention family puts what a Weave call needs: one table per family.

The precedence rule is single and global: families are consulted in the order of
``CONVENTIONS``, each family's keys in the order listed, and the first key present on the span
wins. Sources: WEAVE_WIRE.md §4 (Weave's own OTel ingestion) and §5 (token keys in the wild).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["CONVENTIONS", "KEYS", "Convention"]


@dataclass(frozen=True)
class Convention:
    """The attribute keys one convention family uses for each call field."""

    name: str
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


WEAVE = Convention(
    name="weave",
    span_kind=("weave.span.kind",),
    display_name=("wandb.display_name",),
    thread_id=("wandb.thread_id",),
    wb_run_id=("wandb.wb_run_id",),
    wb_run_step=("wandb.wb_run_step",),
    wb_run_step_end=("wandb.wb_run_step_end",),
)

OTEL_GENAI = Convention(
    name="OpenTelemetry GenAI",
    inputs=("gen_ai.input.messages",),
    outputs=("gen_ai.output.messages",),
    model=("gen_ai.response.model", "gen_ai.request.model"),
    provider=("gen_ai.provider.name", "gen_ai.system"),
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
)

OPENLLMETRY = Convention(
    name="OpenLLMetry / Traceloop",
    inputs=("gen_ai.prompt", "traceloop.entity.input"),
    outputs=("gen_ai.completion", "gen_ai.content.completion", "traceloop.entity.output"),
    span_kind=("traceloop.span.kind",),
    input_tokens=("gen_ai.usage.prompt_tokens",),
    output_tokens=("gen_ai.usage.completion_tokens",),
    total_tokens=("llm.usage.total_tokens",),
)

OPENINFERENCE = Convention(
    name="OpenInference",
    inputs=("input.value",),
    outputs=("output.value",),
    model=("llm.model_name",),
    provider=("llm.provider",),
    span_kind=("openinference.span.kind",),
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
    inputs=("ai.prompt",),
    outputs=("ai.response",),
    model=("ai.model.id",),
    provider=("ai.model.provider",),
    input_tokens=("ai.usage.promptTokens",),
    output_tokens=("ai.usage.completionTokens",),
)

OTHER_FRAMEWORKS = Convention(
    name="MLflow, Pydantic AI, Google ADK",
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
