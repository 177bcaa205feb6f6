"""Summary roll-up as Weave's SDK does it: a call's summary holds its whole subtree.

A call's ``summary.usage`` is its own usage plus the sum of its children's (already rolled-up)
summaries, and ``summary.status_counts`` counts the call and all its descendants. Children end
before their parents, so when a call is mapped, the totals of its ended children are waiting
for it here, whatever batch they were exported in.

Only a model call's own usage is its own. Agent and workflow spans of several frameworks carry
the whole run's totals, which their model calls report again (WEAVE_WIRE §8): such a call's
usage stands in for its descendants' only when none of them reported any. And two spans of one
response (two instrumentations of one request) count it once: the one seen later shows its
tokens on itself, but adds none to its ancestors.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from opentelemetry.exporter.weave._call import CallFacts, WeaveCall
from opentelemetry.exporter.weave._models import UNKNOWN_MODEL

__all__ = ["SummaryRollup"]

_Usage = dict[str, dict[str, int]]


@dataclass
class _SubtreeTotals:
    """What the ended children of one not-yet-ended call add up to."""

    created_at: float
    usage: _Usage = field(default_factory=dict)
    status_counts: dict[str, int] = field(default_factory=dict)
    models: set[str] = field(default_factory=set)
    """The models the subtree's calls used, with or without usage."""

    def add(self, usage: _Usage, status_counts: dict[str, int], model: str | None) -> None:
        """One call's counts, and the model it used (if known)."""
        self._add_counts(usage, status_counts)
        if model:
            self.models.add(model)

    def add_subtree(self, other: _SubtreeTotals) -> None:
        self._add_counts(other.usage, other.status_counts)
        self.models |= other.models

    def _add_counts(self, usage: _Usage, status_counts: dict[str, int]) -> None:
        for model, counts in usage.items():
            totals = self.usage.get(model)
            if totals is None:
                totals = self.usage[model] = {}
            for key, value in counts.items():
                # Exactly int first: what the mapping writes (a bool is an int, but no count).
                if type(value) is int or (isinstance(value, int) and not isinstance(value, bool)):
                    totals[key] = totals.get(key, 0) + value
        own_counts = self.status_counts
        for status, count in status_counts.items():
            own_counts[status] = own_counts.get(status, 0) + count


class SummaryRollup:
    """Rolls children's summaries into their parents, with bounded memory.

    Totals wait for parents that have not ended yet; a parent that never ends here (lost,
    unsampled, filtered, or in another process) must not keep them forever, so the oldest are
    evicted past ``max_pending`` entries or ``max_age_seconds``, and counted.
    """

    def __init__(
        self,
        max_pending: int,
        max_age_seconds: float,
        on_evict: Callable[[int], None] = lambda count: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_pending = max_pending
        self._max_age = max_age_seconds
        self._on_evict = on_evict
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: OrderedDict[str, _SubtreeTotals] = OrderedDict()
        self._oldest_seen = -math.inf
        """When the first totals pending were created, as :meth:`_evict` last found them (-inf:
        to be looked at). Totals are added newest last, at the (monotonic) clock's time, so
        whatever is first later is no older: while these have not expired, none has."""
        # (trace id, response id) of the model calls counted, to count a response once.
        self._responses: OrderedDict[tuple[str, str], None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def roll_up(self, call: WeaveCall, into_parent: bool = True) -> WeaveCall:
        """``call`` with its subtree's totals in its summary.

        With ``into_parent``, the totals also wait here for the call's parent.
        """
        start, own, facts = call.start, call.end.summary, call.facts
        model = facts.model
        status_counts = own.get("status_counts") or {}
        now = self._clock()
        with self._lock:
            pending = self._pending
            children = pending.pop(start.id, None)
            counted = self._own_usage(own.get("usage"), facts, start.trace_id, children)
            subtree = children  # most calls have no children: their own totals are the subtree's
            if children is not None:
                subtree = _SubtreeTotals(now)
                subtree.add(counted, status_counts, model)
                subtree.add_subtree(children)
            parent_id = start.parent_id
            if into_parent and parent_id is not None:
                parent = pending.get(parent_id)
                if parent is None:
                    parent = pending[parent_id] = _SubtreeTotals(now)
                if subtree is None:
                    parent.add(counted, status_counts, model)
                else:
                    parent.add_subtree(subtree)
            evicted = self._evict(now)
        if evicted:
            self._on_evict(evicted)
        if subtree is None:
            # No descendants ended here: its own summary is already complete (a repeated
            # response shows its tokens on itself; only its ancestors don't count them).
            return call
        summary = {key: value for key, value in own.items() if key != "usage"}
        if subtree.usage:
            summary["usage"] = subtree.usage
        summary["status_counts"] = subtree.status_counts
        return call.replace(summary=summary)

    def _own_usage(
        self,
        usage: _Usage | None,
        facts: CallFacts,
        trace_id: str | None,
        children: _SubtreeTotals | None,
    ) -> _Usage:
        """A call's own usage (its summary's) as its subtree's totals count it, by the
        module's rules. Only read: the summary's own dicts are returned as they are, unless
        a count moves to another model."""
        if not usage:
            return _NO_USAGE
        if facts.kind == "llm":
            if facts.response_id is None:
                return usage
            response = (trace_id or "", facts.response_id)
            responses = self._responses
            if response in responses:
                return _NO_USAGE  # a repeat of a counted response adds nothing
            responses[response] = None
            if len(responses) > self._max_pending:
                responses.popitem(last=False)
            return usage
        if children is not None and children.usage:
            return _NO_USAGE  # the descendants' own reports, not the run's totals again
        if UNKNOWN_MODEL in usage and children is not None and len(children.models) == 1:
            (model,) = children.models
            counts = dict(usage)
            counts[model] = counts.pop(UNKNOWN_MODEL)
            return counts
        return usage

    def _evict(self, now: float) -> int:
        pending = self._pending
        if len(pending) <= self._max_pending and now - self._oldest_seen < self._max_age:
            return 0  # most calls: what the loop below finds, without the look
        evicted = 0
        while pending:
            oldest = next(iter(pending.values()))
            if len(pending) <= self._max_pending and now - oldest.created_at < self._max_age:
                self._oldest_seen = oldest.created_at
                break
            pending.popitem(last=False)
            evicted += 1
        return evicted


_NO_USAGE: _Usage = {}
"""The usage a call adds to its subtree's when it adds none (shared: only read)."""
