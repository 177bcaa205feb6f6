"""Pure mapping from a finished OpenTelemetry span to the two halves of a Weave call."""

from __future__ import annotations

import hashlib
import json
import math
import operator
import re
from collections import ChainMap
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from enum import Enum
from typing import Any, Literal, NamedTuple, SupportsIndex, get_args

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind, Status, StatusCode

from opentelemetry.exporter.weave._call import (
    OTEL_ATTRIBUTES_KEY,
    WEAVE_ATTRIBUTES_KEY,
    CallFacts,
    EndedCall,
    StartedCall,
    Summary,
    WeaveCall,
    format_span_id,
    format_trace_id,
    shared,
    unshared,
    utc_datetime,
)
from opentelemetry.exporter.weave._chat import (
    ContentEvent,
    Message,
    chat_completion,
    chat_inputs,
    chat_messages,
    messages_from_events,
    plain_chat_messages,
)
from opentelemetry.exporter.weave._conventions import (
    CONTENT_EVENTS,
    FLATTENED_SUFFIX,
    JSON_MIME_TYPE,
    KEYS,
    KIND_VALUES,
    MESSAGE_EVENTS,
    MIME_TYPE_KEYS,
    PARAMETER_NAMES,
    WEAVE,
    WeaveKind,
)
from opentelemetry.exporter.weave._conversation import ConversationMemo
from opentelemetry.exporter.weave._models import OP_NAME_MAX_LENGTH, UNKNOWN_MODEL
from opentelemetry.exporter.weave._sanitize import (
    MAX_DEPTH,
    MAX_STRING_CHARS,
    clean_str,
    json_safe,
    nests_within,
    safe_json_from,
    safe_json_unwalked,
)
from opentelemetry.exporter.weave._spans import held_attributes, held_events
from opentelemetry.exporter.weave._threads import ThreadContext, is_marked_turn

__all__ = ["SPAN_PARENT", "parent_call_id", "span_to_call", "stack_frames"]

_EXCEPTION_EVENT = "exception"
_SHORTENED_HASH_CHARS = 8


class _Parent(Enum):
    OF_SPAN = "the span's own parent"


SPAN_PARENT = _Parent.OF_SPAN
"""``span_to_call``'s default ``parent_id``: the call's parent is the span's parent."""


def parent_call_id(span: ReadableSpan) -> str | None:
    """The id of the call that is the span's parent, None for a root span."""
    return format_span_id(span.parent.span_id) if span.parent else None


def op_name_for(span_name: object) -> str:
    """The span name, shortened deterministically (prefix + hash) when Weave would refuse it."""
    name = _as_str(span_name) or "unnamed_span"
    if len(name) < OP_NAME_MAX_LENGTH:
        return name
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:_SHORTENED_HASH_CHARS]
    return f"{name[: OP_NAME_MAX_LENGTH - _SHORTENED_HASH_CHARS - 2]}_{digest}"


def span_to_call(
    span: ReadableSpan,
    project_id: str,
    parent_id: str | Literal[_Parent.OF_SPAN] | None = SPAN_PARENT,
    *,
    thread: ThreadContext | None = None,
    content_events: Sequence[ContentEvent] = (),
    conversations: ConversationMemo | None = None,
    op_ref: Callable[[str, str], str | None] | None = None,
) -> WeaveCall:
    """Map one finished span. Never raises on anything the SDK lets a span hold: odd values
    and texts are sanitised, odd times clamped or filled in and marked (``_span_times``).

    ``parent_id`` overrides the span's parent (a span filter re-parents spans whose parent it
    left out). ``thread`` is what the span's start said about its thread (``ThreadTracker``),
    None when its start was not seen. ``content_events`` are log records that carried the
    span's messages. ``conversations`` keeps the last chat input of each trace, for the
    next one to convert only the messages it adds (the answer is the same without it).
    ``op_ref`` gives the ref of a project's op name's op where one is known already: the
    call is then named by it, its plain name shown as its display name (as op refs name it
    at delivery).
    """
    reader = _SpanReader(span)
    layout = reader.layout
    context = span.context
    span_id = format_span_id(context.span_id) if context else "0" * 16
    if parent_id is SPAN_PARENT:  # parent_call_id's steps, without its call
        parent = span.parent
        call_parent = format_span_id(parent.span_id) if parent else None
    else:
        call_parent = parent_id
    times = _span_times(span)
    status = span.status  # read by two fields: a property, read once
    exception = _exception_json(span, status)
    is_error = exception is not None
    # The model and the response id are read by several fields: each text worked out once.
    model = reader.text(layout.model) if layout.model else None
    kind = _kind(reader)
    usage = _usage(reader, model) if layout.usage else None
    # Every field that reads attributes first: the rest of them become the call's attributes.
    if kind == "llm":
        response_id = reader.text(layout.response_id) if layout.response_id else None
        inputs, output = _llm_content(
            reader,
            span,
            content_events,
            usage,
            model=model,
            response_id=response_id,
            conversation=(conversations, context.trace_id) if conversations and context else None,
        )
    else:
        inputs = _inputs(
            reader.take_content_of(layout.inputs), reader.take_content_of(layout.instructions)
        )
        output = reader.take_content_of(layout.outputs)
        if kind == "tool":
            output = _tool_result(output)
    name = span.name
    name_text: str | None
    if type(name) is str and name.isascii() and 0 < len(name) < OP_NAME_MAX_LENGTH:
        op_name = name_text = name  # what op_name_for and _as_str make of it, without the calls
    else:
        op_name, name_text = op_name_for(name), _as_str(name)
    display_name = _display_name(reader, kind) or name_text
    if op_ref is not None and (ref := op_ref(project_id, op_name)) is not None:
        op_name, display_name = ref, display_name or op_name
    thread_id, turn_id = (
        _thread_and_turn(reader, span_id, thread, is_root=call_parent is None)
        if layout.thread or thread is not None
        else (None, None)  # what _thread_and_turn says of a span of no thread
    )
    wb_run_id = wb_run_step = wb_run_step_end = None
    if layout.wb_run:  # W&B run keys: on a few spans only
        wb_run_id = _wb_run_id(reader.take_str(KEYS.wb_run_id), project_id)
        wb_run_step = reader.take_int(KEYS.wb_run_step)
        wb_run_step_end = reader.take_int(KEYS.wb_run_step_end)
    trace_id = format_trace_id(context.trace_id) if context else "0" * 32
    # After every field that reads attributes: the rest of them become the call's attributes.
    attributes = _call_attributes(span, reader, times, kind, status)
    # The halves' fields in their order, not by keyword: a dataclass's __init__ called with
    # keywords costs three times as much (0.6 µs, not 0.2, for a start).
    start = StartedCall(
        project_id,
        span_id,  # id
        op_name,
        trace_id,
        times.started_at,
        attributes,
        inputs,
        display_name,
        call_parent,  # parent_id
        thread_id,
        turn_id,
        wb_run_id,
        wb_run_step,
    )
    end = EndedCall(
        project_id,
        span_id,  # id
        times.ended_at,
        _summary(usage, is_error),
        trace_id,
        exception,
        output,
        times.started_at,
        wb_run_step_end,
    )
    facts = CallFacts.of(kind, model, response_id) if kind == "llm" else _KIND_FACTS[kind]
    return WeaveCall.of(start, end, facts)


