"""OTLP/HTTP trace requests, decoded into the SDK's ``ReadableSpan`` s the pipeline maps.

Bodies are ``ExportTraceServiceRequest`` messages (opentelemetry-proto), in protobuf or in the
OTLP JSON mapping, optionally gzip- or deflate-compressed. Attribute values become what the SDK
allows on a span: primitives and homogeneous sequences of one primitive type; a bytes value
becomes its base64 text, and a key-value list or a mixed or nested array its JSON text (the
mapping decodes JSON text where it expects structure, e.g. messages).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope as SdkScope
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags, TraceState
from opentelemetry.trace.status import Status as SdkStatus
from opentelemetry.trace.status import StatusCode

__all__ = [
    "BodyTooLargeError",
    "DecodedRequest",
    "Encoding",
    "ResourceBatch",
    "UndecodableError",
    "decode_request",
    "decompressed",
    "encode_response",
    "encoding_of",
]

AttributeValue = str | bool | int | float | tuple[str | bool | int | float, ...]

# At most this many distinct reasons are named in partial_success.error_message.
_NAMED_ERRORS = 5
_INVALID_ID = b"\x00"  # an id the JSON gave that is not hex: of no valid length, so rejected


class Encoding(str, Enum):
    PROTOBUF = "application/x-protobuf"
    JSON = "application/json"


class UndecodableError(ValueError):
    """The body is no OTLP trace request (answered 400)."""


class BodyTooLargeError(ValueError):
    """The body, or what it decompresses to, is over the limit (answered 413)."""


def encoding_of(content_type: str | None) -> Encoding | None:
    """The OTLP encoding a ``Content-Type`` names (parameters ignored), if any."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    for encoding in Encoding:
        if media_type == encoding.value:
            return encoding
    return None


