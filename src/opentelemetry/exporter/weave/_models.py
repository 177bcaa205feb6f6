"""Pydantic models of the Weave trace service's write payloads.

They mirror the service's OpenAPI (``CallEndReq`` and friends) and the start half described in
``WEAVE_WIRE.md`` §2. Request wrappers forbid unknown keys, as the service does (422); the
summary and usage maps keep unknown keys, as the service does.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from opentelemetry.exporter.weave._call import EndedCall, StartedCall, WeaveCall

__all__ = [
    "OP_NAME_MAX_LENGTH",
    "UNKNOWN_MODEL",
    "CallBatchStartMode",
    "CallEndReq",
    "CallStartReq",
    "CallStartRes",
    "CallsCompleteReq",
    "CompletedCallSchemaForInsert",
    "EndedCallSchemaForInsert",
    "LLMUsageSchema",
    "StartedCallSchemaForInsert",
    "SummaryInsertMap",
    "TraceStatus",
    "UpsertBatchReq",
    "call_from_json",
]

OP_NAME_MAX_LENGTH = 128

UNKNOWN_MODEL = "unknown"
"""The usage key of tokens whose model no attribute names."""


def _utc_iso(value: datetime) -> str:
    # Always six fractional digits and an explicit offset, whatever the value.
    if value.tzinfo is not timezone.utc:
        value = value.astimezone(timezone.utc)
    return value.isoformat(timespec="microseconds")


UtcDatetime = Annotated[AwareDatetime, PlainSerializer(_utc_iso, return_type=str, when_used="json")]


class TraceStatus(str, Enum):
    SUCCESS = "success"
    ERROR = "error"
    RUNNING = "running"
    DESCENDANT_ERROR = "descendant_error"


class _OmitsNulls(BaseModel):
    """A map whose unset optional keys are left out of the JSON, never sent as ``null``.

    A present ``null`` token count outranks a real one in Weave's cost sum (WEAVE_WIRE §3).
    """

    @model_serializer(mode="wrap")
    def _without_nulls(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        dumped: dict[str, Any] = handler(self)
        return {key: value for key, value in dumped.items() if value is not None}


class LLMUsageSchema(_OmitsNulls):
    model_config = ConfigDict(extra="allow")

    prompt_tokens: int | None = None
    input_tokens: int | None = None
    completion_tokens: int | None = None
    output_tokens: int | None = None
    requests: int | None = None
    total_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None


class SummaryInsertMap(_OmitsNulls):
    model_config = ConfigDict(extra="allow")

    usage: dict[str, LLMUsageSchema] | None = None
    status_counts: dict[TraceStatus, int] | None = None


class EndedCallSchemaForInsert(BaseModel):
    project_id: str
    id: str
    trace_id: str | None = None
    """Not in the service's OpenAPI, which allows extra keys here: newer servers read it (a
    sampler keeps or drops an end by its trace without finding its start), older ones ignore it.
    Every :class:`~opentelemetry.exporter.weave._call.WeaveCall` carries its start's."""
    ended_at: UtcDatetime
    exception: str | None = None
    output: Any = None
    summary: SummaryInsertMap
    started_at: UtcDatetime | None = None
    wb_run_step_end: int | None = None


class StartedCallSchemaForInsert(BaseModel):
    project_id: str
    id: str
    op_name: Annotated[str, Field(min_length=1, max_length=OP_NAME_MAX_LENGTH)]
    display_name: str | None = None
    trace_id: str
    parent_id: str | None = None
    thread_id: str | None = None
    turn_id: str | None = None
    started_at: UtcDatetime
    attributes: dict[str, Any]
    inputs: dict[str, Any]
    wb_run_id: str | None = None
    wb_run_step: int | None = None


class CallStartReq(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: StartedCallSchemaForInsert


class CallStartRes(BaseModel):
    id: str
    trace_id: str


class CallEndReq(BaseModel):
    model_config = ConfigDict(extra="forbid")

    end: EndedCallSchemaForInsert


class CallBatchStartMode(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["start"] = "start"
    req: CallStartReq


class CallBatchEndMode(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["end"] = "end"
    req: CallEndReq


class UpsertBatchReq(BaseModel):
    """``POST /call/upsert_batch``: many starts and ends in one request."""

    model_config = ConfigDict(extra="forbid")

    batch: list[Annotated[CallBatchStartMode | CallBatchEndMode, Field(discriminator="mode")]]


class CompletedCallSchemaForInsert(BaseModel):
    """A whole call, start and end fields together, for the v2 ``calls/complete`` route."""

    project_id: str
    id: str
    trace_id: str
    op_name: Annotated[str, Field(min_length=1, max_length=OP_NAME_MAX_LENGTH)]
    display_name: str | None = None
    parent_id: str | None = None
    thread_id: str | None = None
    turn_id: str | None = None
    started_at: UtcDatetime
    ended_at: UtcDatetime
    attributes: dict[str, Any]
    inputs: dict[str, Any]
    output: Any = None
    exception: str | None = None
    summary: SummaryInsertMap
    wb_run_id: str | None = None
    wb_run_step: int | None = None
    wb_run_step_end: int | None = None


class CallsCompleteReq(BaseModel):
    """``POST /v2/{entity}/{project}/calls/complete``."""

    model_config = ConfigDict(extra="forbid")

    batch: list[CompletedCallSchemaForInsert]


def call_from_json(start_json: bytes | str, end_json: bytes | str) -> WeaveCall:
    """A call from its halves' JSON, validated as the service would (a spooled call, read back
    from disk). Raises ``pydantic.ValidationError`` (a ``ValueError``) on what it would refuse."""
    start = StartedCallSchemaForInsert.model_validate_json(start_json)
    end = EndedCallSchemaForInsert.model_validate_json(end_json)
    return WeaveCall(
        start=StartedCall(**dict(start)),
        end=EndedCall(**{**dict(end), "summary": end.summary.model_dump(mode="json")}),
    )