_KIND_FACTS: dict[WeaveKind | None, CallFacts] = {
    kind: CallFacts(kind=kind) for kind in (*get_args(WeaveKind), None)
}
"""The facts of a call that is no model call: one per kind, as they are frozen."""


class _SpanReader:
    """Reads a span's attributes by convention keys, remembering which became call fields.

    Content on ``gen_ai.content.*`` events is read as if it were on the span, after the span's
    own attributes.
    """

    def __init__(self, span: ReadableSpan) -> None:
        # A copy, made at C speed from what an SDK span holds.
        self.attributes: dict[str, Any] = dict(held_attributes(span))
        self.events: Sequence[Event] = held_events(span)
        event_content = (
            {
                key: value
                for event in self.events
                if event.name in CONTENT_EVENTS
                for key, value in (event.attributes or {}).items()
            }
            if self.events  # most spans have none: no comprehension to run
            else None
        )
        self.lookup: Mapping[str, Any] = (
            ChainMap(self.attributes, event_content) if event_content else self.attributes
        )
        keys = tuple(self.lookup)
        # Most spans find their key set's plan made: one lookup, no call.
        self._plan = plan = _key_plans.get(keys) or _key_plan(keys)
        self.layout = plan.layout or plan.make_layout()
        self.consumed: set[str] = set()

    def peek(self, keys: tuple[str, ...]) -> _Found | None:
        """The first key present and its value; a ``prefix.*`` key rebuilds flattened ones."""
        return self.first(self._plan.candidates(keys))

    def first(self, candidates: tuple[str, ...]) -> _Found | None:
        """:meth:`peek` of a key list's :meth:`candidates`."""
        lookup = self.lookup
        for key in candidates:
            if key.endswith(FLATTENED_SUFFIX):
                prefix = key[: -len(FLATTENED_SUFFIX)]
                under = self._plan.flattened(prefix)
                if under and (rebuilt := _rebuild_flattened(lookup, prefix, under)) is not None:
                    return rebuilt
            elif (value := lookup.get(key)) is not None:
                return _new_found(_Found, (key, value, (key,)))
        return None

    def text(self, candidates: tuple[str, ...]) -> str | None:
        """The first value of a list of plain keys, as text, read from the list's
        :meth:`candidates`."""
        lookup = self.lookup
        for key in candidates:
            if (value := lookup.get(key)) is not None:
                if type(value) is str and value.isascii() and len(value) <= MAX_STRING_CHARS:
                    return value or None  # what _as_str makes of it, without the call
                return _as_str(value)
        return None

    def take_str(self, keys: tuple[str, ...]) -> str | None:
        return self.take_text(self._plan.candidates(keys))

    def take_text(self, candidates: tuple[str, ...]) -> str | None:
        """:meth:`text`, the key it was read from consumed."""
        lookup = self.lookup
        for key in candidates:
            if (value := lookup.get(key)) is not None:
                self.consumed.add(key)
                return _as_str(value)
        return None

    def _find_int(self, keys: tuple[str, ...]) -> tuple[str, int] | None:
        lookup = self.lookup
        for key in self._plan.candidates(keys):
            raw = lookup.get(key)
            if raw is not None and (value := _as_int(raw)) is not None:
                return key, value
        return None

    def counts(self, groups: tuple[tuple[str, ...], ...] | None) -> tuple[int | None, ...] | None:
        """``peek_int`` of each key list (of plain keys) of a :meth:`_KeyPlan.group`; None
        when the span has none of their keys at all (most spans have no token counts)."""
        if groups is None:
            return None
        lookup = self.lookup
        counts: list[int | None] = []
        for candidates in groups:
            count = None
            for key in candidates:
                raw = lookup.get(key)
                if type(raw) is int or (raw is not None and (raw := _as_int(raw)) is not None):
                    count = raw
                    break
            counts.append(count)
        return tuple(counts)

    def take_int(self, keys: tuple[str, ...]) -> int | None:
        found = self._find_int(keys)
        if found is None:
            return None
        self.consumed.add(found[0])
        return found[1]

    def consumed_prefixes(self) -> set[str]:
        """The first two dotted segments of each key read so far (``llm.output_messages``)."""
        return {".".join(key.split(".", 2)[:2]) for key in self.consumed}

    def candidates(self, keys: tuple[str, ...]) -> tuple[str, ...]:
        """``keys`` without those the span cannot hold, in order: a key kept may still be
        missing from its own attributes (it is in an event's), or hold None."""
        return self._plan.candidates(keys)

    def key_texts(self) -> dict[str, str]:
        """Each attribute key as a call attribute's name."""
        return self._plan.key_texts()

    def take_flag(self, keys: tuple[str, ...]) -> bool:
        """Whether any of the keys is present and says yes."""
        present = [key for key in self.candidates(keys) if key in self.attributes]
        self.consumed.update(present)
        return any(is_marked_turn(self.attributes[key]) for key in present)

    def peek_int(self, keys: tuple[str, ...]) -> int | None:
        found = self._find_int(keys)
        return None if found is None else found[1]

    def take_content(self, keys: tuple[str, ...]) -> Any:
        """Message or payload content as JSON: JSON text decoded unless its mime type says not."""
        return self.take_content_of(self._plan.candidates(keys))

    def take_content_of(self, candidates: tuple[str, ...]) -> Any:
        """:meth:`take_content` of a key list's :meth:`candidates` (none: nothing to read)."""
        if not candidates:
            return None
        found = self.first(candidates)
        if found is None:
            return None
        key, value, read_keys = found
        self.consumed.update(read_keys)
        mime_type = self.lookup.get(MIME_TYPE_KEYS.get(key, ""))
        if isinstance(mime_type, str) and mime_type.strip().lower() != JSON_MIME_TYPE:
            return json_safe(value)  # declared text: even text that parses as JSON stays text
        if isinstance(value, (list, tuple)):  # a sequence attribute: one JSON text per message
            return [safe_json_from(item) for item in value]
        return safe_json_from(value)

    def take_messages_of(
        self,
        candidates: tuple[str, ...],
        conversation: tuple[ConversationMemo, int] | None = None,
    ) -> tuple[Any, list[Message] | None]:
        """:meth:`take_content_of` and its ``chat_messages`` (None for no content)."""
        content, messages = self.take_plain_messages_of(candidates, conversation)
        if messages is None and content is not None:
            messages = chat_messages(content)
        return content, messages

    def take_plain_messages_of(
        self,
        candidates: tuple[str, ...],
        conversation: tuple[ConversationMemo, int] | None = None,
    ) -> tuple[Any, list[Message] | None]:
        """:meth:`take_content_of` and, when it is JSON text of messages the one-step
        conversions take, its ``plain_chat_messages`` (else None). A long conversation's
        nesting is told by the conversion's own checks, not by a walk over all its containers
        first (:func:`safe_json_unwalked`). With a ``conversation`` (a memo and the span's
        trace id), text that extends the trace's last is converted from where that ended; the
        content is then None (the memo keeps messages only: content is what a caller reads when
        there are none)."""
        if not candidates:
            return None, None
        found = self.first(candidates)
        if found is None:
            return None, None
        key, value, read_keys = found
        mime_type = self.lookup.get(MIME_TYPE_KEYS.get(key, ""))
        if type(value) is not str or isinstance(mime_type, str):
            return self.take_content_of(candidates), None  # what is rare: the general steps
        self.consumed.update(read_keys)
        if conversation is not None:
            memo, trace_id = conversation
            if (extended := memo.extended(trace_id, value)) is not None:
                return None, extended
        # Messages of the usual shape tell their own nesting: no bracket count of the text.
        content, whole = safe_json_unwalked(value, count_brackets=False)
        if not whole:
            if type(content) is list:
                messages = plain_chat_messages(content, MAX_DEPTH)
                if messages is not None:
                    if conversation is not None:
                        memo.remember(trace_id, value, messages)
                    return content, messages  # it nests within MAX_DEPTH: safe as it is
            if not nests_within(content, MAX_DEPTH):
                content = json_safe(content)
        return content, None


