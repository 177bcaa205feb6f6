"""Keeping every call under the request size limit by cutting its largest fields, visibly."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from opentelemetry.exporter.weave._mapping import WeaveCall

__all__ = ["EncodedCall", "fit_call"]

_KEPT_HEAD_CHARS = 1000


@dataclass(frozen=True)
class EncodedCall:
    """A call and the JSON it is sent as, in the parts its write mode sends."""

    call: WeaveCall
    parts: tuple[bytes, ...]
    truncated_fields: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return sum(len(part) for part in self.parts)


Encoder = Callable[[WeaveCall], tuple[bytes, ...]]


def fit_call(call: WeaveCall, encode: Encoder, budget: int) -> EncodedCall:
    """``call`` encoded within ``budget`` bytes, its largest fields replaced by markers if needed.

    A marker keeps the field's first characters and says what was cut and how large it was.
    If even that cannot fit, the call is returned as small as it gets, and the service's 413
    decides.
    """
    encoded = EncodedCall(call, encode(call))
    if encoded.size <= budget:
        return encoded
    cut: list[str] = []
    excess = encoded.size - budget
    for path, size in sorted(_field_sizes(call), key=lambda item: item[1], reverse=True):
        call = _replace_field(call, path, _marker(call, path, size, budget))
        cut.append(path)
        excess -= size
        if excess <= 0:  # an estimate: check it against the real encoding
            encoded = EncodedCall(call, encode(call), tuple(cut))
            if encoded.size <= budget:
                return encoded
            excess = encoded.size - budget
    return EncodedCall(call, encode(call), tuple(cut))


def _field_sizes(call: WeaveCall) -> Iterator[tuple[str, int]]:
    """The cuttable fields: each input, the output, each attribute but the OTel context."""
    for key, value in call.start.inputs.items():
        yield f"inputs.{key}", _json_size(value)
    if call.end.output is not None:
        yield "output", _json_size(call.end.output)
    for key, value in call.start.attributes.items():
        if key != "otel":
            yield f"attributes.{key}", _json_size(value)
    yield "attributes.otel", _json_size(call.start.attributes.get("otel"))


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
        return WeaveCall(call.start, call.end.model_copy(update={"output": marker}))
    source = call.start.inputs if container == "inputs" else call.start.attributes
    replaced = {**source, key: marker}
    return WeaveCall(call.start.model_copy(update={container: replaced}), call.end)
