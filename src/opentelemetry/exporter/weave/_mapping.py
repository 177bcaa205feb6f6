"""Pure mapping from a finished OpenTelemetry span to the two halves of a Weave call."""

from __future__ import annotations

import hashlib
import json
import math
import operator
import re
from collections import ChainMap
from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import Enum
from typing import Any, Literal, NamedTuple, SupportsIndex

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import StatusCode

from opentelemetry.exporter.weave._call import (
    OTEL_ATTRIBUTES_KEY,
    WeaveCall,
    format_span_id,
    format_trace_id,
    utc_datetime,
)
from opentelemetry.exporter.weave._conventions import (
    CONTENT_EVENTS,
    FLATTENED_SUFFIX,
    JSON_MIME_TYPE,
    KEYS,
    MIME_TYPE_KEYS,
)
from opentelemetry.exporter.weave._models import (
    OP_NAME_MAX_LENGTH,
    EndedCallSchemaForInsert,
    LLMUsageSchema,
    StartedCallSchemaForInsert,
    SummaryInsertMap,
    TraceStatus,
)
from opentelemetry.exporter.weave._sanitize import MAX_DEPTH, clean_str, json_safe, safe_json_from

__all__ = ["SPAN_PARENT", "parent_call_id", "span_to_call", "stack_frames"]

UNKNOWN_MODEL = "unknown"
_EXCEPTION_EVENT = "exception"
_SHORTENED_HASH_CHARS = 8


class _Parent(Enum):
    OF_SPAN = "the span's own parent"


SPAN_PARENT = _Parent.OF_SPAN
"""``span_to_call``'s default ``parent_id``: the call's parent is the span's parent."""


def parent_call_id(span: ReadableSpan) -> str | None:
    """The id of the call that is the span's parent, None for a root span."""
    return format_span_id(span.parent.span_id) if span.parent else None


def op_name_for(span_name: object) -> str:
    """The span name, shortened deterministically (prefix + hash) when Weave would refuse it."""
    name = _as_str(span_name) or "unnamed_span"
    if len(name) < OP_NAME_MAX_LENGTH:
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:_SHORTENED_HASH_CHARS]
    return f"{name[: OP_NAME_MAX_LENGTH - _SHORTENED_HASH_CHARS - 2]}_{digest}"


def span_to_call(
    span: ReadableSpan,
    project_id: str,
    parent_id: str | Literal[_Parent.OF_SPAN] | None = SPAN_PARENT,
) -> WeaveCall:
    """Map one finished span. Never raises on anything the SDK lets a span hold: odd values
    and texts are sanitised, odd times clamped or filled in and marked (``_span_times``).

    ``parent_id`` overrides the span's parent (a span filter re-parents spans whose parent it
    left out).
    """
    reader = _SpanReader(span)
    span_id = format_span_id(span.context.span_id) if span.context else "0" * 16
    times = _span_times(span)
    exception = _exception_json(span)
    is_error = exception is not None
    # Every field that reads attributes first: the rest of them become the call's attributes.
    inputs = _inputs(reader)
    output = reader.take_content(KEYS.outputs)
    display_name = reader.take_str(KEYS.display_name)
    thread_id = reader.take_str(KEYS.thread_id)
    wb_run_id = _wb_run_id(reader.take_str(KEYS.wb_run_id), project_id)
    wb_run_step = reader.take_int(KEYS.wb_run_step)
    wb_run_step_end = reader.take_int(KEYS.wb_run_step_end)
    usage = _usage(reader)
    start = StartedCallSchemaForInsert(
        project_id=project_id,
        id=span_id,
        op_name=op_name_for(span.name),
        display_name=display_name,
        trace_id=format_trace_id(span.context.trace_id) if span.context else "0" * 32,
        parent_id=parent_call_id(span) if parent_id is SPAN_PARENT else parent_id,
        thread_id=thread_id,
        started_at=times.started_at,
        inputs=inputs,
        wb_run_id=wb_run_id,
        wb_run_step=wb_run_step,
        attributes=_call_attributes(span, reader, times),
    )
    end = EndedCallSchemaForInsert(
        project_id=project_id,
        id=span_id,
        started_at=times.started_at,
        ended_at=times.ended_at,
        exception=exception,
        output=output,
        summary=SummaryInsertMap(
            usage=usage,
            status_counts={
                TraceStatus.SUCCESS: 0 if is_error else 1,
                TraceStatus.ERROR: 1 if is_error else 0,
            },
        ),
        wb_run_step_end=wb_run_step_end,
    )
    return WeaveCall(start=start, end=end)


