"""The call every stage passes along, and how each write route encodes it.

A :class:`WeaveCall` is the two halves of one Weave call, as ``/call/start`` and ``/call/end``
carry them. The halves are plain data (:class:`StartedCall`, :class:`EndedCall`), not validated
models: the mapping builds them valid, and validating each again costs more than mapping it.
``_models`` holds the service's schemas, which the local receiver and the tests check what is
sent against. A call is immutable: a stage that changes one gets a new one from
:meth:`WeaveCall.replace`, the one way of changing a call. Each large field (inputs,
attributes, output) is encoded once, when first asked for; a replaced call keeps the JSON of
every field it did not change.

The encoders are pure functions from calls to request bodies, one per write route; the local
receiver splits complete calls back into halves with the same :data:`END_ONLY_FIELDS`.
"""

from __future__ import annotations

import dataclasses
import json
import operator
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Generic, TypeVar, cast, overload
from urllib.parse import quote

from pydantic_core import to_json as _pydantic_to_json

from opentelemetry.exporter.weave._conventions import WeaveKind

__all__ = [
    "CALLS_COMPLETE_MODE_REQUIRED",
    "CALL_END_ROUTE",
    "CALL_START_ROUTE",
    "END_ONLY_FIELDS",
    "OTEL_ATTRIBUTES_KEY",
    "REQUEST_ENVELOPE_BYTES",
    "UPSERT_BATCH_ROUTE",
    "WEAVE_ATTRIBUTES_KEY",
    "CallFacts",
    "EndedCall",
    "StartedCall",
    "Summary",
    "WeaveCall",
    "call_end_body",
    "call_end_v2_route",
    "call_start_body",
    "call_start_v2_route",
    "calls_complete_body",
    "calls_complete_route",
    "format_span_id",
    "format_trace_id",
    "is_shared",
    "shared",
    "to_json",
    "unshared",
    "upsert_batch_body",
    "utc_datetime",
    "utc_iso",
]

CALL_START_ROUTE = "/call/start"
CALL_END_ROUTE = "/call/end"
UPSERT_BATCH_ROUTE = "/call/upsert_batch"

CALLS_COMPLETE_MODE_REQUIRED = "CALLS_COMPLETE_MODE_REQUIRED"
"""The ``error_code`` of the service's 400 on v1 write routes of a "calls complete" project."""

END_ONLY_FIELDS = ("ended_at", "exception", "output", "summary", "wb_run_step_end")
"""The end half's fields that the start half lacks: a complete call is the start plus these."""

REQUEST_ENVELOPE_BYTES = 1024
"""Room for a batched request's envelope around its calls: ``{"batch":[``, ``]}``."""

OTEL_ATTRIBUTES_KEY = "otel"
"""The attribute that holds the span's OpenTelemetry context (kind, status, scope, events)."""

WEAVE_ATTRIBUTES_KEY = "weave"
"""The attribute Weave's UI reads a call's kind from (``{"kind": "llm"}``)."""


def shared(value: dict[str, Any]) -> dict[str, Any]:
    """``value``, from now on held by many calls as it is (the OTel context of the spans of
    one scope, resource, kind and status; a Weave kind), and so never to be changed in place:
    what is found out about it once (that it holds no secret) holds for each of them. Kept
    (alive) until :func:`unshared`: the caller bounds how many it shares."""
    if len(_shared) >= _SHARED_BACKSTOP:
        _shared.clear()
    _shared[id(value)] = value
    return value


def unshared(value: dict[str, Any]) -> None:
    """Forget a dict :func:`shared` that no new call will hold (it is still never changed)."""
    if _shared.get(id(value)) is value:
        _shared.pop(id(value), None)


def is_shared(value: object) -> bool:
    """Whether ``value`` is a dict :func:`shared` and not :func:`unshared` since."""
    return _shared.get(id(value)) is value


_shared: dict[int, dict[str, Any]] = {}
_SHARED_BACKSTOP = 4096
"""Never reached but by mappings racing in several pipelines' workers, each race leaving one
context shared that no cache holds: then all are forgotten (the scrubber walks them again)."""


_NANOS_PER_MICROSECOND = 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_SECONDS_PER_DAY = 86_400