class _Found(NamedTuple):  # built with _new_found on the hot path
    key: str
    """The convention key that matched (``prefix.*`` for a rebuilt list)."""
    value: Any
    read_keys: tuple[str, ...]
    """The span attributes the value was made of."""


class _KeyPlan:
    """Which keys of a span's attribute key set each convention key list can find, worked out
    once per key set: spans of one instrumentation share theirs, so most spans find their plan
    made and skip every lookup of a key they do not have.

    Answers are kept by the key list's ``id`` (with the list itself, to tell a list from a
    later one at the same address): a tuple's hash is worked out anew on every lookup."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        self._keys = keys
        self._key_set = frozenset(keys)
        self._found: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self._found_groups: dict[
            int, tuple[tuple[tuple[str, ...], ...], tuple[tuple[str, ...], ...] | None]
        ] = {}
        self._flattened: dict[str, tuple[str, ...]] = {}
        self._key_texts: dict[str, str] | None = None
        self._keys_are_texts = False
        self.layout: _Layout | None = None
        """What :meth:`make_layout` made, once."""

    def make_layout(self) -> _Layout:
        self.layout = _Layout(self)
        return self.layout

    def candidates(self, keys: tuple[str, ...]) -> tuple[str, ...]:
        """``keys`` without those the set lacks, in order; a ``prefix.*`` key stays when the set
        has a key under ``prefix.`` (:meth:`flattened`)."""
        known = self._found.get(id(keys))
        if known is not None and known[0] is keys:
            return known[1]
        key_set = self._key_set
        found = tuple(
            key
            for key in keys
            if key in key_set
            or (key.endswith(FLATTENED_SUFFIX) and self.flattened(key[: -len(FLATTENED_SUFFIX)]))
        )
        if len(self._found) >= _KEY_LISTS_KEPT:  # a caller's throw-away lists: kept bounded
            self._found.clear()
        self._found[id(keys)] = (keys, found)
        return found

    def group(self, key_lists: tuple[tuple[str, ...], ...]) -> tuple[tuple[str, ...], ...] | None:
        """The plain candidates of each key list, None when every one is empty; for lists of
        plain keys only (no ``prefix.*``)."""
        known = self._found_groups.get(id(key_lists))
        if known is not None and known[0] is key_lists:
            return known[1]
        groups = tuple(self.candidates(keys) for keys in key_lists)
        found = groups if any(groups) else None
        if len(self._found_groups) >= _KEY_LISTS_KEPT:
            self._found_groups.clear()
        self._found_groups[id(key_lists)] = (key_lists, found)
        return found

    def has(self, key: str) -> bool:
        return key in self._key_set

    def may_hold_under(self, prefix: str) -> bool:
        """Whether the set may hold ``prefix`` or a key under it (``prefix.…``): when not, no
        key a reader read has ``prefix`` for its :meth:`_SpanReader.consumed_prefixes`."""
        return self.has(prefix) or bool(self.flattened(prefix))

    def key_texts(self) -> dict[str, str]:
        """Each key as the text a call attribute's name is (:func:`_as_text`)."""
        if self._key_texts is None:
            self._key_texts = {key: _as_text(key) for key in self._keys}
            self._keys_are_texts = all(text is key for key, text in self._key_texts.items())
        return self._key_texts

    def keys_are_texts(self) -> bool:
        """Whether each key is its own :meth:`key_texts` name (the same string, so no two
        keys share a name)."""
        if self._key_texts is None:
            self.key_texts()
        return self._keys_are_texts

    def flattened(self, prefix: str) -> tuple[str, ...]:
        """The keys that start with ``prefix.``, in the span's order."""
        found = self._flattened.get(prefix)
        if found is None:
            start = prefix + "."
            found = tuple(key for key in self._keys if key.startswith(start))
            self._flattened[prefix] = found
        return found


