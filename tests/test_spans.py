"""Reading a span's attributes without the SDK's mapping calls gives what its ``attributes`` say."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.util.types import Attributes

from opentelemetry.exporter.weave._spans import held_attributes


def test_an_sdk_span_is_read_as_it_holds_its_attributes_live_and_ended() -> None:
    span = TracerProvider().get_tracer("t").start_span("s", attributes={"a": 1, "b": ("x",)})
    assert isinstance(span, ReadableSpan)
    held = held_attributes(span)
    assert dict(held) == dict(span.attributes or {}) == {"a": 1, "b": ("x",)}

    span.set_attribute("c", "later")  # a live span's attributes as they are when read
    assert held_attributes(span)["c"] == "later"
    span.end()
    assert dict(held_attributes(span)) == dict(span.attributes or {})
    assert not isinstance(held_attributes(span), MappingProxyType)  # its own dict, no view


def test_a_span_built_by_hand_is_read_too() -> None:
    assert dict(held_attributes(ReadableSpan("s", attributes={"k": "v"}))) == {"k": "v"}
    assert dict(held_attributes(ReadableSpan("s", attributes=None))) == {}


class _OwnAttributes(ReadableSpan):
    """A span class that keeps its attributes its own way."""

    @property
    def attributes(self) -> Attributes:
        return MappingProxyType({"own": True})


class _OddHolder(ReadableSpan):
    def __init__(self, held: Any) -> None:
        super().__init__("s")
        self._attributes = held


def test_a_span_class_with_its_own_attributes_is_read_through_them() -> None:
    assert dict(held_attributes(_OwnAttributes("s", attributes={"held": 1}))) == {"own": True}


def test_attributes_held_in_anything_but_a_dict_are_read_through_the_public_view() -> None:
    class Custom(Mapping[str, Any]):
        def __getitem__(self, key: str) -> Any:
            if key == "only":
                return 1
            raise KeyError(key)

        def __iter__(self) -> Any:
            return iter(["only"])

        def __len__(self) -> int:
            return 1

    assert dict(held_attributes(_OddHolder(Custom()))) == {"only": 1}