def decompressed(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """``body`` decoded from its ``Content-Encoding``, never more than ``limit`` bytes."""
    coding = (content_encoding or "identity").strip().lower()
    if coding in ("", "identity"):
        return body
    if coding == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    elif coding == "deflate":
        # RFC 9110's deflate is the zlib format; some clients send raw deflate: both decode.
        wbits = zlib.MAX_WBITS if body[:1] and body[0] & 0x0F == 8 else -zlib.MAX_WBITS
    else:
        raise UndecodableError(f"unsupported Content-Encoding {coding!r} (gzip, deflate)")
    decoder = zlib.decompressobj(wbits)
    try:
        # One byte over the limit tells a body of exactly the limit from a larger one.
        out = decoder.decompress(body, limit + 1)
    except zlib.error as error:
        raise UndecodableError(f"the {coding} body does not decompress: {error}") from None
    if len(out) > limit:
        raise BodyTooLargeError(f"the body decompresses to more than {limit} bytes")
    if not decoder.eof:
        raise UndecodableError(f"the {coding} body is cut short")
    return out


@dataclass(frozen=True)
class ResourceBatch:
    """The valid spans of one ``ResourceSpans``, with its resource's attributes."""

    resource: Mapping[str, AttributeValue]
    spans: list[ReadableSpan]


@dataclass(frozen=True)
class DecodedRequest:
    batches: list[ResourceBatch]
    rejected: int = 0
    errors: tuple[str, ...] = field(default=())
    body_size: int = 0
    """Bytes of the decoded (uncompressed) body."""

    @property
    def span_count(self) -> int:
        return sum(len(batch.spans) for batch in self.batches)


def decode_request(body: bytes, encoding: Encoding) -> DecodedRequest:
    """The spans of an (uncompressed) request body; spans with invalid ids are rejected and
    counted, the rest kept. Raises :class:`UndecodableError` for a body that is no request."""
    message = ExportTraceServiceRequest()
    try:
        if encoding is Encoding.PROTOBUF:
            message.ParseFromString(body)
        else:
            document = json.loads(body)
            if not isinstance(document, dict):
                raise UndecodableError("the JSON body is not an object")
            json_format.ParseDict(_ids_as_base64(document), message, ignore_unknown_fields=True)
    except (DecodeError, json_format.ParseError, ValueError, RecursionError) as error:
        if isinstance(error, UndecodableError):
            raise
        raise UndecodableError(f"not an OTLP {encoding.name} trace request: {error}") from None
    return _decoded(message, len(body))


def _decoded(message: ExportTraceServiceRequest, body_size: int) -> DecodedRequest:
    batches: list[ResourceBatch] = []
    rejected = 0
    errors: dict[str, None] = {}
    for resource_spans in message.resource_spans:
        resource_attributes = _attributes(resource_spans.resource.attributes)
        resource = Resource(resource_attributes, resource_spans.schema_url or None)
        spans: list[ReadableSpan] = []
        for scope_spans in resource_spans.scope_spans:
            scope = _scope(scope_spans.scope, scope_spans.schema_url)
            for span in scope_spans.spans:
                problem = _id_problem(span)
                if problem is not None:
                    rejected += 1
                    errors.setdefault(f"span {span.name[:64]!r}: {problem}")
                    continue
                spans.append(_readable_span(span, resource, scope))
        if spans:
            batches.append(ResourceBatch(resource_attributes, spans))
    return DecodedRequest(batches, rejected, tuple(errors)[:_NAMED_ERRORS], body_size)


def encode_response(rejected: int, error_message: str, encoding: Encoding) -> bytes:
    """An ``ExportTraceServiceResponse``, with ``partial_success`` when spans were rejected."""
    response = ExportTraceServiceResponse()
    if rejected or error_message:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = error_message
    if encoding is Encoding.PROTOBUF:
        return response.SerializeToString()
    return json_format.MessageToJson(response, indent=None).encode()


def _id_problem(span: Span) -> str | None:
    if len(span.trace_id) != 16 or not any(span.trace_id):
        return "invalid trace_id (16 bytes, not all zero)"
    if len(span.span_id) != 8 or not any(span.span_id):
        return "invalid span_id (8 bytes, not all zero)"
    if len(span.parent_span_id) not in (0, 8):
        return "invalid parent_span_id (8 bytes, or empty for a root)"
    return None


_SPAN_KINDS = {
    Span.SPAN_KIND_INTERNAL: SpanKind.INTERNAL,
    Span.SPAN_KIND_SERVER: SpanKind.SERVER,
    Span.SPAN_KIND_CLIENT: SpanKind.CLIENT,
    Span.SPAN_KIND_PRODUCER: SpanKind.PRODUCER,
    Span.SPAN_KIND_CONSUMER: SpanKind.CONSUMER,
}
_STATUS_CODES = {
    Status.STATUS_CODE_OK: StatusCode.OK,
    Status.STATUS_CODE_ERROR: StatusCode.ERROR,
}


def _readable_span(span: Span, resource: Resource, scope: SdkScope) -> ReadableSpan:
    trace_id = int.from_bytes(span.trace_id, "big")
    flags = TraceFlags(span.flags & 0xFF)
    trace_state = _trace_state(span.trace_state)
    context = SpanContext(trace_id, int.from_bytes(span.span_id, "big"), False, flags, trace_state)
    parent_id = int.from_bytes(span.parent_span_id, "big") if span.parent_span_id else 0
    # Not remote although another process made it: the gateway holds the whole trace, so the
    # parent's call is rolled up here like any local parent's.
    parent = SpanContext(trace_id, parent_id, False, flags, trace_state) if parent_id else None
    status_code = _STATUS_CODES.get(span.status.code, StatusCode.UNSET)
    description = span.status.message if status_code is StatusCode.ERROR else None
    return ReadableSpan(
        name=span.name,
        context=context,
        parent=parent,
        resource=resource,
        attributes=_attributes(span.attributes),
        events=tuple(
            Event(event.name, _attributes(event.attributes), event.time_unix_nano or None)
            for event in span.events
        ),
        links=tuple(_link(link) for link in span.links),
        kind=_SPAN_KINDS.get(span.kind, SpanKind.INTERNAL),
        status=SdkStatus(status_code, description or None),
        start_time=span.start_time_unix_nano,
        end_time=span.end_time_unix_nano or span.start_time_unix_nano,
        instrumentation_scope=scope,
    )


def _link(link: Span.Link) -> Link:
    valid = len(link.trace_id) == 16 and len(link.span_id) == 8
    context = SpanContext(
        int.from_bytes(link.trace_id, "big") if valid else 0,
        int.from_bytes(link.span_id, "big") if valid else 0,
        True,
        TraceFlags(link.flags & 0xFF),
        _trace_state(link.trace_state),
    )
    return Link(context, _attributes(link.attributes))


def _trace_state(header: str) -> TraceState:
    return TraceState.from_header([header]) if header else TraceState()


def _scope(scope: InstrumentationScope, schema_url: str) -> SdkScope:
    return SdkScope(
        scope.name, scope.version or None, schema_url or None, _attributes(scope.attributes)
    )


def _attributes(pairs: Sequence[KeyValue]) -> dict[str, AttributeValue]:
    attributes: dict[str, AttributeValue] = {}
    for pair in pairs:
        value = _attribute_value(pair.value)
        if value is not None:
            attributes[pair.key] = value
    return attributes


def _attribute_value(value: AnyValue) -> AttributeValue | None:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        items = [_plain(item) for item in value.array_value.values]
        types = {type(item) for item in items}
        if not items:
            return ()
        if len(types) == 1 and types <= {str, bool, int, float}:
            return tuple(items)
        return json.dumps(items, separators=(",", ":"), ensure_ascii=False)
    if kind == "kvlist_value":
        return json.dumps(_plain(value), separators=(",", ":"), ensure_ascii=False)
    plain = _plain(value)
    assert isinstance(plain, (str, bool, int, float))
    return plain


def _plain(value: AnyValue) -> Any:
    """An ``AnyValue`` as JSON-able Python."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        return value.double_value
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if kind == "array_value":
        return [_plain(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {pair.key: _plain(pair.value) for pair in value.kvlist_value.values}
    return None


_HEX_ID = re.compile(r"(?:[0-9a-fA-F]{2})*")
_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def _ids_as_base64(document: dict[str, Any]) -> dict[str, Any]:
    """The OTLP JSON mapping writes ids as hex, where protobuf's JSON mapping has base64 for
    bytes: rewrite the ids of spans and links in place before parsing."""
    for resource_spans in _objects(document, "resourceSpans", "resource_spans"):
        for scope_spans in _objects(resource_spans, "scopeSpans", "scope_spans"):
            for span in _objects(scope_spans, "spans"):
                _hex_to_base64(span)
                for link in _objects(span, "links"):
                    _hex_to_base64(link)
    return document


def _objects(parent: dict[str, Any], *keys: str) -> list[dict[str, Any]]:
    for key in keys:
        items = parent.get(key)
        if isinstance(items, list):
            return [item for item in items if isinstance(item, dict)]
    return []


def _hex_to_base64(obj: dict[str, Any]) -> None:
    for key in _ID_FIELDS:
        value = obj.get(key)
        if not isinstance(value, str):
            continue
        try:
            raw = binascii.unhexlify(value) if _HEX_ID.fullmatch(value) else _INVALID_ID
        except binascii.Error:
            raw = _INVALID_ID
        obj[key] = base64.b64encode(raw).decode("ascii")