Summary = dict[str, Any]
"""A call's ``summary`` as sent: ``usage`` (model → token counts) and ``status_counts``
(``success``/``error`` → calls), each only when known. Never a ``null`` inside: a present
``null`` token count outranks a real one in Weave's cost sum (WEAVE_WIRE §3)."""


def to_json(value: Any) -> bytes:
    """Compact UTF-8 JSON of JSON-safe data, as the service's own encoder would write it."""
    return _pydantic_to_json(value, inf_nan_mode="null")


def _small_json(fields: dict[str, str | int | Summary | None]) -> bytes:
    # Texts, whole numbers and the summary's counts: no float to encode, so no NaN mode to
    # give (whose keyword costs as much as the encoding of a few fields).
    return _pydantic_to_json(fields)


def format_span_id(span_id: int) -> str:
    """16 hex digits, as Weave requires, even of an id outside the 64 bits a valid one has."""
    return "%016x" % (span_id % 2**64)  # half the cost of format()


def format_trace_id(trace_id: int) -> str:
    """32 hex digits, as Weave requires, even of an id outside the 128 bits a valid one has."""
    return "%032x" % (trace_id % 2**128)


def utc_datetime(nanoseconds: int) -> datetime:
    """An OpenTelemetry timestamp (ns since the epoch) as a UTC datetime, to the microsecond.

    Raises ``OverflowError`` outside what a datetime holds (years 1 to 9999).
    """
    # Integer arithmetic: exact to the microsecond, and no platform limit of fromtimestamp().
    return _EPOCH + timedelta(microseconds=nanoseconds // _NANOS_PER_MICROSECOND)


def utc_iso(value: datetime) -> str:
    """The service's timestamp text: six fractional digits and an explicit UTC offset."""
    if value.tzinfo is not timezone.utc:
        value = value.astimezone(timezone.utc)
    # `isoformat` costs a few µs, twice a call: the text up to the second is made once for
    # the calls of each second (spans end in bursts), the microseconds added to it. The time
    # since the epoch tells the second at the cost of one subtraction, not six attributes.
    since_epoch = value - _EPOCH
    second = since_epoch.days * _SECONDS_PER_DAY + since_epoch.seconds
    prefix = _iso_seconds.get(second)
    if prefix is None:
        if len(_iso_seconds) >= _ISO_SECONDS_KEPT:
            _iso_seconds.clear()
        prefix = _iso_seconds[second] = value.replace(microsecond=0).isoformat()[:-6]
    # `%`, as for ids: an f-string's format spec costs more.
    return "%s.%06d+00:00" % (prefix, since_epoch.microseconds)  # noqa: UP031


_iso_seconds: dict[int, str] = {}
"""The text of each second (since the epoch) seen lately, up to the second."""
_ISO_SECONDS_KEPT = 1024


@dataclass(slots=True)
class StartedCall:
    """What ``/call/start`` carries (``StartedCallSchemaForInsert``). Not to be changed in
    place: :meth:`WeaveCall.replace` makes a changed copy."""

    project_id: str
    id: str
    op_name: str
    trace_id: str
    started_at: datetime
    attributes: dict[str, Any]
    inputs: dict[str, Any]
    display_name: str | None = None
    parent_id: str | None = None
    thread_id: str | None = None
    turn_id: str | None = None
    wb_run_id: str | None = None
    wb_run_step: int | None = None


@dataclass(slots=True)
class EndedCall:
    """What ``/call/end`` carries (``EndedCallSchemaForInsert``, and ``trace_id``: newer
    servers read it, so that a sampler keeps or drops an end by its trace without finding its
    start; older ones ignore it). Not to be changed in place."""

    project_id: str
    id: str
    ended_at: datetime
    summary: Summary
    trace_id: str | None = None
    exception: str | None = None
    output: Any = None
    started_at: datetime | None = None
    wb_run_step_end: int | None = None


_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {
    half: tuple(field.name for field in dataclasses.fields(half))
    for half in (StartedCall, EndedCall)
}
_START_FIELDS = frozenset(_FIELD_NAMES[StartedCall])
_END_FIELDS = frozenset(_FIELD_NAMES[EndedCall])
# Every field's value at once, read in C: a changed copy of a start costs 22k instructions
# so, 29k through dataclasses.replace.
_READ_START_FIELDS = operator.attrgetter(*_FIELD_NAMES[StartedCall])
_READ_END_FIELDS = operator.attrgetter(*_FIELD_NAMES[EndedCall])
_LARGE_FIELDS = {"inputs": "inputs_json", "attributes": "attributes_json", "output": "output_json"}
"""Each large field and the cached property holding its JSON."""
_RENAMED_FIELDS = ("op_name", "display_name")


def _copy_start_fields(sealed: Any, start: StartedCall | _SealedCall) -> None:
    """A start's small fields onto a sealed start or call (every field: a test holds each to
    the start's). Field by field: a loop of setattr calls costs several times as much, for
    every call exported."""
    sealed.project_id = start.project_id
    sealed.id = start.id
    sealed.op_name = start.op_name
    sealed.trace_id = start.trace_id
    sealed.started_at = start.started_at
    sealed.display_name = start.display_name
    sealed.parent_id = start.parent_id
    sealed.thread_id = start.thread_id
    sealed.turn_id = start.turn_id
    sealed.wb_run_id = start.wb_run_id
    sealed.wb_run_step = start.wb_run_step


class _SealedStart(StartedCall):
    """A start whose inputs and attributes are kept as their JSON only, decoded when read.

    A mapped call waits for its batch's request as this: a few objects instead of one per
    message, part and attribute, which the garbage collector would otherwise walk again and
    again (in every full collection, with every span still queued).
    """

    __slots__ = ("_attributes_json", "_inputs_json")
    _attributes_json: bytes
    _inputs_json: bytes
    __hash__ = StartedCall.__hash__  # none: equal to the plain start of the same fields

    @classmethod
    def of(
        cls, start: StartedCall | _SealedCall, inputs_json: bytes, attributes_json: bytes
    ) -> _SealedStart:
        sealed = object.__new__(cls)
        _copy_start_fields(sealed, start)
        sealed._inputs_json = inputs_json
        sealed._attributes_json = attributes_json
        return sealed

    # Read-only: WeaveCall.replace makes changed copies.
    @property
    def inputs(self) -> dict[str, Any]:  # type: ignore[override]
        decoded: dict[str, Any] = json.loads(self._inputs_json)
        return decoded

    @property
    def attributes(self) -> dict[str, Any]:  # type: ignore[override]
        decoded: dict[str, Any] = json.loads(self._attributes_json)
        return decoded

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StartedCall) and _fields_of(self) == _fields_of(other)


