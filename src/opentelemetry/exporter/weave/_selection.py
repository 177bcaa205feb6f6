"""Choosing which spans become calls, without breaking a trace into orphans.

A span is exported when the filter wants it, or when one of its exported descendants has
already ended (children end before their parents), so that every exported call keeps the
ancestors that hold its trace together. A span that is left out, yet has a descendant ending
after it, hands that descendant to its own nearest exported ancestor.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from enum import Enum
from typing import Final, Literal

from opentelemetry.sdk.trace import ReadableSpan

from opentelemetry.exporter.weave._call import format_span_id
from opentelemetry.exporter.weave._config import SpanFilter
from opentelemetry.exporter.weave._conventions import KEYS
from opentelemetry.exporter.weave._mapping import parent_call_id

__all__ = ["LEFT_OUT", "SpanSelection", "is_genai_span"]

logger = logging.getLogger(__package__)


class _Verdict(Enum):
    LEFT_OUT = "left out"


LEFT_OUT: Final = _Verdict.LEFT_OUT
"""What :meth:`SpanSelection.parent_of` answers for a span that is not exported."""


def is_genai_span(span: ReadableSpan) -> bool:
    """Whether the span carries any LLM convention's attributes or content events."""
    prefixes = KEYS.detect_prefixes
    if any(key.startswith(prefixes) for key in span.attributes or {}):
        return True
    return any(event.name.startswith("gen_ai.") for event in span.events)


class _BoundedMap(OrderedDict[str, "str | None"]):
    """Oldest entries go first once ``limit`` is reached: state for spans that never come."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self._limit = limit

    def remember(self, key: str, value: str | None) -> None:
        self[key] = value
        self.move_to_end(key)
        while len(self) > self._limit:
            self.popitem(last=False)


class SpanSelection:
    """Applies a span filter in end order; answers each exported span's parent call."""

    def __init__(self, wanted: SpanFilter, max_tracked: int) -> None:
        self._wanted = wanted
        self._needed = _BoundedMap(max_tracked)  # spans with an exported descendant
        self._left_out = _BoundedMap(max_tracked)  # left-out span -> its parent
        self._filter_failed = False

    def parent_of(self, span: ReadableSpan) -> str | Literal[_Verdict.LEFT_OUT] | None:
        """``LEFT_OUT``, or the id of the exported call that is this span's parent (or None)."""
        span_id = format_span_id(span.context.span_id) if span.context else ""
        parent_id = parent_call_id(span)
        has_exported_descendant = self._needed.pop(span_id, LEFT_OUT) is not LEFT_OUT
        if has_exported_descendant or self._is_wanted(span):
            parent_id = self._nearest_exported(parent_id)
            if parent_id is not None and not (span.parent and span.parent.is_remote):
                self._needed.remember(parent_id, None)
            return parent_id
        self._left_out.remember(span_id, parent_id)
        return LEFT_OUT

    def parent_if_exported(self, span: ReadableSpan) -> str | Literal[_Verdict.LEFT_OUT] | None:
        """For a span still open: its parent call as :meth:`parent_of` would answer now, or
        ``LEFT_OUT``; decides nothing (its end does)."""
        span_id = format_span_id(span.context.span_id) if span.context else ""
        if span_id in self._needed or self._is_wanted(span):
            return self._nearest_exported(parent_call_id(span))
        return LEFT_OUT

    def _nearest_exported(self, span_id: str | None) -> str | None:
        seen = 0
        while span_id is not None and span_id in self._left_out and seen < len(self._left_out):
            span_id = self._left_out[span_id]
            seen += 1
        return span_id

    def _is_wanted(self, span: ReadableSpan) -> bool:
        try:
            return bool(self._wanted(span))
        except Exception:  # a broken filter must not cost spans: keep them, say so once
            if not self._filter_failed:
                self._filter_failed = True
                logger.exception("The Weave span filter raised; spans it fails on are exported")
            return True
