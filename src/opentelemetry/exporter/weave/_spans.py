"""Reading an SDK span's attributes and events without the SDK's Python-level calls.

``ReadableSpan.attributes`` is a read-only view of a ``BoundedAttributes``, a ``Mapping`` whose
every ``get`` and ``in`` is a Python-level call (a missing key raises and catches a
``KeyError``). On an SDK span it holds a plain dict, read here directly; any other span, or
an SDK whose internals differ, is read through its public ``attributes``. Its ``events``
are a copy of a ``BoundedList``, whose iterator is a Python-level call: the deque it holds is
copied directly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util import BoundedList

__all__ = ["held_attributes", "held_events"]

_SDK_ATTRIBUTES = ReadableSpan.attributes
"""The SDK's property, a view of what ``_attributes`` holds: a span class that overrides it
keeps its attributes as it likes, and is read through it."""

_SDK_EVENTS = ReadableSpan.events
"""The SDK's property, a copy of what ``_events`` holds (overridden: read through it)."""

_NO_ATTRIBUTES: Mapping[str, Any] = {}


def held_attributes(span: ReadableSpan) -> Mapping[str, Any]:
    """The span's attributes, for reading only: the SDK span's own dict, not a copy (an app
    thread may still set attributes on a live span; each lookup is atomic)."""
    if type(span).attributes is _SDK_ATTRIBUTES:
        held: Any = span._attributes
        if type(held) is BoundedAttributes:
            held = held._dict
        if type(held) is dict:
            return held
    return span.attributes or _NO_ATTRIBUTES


def held_events(span: ReadableSpan) -> Sequence[Event]:
    """``span.events``, the SDK span's bounded list copied at C speed."""
    if type(span).events is _SDK_EVENTS:
        held: Any = span._events
        if type(held) is BoundedList:
            return tuple(held._dq)  # type: ignore[attr-defined]
    return span.events