class _SealedEnd(EndedCall):
    """An end whose output is kept as its JSON only, decoded when read (as ``_SealedStart``)."""

    __slots__ = ("_output_json",)
    _output_json: bytes
    __hash__ = EndedCall.__hash__

    @classmethod
    def of(cls, end: EndedCall, output_json: bytes) -> _SealedEnd:
        return cls.of_fields(
            project_id=end.project_id,
            call_id=end.id,
            ended_at=end.ended_at,
            summary=end.summary,
            trace_id=end.trace_id,
            exception=end.exception,
            started_at=end.started_at,
            wb_run_step_end=end.wb_run_step_end,
            output_json=output_json,
        )

    @classmethod
    def of_fields(
        cls,
        *,
        project_id: str,
        call_id: str,
        ended_at: datetime,
        summary: Summary,
        trace_id: str | None,
        exception: str | None,
        started_at: datetime | None,
        wb_run_step_end: int | None,
        output_json: bytes,
    ) -> _SealedEnd:
        sealed = object.__new__(cls)  # field by field, as _SealedStart.of
        sealed.project_id = project_id
        sealed.id = call_id
        sealed.ended_at = ended_at
        sealed.summary = summary
        sealed.trace_id = trace_id
        sealed.exception = exception
        sealed.started_at = started_at
        sealed.wb_run_step_end = wb_run_step_end
        sealed._output_json = output_json
        return sealed

    @property
    def output(self) -> Any:
        return json.loads(self._output_json)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EndedCall) and _fields_of(self) == _fields_of(other)


