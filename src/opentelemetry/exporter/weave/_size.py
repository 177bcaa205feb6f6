"""Keeping every call under the request size limit by cutting its largest fields, visibly."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from opentelemetry.exporter.weave._call import OTEL_ATTRIBUTES_KEY, WeaveCall
from opentelemetry.exporter.weave._delivery import CallSender, DeliveryReport

__all__ = ["FitToSize", "fit_call"]

_KEPT_HEAD_CHARS = 1000


class FitToSize:
    """Cuts each call to fit ``budget`` bytes (see :func:`fit_call`) before ``inner`` sends it."""

    def __init__(self, inner: CallSender, budget: int) -> None:
        self._inner = inner
        self._budget = budget

    def send(self, calls: Sequence[WeaveCall], deadline: float) -> DeliveryReport:
        fitted = [fit_call(call, self._budget) for call in calls]
        truncated = sum(1 for _, cut in fitted if cut)
        report = self._inner.send([call for call, _ in fitted], deadline)
        return report + DeliveryReport(truncated=truncated)


def fit_call(call: WeaveCall, budget: int) -> tuple[WeaveCall, tuple[str, ...]]:
    """``call`` within ``budget`` encoded bytes, and the fields replaced by markers to get there.

    A marker keeps the field's first characters and says what was cut and how large it was.
    If even that cannot fit, the call is returned as small as it gets, and the service's 413
    decides.
    """
    if call.encoded_size <= budget:
        return call, ()
    cut: list[str] = []
    excess = call.encoded_size - budget
    for path, size in sorted(_field_sizes(call), key=lambda item: item[1], reverse=True):
        marker = _marker(call, path, size, budget)
        if _json_size(marker) >= size:  # a small field: its marker would only add bytes
            continue
        call = _replace_field(call, path, marker)
        cut.append(path)
        excess -= size
        if excess <= 0:  # an estimate: check it against the real encoding
            if call.encoded_size <= budget:
                break
            excess = call.encoded_size - budget
    return call, tuple(cut)


def _field_sizes(call: WeaveCall) -> Iterator[tuple[str, int]]:
    """The cuttable fields: each input, the output, each attribute, the OTel context last.

    The order breaks ties between fields of one size: the OTel context goes last.
    """
    for key, value in call.start.inputs.items():
        yield f"inputs.{key}", _json_size(value)
    if call.end.output is not None:
        yield "output", _json_size(call.end.output)
    for key, value in call.start.attributes.items():
        if key != OTEL_ATTRIBUTES_KEY:
            yield f"attributes.{key}", _json_size(value)
    if OTEL_ATTRIBUTES_KEY in call.start.attributes:
        otel = call.start.attributes[OTEL_ATTRIBUTES_KEY]
        yield f"attributes.{OTEL_ATTRIBUTES_KEY}", _json_size(otel)


def _json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode())


def _marker(call: WeaveCall, path: str, size: int, budget: int) -> str:
    head = json.dumps(_get_field(call, path), ensure_ascii=False)[:_KEPT_HEAD_CHARS]
    return (
        f"{head}… [truncated by opentelemetry-exporter-weave: {path} was {size} bytes of JSON, "
        f"over the {budget}-byte request limit]"
    )


def _get_field(call: WeaveCall, path: str) -> Any:
    container, _, key = path.partition(".")
    if container == "output":
        return call.end.output
    source = call.start.inputs if container == "inputs" else call.start.attributes
    return source.get(key)


def _replace_field(call: WeaveCall, path: str, marker: str) -> WeaveCall:
    container, _, key = path.partition(".")
    if container == "output":
        return call.replace(output=marker)
    source = call.start.inputs if container == "inputs" else call.start.attributes
    return call.replace(**{container: {**source, key: marker}})
