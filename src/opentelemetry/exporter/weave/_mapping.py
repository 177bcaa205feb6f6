"""Pure mapping from a finished OpenTelemetry span to the two halves of a Weave call."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import StatusCode

from opentelemetry.exporter.weave._conventions import KEYS
from opentelemetry.exporter.weave._models import (
    OP_NAME_MAX_LENGTH,
    EndedCallSchemaForInsert,
    LLMUsageSchema,
    StartedCallSchemaForInsert,
    SummaryInsertMap,
    TraceStatus,
)
from opentelemetry.exporter.weave._sanitize import clean_str, decode_json_text, json_safe

__all__ = ["UNKNOWN_MODEL", "WeaveCall", "format_span_id", "op_name_for", "span_to_call"]

UNKNOWN_MODEL = "unknown"
OTEL_ATTRIBUTES_KEY = "otel"
_EXCEPTION_EVENT = "exception"
_SHORTENED_HASH_CHARS = 8
_NANOS_PER_SECOND = 1_000_000_000

# Keys whose value becomes a call field of its own, so it is not repeated in `attributes`.
_CALL_FIELD_KEYS = frozenset(
    KEYS.inputs
    + KEYS.outputs
    + KEYS.display_name
    + KEYS.thread_id
    + KEYS.wb_run_id
    + KEYS.wb_run_step
    + KEYS.wb_run_step_end
)


@dataclass(frozen=True)
class WeaveCall:
    """One span as a Weave call: what ``/call/start`` and ``/call/end`` carry."""

    start: StartedCallSchemaForInsert
    end: EndedCallSchemaForInsert


def format_span_id(span_id: int) -> str:
    return format(span_id, "016x")


def format_trace_id(trace_id: int) -> str:
    return format(trace_id, "032x")


def op_name_for(span_name: str) -> str:
    """The span name, shortened deterministically (prefix + hash) when Weave would refuse it."""
    name = clean_str(span_name) or "unnamed_span"
    if len(name) < OP_NAME_MAX_LENGTH:
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:_SHORTENED_HASH_CHARS]
    return f"{name[: OP_NAME_MAX_LENGTH - _SHORTENED_HASH_CHARS - 2]}_{digest}"


def span_to_call(span: ReadableSpan, project_id: str) -> WeaveCall:
    """Map one finished span. Never raises on odd attribute values: they are sanitised."""
    attributes: Mapping[str, Any] = span.attributes or {}
    span_id = format_span_id(span.context.span_id) if span.context else "0" * 16
    started_at = _utc(span.start_time or 0)
    ended_at = _utc(span.end_time) if span.end_time is not None else started_at
    exception = _exception_json(span)
    is_error = exception is not None
    start = StartedCallSchemaForInsert(
        project_id=project_id,
        id=span_id,
        op_name=op_name_for(span.name),
        display_name=_first_str(attributes, KEYS.display_name),
        trace_id=format_trace_id(span.context.trace_id) if span.context else "0" * 32,
        parent_id=format_span_id(span.parent.span_id) if span.parent else None,
        thread_id=_first_str(attributes, KEYS.thread_id),
        started_at=started_at,
        attributes=_call_attributes(span, attributes),
        inputs=_inputs(attributes),
        wb_run_id=_wb_run_id(attributes, project_id),
        wb_run_step=_first_int(attributes, KEYS.wb_run_step),
    )
    end = EndedCallSchemaForInsert(
        project_id=project_id,
        id=span_id,
        started_at=started_at,
        ended_at=ended_at,
        exception=exception,
        output=_decoded(_first(attributes, KEYS.outputs)),
        summary=SummaryInsertMap(
            usage=_usage(attributes),
            status_counts={
                TraceStatus.SUCCESS: 0 if is_error else 1,
                TraceStatus.ERROR: 1 if is_error else 0,
            },
        ),
        wb_run_step_end=_first_int(attributes, KEYS.wb_run_step_end),
    )
    return WeaveCall(start=start, end=end)


def _utc(nanoseconds: int) -> datetime:
    seconds, remainder = divmod(nanoseconds, _NANOS_PER_SECOND)
    return datetime.fromtimestamp(seconds, timezone.utc).replace(microsecond=remainder // 1000)


def _first(attributes: Mapping[str, Any], keys: Iterable[str]) -> Any:
    for key in keys:
        value = attributes.get(key)
        if value is not None:
            return value
    return None


def _first_str(attributes: Mapping[str, Any], keys: Iterable[str]) -> str | None:
    value = _first(attributes, keys)
    if value is None:
        return None
    text = clean_str(value if isinstance(value, str) else str(json_safe(value)))
    return text or None


def _first_int(attributes: Mapping[str, Any], keys: Iterable[str]) -> int | None:
    for key in keys:
        value = _as_int(attributes.get(key))
        if value is not None:
            return value
    return None


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    if isinstance(value, str):
        try:
            return int(float(value.strip()))
        except (ValueError, OverflowError):
            return None
    return None


def _decoded(value: object) -> Any:
    return None if value is None else json_safe(decode_json_text(value))


def _inputs(attributes: Mapping[str, Any]) -> dict[str, Any]:
    value = _decoded(_first(attributes, KEYS.inputs))
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    # Weave shows a chat view for `inputs.messages`; anything else keeps a neutral name.
    return {"messages" if _looks_like_messages(value) else "input": value}


def _looks_like_messages(value: object) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(item, dict) and "role" in item for item in value)
    )


def _usage(attributes: Mapping[str, Any]) -> dict[str, LLMUsageSchema] | None:
    input_tokens = _first_int(attributes, KEYS.input_tokens)
    output_tokens = _first_int(attributes, KEYS.output_tokens)
    total_tokens = _first_int(attributes, KEYS.total_tokens)
    cache_read = _first_int(attributes, KEYS.cache_read_input_tokens)
    cache_write = _first_int(attributes, KEYS.cache_creation_input_tokens)
    reasoning = _first_int(attributes, KEYS.reasoning_tokens)
    counts = (input_tokens, output_tokens, total_tokens, cache_read, cache_write, reasoning)
    if all(count is None for count in counts):
        return None
    if total_tokens is None and (input_tokens is not None or output_tokens is not None):
        total_tokens = (input_tokens or 0) + (output_tokens or 0)
    # Reasoning tokens have no field in the schema; the service keeps extra usage keys.
    extra = {} if reasoning is None else {"reasoning_tokens": reasoning}
    usage = LLMUsageSchema(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=total_tokens,
        requests=1,
        cache_read_input_tokens=cache_read,
        cache_creation_input_tokens=cache_write,
        **extra,
    )
    model = _first_str(attributes, KEYS.model) or UNKNOWN_MODEL
    return {model: usage}


def _exception_json(span: ReadableSpan) -> str | None:
    """Weave's exception string, set exactly when the span failed.

    An exception event on a span whose status is not ERROR was handled, so it is no error.
    """
    if span.status.status_code is not StatusCode.ERROR:
        return None
    event = _last_exception_event(span.events)
    if event is not None:
        event_attributes = event.attributes or {}
        error_type = _first_str(event_attributes, ("exception.type",)) or "Exception"
        message = _first_str(event_attributes, ("exception.message",)) or ""
        traceback = _first_str(event_attributes, ("exception.stacktrace",)) or ""
    else:
        span_attributes = span.attributes or {}
        error_type = _first_str(span_attributes, ("error.type",)) or "Error"
        message = clean_str(span.status.description or "") or error_type
        traceback = ""
    return json.dumps(
        {"type": error_type, "message": message, "traceback": traceback}, ensure_ascii=False
    )


def _last_exception_event(events: Iterable[Event]) -> Event | None:
    found = None
    for event in events:
        if event.name == _EXCEPTION_EVENT:
            found = event
    return found


def _wb_run_id(attributes: Mapping[str, Any], project_id: str) -> str | None:
    run_id = _first_str(attributes, KEYS.wb_run_id)
    if run_id is None or "/" in run_id:
        return run_id
    return f"{project_id}/{run_id}"


def _call_attributes(span: ReadableSpan, attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The span's own attributes, minus those that became call fields, plus OTel context."""
    call_attributes = {
        clean_str(key): json_safe(value)
        for key, value in attributes.items()
        if key not in _CALL_FIELD_KEYS
    }
    scope = span.instrumentation_scope
    call_attributes[OTEL_ATTRIBUTES_KEY] = {
        "span_kind": span.kind.name,
        "status": {
            "code": span.status.status_code.name,
            "description": clean_str(span.status.description or "") or None,
        },
        "scope": {
            "name": scope.name if scope else None,
            "version": scope.version if scope else None,
        },
        "resource": json_safe(dict(span.resource.attributes)) if span.resource else {},
        "events": [
            {
                "name": clean_str(event.name),
                "timestamp": _utc(event.timestamp).isoformat(timespec="microseconds"),
                "attributes": json_safe(dict(event.attributes or {})),
            }
            for event in span.events
        ],
    }
    return call_attributes