class _Layout:
    """The candidates (:meth:`_KeyPlan.candidates`) of each key list ``span_to_call`` reads, for
    one key set: a field the key set cannot hold is skipped without a lookup, one it can is read
    from its few keys."""

    __slots__ = (
        "display_names",
        "finish_reasons",
        "input_tokens",
        "inputs",
        "instructions",
        "keys_are_texts",
        "llm_inputs",
        "llm_outputs",
        "model",
        "openinference_outputs",
        "outputs",
        "provider",
        "request_model",
        "request_parameters",
        "response_id",
        "span_kind",
        "thread",
        "tool_name",
        "usage",
        "vercel_reply",
        "wb_run",
    )

    def __init__(self, plan: _KeyPlan) -> None:
        candidates = plan.candidates
        self.span_kind = candidates(KEYS.span_kind)
        self.tool_name = candidates(KEYS.tool_name)
        self.model = candidates(KEYS.model)
        self.input_tokens = candidates(KEYS.input_tokens)
        self.usage = plan.group(_USAGE_KEY_LISTS)
        self.inputs = candidates(KEYS.inputs)
        self.outputs = candidates(KEYS.outputs)
        self.instructions = candidates(KEYS.system_instructions)
        self.llm_inputs = candidates(_LLM_INPUT_KEYS)
        self.llm_outputs = candidates(_LLM_OUTPUT_KEYS)
        self.vercel_reply = plan.group(_VERCEL_REPLY_KEY_LISTS) is not None
        self.openinference_outputs = plan.may_hold_under(_OPENINFERENCE_OUTPUTS)
        self.request_model = candidates(KEYS.request_model)
        self.response_id = candidates(KEYS.response_id)
        self.finish_reasons = candidates(KEYS.finish_reasons)
        self.request_parameters = candidates(KEYS.request_parameters)
        self.provider = candidates(KEYS.provider)
        self.display_names = {kind: candidates(keys) for kind, keys in _DISPLAY_NAME_KEYS.items()}
        self.thread = plan.group(_THREAD_KEY_LISTS) is not None
        self.wb_run = plan.group(_WB_RUN_KEY_LISTS) is not None
        self.keys_are_texts = plan.keys_are_texts()


_new_found = tuple.__new__
"""``_Found``'s (and ``_Times``') constructor without the Python-level ``__new__`` a NamedTuple
has."""

_KEY_LISTS_KEPT = 128
"""Key lists a plan keeps its answers for: the mapping reads with a few dozen."""

_key_plans: dict[tuple[str, ...], _KeyPlan] = {}
_KEY_PLANS_KEPT = 256
_KEY_PLAN_KEPT_MAX_KEYS = 128
"""A span with more keys than this (bulk data) gets a plan of its own, not kept."""


def _key_plan(keys: tuple[str, ...]) -> _KeyPlan:
    plan = _key_plans.get(keys)
    if plan is None:
        plan = _KeyPlan(keys)
        if len(keys) <= _KEY_PLAN_KEPT_MAX_KEYS:
            if len(_key_plans) >= _KEY_PLANS_KEPT:
                _key_plans.clear()
            _key_plans[keys] = plan
    return plan


def _rebuild_flattened(
    attributes: Mapping[str, Any], prefix: str, keys: tuple[str, ...]
) -> _Found | None:
    """``prefix.0.role``, ``prefix.0.content``, … as ``[{"role": …, "content": …}, …]``.

    ``keys`` are the attributes' keys to look at, in their order: all of them, or (a plan's
    shortcut) just those that start with ``prefix.``.
    """
    start = prefix + "."
    tree: dict[str, Any] = {}
    read_keys: list[str] = []
    for key in keys:
        if not key.startswith(start):
            continue
        value = attributes[key]
        # Segments past MAX_DEPTH stay one key: deeper nesting would be cut at that depth anyway.
        path = key[len(start) :].split(".", MAX_DEPTH - 1)
        if not _is_index(path[0]):
            continue
        node = tree
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break  # `a.0` and `a.0.b` both set: keep the first, leave the other be
            node = child
        else:
            if path[-1] not in node:
                node[path[-1]] = value  # leaves stay as sent: message text is text
                read_keys.append(key)
    if not read_keys:
        return None
    rebuilt = _as_lists(tree)
    items = rebuilt if isinstance(rebuilt, list) else [rebuilt]
    # OpenInference nests each entry one level down: `llm.input_messages.0.message.role`.
    if all(isinstance(item, dict) and item.keys() == {"message"} for item in items):
        items = [item["message"] for item in items]
    return _Found(prefix + FLATTENED_SUFFIX, items, tuple(read_keys))


def _as_lists(node: Any) -> Any:
    """Nested dicts whose keys are all indexes, as lists in index order."""
    if not isinstance(node, dict):
        return node
    converted = {key: _as_lists(child) for key, child in node.items()}
    if converted and all(_is_index(key) for key in converted):
        return [converted[key] for key in sorted(converted, key=int)]
    return converted


def _is_index(key: str) -> bool:
    # ASCII only: `"²".isdigit()` is true, but `int("²")` fails.
    return key.isascii() and key.isdigit()


def _as_str(value: object) -> str | None:
    if value is None:
        return None
    if type(value) is str and value.isascii() and len(value) <= MAX_STRING_CHARS:
        return value or None  # what clean_str leaves as it is, without the call
    text = clean_str(value if isinstance(value, str) else str(json_safe(value)))
    return text or None


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)
    if isinstance(value, str):
        try:
            return int(float(value.strip()))
        except (ValueError, OverflowError):
            return None
    return None


def _inputs(value: Any, instructions: Any) -> dict[str, Any]:
    if value is None:
        inputs: dict[str, Any] = {}
    elif isinstance(value, dict):
        inputs = _keyword_arguments(value)
    else:
        # Weave shows a chat view for `inputs.messages`; anything else keeps a neutral name.
        inputs = {"messages" if _looks_like_messages(value) else "input": value}
    if instructions is not None:
        inputs.setdefault("system_instructions", instructions)
    return inputs


def _keyword_arguments(inputs: dict[str, Any]) -> dict[str, Any]:
    """A function's inputs by parameter name, as Weave's SDK shows them, when an
    instrumentation recorded a call with keyword arguments only as ``{"args": [], "kwargs":
    {…}}`` (OpenLLMetry's entities, smolagents' tools); other keys stay beside them."""
    kwargs = inputs.get("kwargs")
    if inputs.get("args") != [] or not isinstance(kwargs, dict):
        return inputs
    others = {key: value for key, value in inputs.items() if key not in ("args", "kwargs")}
    return {**others, **kwargs}