class _SpanReader:
    """Reads a span's attributes by convention keys, remembering which became call fields.

    Content on ``gen_ai.content.*`` events is read as if it were on the span, after the span's
    own attributes.
    """

    def __init__(self, span: ReadableSpan) -> None:
        # One copy: the SDK's attribute mapping takes a lock on every lookup.
        self.attributes: dict[str, Any] = dict(span.attributes or {})
        event_content = {
            key: value
            for event in span.events
            if event.name in CONTENT_EVENTS
            for key, value in (event.attributes or {}).items()
        }
        self._lookup: Mapping[str, Any] = (
            ChainMap(self.attributes, event_content) if event_content else self.attributes
        )
        self.consumed: set[str] = set()

    def peek(self, keys: Iterable[str]) -> _Found | None:
        """The first key present and its value; a ``prefix.*`` key rebuilds flattened ones."""
        for key in keys:
            if key.endswith(FLATTENED_SUFFIX):
                rebuilt = _rebuild_flattened(self._lookup, key[: -len(FLATTENED_SUFFIX)])
                if rebuilt is not None:
                    return rebuilt
            elif (value := self._lookup.get(key)) is not None:
                return _Found(key, value, (key,))
        return None

    def peek_str(self, keys: Iterable[str]) -> str | None:
        found = self.peek(keys)
        return None if found is None else _as_str(found.value)

    def _take(self, keys: Iterable[str]) -> _Found | None:
        found = self.peek(keys)
        if found is not None:
            self.consumed.update(found.read_keys)
        return found

    def take_str(self, keys: Iterable[str]) -> str | None:
        found = self._take(keys)
        return None if found is None else _as_str(found.value)

    def _find_int(self, keys: Iterable[str]) -> tuple[str, int] | None:
        lookup = self._lookup
        for key in keys:
            raw = lookup.get(key)
            if raw is not None and (value := _as_int(raw)) is not None:
                return key, value
        return None

    def take_int(self, keys: Iterable[str]) -> int | None:
        found = self._find_int(keys)
        if found is None:
            return None
        self.consumed.add(found[0])
        return found[1]

    def peek_int(self, keys: Iterable[str]) -> int | None:
        found = self._find_int(keys)
        return None if found is None else found[1]

    def take_content(self, keys: Iterable[str]) -> Any:
        """Message or payload content as JSON: JSON text decoded unless its mime type says not."""
        found = self._take(keys)
        if found is None:
            return None
        key, value = found.key, found.value
        mime_type = self._lookup.get(MIME_TYPE_KEYS.get(key, ""))
        if isinstance(mime_type, str) and mime_type.strip().lower() != JSON_MIME_TYPE:
            return json_safe(value)  # declared text: even text that parses as JSON stays text
        if isinstance(value, (list, tuple)):  # a sequence attribute: one JSON text per message
            return [safe_json_from(item) for item in value]
        return safe_json_from(value)


class _Found(NamedTuple):
    key: str
    """The convention key that matched (``prefix.*`` for a rebuilt list)."""
    value: Any
    read_keys: tuple[str, ...]
    """The span attributes the value was made of."""


def _rebuild_flattened(attributes: Mapping[str, Any], prefix: str) -> _Found | None:
    """``prefix.0.role``, ``prefix.0.content``, … as ``[{"role": …, "content": …}, …]``."""
    start = prefix + "."
    tree: dict[str, Any] = {}
    read_keys: list[str] = []
    for key, value in attributes.items():
        if not key.startswith(start):
            continue
        # Segments past MAX_DEPTH stay one key: deeper nesting would be cut at that depth anyway.
        path = key[len(start) :].split(".", MAX_DEPTH - 1)
        if not _is_index(path[0]):
            continue
        node = tree
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break  # `a.0` and `a.0.b` both set: keep the first, leave the other be
            node = child
        else:
            if path[-1] not in node:
                node[path[-1]] = value  # leaves stay as sent: message text is text
                read_keys.append(key)
    if not read_keys:
        return None
    rebuilt = _as_lists(tree)
    items = rebuilt if isinstance(rebuilt, list) else [rebuilt]
    # OpenInference nests each entry one level down: `llm.input_messages.0.message.role`.
    if all(isinstance(item, dict) and item.keys() == {"message"} for item in items):
        items = [item["message"] for item in items]
    return _Found(prefix + FLATTENED_SUFFIX, items, tuple(read_keys))