def _fields_of(half: StartedCall | EndedCall) -> tuple[Any, ...]:
    values: tuple[Any, ...] = (
        _READ_START_FIELDS(half) if isinstance(half, StartedCall) else _READ_END_FIELDS(half)
    )
    return values


_SEALED_LARGE_FIELDS: dict[type[Any], tuple[str, ...]] = {
    _SealedStart: ("inputs", "attributes"),
    _SealedEnd: ("output",),
}
_SEALED_SLOTS = {name: f"_{name}_json" for name in _LARGE_FIELDS}
"""The slot of a sealed half that keeps each large field's JSON."""


def _large_json(half: StartedCall | EndedCall, name: str) -> bytes:
    """The JSON of the half's large field ``name``: kept, if sealed, else encoded now."""
    if type(half) in _SEALED_LARGE_FIELDS:
        encoded: bytes = getattr(half, _SEALED_SLOTS[name])
        return encoded
    return to_json(getattr(half, name))


def _sealed_copy(half: _SealedStart | _SealedEnd) -> _SealedStart | _SealedEnd:
    if isinstance(half, _SealedStart):
        return _SealedStart.of(half, half._inputs_json, half._attributes_json)
    return _SealedEnd.of(half, half._output_json)


def _changed(half: _H, changes: dict[str, Any]) -> _H:
    """``half`` with ``changes``; a sealed half stays sealed unless a large field changes."""
    plain: type[_H] = type(half)
    large_fields = _SEALED_LARGE_FIELDS.get(plain)
    if large_fields is not None:
        if changes.keys().isdisjoint(large_fields):
            sealed = _sealed_copy(cast("_SealedStart | _SealedEnd", half))
            for name, value in changes.items():
                setattr(sealed, name, value)
            return cast(_H, sealed)
        plain = plain.__mro__[1]
    fields = dict(zip(_FIELD_NAMES[plain], _fields_of(half), strict=True))
    fields.update(changes)
    return plain(**fields)


@dataclass(frozen=True)
class CallFacts:
    """What the mapping learnt of a span that later stages need and the wire fields don't say."""

    kind: WeaveKind | None = None
    model: str | None = None
    """The model an LLM call used, even when it reported no usage."""
    response_id: str | None = None
    """The provider's id of the response: two spans of one request share it."""

    @classmethod
    def of(cls, kind: WeaveKind | None, model: str | None, response_id: str | None) -> CallFacts:
        """``CallFacts(kind, model, response_id)`` without the frozen constructor's field by
        field ``object.__setattr__`` (as :meth:`WeaveCall.of`): a model call's are new each
        time."""
        facts = object.__new__(cls)
        fields = facts.__dict__
        fields["kind"] = kind
        fields["model"] = model
        fields["response_id"] = response_id
        return facts


_T = TypeVar("_T")
_H = TypeVar("_H", StartedCall, EndedCall)


class _encoded_once(Generic[_T]):  # noqa: N801 (a decorator, named like `property`)
    """``functools.cached_property`` without its lock (until Python 3.12, one per property
    and call): two threads computing one value at once both get the same answer."""

    def __init__(self, compute: Callable[[WeaveCall], _T]) -> None:
        self.func = compute  # as functools.cached_property names it
        self._name = compute.__name__
        self.__doc__ = compute.__doc__

    @overload
    def __get__(self, call: None, owner: type[WeaveCall] | None = None) -> _encoded_once[_T]: ...
    @overload
    def __get__(self, call: WeaveCall, owner: type[WeaveCall] | None = None) -> _T: ...
    def __get__(
        self, call: WeaveCall | None, owner: type[WeaveCall] | None = None
    ) -> _T | _encoded_once[_T]:
        if call is None:
            return self
        cached = call.__dict__
        value: _T | None = cached.get(self._name)
        if value is None:  # no encoding is None: not computed yet
            value = cached[self._name] = self.func(call)
        return value