def _looks_like_messages(value: object) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(item, dict) and "role" in item for item in value)
    )


def _summary(usage: dict[str, dict[str, int]] | None, is_error: bool) -> Summary:
    status_counts = {"success": 0 if is_error else 1, "error": 1 if is_error else 0}
    if usage is None:
        return {"status_counts": status_counts}
    return {"usage": usage, "status_counts": status_counts}


_USAGE_KEY_LISTS = (
    KEYS.input_tokens,
    KEYS.output_tokens,
    KEYS.total_tokens,
    KEYS.cache_read_input_tokens,
    KEYS.cache_creation_input_tokens,
    KEYS.reasoning_tokens,
)


def _usage(reader: _SpanReader, model: str | None) -> dict[str, dict[str, int]] | None:
    """The span's token counts, under its model's name (``model``: what it holds as text)."""
    counts = reader.counts(reader.layout.usage)
    if counts is None or counts.count(None) == len(counts):
        return None
    input_tokens, output_tokens, total_tokens, cache_read, cache_write, reasoning = counts
    if total_tokens is None and (input_tokens is not None or output_tokens is not None):
        total_tokens = (input_tokens or 0) + (output_tokens or 0)
    # In LLMUsageSchema's order, unset counts left out. Reasoning tokens have no field in the
    # schema; the service keeps extra usage keys.
    usage = {}
    if input_tokens is not None:
        usage["input_tokens"] = input_tokens
    if output_tokens is not None:
        usage["output_tokens"] = output_tokens
    usage["requests"] = 1
    if total_tokens is not None:
        usage["total_tokens"] = total_tokens
    if cache_read is not None:
        usage["cache_read_input_tokens"] = cache_read
    if cache_write is not None:
        usage["cache_creation_input_tokens"] = cache_write
    if reasoning is not None:
        usage["reasoning_tokens"] = reasoning
    # The usage key is a model name, any text: bounded like an op name, so no attribute can
    # make the summary, which is never cut, too large.
    return {(model or UNKNOWN_MODEL)[:OP_NAME_MAX_LENGTH]: usage}


_KIND_LOOKUP = {
    key: {value.lower(): kind for value, kind in values.items()}
    for key, values in KIND_VALUES.items()
}


def _kind(reader: _SpanReader) -> WeaveKind | None:
    """The call's Weave kind: the first span-kind key whose value names one; with no span-kind
    key at all, a tool for a span naming a tool, a model call for one with a model and token
    counts; else unknown (a chain, a workflow)."""
    layout, attributes = reader.layout, reader.attributes
    kind_keys = []
    for key in layout.span_kind:
        if key in attributes:
            kind_keys.append(key)
    for key in kind_keys:
        value = attributes[key]
        if isinstance(value, str) and (kind := _KIND_LOOKUP.get(key, {}).get(value.lower())):
            return kind
    if kind_keys:
        return None
    if layout.tool_name and reader.first(layout.tool_name) is not None:
        return "tool"
    if (
        layout.model
        and reader.first(layout.model) is not None
        and reader.peek_int(KEYS.input_tokens) is not None
    ):
        return "llm"
    return None


def _display_name(reader: _SpanReader, kind: WeaveKind | None) -> str | None:
    """A name given for display; an agent's or tool's own name on such a call. Agent names
    are read only on agent calls: some frameworks put the agent's name on every span."""
    display_names = reader.layout.display_names
    candidates = display_names.get(kind, display_names[None])
    return reader.take_text(candidates) if candidates else None


_DISPLAY_NAME_KEYS: dict[WeaveKind | None, tuple[str, ...]] = {
    "agent": (*WEAVE.display_name, *KEYS.agent_name, *KEYS.display_name),
    "tool": (*WEAVE.display_name, *KEYS.tool_name, *KEYS.display_name),
    None: (*WEAVE.display_name, *KEYS.display_name),
}
"""Each kind's display name keys, composed once: a key list is looked up by its value."""


_THREAD_KEY_LISTS = (KEYS.thread_id, KEYS.is_turn)


def _thread_and_turn(
    reader: _SpanReader, call_id: str, started: ThreadContext | None, *, is_root: bool
) -> tuple[str | None, str | None]:
    """The call's thread and turn: as its start found them; or, for a thread id its start did
    not show, a turn of its own when it is a root, marked ``wandb.is_turn`` or below another
    thread, else part of the turn of its trace's topmost local span (``_threads``)."""
    own, marked = None, False
    if reader.layout.thread:
        own = reader.take_str(KEYS.thread_id)
        marked = reader.take_flag(KEYS.is_turn)
    known_thread = started.thread_id if started is not None else None
    if started is not None and known_thread is not None and own in (None, known_thread):
        return known_thread, call_id if marked else started.turn_id
    if own is None:
        return None, None
    if marked or is_root or known_thread is not None:
        return own, call_id
    return own, started.local_root_id if started is not None else None  # None: not known