def _as_lists(node: Any) -> Any:
    """Nested dicts whose keys are all indexes, as lists in index order."""
    if not isinstance(node, dict):
        return node
    converted = {key: _as_lists(child) for key, child in node.items()}
    if converted and all(_is_index(key) for key in converted):
        return [converted[key] for key in sorted(converted, key=int)]
    return converted


def _is_index(key: str) -> bool:
    # ASCII only: `"²".isdigit()` is true, but `int("²")` fails.
    return key.isascii() and key.isdigit()


def _as_str(value: object) -> str | None:
    if value is None:
        return None
    text = clean_str(value if isinstance(value, str) else str(json_safe(value)))
    return text or None


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


def _inputs(reader: _SpanReader) -> dict[str, Any]:
    value = reader.take_content(KEYS.inputs)
    if value is None:
        inputs: dict[str, Any] = {}
    elif isinstance(value, dict):
        inputs = value
    else:
        # Weave shows a chat view for `inputs.messages`; anything else keeps a neutral name.
        inputs = {"messages" if _looks_like_messages(value) else "input": value}
    instructions = reader.take_content(KEYS.system_instructions)
    if instructions is not None:
        inputs.setdefault("system_instructions", instructions)
    return inputs


def _looks_like_messages(value: object) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(item, dict) and "role" in item for item in value)
    )


def _usage(reader: _SpanReader) -> dict[str, LLMUsageSchema] | None:
    input_tokens = reader.peek_int(KEYS.input_tokens)
    output_tokens = reader.peek_int(KEYS.output_tokens)
    total_tokens = reader.peek_int(KEYS.total_tokens)
    cache_read = reader.peek_int(KEYS.cache_read_input_tokens)
    cache_write = reader.peek_int(KEYS.cache_creation_input_tokens)
    reasoning = reader.peek_int(KEYS.reasoning_tokens)
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
    model = reader.peek_str(KEYS.model) or UNKNOWN_MODEL
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
        error_type = _as_str(event_attributes.get("exception.type")) or "Exception"
        message = _as_str(event_attributes.get("exception.message")) or ""
        traceback = stack_frames(_as_str(event_attributes.get("exception.stacktrace")) or "")
    else:
        span_attributes = span.attributes or {}
        error_type = _class_name(_as_str(span_attributes.get("error.type"))) or "Error"
        message = _as_str(span.status.description) or _http_status_message(
            span_attributes, error_type
        )
        traceback = []
    return json.dumps(
        {"type": error_type, "message": message, "traceback": traceback}, ensure_ascii=False
    )


_PYTHON_FRAME = re.compile(
    r'\s*File "(?P<filename>.*)", line (?P<line>[0-9]{1,9}), in (?P<function>.*)'
)
_CARETS = re.compile(r"\s*[\^~]+\s*")


def stack_frames(stacktrace: str) -> list[dict[str, Any]]:
    """The frames of a stack trace, as Weave's exception panel lists them.

    Python's format (``File "…", line N, in f`` and the source line under it) gives one frame
    each; any other language's stack text gives one frame per non-blank line, its text kept
    whole: nothing of it is lost.
    """
    lines = stacktrace.splitlines()
    frames: list[dict[str, Any]] = []
    for index, line in enumerate(lines):
        match = _PYTHON_FRAME.fullmatch(line)
        if match is None:
            continue
        following = lines[index + 1] if index + 1 < len(lines) else ""
        is_source = (
            following.startswith("    ")
            and not _PYTHON_FRAME.fullmatch(following)
            and not _CARETS.fullmatch(following)
        )
        frames.append(
            {
                "filename": match["filename"],
                "line_number": int(match["line"]),
                "function_name": match["function"],
                "text": following.strip() if is_source else None,
            }
        )
    if frames:
        return frames
    return [
        {"filename": "", "line_number": None, "function_name": "", "text": line.strip()}
        for line in lines
        if line.strip()
    ]


_CLASS_REPR = re.compile(r"<class '([^']+)'>")
_HTTP_STATUS_KEYS = ("http.response.status_code", "http.status_code")


def _class_name(error_type: str | None) -> str | None:
    """``x.Y`` for ``<class 'x.Y'>``, which some instrumentations record as the error type."""
    if error_type is None:
        return None
    match = _CLASS_REPR.fullmatch(error_type)
    return match.group(1) if match else error_type


def _http_status_message(attributes: Mapping[str, Any], error_type: str) -> str:
    for key in _HTTP_STATUS_KEYS:
        if (status := _as_int(attributes.get(key))) is not None:
            return f"HTTP {status}"
    return error_type


