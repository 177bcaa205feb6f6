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

__all__ = ["ThreadContext", "ThreadTracker", "is_marked_turn"]

_MAX_OPEN_SPANS = 65_536
"""Spans tracked at once; beyond it, the oldest are forgotten (a span that never ends)."""

_TRUE_TEXTS = frozenset({"true", "1", "yes"})


class ThreadContext(NamedTuple):
    """What a span's start said: the thread and turn it is in (None: none seen), and the
    topmost span of its trace in this process."""

    thread_id: str | None
    turn_id: str | None
    local_root_id: str


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


class ThreadTracker:
    """What each open span's start said about its thread, for its descendants to inherit.

    ``span_started`` runs on the app's thread: a few dict lookups and one store, no lock (a
    dict's ``get`` and item assignment are atomic under the GIL). ``take`` runs on the worker,
    when the span is mapped.
    """

    def __init__(self, max_open_spans: int = _MAX_OPEN_SPANS) -> None:
        self._max_open = max_open_spans
        self._open: dict[int, ThreadContext] = {}

    def __len__(self) -> int:
        return len(self._open)

    def span_started(self, span: ReadableSpan) -> None:
        context = span.context
        if context is None:
            return
        attributes = span.attributes or {}
        parent = span.parent
        inherited = (
            self._open.get(parent.span_id) if parent is not None and not parent.is_remote else None
        )
        own_id = format_span_id(context.span_id)
        local_root = inherited.local_root_id if inherited is not None else own_id
        thread_id = _thread_key(attributes) or (inherited.thread_id if inherited else None)
        marked = any(is_marked_turn(attributes.get(key)) for key in KEYS.is_turn)
        if thread_id is None:
            turn_id = None
        elif inherited is not None and inherited.thread_id == thread_id and not marked:
            turn_id = inherited.turn_id
        else:
            turn_id = own_id
        self._open[context.span_id] = ThreadContext(thread_id, turn_id, local_root)

    def peek(self, span_id: int) -> ThreadContext | None:
        """The context the span's start left, kept: the span is still open."""
        return self._open.get(span_id)

    def take(self, span_id: int) -> ThreadContext | None:
        """The context the span's start left, forgotten from here on."""
        found = self._open.pop(span_id, None)
        if len(self._open) > self._max_open:
            # list() of a dict copies it without running Python code: no other thread
            # changes it halfway. The oldest starts come first.
            for stale in list(self._open)[: len(self._open) - self._max_open // 2]:
                self._open.pop(stale, None)
        return found