def _llm_content(
    reader: _SpanReader,
    span: ReadableSpan,
    content_events: Sequence[ContentEvent],
    usage: dict[str, dict[str, int]] | None,
    *,
    model: str | None,
    response_id: str | None,
    conversation: tuple[ConversationMemo, int] | None,
) -> tuple[dict[str, Any], Any]:
    """A model call's inputs and output in the OpenAI chat shape Weave's chat view reads;
    content in no shape it knows stays as it came, by the rules of any other call."""
    layout = reader.layout
    found_inputs, messages = reader.take_messages_of(layout.llm_inputs, conversation)
    # The reply's messages, when the one-step conversions took them: not converted again.
    output_messages = None
    found_output: Any = _vercel_reply(reader) if layout.vercel_reply else None
    if found_output is None:
        found_output, output_messages = reader.take_plain_messages_of(layout.llm_outputs)
    if (
        layout.openinference_outputs
        and _OPENINFERENCE_OUTPUTS in reader.consumed_prefixes()
        and _lacks_tool_arguments(found_output)
    ):
        # smolagents' OpenInference messages name a tool call but leave out its arguments,
        # which only its raw output holds.
        whole = reader.take_content(_RAW_OUTPUTS)
        if whole is not None and not _lacks_tool_arguments(whole):
            found_output, output_messages = whole, None
    instructions = reader.take_content_of(layout.instructions)
    if reader.events or content_events:
        events = [
            # Sanitised first: event values are tuples and any text the SDK let through.
            ContentEvent(event.name, json_safe(dict(event.attributes or {})))
            for event in reader.events
            if event.name in MESSAGE_EVENTS
        ]
        events.extend(content_events)
        event_inputs, event_outputs = messages_from_events(events) if events else ([], [])
    else:
        event_inputs, event_outputs = [], []
    if messages is None and event_inputs:
        messages = event_inputs
    if messages is None and found_inputs is not None:
        # Content in no message format known, whole, as the prompt: the chat view shows it.
        messages = [{"role": "user", "content": _as_message_text(found_inputs)}]
    if messages is not None:
        inputs = chat_inputs(
            messages,
            system_instructions=instructions,
            model=reader.text(layout.request_model) if layout.request_model else None,
            parameters=_request_parameters(reader) if layout.request_parameters else None,
        )
    else:
        inputs = _inputs(None, instructions)  # no content recorded (capture off)
    if found_output is None and event_outputs:
        found_output = event_outputs
    if found_output is None:
        return inputs, None
    end_time = span.end_time
    details: dict[str, Any] = {
        "model": model,
        "response_id": response_id,
        "finish_reasons": _finish_reasons(reader) if layout.finish_reasons else None,
        "usage": _completion_usage(usage),
        # The completion's `created` (seconds), which the UI wants of some models' replies.
        "created": max(end_time, 0) // 1_000_000_000 if type(end_time) is int else _created(span),
    }
    # Text left as text (not JSON, or declared text) is the reply itself.
    if isinstance(found_output, str):
        completion = chat_completion({"role": "assistant", "content": found_output}, **details)
    else:
        completion = chat_completion(found_output, **details, messages=output_messages)
    if completion is None:  # a reply in no format known, whole, as the reply's text
        reply = {"role": "assistant", "content": _as_message_text(found_output)}
        completion = chat_completion(reply, **details)
    return inputs, found_output if completion is None else completion


_LLM_INPUT_KEYS = (*KEYS.llm_inputs, *KEYS.inputs)
_LLM_OUTPUT_KEYS = (*KEYS.llm_outputs, *KEYS.outputs)


def _as_message_text(content: Any) -> str:
    return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)


_VERCEL_REPLY_KEYS = ("ai.response.text", "ai.response.toolCalls")
_VERCEL_REPLY_KEY_LISTS = tuple((key,) for key in _VERCEL_REPLY_KEYS)


def _vercel_reply(reader: _SpanReader) -> dict[str, Any] | None:
    """The Vercel AI SDK's reply, which it splits into its text and its tool calls, as one
    assistant message."""
    if not any(key in reader.attributes for key in _VERCEL_REPLY_KEYS):
        return None
    text, tool_calls = (reader.take_content(keys) for keys in _VERCEL_REPLY_KEY_LISTS)
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return message


_RAW_OUTPUTS = tuple(key for key in KEYS.outputs if key not in KEYS.llm_outputs)
_OPENINFERENCE_OUTPUTS = "llm.output_messages"


def _lacks_tool_arguments(content: Any) -> bool:
    """Whether some tool call in ``content`` names its function but has no arguments."""
    if isinstance(content, dict):
        function = content.get("function")
        if isinstance(function, dict) and "name" in function and "arguments" not in function:
            return True
        return any(_lacks_tool_arguments(value) for value in content.values())
    if isinstance(content, list):
        return any(_lacks_tool_arguments(item) for item in content)
    return False


def _created(span: ReadableSpan) -> int | None:
    """The completion's ``created`` (seconds), which the UI wants of some models' replies."""
    ended = _as_nanoseconds(span.end_time)
    return None if ended is None else max(ended, 0) // 1_000_000_000


def _tool_result(output: Any) -> Any:
    """A tool's result, out of the message LangChain wraps it in (``{"type": "tool",
    "data": {"content": …, "tool_call_id": …}}``, as OpenInference records it)."""
    if (
        isinstance(output, dict)
        and output.keys() == {"type", "data"}
        and output["type"] == "tool"
        and isinstance(output["data"], dict)
        and "content" in output["data"]
    ):
        return output["data"]
    return output


def _request_parameters(reader: _SpanReader) -> dict[str, Any]:
    parameters: dict[str, Any] = {}
    for key in reader.layout.request_parameters:
        value = reader.attributes.get(key)
        if value is None:
            continue
        name = PARAMETER_NAMES.get(key)
        if name is None:
            decoded = safe_json_from(value)
            if not isinstance(decoded, dict):
                continue  # not a parameter object: it stays an attribute
            for parameter, setting in decoded.items():
                parameters.setdefault(parameter, setting)
        else:
            parameters.setdefault(name, json_safe(value))
        reader.consumed.add(key)
    return parameters


def _finish_reasons(reader: _SpanReader) -> list[str] | None:
    found = reader.first(reader.layout.finish_reasons)
    if found is None:
        return None
    value = found.value
    reasons = []
    for item in value if isinstance(value, (list, tuple)) else [value]:
        if type(item) is str and item.isascii() and len(item) <= MAX_STRING_CHARS:
            text: str | None = item  # what _as_str makes of it, without the call
        else:
            text = _as_str(item)
        if text:
            reasons.append(text)
    return reasons


def _completion_usage(usage: dict[str, dict[str, int]] | None) -> dict[str, int] | None:
    if not usage:
        return None
    (entry,) = usage.values()
    counts = {}
    for key in _COMPLETION_COUNTS:
        if key in entry:
            counts[key] = entry[key]
    return counts


_COMPLETION_COUNTS = ("input_tokens", "output_tokens", "total_tokens")


def _exception_json(span: ReadableSpan, status: Status) -> str | None:
    """Weave's exception string, set exactly when the span failed (``status``: the span's).

    An exception event on a span whose status is not ERROR was handled, so it is no error.
    """
    if status.status_code is not StatusCode.ERROR:
        return None
    event = _last_exception_event(span.events)
    if event is not None:
        event_attributes = event.attributes or {}
        error_type = _as_str(event_attributes.get("exception.type")) or "Exception"
        message = _as_str(event_attributes.get("exception.message")) or ""
        traceback = stack_frames(_as_str(event_attributes.get("exception.stacktrace")) or "")
    else:
        span_attributes = span.attributes or {}
        error_type = _class_name(_as_str(span_attributes.get("error.type"))) or "Error"
        message = _as_str(status.description) or _http_status_message(span_attributes, error_type)
        traceback = []
    return json.dumps(
        {"type": error_type, "message": message, "traceback": traceback}, ensure_ascii=False
    )


