"""Reading an SDK span's attributes without the SDK's Python-level mapping calls.

``ReadableSpan.attributes`` is a read-only view of a ``BoundedAttributes``, a ``Mapping`` whose
every ``get`` and ``in`` is a Python-level call (a missing key raises and catches a
``KeyError``). On an SDK span it holds a plain dict, read here directly; any other span, or
an SDK whose internals differ, is read through its public ``attributes``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import ReadableSpan

__all__ = ["held_attributes"]

_SDK_ATTRIBUTES = ReadableSpan.attributes
"""The SDK's property, a view of what ``_attributes`` holds: a span class that overrides it
keeps its attributes as it likes, and is read through it."""

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