@dataclass(frozen=True)
class WeaveCall:
    """One span as a Weave call: what ``/call/start`` and ``/call/end`` carry."""

    start: StartedCall
    end: EndedCall
    facts: CallFacts = CallFacts()

    def __post_init__(self) -> None:
        # Every end carries its start's trace id, whoever built the call (mapping, spool, a
        # stage's replace): that is the promise of the trace_id_on_end capability we announce.
        if self.end.trace_id != self.start.trace_id:
            end = _changed(self.end, {"trace_id": self.start.trace_id})
            object.__setattr__(self, "end", end)  # frozen: set once, before anyone reads it

    @classmethod
    def of(cls, start: StartedCall, end: EndedCall, facts: CallFacts) -> WeaveCall:
        """``WeaveCall(start=start, end=end, facts=facts)`` for halves made together (the
        mapping's): without the frozen constructor's field by field ``object.__setattr__``
        when the halves already share their trace id."""
        if end.trace_id != start.trace_id:
            return cls(start=start, end=end, facts=facts)
        call = object.__new__(cls)
        call.__dict__.update(start=start, end=end, facts=facts)
        return call

    def replace(self, **changes: Any) -> WeaveCall:
        """This call with the named fields changed, in whichever half holds them.

        Fields both halves hold (``project_id``, ``id``, ``trace_id``, ``started_at``) change in
        both. The values are taken as they are, not validated: stages pass on what they were
        given. The JSON of each large field not changed is kept, not encoded again.
        """
        unknown = changes.keys() - _START_FIELDS - _END_FIELDS
        if unknown:
            raise TypeError(f"not a call field: {', '.join(sorted(unknown))}")
        start_changes = {key: value for key, value in changes.items() if key in _START_FIELDS}
        end_changes = {key: value for key, value in changes.items() if key in _END_FIELDS}
        changed = WeaveCall.of(
            _changed(self.start, start_changes) if start_changes else self.start,
            _changed(self.end, end_changes) if end_changes else self.end,
            self.facts,
        )
        self._keep_large_json(changed, changes)
        return changed

    def renamed(self, op_name: str, display_name: str | None) -> WeaveCall:
        """``replace(op_name=op_name, display_name=display_name)``: op refs rename every call,
        and a start not sealed is copied here for a third of what ``replace`` costs."""
        start = self.start
        if type(start) is not StartedCall:
            return self.replace(op_name=op_name, display_name=display_name)
        renamed = WeaveCall.of(
            StartedCall(
                start.project_id,
                start.id,
                op_name,
                start.trace_id,
                start.started_at,
                start.attributes,
                start.inputs,
                display_name,
                start.parent_id,
                start.thread_id,
                start.turn_id,
                start.wb_run_id,
                start.wb_run_step,
            ),
            self.end,
            self.facts,
        )
        self._keep_large_json(renamed, _RENAMED_FIELDS)
        return renamed

    def _keep_large_json(self, changed: WeaveCall, changes: Collection[str]) -> None:
        """Give ``changed`` the JSON of each large field that ``changes`` leaves as it was."""
        cached, kept = self.__dict__, changed.__dict__
        for field, encoded in _LARGE_FIELDS.items():
            if field not in changes and encoded in cached:
                kept[encoded] = cached[encoded]

    @property
    def project_id(self) -> str:
        """The start's: read by delivery without the start (:class:`_SealedCall`)."""
        return self.start.project_id

    @property
    def id(self) -> str:
        """The start's (as :attr:`project_id`)."""
        return self.start.id

    @property
    def op_name(self) -> str:
        """The start's (as :attr:`project_id`)."""
        return self.start.op_name

    def sealed(self) -> WeaveCall:
        """This call, encoded, as what waits for delivery: its fields and JSON, and nothing
        more, in one object (:class:`_SealedCall`). Its JSON, and every field's value, are
        this call's."""
        _ = self.encoded_size  # encoded now, not at delivery; the JSON made is the sealed call's
        return _SealedCall.of_encoded(self)

    @_encoded_once
    def inputs_json(self) -> bytes:
        return _large_json(self.start, "inputs")

    @_encoded_once
    def attributes_json(self) -> bytes:
        return _large_json(self.start, "attributes")

    @_encoded_once
    def output_json(self) -> bytes:
        return _large_json(self.end, "output")

    @_encoded_once
    def started_at_text(self) -> str:
        return self._encode()["started_at_text"]  # type: ignore[no-any-return]

    @_encoded_once
    def start_head_json(self) -> bytes:
        """The start's small fields: all but inputs and attributes."""
        return self._encode()["start_head_json"]  # type: ignore[no-any-return]

    @_encoded_once
    def end_own_json(self) -> bytes:
        """The end's small :data:`END_ONLY_FIELDS`: all but the output."""
        return self._encode()["end_own_json"]  # type: ignore[no-any-return]

    @_encoded_once
    def complete_json(self) -> bytes:
        """The whole call, as ``calls_complete`` sends it: the start's fields, then the end's
        :data:`END_ONLY_FIELDS`."""
        return self._encode()["complete_json"]  # type: ignore[no-any-return]

    @_encoded_once
    def start_json(self) -> bytes:
        return b"".join(
            (
                self.start_head_json[:-1],
                b',"attributes":',
                self.attributes_json,
                b',"inputs":',
                self.inputs_json,
                b"}",
            )
        )

    @_encoded_once
    def end_only_json(self) -> bytes:
        """The end's :data:`END_ONLY_FIELDS`: a complete call is the start's JSON plus these."""
        return self.end_own_json[:-1] + b',"output":' + self.output_json + b"}"

    def _encode(self) -> dict[str, Any]:
        """Every call's JSON pieces, into the properties' cache, which it returns: the large
        fields, the small ones of each half, the complete call joined once from them, and its
        size. Made in one run, not by each property from the others' through their
        descriptors; the start's and the end's own JSON only when a route asks for them."""
        cached = self.__dict__
        start, end = self.start, self.end
        # A replaced call keeps the JSON of the large fields it did not change.
        attributes = cached.get("attributes_json") or _large_json(start, "attributes")
        inputs = cached.get("inputs_json") or _large_json(start, "inputs")
        output = cached.get("output_json") or _large_json(end, "output")
        started_at = utc_iso(start.started_at)
        head = _small_json(
            {
                "project_id": start.project_id,
                "id": start.id,
                "op_name": start.op_name,
                "display_name": start.display_name,
                "trace_id": start.trace_id,
                "parent_id": start.parent_id,
                "thread_id": start.thread_id,
                "turn_id": start.turn_id,
                "started_at": started_at,
                "wb_run_id": start.wb_run_id,
                "wb_run_step": start.wb_run_step,
            }
        )
        end_own = _small_json(
            {
                "ended_at": utc_iso(end.ended_at),
                "exception": end.exception,
                "summary": end.summary,
                "wb_run_step_end": end.wb_run_step_end,
            }
        )
        cached["attributes_json"] = attributes
        cached["inputs_json"] = inputs
        cached["output_json"] = output
        cached["started_at_text"] = started_at
        cached["start_head_json"] = head
        cached["end_own_json"] = end_own
        # Both objects have members: the end's own always has `ended_at`.
        complete = cached["complete_json"] = b"".join(
            (
                head[:-1],
                b',"attributes":',
                attributes,
                b',"inputs":',
                inputs,
                b",",
                end_own[1:-1],
                b',"output":',
                output,
                b"}",
            )
        )
        # The start's JSON and the end's own fields: the complete call and its one comma.
        size = len(complete) + 1 + _ITEM_OVERHEAD_BYTES
        if (end.project_id, end.id, end.trace_id, end.started_at) == (
            start.project_id,
            start.id,
            start.trace_id,
            start.started_at,
        ):
            # The end's shared fields are members of the start's head, encoded alike: the end
            # is at most that head and its own fields (without encoding it, which calls_complete
            # never sends).
            cached["encoded_size"] = size + len(head)
        else:
            cached["encoded_size"] = size + len(self.end_json) - len(self.end_only_json)
        return cached

    @_encoded_once
    def end_json(self) -> bytes:
        end = self.end
        return self._end_json(end.project_id, end.id, end.trace_id, end.started_at)

    def _end_json(
        self, project_id: str, call_id: str, trace_id: str | None, started_at: datetime | None
    ) -> bytes:
        """The end's JSON, of the fields it shares with the start given."""
        if started_at is None:
            started_text = None
        elif started_at == self.start_started_at:
            started_text = self.started_at_text
        else:
            started_text = utc_iso(started_at)
        shared = _small_json(
            {
                "project_id": project_id,
                "id": call_id,
                "trace_id": trace_id,
                "started_at": started_text,
            }
        )
        return _joined_objects(shared, self.end_only_json)

    @property
    def start_started_at(self) -> datetime:
        """The start's ``started_at`` (as :attr:`project_id`)."""
        return self.start.started_at

    @_encoded_once
    def encoded_size(self) -> int:
        """An upper bound of the bytes this call adds to a request of any write route."""
        return self._encode()["encoded_size"]  # type: ignore[no-any-return]


