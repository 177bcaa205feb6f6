"""Keeping every call under the request size limit by cutting its largest fields, visibly.

Fitting a call costs time linear in its size: each cuttable field is encoded once to weigh it,
the cuts are chosen from those weights (exact: a field's JSON is the same inside the call and
alone) and applied together, and the cut call is encoded once. It also keeps to the export's
deadline: a call it has no time left to cut field by field is cut whole, which is quick.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from pydantic_core import to_json

from opentelemetry.exporter.weave._call import OTEL_ATTRIBUTES_KEY, WeaveCall
from opentelemetry.exporter.weave._delivery import CallSender, DeliveryReport
from opentelemetry.exporter.weave._retry import SYSTEM_CLOCK

__all__ = ["FitToSize", "fit_call"]

_KEPT_HEAD_CHARS = 1000
_MARKER_PREFIX = "… [truncated by opentelemetry-exporter-weave: "
_FITTING_SHARE_OF_TIME_LEFT = 0.5
"""Fitting a batch may use this share of the time left to its deadline; the rest is delivery's."""
_WHOLE_KEY = "truncated"
"""The one key left in ``inputs`` and ``attributes`` when all of them had to go."""


class FitToSize:
    """Cuts each call to fit ``budget`` bytes (see :func:`fit_call`) before ``inner`` sends it.

    ``clock`` is the one the ``deadline`` of :meth:`send` is read on.
    """

    def __init__(
        self,
        inner: CallSender,
        budget: int,
        clock: Callable[[], float] = SYSTEM_CLOCK.monotonic,
    ) -> None:
        self._inner = inner
        self._budget = budget
        self._clock = clock

    def send(self, calls: Sequence[WeaveCall], deadline: float) -> DeliveryReport:
        fitted, truncated = self.fit(calls, deadline)
        return self._inner.send(fitted, deadline) + DeliveryReport(truncated=truncated)

    def fit(self, calls: Sequence[WeaveCall], deadline: float) -> tuple[list[WeaveCall], int]:
        """``calls`` fitted, and how many of them were cut."""
        now = self._clock()
        cut_by = now + max(0.0, deadline - now) * _FITTING_SHARE_OF_TIME_LEFT

        def out_of_time() -> bool:
            return self._clock() >= cut_by

        fitted = [fit_call(call, self._budget, out_of_time) for call in calls]
        return [call for call, _ in fitted], sum(1 for _, cut in fitted if cut)


def _never() -> bool:
    return False


def fit_call(
    call: WeaveCall, budget: int, out_of_time: Callable[[], bool] = _never
) -> tuple[WeaveCall, tuple[str, ...]]:
    """``call`` within ``budget`` encoded bytes, and the fields replaced by markers to get there.

    The largest fields go first, each replaced by a marker that keeps its first characters and
    says what was cut and how large it was; a field whose marker would be no smaller is kept.
    If that cannot be enough (many small fields), or ``out_of_time()`` turns true before the
    cuts are chosen, ``inputs``, ``output`` and ``attributes`` are cut whole instead. The
    result is never larger than ``call``; if it cannot fit, the service's 413 decides.
    """
    if call.encoded_size <= budget:
        return call, ()
    fields = _weighed_fields(call, out_of_time)
    excess = call.encoded_size - budget
    if fields is not None and _could_save(fields, excess, budget):
        markers = _markers_to_fit(fields, excess, budget, out_of_time)
        if markers is not None:
            return _with_markers(call, markers), tuple(markers)
    fitted, cut = _cut_whole(call, budget, out_of_time())
    if fitted.encoded_size >= call.encoded_size:  # too little to cut: a marker is larger
        return call, ()
    return fitted, cut


class _Field(NamedTuple):
    path: str
    size: int
    value: Any


def _weighed_fields(call: WeaveCall, out_of_time: Callable[[], bool]) -> list[_Field] | None:
    """The cuttable fields with their encoded sizes, the OTel context last; None if out of time.

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
        fields.append(_Field(path, len(to_json(value)), value))
    return fields


def _could_save(fields: list[_Field], excess: int, budget: int) -> bool:
    """Whether markers could save ``excess`` bytes, judged without making any.

    A marker keeps at least the field's first ``_KEPT_HEAD_CHARS`` characters (or all of a
    shorter one), each a byte or more: a field of no more bytes than that cannot save any.
    """
    smallest_marker = _KEPT_HEAD_CHARS + len(to_json(_marker("", "", budget)))
    return sum(max(0, field.size - smallest_marker) for field in fields) >= excess


def _markers_to_fit(
    fields: list[_Field], excess: int, budget: int, out_of_time: Callable[[], bool]
) -> dict[str, str] | None:
    """Markers for the largest fields until they save ``excess`` bytes; None if they cannot,
    or if ``out_of_time()`` turns true first.

    The sizes are exact, so what they save is what the call loses.
    """
    markers: dict[str, str] = {}
    for field in sorted(fields, key=lambda field: field.size, reverse=True):
        if field.size <= _KEPT_HEAD_CHARS:
            break  # its marker would keep all of it and add to it; so would all smaller ones
        if out_of_time():
            return None
        marker = _marker(_head(field.value), f"{field.path} was {field.size} bytes of JSON", budget)
        saved = field.size - len(to_json(marker))
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
    call: WeaveCall, budget: int, out_of_time: bool
) -> tuple[WeaveCall, tuple[str, ...]]:
    why = (
        "no time left to cut field by field" if out_of_time else "too many fields to fit one by one"
    )
    marker = _marker("", f"this call's inputs, output and attributes were cut whole, {why}", budget)
    fitted = call.replace(
        inputs={_WHOLE_KEY: marker},
        output=None if call.end.output is None else marker,
        attributes={_WHOLE_KEY: marker},
    )
    cut = (
        ("inputs", "attributes") if call.end.output is None else ("inputs", "output", "attributes")
    )
    return fitted, cut


def _marker(head: str, what: str, budget: int) -> str:
    return f"{head}{_MARKER_PREFIX}{what}, over the {budget}-byte request limit]"
