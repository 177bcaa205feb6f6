"""Threads and turns: which calls of a conversation Weave's Threads view lists.

Weave lists a thread through its *turn* calls, whose ``turn_id`` is their own id: the topmost
call of a trace that carries a thread id (no parent in the thread), or one marked
``wandb.is_turn``. Its descendants carry the same ``thread_id`` and ``turn_id``
(WEAVE_WIRE §7). Spans end child-first, so when a child is mapped its ancestors have not
ended; what they said when they *started* is known, though: :class:`ThreadTracker` keeps it,
from ``on_start``, for the descendants that start under them.

Some instrumentations (OpenInference's LangChain tracer) set the thread id on every span only
when it ends. A call whose thread id no ancestor showed at its start then belongs to the turn
of its trace's topmost span in this process, which ends last, with the thread id too.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from opentelemetry.sdk.trace import ReadableSpan

from opentelemetry.exporter.weave._call import format_span_id
from opentelemetry.exporter.weave._conventions import KEYS
from opentelemetry.exporter.weave._spans import held_attributes

__all__ = ["ThreadContext", "ThreadTracker", "is_marked_turn"]

_MAX_OPEN_SPANS = 65_536
"""Spans tracked at once; beyond it, the oldest are forgotten (a span that never ends)."""

_TRUE_TEXTS = frozenset({"true", "1", "yes"})


class ThreadContext(NamedTuple):
    """What a span's start said: the thread and turn it is in (None: none seen), and the
    topmost span of its trace in this process."""

    thread_id: str | None
    turn_id: str | None
    local_root_id: str | None


def is_marked_turn(value: Any) -> bool:
    """Whether a ``wandb.is_turn`` value says yes."""
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_TEXTS
    return value is True


def _thread_key(attributes: Any) -> str | None:
    for key in KEYS.thread_id:
        value = attributes.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _is_marked(attributes: Any) -> bool:
    """Whether the attributes mark a turn (``wandb.is_turn``): a loop, not ``any()`` of a
    generator, as it runs on the app's thread at every span's start."""
    for key in KEYS.is_turn:
        value = attributes.get(key)
        if value is not None and is_marked_turn(value):
            return True
    return False


class ThreadTracker:
    """What each open span's start said about its thread, for its descendants to inherit.

    ``span_started`` runs on the app's thread: a few dict lookups, and a store only for a span
    in a thread or a trace's root; no lock (a dict's ``get`` and item assignment are atomic
    under the GIL). ``take`` and ``peek`` run on the worker, when the span is mapped.
    """

    def __init__(self, max_open_spans: int = _MAX_OPEN_SPANS) -> None:
        self._max_open = max_open_spans
        self._open: dict[int, tuple[str, str | None]] = {}
        """Span id → (thread id, turn id) of the spans in a thread."""
        self._roots: dict[int, int] = {}
        """Trace id → span id of its topmost span in this process, until that is mapped."""

    def __len__(self) -> int:
        return len(self._open) + len(self._roots)

    def span_started(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None:
            return
        span_id = context.span_id
        parent = span.parent
        if parent is None or parent.is_remote:
            self._roots[context.trace_id] = span_id
            inherited = None
        else:
            inherited = self._open.get(parent.span_id)
        attributes = held_attributes(span)
        thread_id = _thread_key(attributes) or (inherited[0] if inherited else None)
        if thread_id is None:
            return
        if inherited is not None and inherited[0] == thread_id and not _is_marked(attributes):
            self._open[span_id] = inherited
        else:
            self._open[span_id] = (thread_id, format_span_id(span_id))

    def peek(self, span: ReadableSpan) -> ThreadContext | None:
        """What the start of ``span`` (still open) left, kept."""
        return self._context(span, forget=False)

    def take(self, span: ReadableSpan) -> ThreadContext | None:
        """What the start of ``span`` left, forgotten from here on (its descendants have been
        mapped: they end first)."""
        found = self._context(span, forget=True)
        for entries in (self._open, self._roots):
            if len(entries) > self._max_open:
                # list() of a dict copies it without running Python code: no other thread
                # changes it halfway. The oldest come first.
                for stale in list(entries)[: len(entries) - self._max_open // 2]:
                    entries.pop(stale, None)
        return found

    def _context(self, span: ReadableSpan, *, forget: bool) -> ThreadContext | None:
        context = span.context
        if context is None:
            return None
        entries = self._open
        thread = entries.pop(context.span_id, None) if forget else entries.get(context.span_id)
        root = self._roots.get(context.trace_id)
        if forget and root == context.span_id:
            del self._roots[context.trace_id]
        if thread is None and root is None:
            return None
        thread_id, turn_id = thread if thread is not None else (None, None)
        return ThreadContext(thread_id, turn_id, None if root is None else format_span_id(root))
