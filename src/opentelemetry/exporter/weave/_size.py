"""Keeping every call under the service's size limits by cutting its largest fields, visibly.

Two limits, in this order: the JSON fields of one call (inputs, output, attributes, summary)
together, as the service weighs them when it stores the call (:data:`ROW_JSON_LIMIT`), and the
request (``budget``). Fitting a call costs time linear in its size: each cuttable field is
encoded once to weigh it, the cuts are chosen from those weights (exact: a field's JSON is the
same inside the call and alone) and applied together, and the cut call is encoded once. It also
keeps to the export's deadline: a call it has no time left to cut field by field is cut whole,
which is quick.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from pydantic_core import to_json

from opentelemetry.exporter.weave._call import OTEL_ATTRIBUTES_KEY, WeaveCall
from opentelemetry.exporter.weave._delivery import CallSender, DeliveryReport
from opentelemetry.exporter.weave._retry import SYSTEM_CLOCK

__all__ = ["ROW_JSON_LIMIT", "FitToSize", "fit_call", "service_json_bytes"]

ROW_JSON_LIMIT = 3 * 1024 * 1024
"""What a call's JSON fields may weigh together, as :func:`service_json_bytes` counts them.

The service stores a call as rows whose JSON columns (inputs, output, attributes, summary) may
weigh 3.5 MiB together (``CLICKHOUSE_SINGLE_ROW_INSERT_BYTES_LIMIT``); a ``calls/complete``
row holds all four. Over it, the v1 routes replace the largest columns by an error value and
``calls/complete`` fails the call. Half a MiB is left for what the weighing over-counts."""

_KEPT_HEAD_CHARS = 1000
_MARKER_PREFIX = "… [truncated by opentelemetry-exporter-weave: "
_FITTING_SHARE_OF_TIME_LEFT = 0.5
"""Fitting a batch may use this share of the time left to its deadline; the rest is delivery's."""
_WHOLE_KEY = "truncated"
"""The one key left in ``inputs`` and ``attributes`` when all of them had to go."""
_MAX_SERVICE_BYTES_PER_BYTE = 6
"""The most :func:`service_json_bytes` makes of one byte of compact UTF-8 JSON (a DEL)."""
# What json.dumps adds when it escapes a character, by the character's first byte: DEL (which
# we send raw) 6 - 1; a 2-byte character (é) 6 - 2, 3-byte (中) 6 - 3, 4-byte (😀, a surrogate
# pair) 12 - 4. The table maps every other byte to 0, which compact JSON never holds.
_ESCAPE_EXTRA_BYTES = {1: 5, 2: 4, 3: 3, 4: 8}
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_FIRST_BYTE_CLASS = bytes(
    1
    if byte == 0x7F
    else 2
    if 0xC0 <= byte < 0xE0
    else 3
    if 0xE0 <= byte < 0xF0
    else 4
    if 0xF0 <= byte < 0xF8
    else 0
    for byte in range(256)
)


def service_json_bytes(encoded: bytes) -> int:
    """At least the bytes the service's ``json.dumps`` makes of the value ``encoded`` holds.

    ``encoded`` is compact UTF-8 JSON, as the call's encoder writes it; ``json.dumps`` escapes
    every non-ASCII character and DEL, puts a space after each ``,`` and ``:`` and writes
    exponents longer. Exact for the escapes; a ``,``, ``:`` or digit-then-``e`` inside a string
    is counted too. In C-speed passes over the bytes.
    """
    classes = encoded.translate(_FIRST_BYTE_CLASS)
    escapes = sum(classes.count(width) * extra for width, extra in _ESCAPE_EXTRA_BYTES.items())
    separators = encoded.count(b",") + encoded.count(b":")
    # Python writes an exponent with a sign and two digits at least ("1e-08", "1e+16"); we
    # write "1e-8" and "1e16": a byte more each.
    exponents = encoded.translate(_DIGITS_AS_ZERO).count(b"0e")
    return len(encoded) + escapes + separators + exponents


class _Limit(NamedTuple):
    max_bytes: int
    name: str
    """How a marker names it: "over the {max_bytes}-byte {name}"."""
    weigh: Callable[[bytes], int]
    """A field's weight against it, from the field's compact JSON."""


def _request_limit(budget: int) -> _Limit:
    return _Limit(budget, "request limit", len)