class _SealedCall(WeaveCall):
    """A call as it waits for delivery: each field of its halves, its facts' and each piece
    of its JSON in a slot of its own. No container, so one object for the garbage collector
    whatever the call holds: a batch of calls waiting for its request adds no collection, nor
    anything to promote to the oldest generation, which a full collection walks with every
    span still queued. A half is made when read (sealed: its large fields decoded when read
    in turn); delivery reads :attr:`op_name`, :attr:`id` and the JSON, which need none."""

    __slots__ = (
        "attributes_json",
        "complete_json",
        "display_name",
        "encoded_size",
        "end_id",
        "end_own_json",
        "end_project_id",
        "end_started_at",
        "end_trace_id",
        "ended_at",
        "exception",
        "id",
        "inputs_json",
        "kind",
        "model",
        "op_name",
        "output_json",
        "parent_id",
        "project_id",
        "response_id",
        "start_head_json",
        "started_at",
        "started_at_text",
        "thread_id",
        "trace_id",
        "turn_id",
        "wb_run_id",
        "wb_run_step",
        "wb_run_step_end",
    )
    # The start's fields by their names (those of the properties too), the end's own
    # prefixed, the facts', and the JSON each property of that name gives on any call.
    project_id: str
    id: str
    op_name: str
    trace_id: str
    started_at: datetime
    display_name: str | None
    parent_id: str | None
    thread_id: str | None
    turn_id: str | None
    wb_run_id: str | None
    wb_run_step: int | None
    end_project_id: str
    end_id: str
    ended_at: datetime
    end_trace_id: str | None
    exception: str | None
    end_started_at: datetime | None
    wb_run_step_end: int | None
    kind: WeaveKind | None
    model: str | None
    response_id: str | None
    inputs_json: bytes
    attributes_json: bytes
    output_json: bytes
    started_at_text: str
    start_head_json: bytes
    end_own_json: bytes
    complete_json: bytes
    encoded_size: int
    __hash__ = WeaveCall.__hash__  # none: equal to the plain call of the same fields
    # Set field by field once, when sealed: the frozen base's __setattr__ is a Python call
    # per field. Both of the pair, or the type still dispatches to them through Python. Not
    # to be changed in place, as the halves.
    __setattr__ = object.__setattr__
    __delattr__ = object.__delattr__

    @classmethod
    def of_encoded(cls, call: WeaveCall) -> WeaveCall:
        """``call``, encoded already (not sealed: a sealed call is its own), sealed."""
        start, end, facts, encoded = call.start, call.end, call.facts, call.__dict__
        sealed = object.__new__(cls)
        _copy_start_fields(sealed, start)
        # The rest field by field too (a test holds every field to the call's).
        sealed.end_project_id = end.project_id
        sealed.end_id = end.id
        sealed.ended_at = end.ended_at
        sealed.end_trace_id = end.trace_id
        sealed.exception = end.exception
        sealed.end_started_at = end.started_at
        sealed.wb_run_step_end = end.wb_run_step_end
        sealed.kind = facts.kind
        sealed.model = facts.model
        sealed.response_id = facts.response_id
        sealed.inputs_json = encoded["inputs_json"]
        sealed.attributes_json = encoded["attributes_json"]
        sealed.output_json = encoded["output_json"]
        sealed.started_at_text = encoded["started_at_text"]
        sealed.start_head_json = encoded["start_head_json"]
        sealed.end_own_json = encoded["end_own_json"]
        sealed.complete_json = encoded["complete_json"]
        sealed.encoded_size = encoded["encoded_size"]
        return sealed

    @property
    def start(self) -> StartedCall:
        return _SealedStart.of(self, self.inputs_json, self.attributes_json)

    @property
    def end(self) -> EndedCall:
        return _SealedEnd.of_fields(
            project_id=self.end_project_id,
            call_id=self.end_id,
            ended_at=self.ended_at,
            # The summary as its JSON in the end's own, decoded when read: it is dicts.
            summary=json.loads(self.end_own_json)["summary"],
            trace_id=self.end_trace_id,
            exception=self.exception,
            started_at=self.end_started_at,
            wb_run_step_end=self.wb_run_step_end,
            output_json=self.output_json,
        )

    @property
    def facts(self) -> CallFacts:
        return CallFacts(self.kind, self.model, self.response_id)

    @property
    def start_started_at(self) -> datetime:
        return self.started_at

    @property
    def end_json(self) -> bytes:
        return self._end_json(
            self.end_project_id, self.end_id, self.end_trace_id, self.end_started_at
        )

    def sealed(self) -> WeaveCall:
        return self

    def _keep_large_json(self, changed: WeaveCall, changes: Collection[str]) -> None:
        kept = changed.__dict__
        for field, encoded in _LARGE_FIELDS.items():
            if field not in changes:
                kept[encoded] = getattr(self, encoded)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WeaveCall) and (self.start, self.end, self.facts) == (
            other.start,
            other.end,
            other.facts,
        )