def _last_exception_event(events: Iterable[Event]) -> Event | None:
    found = None
    for event in events:
        if event.name == _EXCEPTION_EVENT:
            found = event
    return found


def _wb_run_id(run_id: str | None, project_id: str) -> str | None:
    if run_id is None or "/" in run_id:
        return run_id
    return f"{project_id}/{run_id}"


_resource_cache: dict[int, tuple[Resource, dict[str, Any]]] = {}
_RESOURCE_CACHE_SIZE = 32


def _resource_attributes(resource: Resource | None) -> dict[str, Any]:
    """A process has a resource or a few, shared by all its spans: convert each once.

    The same dict is returned for the same resource; callers must not change it.
    """
    if resource is None:
        return {}
    cached = _resource_cache.get(id(resource))
    if cached is not None and cached[0] is resource:
        return cached[1]
    converted: dict[str, Any] = json_safe(dict(resource.attributes))
    if len(_resource_cache) >= _RESOURCE_CACHE_SIZE:
        _resource_cache.clear()
    _resource_cache[id(resource)] = (resource, converted)
    return converted


def _call_attributes(span: ReadableSpan, reader: _SpanReader, times: _Times) -> dict[str, Any]:
    """The span's own attributes, minus those that became call fields, plus OTel context."""
    call_attributes = {
        _as_text(key): json_safe(value)
        for key, value in reader.attributes.items()
        if key not in reader.consumed
    }
    scope = span.instrumentation_scope
    call_attributes[OTEL_ATTRIBUTES_KEY] = {
        "span_kind": span.kind.name,
        "llm_span_kind": reader.peek_str(KEYS.span_kind),
        "llm_provider": reader.peek_str(KEYS.provider),
        "status": {
            "code": span.status.status_code.name,
            "description": _as_str(span.status.description),
        },
        "scope": {
            "name": _as_str(scope.name) if scope else None,
            "version": _as_str(scope.version) if scope else None,
        },
        "resource": _resource_attributes(span.resource),
        "events": [_event_json(event, times.started_at) for event in span.events],
    }
    if times.adjusted:
        call_attributes[OTEL_ATTRIBUTES_KEY]["adjusted_times"] = times.adjusted
    return call_attributes


def _event_json(event: Event, default_time: datetime) -> dict[str, Any]:
    timestamp, adjusted = _timestamp(event.timestamp)
    event_json = {
        "name": _as_text(event.name),
        "timestamp": (timestamp or default_time).isoformat(timespec="microseconds"),
        "attributes": json_safe(dict(event.attributes or {})),
    }
    if adjusted:
        event_json["original_timestamp"] = json_safe(event.timestamp)
    return event_json


def _as_text(value: object) -> str:
    return clean_str(value) if isinstance(value, str) else _as_str(value) or ""


class _Times(NamedTuple):
    started_at: datetime
    ended_at: datetime
    adjusted: dict[str, Any]
    """The original of each span time that was missing, not a number or out of range."""


_EPOCH = utc_datetime(0)
_LATEST_NANOSECONDS = 253_402_300_799_999_999_999
"""9999-12-31T23:59:59.999999999Z, the last instant a datetime holds."""


def _span_times(span: ReadableSpan) -> _Times:
    """The span's start and end as datetimes, each filled in from the other when unusable."""
    start, start_adjusted = _timestamp(span.start_time)
    end, end_adjusted = _timestamp(span.end_time)
    started_at = start or end or _EPOCH
    adjusted: dict[str, Any] = {}
    if start_adjusted:
        adjusted["start_time"] = json_safe(span.start_time)
    if end_adjusted and span.end_time is not None:  # no end time: it ended as it started
        adjusted["end_time"] = json_safe(span.end_time)
    return _Times(started_at, end or started_at, adjusted)


def _timestamp(raw: object) -> tuple[datetime | None, bool]:
    """An OTel timestamp (any int-like, ns since the epoch) as a datetime, and whether it was
    adjusted: None if missing or not a number, clamped into the Unix epoch to year 9999."""
    nanoseconds = _as_nanoseconds(raw)
    if nanoseconds is None:
        return None, True
    clamped = min(max(nanoseconds, 0), _LATEST_NANOSECONDS)
    return utc_datetime(clamped), clamped != nanoseconds


def _as_nanoseconds(raw: object) -> int | None:
    if isinstance(raw, float):
        return int(raw) if math.isfinite(raw) else None
    return operator.index(raw) if isinstance(raw, SupportsIndex) else None