def _row_limit(row_limit: int) -> _Limit:
    return _Limit(row_limit, "limit of a call's JSON fields", service_json_bytes)


class FitToSize:
    """Cuts each call to fit ``budget`` bytes (see :func:`fit_call`) before ``inner`` sends it.

    ``clock`` is the one the ``deadline`` of :meth:`send` is read on.
    """

    def __init__(
        self,
        inner: CallSender,
        budget: int,
        clock: Callable[[], float] = SYSTEM_CLOCK.monotonic,
        row_limit: int = ROW_JSON_LIMIT,
    ) -> None:
        self._inner = inner
        self._budget = budget
        self._clock = clock
        self._row_limit = row_limit

    def send(self, calls: Sequence[WeaveCall], deadline: float) -> DeliveryReport:
        fitted, truncated = self.fit(calls, deadline)
        return self._inner.send(fitted, deadline) + DeliveryReport(truncated=truncated)

    def fit(self, calls: Sequence[WeaveCall], deadline: float) -> tuple[list[WeaveCall], int]:
        """``calls`` fitted, and how many of them were cut."""
        now = self._clock()
        cut_by = now + max(0.0, deadline - now) * _FITTING_SHARE_OF_TIME_LEFT

        def out_of_time() -> bool:
            return self._clock() >= cut_by

        fitted = [fit_call(call, self._budget, out_of_time, self._row_limit) for call in calls]
        return [call for call, _ in fitted], sum(1 for _, cut in fitted if cut)


def _never() -> bool:
    return False


def fit_call(
    call: WeaveCall,
    budget: int,
    out_of_time: Callable[[], bool] = _never,
    row_limit: int = ROW_JSON_LIMIT,
) -> tuple[WeaveCall, tuple[str, ...]]:
    """``call`` within both limits, and the fields replaced by markers to get there.

    First its JSON fields within ``row_limit`` as the service weighs them, then the call within
    ``budget`` encoded bytes. For each, the heaviest fields go first, each replaced by a marker
    that keeps its first characters and says what was cut, how large it was and which limit it
    was over; a field whose marker would weigh no less is kept. If that cannot be enough (many
    small fields), or ``out_of_time()`` turns true before the cuts are chosen, ``inputs``,
    ``output`` and ``attributes`` are cut whole instead. The summary is never cut: it holds the
    costs and the status. The result is never larger than ``call``; if it cannot fit the
    request, the service's 413 decides.
    """
    within_row, row_cut = _fit(
        call, _row_limit(row_limit), _row_excess(call, row_limit), out_of_time
    )
    excess = within_row.encoded_size - budget
    fitted, request_cut = _fit(within_row, _request_limit(budget), excess, out_of_time)
    return fitted, row_cut + request_cut


def _row_excess(call: WeaveCall, row_limit: int) -> int:
    """How far the call's JSON fields weigh past ``row_limit``, at most; 0 or less if within.

    The weighed halves hold the call's ids and names too: a few hundred bytes too many.
    """
    if call.encoded_size * _MAX_SERVICE_BYTES_PER_BYTE <= row_limit:
        return 0  # the common case, without a pass over the JSON
    return service_json_bytes(call.start_json) + service_json_bytes(call.end_only_json) - row_limit


def _fit(
    call: WeaveCall, limit: _Limit, excess: int, out_of_time: Callable[[], bool]
) -> tuple[WeaveCall, tuple[str, ...]]:
    """``call`` with ``excess`` bytes of weight against ``limit`` cut, if it has any."""
    if excess <= 0:
        return call, ()
    fields = _weighed_fields(call, limit, out_of_time)
    if fields is not None and _could_save(fields, excess, limit):
        markers = _markers_to_fit(fields, excess, limit, out_of_time)
        if markers is not None:
            return _with_markers(call, markers), tuple(markers)
    fitted, cut = _cut_whole(call, limit, out_of_time())
    if fitted.encoded_size >= call.encoded_size:  # too little to cut: a marker is larger
        return call, ()
    return fitted, cut


class _Field(NamedTuple):
    path: str
    size: int
    """Bytes of its compact JSON, as a marker says."""
    weight: int
    """Its weight against the limit being fitted to."""
    value: Any