# What an item adds around the halves' JSON at most: upsert_batch's
# `{"mode":"start","req":{"start":…}}` wrapper for each half, and the commas.
_ITEM_OVERHEAD_BYTES = 2 * len(b'{"mode":"start","req":{"start":}},')


def call_start_body(call: WeaveCall) -> bytes:
    """``POST /call/start``."""
    return b'{"start":' + call.start_json + b"}"


def call_end_body(call: WeaveCall) -> bytes:
    """``POST /call/end``."""
    return b'{"end":' + call.end_json + b"}"


def upsert_batch_body(calls: Sequence[WeaveCall]) -> bytes:
    """``POST /call/upsert_batch``: every start of the request before any end."""
    starts = [b'{"mode":"start","req":{"start":' + call.start_json + b"}}" for call in calls]
    ends = [b'{"mode":"end","req":{"end":' + call.end_json + b"}}" for call in calls]
    return _batch(starts + ends)


def calls_complete_route(entity: str, project: str) -> str:
    """The route of ``entity``'s ``project``, each name one path segment whatever it holds."""
    return f"{_v2_prefix(entity, project)}/calls/complete"


def call_start_v2_route(entity: str, project: str) -> str:
    """``POST /v2/{entity}/{project}/call/start``: one start, on every kind of project."""
    return f"{_v2_prefix(entity, project)}/call/start"