_PYTHON_FRAME = re.compile(
    r'\s*File "(?P<filename>.*)", line (?P<line>[0-9]{1,9}), in (?P<function>.*)'
)
_CARETS = re.compile(r"\s*[\^~]+\s*")


def stack_frames(stacktrace: str) -> list[dict[str, Any]]:
    """The frames of a stack trace, as Weave's exception panel lists them.

    Python's format (``File "…", line N, in f`` and the source line under it) gives one frame
    each; any other language's stack text gives one frame per non-blank line, its text kept
    whole: nothing of it is lost.
    """
    lines = stacktrace.splitlines()
    frames: list[dict[str, Any]] = []
    for index, line in enumerate(lines):
        match = _PYTHON_FRAME.fullmatch(line)
        if match is None:
            continue
        following = lines[index + 1] if index + 1 < len(lines) else ""
        is_source = (
            following.startswith("    ")
            and not _PYTHON_FRAME.fullmatch(following)
            and not _CARETS.fullmatch(following)
        )
        frames.append(
            {
                "filename": match["filename"],
                "line_number": int(match["line"]),
                "function_name": match["function"],
                "text": following.strip() if is_source else None,
            }
        )
    if frames:
        return frames
    return [
        {"filename": "", "line_number": None, "function_name": "", "text": line.strip()}
        for line in lines
        if line.strip()
    ]


_CLASS_REPR = re.compile(r"<class '([^']+)'>")
_HTTP_STATUS_KEYS = ("http.response.status_code", "http.status_code")


def _class_name(error_type: str | None) -> str | None:
    """``x.Y`` for ``<class 'x.Y'>``, which some instrumentations record as the error type."""
    if error_type is None:
        return None
    match = _CLASS_REPR.fullmatch(error_type)
    return match.group(1) if match else error_type


def _http_status_message(attributes: Mapping[str, Any], error_type: str) -> str:
    for key in _HTTP_STATUS_KEYS:
        if (status := _as_int(attributes.get(key))) is not None:
            return f"HTTP {status}"
    return error_type


def _last_exception_event(events: Iterable[Event]) -> Event | None:
    found = None
    for event in events:
        if event.name == _EXCEPTION_EVENT:
            found = event
    return found


_WB_RUN_KEY_LISTS = (KEYS.wb_run_id, KEYS.wb_run_step, KEYS.wb_run_step_end)


def _wb_run_id(run_id: str | None, project_id: str) -> str | None:
    if run_id is None or "/" in run_id:
        return run_id
    return f"{project_id}/{run_id}"


_resource_cache: dict[int, tuple[Resource, dict[str, Any]]] = {}
_RESOURCE_CACHE_SIZE = 32


def _resource_attributes(resource: Resource | None) -> dict[str, Any]:
    """A process has a resource or a few, shared by all its spans: convert each once.

    The same dict is returned for the same resource; callers must not change it.
    """
    if resource is None:
        return {}
    cached = _resource_cache.get(id(resource))
    if cached is not None and cached[0] is resource:
        return cached[1]
    converted: dict[str, Any] = json_safe(dict(resource.attributes))
    if len(_resource_cache) >= _RESOURCE_CACHE_SIZE:
        _resource_cache.clear()
    _resource_cache[id(resource)] = (resource, converted)
    return converted


_RESERVED_KEYS = (OTEL_ATTRIBUTES_KEY, WEAVE_ATTRIBUTES_KEY)


def _call_attributes(
    span: ReadableSpan, reader: _SpanReader, times: _Times, kind: WeaveKind | None, status: Status
) -> dict[str, Any]:
    """The span's own attributes, minus those that became call fields, plus OTel context and
    the Weave kind, under keys of their own: a span attribute of the same name moves into the
    context, as ``span_attributes``. ``status`` is the span's."""
    consumed = reader.consumed
    if reader.layout.keys_are_texts:
        # Each key its own name: the attributes copied whole, those consumed taken out.
        call_attributes = dict(reader.attributes)
        for key in consumed:
            call_attributes.pop(key, None)  # a key read from an event's attributes is not there
        # What json_safe leaves as it is, told without the call: most values (an int, a short
        # ASCII text, a finite float). A value replaced adds no key: the iteration goes on.
        for key, value in call_attributes.items():
            value_type = type(value)
            if value_type is not int and (
                (value_type is not str or not value.isascii() or len(value) > MAX_STRING_CHARS)
                and (value_type is not float or not math.isfinite(value))
            ):
                call_attributes[key] = json_safe(value)
    else:
        key_texts = reader.key_texts()
        call_attributes = {}
        for key, value in reader.attributes.items():
            if key not in consumed:
                value_type = type(value)
                is_kept = (
                    value_type is int
                    or (value_type is str and value.isascii() and len(value) <= MAX_STRING_CHARS)
                    or (value_type is float and math.isfinite(value))
                )
                call_attributes[key_texts[key]] = value if is_kept else json_safe(value)
    displaced = (
        {key: call_attributes.pop(key) for key in _RESERVED_KEYS if key in call_attributes}
        if OTEL_ATTRIBUTES_KEY in call_attributes or WEAVE_ATTRIBUTES_KEY in call_attributes
        else None
    )
    scope, span_kind, events = span.instrumentation_scope, span.kind, reader.events
    code, description, resource = status.status_code, status.description, span.resource
    layout = reader.layout
    facts: _ContextFacts = (
        # A member's `name` is a Python-level property, its `_name_` what that gives.
        span_kind._name_ if type(span_kind) is SpanKind else span_kind.name,
        reader.text(layout.span_kind) if layout.span_kind else None,
        reader.text(layout.provider) if layout.provider else None,
        code._name_ if type(code) is StatusCode else code.name,
        id(scope),
        id(resource),
    )
    if (
        description is None
        and not (events or times.adjusted or displaced)
        and (scope is None or type(scope) is InstrumentationScope)
    ):
        # Most spans: the context of many others, shared.
        call_attributes[OTEL_ATTRIBUTES_KEY] = _shared_context(facts, scope, resource)
    else:
        context = _otel_context(facts, description, scope, resource)
        if events:
            context["events"] = [_event_json(event, times.started_at) for event in events]
        if times.adjusted:
            context["adjusted_times"] = times.adjusted
        if displaced:
            context["span_attributes"] = displaced
        call_attributes[OTEL_ATTRIBUTES_KEY] = context
    if kind is not None:
        call_attributes[WEAVE_ATTRIBUTES_KEY] = _WEAVE_KINDS[kind]
    return call_attributes


