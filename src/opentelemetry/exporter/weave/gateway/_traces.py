"""Holding each trace until all of it has arrived, so that its root's roll-up covers it all.

A trace's spans arrive in batches from several services, in any order. A trace is held until
its root (a span with no parent) has arrived plus ``trace_wait`` seconds (the tail-sampling
processor's ``decision_wait``); then its spans are released in end order, children first. A
trace whose root never comes is released after ``max_wait`` from its first span, as it is
(``traces_timed_out``). Beyond ``max_spans`` or ``max_traces`` held, the oldest traces are
released at once (``traces_exported_early``). Spans of a trace released a moment ago are
released as they come (``spans_late``): their root has been sent already.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

from opentelemetry.sdk.trace import ReadableSpan

__all__ = ["HeldSpan", "ReleasedTrace", "TraceBuffer"]


@dataclass(frozen=True)
class HeldSpan:
    span: ReadableSpan
    size: int
    """Bytes it took in its request: what it counts for in the gateway's byte bound."""


@dataclass(frozen=True)
class ReleasedTrace:
    """Spans of one trace (or part of one) for one route, in the order to export them."""

    route: Hashable
    spans: list[HeldSpan]

    @property
    def size(self) -> int:
        return sum(held.size for held in self.spans)


@dataclass
class _Trace:
    first_seen: float
    spans: list[HeldSpan] = field(default_factory=list)
    root_seen: float | None = None


def _key_of(span: ReadableSpan) -> int:
    return span.context.trace_id if span.context else 0


def _in_export_order(spans: list[HeldSpan]) -> list[HeldSpan]:
    """Every span after all of its descendants (so each is rolled up into its parent), else
    in end order. Not by end time alone: the clocks of two services differ, and a child's end
    in another service may be stamped after its parent's."""
    by_end = sorted(spans, key=lambda held: held.span.end_time or 0)
    ids = {held.span.context.span_id for held in spans if held.span.context}
    children: dict[int, list[HeldSpan]] = {}
    tops: list[HeldSpan] = []
    for held in by_end:
        parent = held.span.parent.span_id if held.span.parent else None
        if parent is not None and parent in ids and parent != _span_id(held):
            children.setdefault(parent, []).append(held)
        else:
            tops.append(held)
    ordered: list[HeldSpan] = []
    placed: set[int] = set()
    for top in tops:
        # Depth-first, children before their parent, without recursion (traces can be deep).
        stack: list[tuple[HeldSpan, bool]] = [(top, False)]
        while stack:
            held, expanded = stack.pop()
            if expanded:
                ordered.append(held)
                continue
            if id(held) in placed:
                continue
            placed.add(id(held))
            stack.append((held, True))
            stack.extend((child, False) for child in reversed(children.get(_span_id(held), [])))
    # A cycle of parents (a broken sender) reaches no top: such spans go last, in end order.
    ordered.extend(held for held in by_end if id(held) not in placed)
    return ordered


def _span_id(held: HeldSpan) -> int:
    return held.span.context.span_id if held.span.context else 0


class TraceBuffer:
    """Held traces by (route, trace id); not thread-safe (the gateway holds a lock)."""

    def __init__(
        self,
        trace_wait: float,
        max_wait: float,
        max_spans: int,
        max_traces: int,
        monotonic: Callable[[], float],
    ) -> None:
        self._trace_wait = trace_wait
        self._max_wait = max_wait
        self._max_spans = max_spans
        self._max_traces = max_traces
        self._monotonic = monotonic
        # In arrival order of each trace's first span: the oldest first, for early release.
        self._traces: OrderedDict[tuple[Hashable, int], _Trace] = OrderedDict()
        # (due time, sequence, key): a trace's entries, its timeout and its root's deadline;
        # those of traces released meanwhile are skipped when they come up.
        self._due: list[tuple[float, int, tuple[Hashable, int]]] = []
        self._sequence = 0
        # Recently released traces, as many as may be held: later spans of these are late.
        self._released: OrderedDict[tuple[Hashable, int], None] = OrderedDict()
        self.held_spans = 0
        self.traces_timed_out = 0
        self.traces_exported_early = 0
        self.spans_late = 0

    @property
    def held_traces(self) -> int:
        return len(self._traces)

    def add(self, route: Hashable, spans: Sequence[HeldSpan]) -> list[ReleasedTrace]:
        """Hold ``spans``; what must go now: late spans, and traces pushed out by the bounds."""
        now = self._monotonic()
        late: dict[tuple[Hashable, int], list[HeldSpan]] = {}
        for held in spans:
            key = (route, _key_of(held.span))
            if key in self._released:
                late.setdefault(key, []).append(held)
                continue
            trace = self._traces.get(key)
            if trace is None:
                trace = self._traces[key] = _Trace(first_seen=now)
                self._schedule(now + self._max_wait, key)
            trace.spans.append(held)
            self.held_spans += 1
            if held.span.parent is None and trace.root_seen is None:
                trace.root_seen = now
                self._schedule(now + self._trace_wait, key)
        released = [ReleasedTrace(key[0], _in_export_order(group)) for key, group in late.items()]
        self.spans_late += sum(len(group) for group in late.values())
        while self._traces and (
            self.held_spans > self._max_spans or len(self._traces) > self._max_traces
        ):
            key = next(iter(self._traces))
            self.traces_exported_early += 1
            released.append(self._release(key))
        return released

    def due(self) -> list[ReleasedTrace]:
        """The traces whose time has come by the clock."""
        now = self._monotonic()
        released: list[ReleasedTrace] = []
        while self._due and self._due[0][0] <= now:
            _, _, key = heapq.heappop(self._due)
            trace = self._traces.get(key)
            if trace is None:
                continue  # released already
            if trace.root_seen is not None:
                if trace.root_seen + self._trace_wait > now:
                    continue  # its timeout: the root came, and its own entry is still ahead
            else:
                self.traces_timed_out += 1
            released.append(self._release(key))
        return released

    def seconds_to_next(self) -> float | None:
        """How long until :meth:`due` may release something; None if nothing is held."""
        if not self._traces:
            return None
        while self._due and self._due[0][2] not in self._traces:
            heapq.heappop(self._due)
        return max(0.0, self._due[0][0] - self._monotonic()) if self._due else None

    def release_all(self) -> list[ReleasedTrace]:
        """Everything held, now (at shutdown)."""
        return [self._release(key) for key in list(self._traces)]

    def _schedule(self, at: float, key: tuple[Hashable, int]) -> None:
        self._sequence += 1
        heapq.heappush(self._due, (at, self._sequence, key))

    def _release(self, key: tuple[Hashable, int]) -> ReleasedTrace:
        trace = self._traces.pop(key)
        self.held_spans -= len(trace.spans)
        self._released[key] = None
        while len(self._released) > self._max_traces:
            self._released.popitem(last=False)
        return ReleasedTrace(key[0], _in_export_order(trace.spans))