def call_end_v2_route(entity: str, project: str) -> str:
    """``POST /v2/{entity}/{project}/call/end``: 404 when the call's start is missing."""
    return f"{_v2_prefix(entity, project)}/call/end"


def _v2_prefix(entity: str, project: str) -> str:
    return f"/v2/{_path_segment(entity)}/{_path_segment(project)}"


def _path_segment(name: str) -> str:
    # quote() leaves dots alone, and a URL resolves a "." or ".." segment away (httpx does
    # too): encoded, the name stays a segment of its own, under the server URL's path.
    return quote(name, safe="") if name.strip(".") else name.replace(".", "%2E")


def calls_complete_body(calls: Sequence[WeaveCall]) -> bytes:
    """``POST /v2/{entity}/{project}/calls/complete``: whole calls, each field named once."""
    return _batch([call.complete_json for call in calls])


def _batch(items: list[bytes]) -> bytes:
    """``{"batch":[…]}`` of ``items``, made in one piece: a request's megabyte copied once,
    not again for the envelope (each copy of that size is new memory the kernel maps in)."""
    if not items:
        return b'{"batch":[]}'
    items[0] = b'{"batch":[' + items[0]
    items[-1] += b"]}"
    return b",".join(items)


def _joined_objects(first: bytes, second: bytes) -> bytes:
    """One JSON object of the members of two, which share no key and have a member each."""
    return first[:-1] + b"," + second[1:]