def _weighed_fields(
    call: WeaveCall, limit: _Limit, out_of_time: Callable[[], bool]
) -> list[_Field] | None:
    """The cuttable fields with their weights, the OTel context last; None if out of time.

    The order breaks ties between fields of one size (the sort is stable): the OTel context
    goes last.
    """
    unweighed: list[tuple[str, Any]] = [
        (f"inputs.{key}", value) for key, value in call.start.inputs.items()
    ]
    if call.end.output is not None:
        unweighed.append(("output", call.end.output))
    attributes = call.start.attributes
    unweighed.extend(
        (f"attributes.{key}", value)
        for key, value in attributes.items()
        if key != OTEL_ATTRIBUTES_KEY
    )
    if OTEL_ATTRIBUTES_KEY in attributes:
        unweighed.append((f"attributes.{OTEL_ATTRIBUTES_KEY}", attributes[OTEL_ATTRIBUTES_KEY]))
    fields = []
    for path, value in unweighed:
        if out_of_time():
            return None
        encoded = to_json(value)
        fields.append(_Field(path, len(encoded), limit.weigh(encoded), value))
    return fields


def _could_save(fields: list[_Field], excess: int, limit: _Limit) -> bool:
    """Whether markers could save ``excess`` bytes, judged without making any.

    A marker keeps at least the field's first ``_KEPT_HEAD_CHARS`` characters (or all of a
    shorter one), each a byte or more: a field of no more bytes than that cannot save any.
    """
    smallest_marker = _KEPT_HEAD_CHARS + len(to_json(_marker("", "", limit)))
    return sum(max(0, field.weight - smallest_marker) for field in fields) >= excess


def _markers_to_fit(
    fields: list[_Field], excess: int, limit: _Limit, out_of_time: Callable[[], bool]
) -> dict[str, str] | None:
    """Markers for the largest fields until they save ``excess`` bytes; None if they cannot,
    or if ``out_of_time()`` turns true first.

    The sizes are exact, so what they save is what the call loses.
    """
    markers: dict[str, str] = {}
    for field in sorted(fields, key=lambda field: field.weight, reverse=True):
        if field.weight <= _KEPT_HEAD_CHARS:
            break  # its marker would keep all of it and add to it; so would all lighter ones
        if out_of_time():
            return None
        marker = _marker(_head(field.value), f"{field.path} was {field.size} bytes of JSON", limit)
        saved = field.weight - limit.weigh(to_json(marker))
        if saved > 0:
            markers[field.path] = marker
            excess -= saved
            if excess <= 0:
                return markers
    return None


def _head(value: Any) -> str:
    """The first characters of ``value``'s JSON, spaced to be read."""
    if isinstance(value, str):  # each character is one or more of its JSON: the rest can go
        value = value[:_KEPT_HEAD_CHARS]
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):  # what the call's encoder takes but json does not (10**5000)
        text = to_json(value).decode()
    return text[:_KEPT_HEAD_CHARS]


def _with_markers(call: WeaveCall, markers: dict[str, str]) -> WeaveCall:
    """``call`` with each field named in ``markers`` replaced by its marker, in one change."""
    changes: dict[str, Any] = {}
    for container in ("inputs", "attributes"):
        prefix = container + "."
        cut = {
            path[len(prefix) :]: marker
            for path, marker in markers.items()
            if path.startswith(prefix)
        }
        if cut:
            changes[container] = {**getattr(call.start, container), **cut}
    if "output" in markers:
        changes["output"] = markers["output"]
    return call.replace(**changes)


def _cut_whole(
    call: WeaveCall, limit: _Limit, out_of_time: bool
) -> tuple[WeaveCall, tuple[str, ...]]:
    why = (
        "no time left to cut field by field" if out_of_time else "too many fields to fit one by one"
    )
    marker = _marker("", f"this call's inputs, output and attributes were cut whole, {why}", limit)
    fitted = call.replace(
        inputs={_WHOLE_KEY: marker},
        output=None if call.end.output is None else marker,
        attributes={_WHOLE_KEY: marker},
    )
    cut = (
        ("inputs", "attributes") if call.end.output is None else ("inputs", "output", "attributes")
    )
    return fitted, cut


def _marker(head: str, what: str, limit: _Limit) -> str:
    return f"{head}{_MARKER_PREFIX}{what}, over the {limit.max_bytes}-byte {limit.name}]"