_ContextFacts = tuple[str, str | None, str | None, str, int, int]
"""What a span's OTel context is made of but its status description, events and adjusted
times: span kind, LLM span kind, provider, status code, and the ``id`` of its scope and of
its resource (a process has few). A plain tuple: one is made for each span."""


def _otel_context(
    facts: _ContextFacts,
    description: object,
    scope: InstrumentationScope | None,
    resource: Resource | None,
) -> dict[str, Any]:
    span_kind, llm_span_kind, provider, status_code, _, _ = facts
    return {
        "span_kind": span_kind,
        "llm_span_kind": llm_span_kind,
        "llm_provider": provider,
        "status": {
            "code": status_code,
            "description": None if description is None else _as_str(description),
        },
        "scope": _scope_json(scope),
        "resource": _resource_attributes(resource),
        "events": [],
    }


_shared_contexts: dict[
    _ContextFacts, tuple[InstrumentationScope | None, Resource | None, dict[str, Any]]
] = {}
_SHARED_CONTEXTS_KEPT = 256


def _shared_context(
    facts: _ContextFacts, scope: InstrumentationScope | None, resource: Resource | None
) -> dict[str, Any]:
    """The OTel context of spans of these facts with no status description, event or
    adjusted time: one dict for them all, kept with the very scope and resource it shows."""
    cached = _shared_contexts.get(facts)
    if cached is not None and cached[0] is scope and cached[1] is resource:
        return cached[2]
    context = shared(_otel_context(facts, None, scope, resource))
    if len(_shared_contexts) >= _SHARED_CONTEXTS_KEPT:
        # Copied at C speed first: another pipeline's worker may map meanwhile.
        for _, _, dropped in list(_shared_contexts.values()):
            unshared(dropped)
        _shared_contexts.clear()
    elif cached is not None:  # the same facts, another scope or resource at that address
        unshared(cached[2])
    _shared_contexts[facts] = (scope, resource, context)
    return context


_WEAVE_KINDS = {kind: shared({"kind": kind}) for kind in get_args(WeaveKind)}


_scope_texts: dict[int, tuple[InstrumentationScope, str | None, str | None]] = {}


def _scope_json(scope: InstrumentationScope | None) -> dict[str, str | None]:
    """A process has a few instrumentation scopes, shared by their spans: each one's texts
    worked out once (a new dict each time: callers may change it)."""
    if not scope:
        return {"name": None, "version": None}
    if type(scope) is not InstrumentationScope:  # not the SDK's own: read each time
        return {"name": _as_str(scope.name), "version": _as_str(scope.version)}
    cached = _scope_texts.get(id(scope))
    if cached is None or cached[0] is not scope:
        cached = (scope, _as_str(scope.name), _as_str(scope.version))
        if len(_scope_texts) >= _RESOURCE_CACHE_SIZE:
            _scope_texts.clear()
        _scope_texts[id(scope)] = cached
    return {"name": cached[1], "version": cached[2]}


def _event_json(event: Event, default_time: datetime) -> dict[str, Any]:
    timestamp, adjusted = _timestamp(event.timestamp)
    event_json = {
        "name": _as_text(event.name),
        "timestamp": (timestamp or default_time).isoformat(timespec="microseconds"),
        "attributes": json_safe(dict(event.attributes or {})),
    }
    if adjusted:
        event_json["original_timestamp"] = json_safe(event.timestamp)
    return event_json


def _as_text(value: object) -> str:
    if type(value) is str and value.isascii() and len(value) <= MAX_STRING_CHARS:
        return value  # what clean_str leaves as it is, without the call
    return clean_str(value) if isinstance(value, str) else _as_str(value) or ""


class _Times(NamedTuple):
    started_at: datetime
    ended_at: datetime
    adjusted: dict[str, Any]
    """The original of each span time that was missing, not a number or out of range."""


_EPOCH = utc_datetime(0)
_LATEST_NANOSECONDS = 253_402_300_799_999_999_999
"""9999-12-31T23:59:59.999999999Z, the last instant a datetime holds."""


def _span_times(span: ReadableSpan) -> _Times:
    """The span's start and end as datetimes, each filled in from the other when unusable."""
    start_time, end_time = span.start_time, span.end_time
    if (
        type(start_time) is int
        and type(end_time) is int
        and 0 <= start_time <= _LATEST_NANOSECONDS
        and 0 <= end_time <= _LATEST_NANOSECONDS
    ):  # nearly always: what _checked_span_times makes of them, without its calls
        # utc_datetime's steps, without its calls: the epoch plus whole microseconds.
        started_at = _EPOCH + timedelta(0, 0, start_time // 1000)
        # From the start: a span's few microseconds make the quicker timedelta.
        ended_at = started_at + timedelta(0, 0, end_time // 1000 - start_time // 1000)
        return _new_found(_Times, (started_at, ended_at, {}))
    return _checked_span_times(span)


def _checked_span_times(span: ReadableSpan) -> _Times:
    start, start_adjusted = _timestamp(span.start_time)
    end, end_adjusted = _timestamp(span.end_time)
    started_at = start or end or _EPOCH
    adjusted: dict[str, Any] = {}
    if start_adjusted:
        adjusted["start_time"] = json_safe(span.start_time)
    if end_adjusted and span.end_time is not None:  # no end time: it ended as it started
        adjusted["end_time"] = json_safe(span.end_time)
    return _Times(started_at, end or started_at, adjusted)


def _timestamp(raw: object) -> tuple[datetime | None, bool]:
    """An OTel timestamp (any int-like, ns since the epoch) as a datetime, and whether it was
    adjusted: None if missing or not a number, clamped into the Unix epoch to year 9999."""
    nanoseconds = _as_nanoseconds(raw)
    if nanoseconds is None:
        return None, True
    clamped = min(max(nanoseconds, 0), _LATEST_NANOSECONDS)
    return utc_datetime(clamped), clamped != nanoseconds


def _as_nanoseconds(raw: object) -> int | None:
    if type(raw) is int:  # nearly always: the Protocol check below is slow
        return raw
    if isinstance(raw, float):
        return int(raw) if math.isfinite(raw) else None
    return operator.index(raw) if isinstance(raw, SupportsIndex) else None
