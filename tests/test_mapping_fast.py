"""The mapping's shortcuts give exactly the answers of the general paths they skip.

Each test holds a shortcut against the general path (kept in the code, or, for the reader's
key plan, the full scan it replaces, written out here), over generated inputs that include
hostile values: NaN, lone surrogates, huge ints, bytes, deep nesting, odd types.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
from collections import ChainMap
from collections.abc import Mapping
from typing import Any
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import SpanContext

from opentelemetry.exporter.weave import _mapping, _sanitize
from opentelemetry.exporter.weave._chat import chat_messages, plain_chat_messages
from opentelemetry.exporter.weave._conventions import KEYS, WEAVE
from opentelemetry.exporter.weave._spans import held_events

# Every key list the mapping reads with, the composed ones included.
KEY_LISTS: list[tuple[str, ...]] = [
    *(getattr(KEYS, spec.name) for spec in dataclasses.fields(KEYS) if spec.name != "name"),
    (*KEYS.llm_inputs, *KEYS.inputs),
    (*KEYS.llm_outputs, *KEYS.outputs),
    _mapping._RAW_OUTPUTS,
    (*WEAVE.display_name, *KEYS.agent_name, *KEYS.display_name),
    (*WEAVE.display_name, *KEYS.tool_name, *KEYS.display_name),
    *_mapping._DISPLAY_NAME_KEYS.values(),
    _mapping._LLM_INPUT_KEYS,
    _mapping._LLM_OUTPUT_KEYS,
]
_FLATTENED_PREFIXES = sorted(
    {key.removesuffix(".*") for keys in KEY_LISTS for key in keys if key.endswith(".*")}
)
_PLAIN_KEYS = sorted({key for keys in KEY_LISTS for key in keys if not key.endswith(".*")})

any_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=30)
flattened_key = st.tuples(
    st.sampled_from(_FLATTENED_PREFIXES),
    st.lists(st.sampled_from(["0", "1", "10", "²", "a", "message", "role", "content"]), max_size=4),
).map(lambda parts: ".".join((parts[0], *parts[1])))
attribute_key = st.one_of(
    st.sampled_from(_PLAIN_KEYS), flattened_key, st.sampled_from(_FLATTENED_PREFIXES), any_text
)
scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    any_text,
    st.sampled_from(["12", " 7.9 ", "1e999", "nan", "[]", '{"a": 1}', "\ud800 lone"]),
)
attribute_value = st.one_of(
    scalar, st.lists(scalar, max_size=4), st.lists(scalar, max_size=4).map(tuple)
)


def full_scan_peek(lookup: Mapping[str, Any], keys: tuple[str, ...]) -> _mapping._Found | None:
    """The reader's peek without a plan: every key of the list looked up, every attribute
    scanned for each flattened prefix."""
    for key in keys:
        if key.endswith(".*"):
            rebuilt = _mapping._rebuild_flattened(lookup, key[:-2], tuple(lookup))
            if rebuilt is not None:
                return rebuilt
        elif (value := lookup.get(key)) is not None:
            return _mapping._Found(key, value, (key,))
    return None


def full_scan_int(lookup: Mapping[str, Any], keys: tuple[str, ...]) -> tuple[str, int] | None:
    for key in keys:
        raw = lookup.get(key)
        if raw is not None and (value := _mapping._as_int(raw)) is not None:
            return key, value
    return None


def span_with(attributes: dict[str, Any], event_content: dict[str, Any]) -> ReadableSpan:
    events = [Event("gen_ai.content.prompt", event_content)] if event_content else []
    return ReadableSpan(
        name="s",
        context=SpanContext(1, 2, is_remote=False),
        attributes=attributes,
        events=events,
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    keys=st.lists(attribute_key, max_size=12, unique=True),
    data=st.data(),
    event_content=st.dictionaries(attribute_key, attribute_value, max_size=3),
)
def test_the_key_plan_finds_what_a_full_scan_finds(
    keys: list[str], data: st.DataObject, event_content: dict[str, Any]
) -> None:
    # Two spans with the same keys and other values: the second one's plan is the cached one.
    for _ in range(2):
        attributes = {key: data.draw(attribute_value) for key in keys}
        span = span_with(attributes, event_content)
        reader = _mapping._SpanReader(span)
        lookup = ChainMap(attributes, event_content) if event_content else attributes
        for key_list in KEY_LISTS:
            assert reader.peek(key_list) == full_scan_peek(lookup, key_list)
            assert reader._find_int(key_list) == full_scan_int(lookup, key_list)
            assert [key for key in reader.candidates(key_list) if key in attributes] == [
                key for key in key_list if key in attributes
            ]
        for key_lists in (
            _mapping._THREAD_KEY_LISTS,
            _mapping._WB_RUN_KEY_LISTS,
            _mapping._USAGE_KEY_LISTS,
            _mapping._VERCEL_REPLY_KEY_LISTS,
        ):
            # Absent means nothing to find: every read of those lists skipped is a miss.
            present = any(key in lookup for keys in key_lists for key in keys)
            assert (reader._plan.group(key_lists) is not None) == present
        for key in keys:
            reader.consumed.add(key)
            for prefix in {".".join(key.split(".", 2)[:2]), "llm.output_messages"}:
                if prefix in reader.consumed_prefixes():
                    assert reader._plan.may_hold_under(prefix)


def test_a_flattened_list_is_rebuilt_from_the_plans_keys_as_from_all() -> None:
    attributes = {
        "gen_ai.prompt.1.content": "second",
        "other": 1,
        "gen_ai.prompt.0.role": "user",
        "gen_ai.prompt.0.content": "first",
        "gen_ai.prompt.1.role": "assistant",
        "gen_ai.prompts": "not under the prefix",
    }
    reader = _mapping._SpanReader(span_with(attributes, {}))
    found = reader.peek(("gen_ai.prompt.*",))
    assert found is not None
    assert found.value == [
        {"role": "user", "content": "first"},
        {"content": "second", "role": "assistant"},
    ]
    assert found == full_scan_peek(attributes, ("gen_ai.prompt.*",))


def test_key_plans_stay_bounded_and_bulk_key_sets_are_not_kept() -> None:
    _mapping._key_plans.clear()
    for index in range(_mapping._KEY_PLANS_KEPT + 10):
        _mapping._SpanReader(span_with({f"key.{index}": 1}, {}))
    assert 0 < len(_mapping._key_plans) <= _mapping._KEY_PLANS_KEPT
    _mapping._key_plans.clear()
    bulk = {f"bulk.{index}": index for index in range(_mapping._KEY_PLAN_KEPT_MAX_KEYS + 1)}
    reader = _mapping._SpanReader(span_with(bulk, {}))
    assert reader.peek(("bulk.3",)) == ("bulk.3", 3, ("bulk.3",))
    assert _mapping._key_plans == {}


class _Level(enum.IntEnum):
    HIGH = 3


class _Ratio(float):
    pass


# What the shortcut takes: str, int, bool, float, None; and what it must leave to the walk.
plain_scalar = st.one_of(
    scalar,
    st.integers(min_value=-(2**200), max_value=2**200),
    st.sampled_from([-0.0, float("nan"), float("-inf"), "x" * 1_000_001, "caf\u00e9"]),
)
hostile_scalar = st.one_of(
    plain_scalar,
    st.binary(max_size=8),
    st.just(_Level.HIGH),
    st.just(_Ratio(0.5)),
    st.just(object),
)
sequence_or_scalar = st.one_of(
    hostile_scalar,
    st.lists(plain_scalar, max_size=5),
    st.lists(plain_scalar, max_size=5).map(tuple),
    st.lists(hostile_scalar, max_size=5),
    st.lists(hostile_scalar, max_size=5).map(tuple),
    st.lists(st.lists(scalar, max_size=3), max_size=3),
    st.just(tuple(range(_sanitize.MAX_NODES + 1))),  # past the walk's node bound: its marker
    st.just([1.5] * _sanitize.MAX_NODES),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=sequence_or_scalar)
def test_json_safe_of_a_float_or_a_sequence_of_scalars_is_the_walks_answer(value: Any) -> None:
    fast, walked = _sanitize.json_safe(value), _sanitize._SafeCopy().of(value, 0)
    # repr tells 1 from 1.0 and True, -0.0 from 0.0, a list from a tuple.
    assert repr(fast) == repr(walked)
    assert type(fast) is type(walked)


_RECURSION_MARGIN = 64
json_text = st.one_of(
    st.recursive(
        scalar,
        lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children),
        max_leaves=12,
    ).map(lambda value: json.dumps(value, allow_nan=True)),
    # Not within a few levels of the recursion limit (hypothesis raises it while it runs): there
    # the decoder's answer depends on how deep in the stack it is called, so two calls at
    # other depths (the test's and the code's) may tell one text two ways.
    st.integers(1, 3000)
    .filter(lambda depth: abs(depth - sys.getrecursionlimit()) > _RECURSION_MARGIN)
    .map(lambda depth: "[" * depth + "]" * depth),
    st.sampled_from(
        [
            '{"a": NaN, "b": -Infinity, "c": Infinity, "d": 1e999, "e": -1e999}',
            "[1" + "0" * 400 + ".5, 2.5e-400]",
            '{"a": "\\ud800 lone surrogate", "\\u0000": "nul"}',
            '  {"a": 1}  ',
            '\t\n\r {"a": 1}\r\n\t ',
            "\u00a0[1]",
            "[1]\u00a0",
            "[1] ]",
            '{"a": [1, 2]}\n\n',
            '{"a": 1}{"b": 2}',
            "[" + "1" * 5000 + "]",
            '{"a": 1} trailing',
            "[1, 2",
            "\ufeff[1]",
            "[]",
        ]
    ),
    any_text,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=json_text)
def test_json_text_is_decoded_by_the_shared_decoder_as_json_loads_decodes_it(text: str) -> None:
    if text[:64].lstrip()[:1] in ("{", "["):
        try:
            expected: Any = json.loads(
                text,
                parse_float=_sanitize._finite_or_text,
                parse_constant=_sanitize._non_finite_text,
            )
        except (ValueError, RecursionError):
            expected = text
    else:
        expected = text
    assert repr(_sanitize.decode_json_text(text)) == repr(expected)


@settings(max_examples=300, deadline=None)
@given(
    text=any_text
    | st.text(max_size=30)
    | st.sampled_from(["", "\ud800 lone", "caf\u00e9", "x" * 1_000_001, "x" * 1_000_000])
)
def test_a_plain_ascii_text_skips_clean_str_for_its_own_answer(text: str) -> None:
    assert _mapping._as_str(text) == (_sanitize.clean_str(text) or None)
    assert _mapping._as_text(text) == _sanitize.clean_str(text)


def nesting_levels(value: Any) -> int:
    """How many containers deep ``value`` goes (a scalar: 0), written out."""
    if isinstance(value, dict):
        return 1 + max((nesting_levels(item) for item in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((nesting_levels(item) for item in value), default=0)
    return 0


def nested(depth: int, fan_out: int) -> str:
    """JSON of ``depth`` levels, with ``fan_out`` siblings at each level: many brackets."""
    text = '"leaf"'
    for level in range(depth):
        siblings = ", ".join([text, *(["[1]", '{"k": []}'] * fan_out)])
        text = f'{{"level{level}": [{siblings}]}}' if level % 2 else f"[{siblings}]"
    return text


many_brackets = st.builds(nested, st.integers(1, 40), st.integers(0, 3))
conversation = st.integers(1, 40).map(
    lambda turns: json.dumps(
        [
            {"role": "user", "parts": [{"type": "text", "content": f"turn {n}"}]}
            for n in range(turns)
        ]
    )
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=json_text | many_brackets | conversation)
def test_safe_json_from_gives_json_safe_of_the_decoded_text(text: str) -> None:
    expected = _sanitize.json_safe(_sanitize.decode_json_text(text))
    assert repr(_sanitize.safe_json_from(text)) == repr(expected)


@settings(max_examples=300, deadline=None)
@given(text=many_brackets, levels=st.integers(0, 45))
def test_the_container_walk_measures_nesting_as_written_out(text: str, levels: int) -> None:
    decoded = json.loads(text)
    assert _sanitize.nests_within(decoded, levels) == (nesting_levels(decoded) <= levels)


def test_safe_json_from_keeps_json_safes_bounds_on_texts_its_bracket_count_cannot_tell() -> None:
    deep = "[" * (_sanitize.MAX_DEPTH + 1) + "]" * (_sanitize.MAX_DEPTH + 1)
    many_values = "[" + "1," * _sanitize.MAX_NODES + "1]"  # one bracket, too many values
    exactly_deep = "[" * _sanitize.MAX_DEPTH + "]" * _sanitize.MAX_DEPTH
    for text in (deep, many_values, exactly_deep, nested(33, 1), nested(32, 1)):
        expected = _sanitize.json_safe(_sanitize.decode_json_text(text))
        assert repr(_sanitize.safe_json_from(text)) == repr(expected)
    assert "[more than" in repr(_sanitize.safe_json_from(many_values))
    assert "[nested deeper than" in repr(_sanitize.safe_json_from(deep))
    assert "[nested deeper than" not in repr(_sanitize.safe_json_from(exactly_deep))


hostile_value = st.one_of(
    sequence_or_scalar, st.dictionaries(any_text, scalar, max_size=2), st.just({"a": [b"x"]})
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    attributes=st.dictionaries(
        attribute_key | st.sampled_from(["otel", "weave", "x" * 1_000_001, "\ud800"]),
        hostile_value,
        max_size=10,
    ),
    data=st.data(),
)
def test_call_attributes_are_the_json_safe_copy_of_those_left(
    attributes: dict[str, Any], data: st.DataObject
) -> None:
    span = span_with(attributes, {})
    reader = _mapping._SpanReader(span)
    # "gen_ai.prompt": a key read from an event's attributes, not among the span's.
    held = sorted(attributes) or ["none"]
    reader.consumed.update(data.draw(st.sets(st.sampled_from([*held, "gen_ai.prompt"]))))
    times = _mapping._span_times(span)
    call_attributes = _mapping._call_attributes(span, reader, times, "tool", span.status)
    expected = {
        _mapping._as_text(key): _sanitize.json_safe(value)
        for key, value in attributes.items()
        if key not in reader.consumed
    }
    displaced = {key: expected.pop(key) for key in ("otel", "weave") if key in expected}
    context = call_attributes.pop("otel")
    assert call_attributes.pop("weave") == {"kind": "tool"}
    assert repr(call_attributes) == repr(expected)
    assert repr(context.get("span_attributes", {})) == repr(displaced)


_EDGE_TIMES = [-1, 0, _mapping._LATEST_NANOSECONDS, _mapping._LATEST_NANOSECONDS + 1]
span_time = st.integers(-5, _mapping._LATEST_NANOSECONDS + 5) | st.sampled_from(_EDGE_TIMES)


@settings(max_examples=300, deadline=None)
@given(
    start=span_time | st.sampled_from([1_700_000_000_123_456_789, True, 1.5, _Level.HIGH]),
    end=span_time | st.none() | st.sampled_from([float("nan"), 2.5]),
)
def test_usual_span_times_are_those_of_the_checked_path(start: Any, end: int | None) -> None:
    span = ReadableSpan(name="s", start_time=start, end_time=end)
    assert _mapping._span_times(span) == _mapping._checked_span_times(span)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    keys=st.lists(
        st.sampled_from([key for keys in _mapping._USAGE_KEY_LISTS for key in keys])
        | attribute_key,
        max_size=8,
        unique=True,
    ),
    data=st.data(),
    event_content=st.dictionaries(attribute_key, attribute_value, max_size=2),
)
def test_the_usage_counts_are_each_key_lists_first_int(
    keys: list[str], data: st.DataObject, event_content: dict[str, Any]
) -> None:
    count = st.one_of(attribute_value, st.just(_Level.HIGH), st.just(True))
    for _ in range(2):  # the second span's plan is the cached one
        attributes = {key: data.draw(count) for key in keys}
        reader = _mapping._SpanReader(span_with(attributes, event_content))
        lookup = ChainMap(attributes, event_content) if event_content else attributes
        expected = [full_scan_int(lookup, key_list) for key_list in _mapping._USAGE_KEY_LISTS]
        counts = reader.counts(reader._plan.group(_mapping._USAGE_KEY_LISTS))
        if not any(key in lookup for keys_ in _mapping._USAGE_KEY_LISTS for key in keys_):
            assert counts is None
        else:
            assert counts == tuple(None if found is None else found[1] for found in expected)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    attributes=st.dictionaries(
        attribute_key.filter(lambda key: key not in ("", "probe")), attribute_value, max_size=8
    ),
    event_names=st.lists(st.sampled_from(["gen_ai.content.prompt", "other"]), max_size=3),
)
def test_an_sdk_spans_attributes_and_events_are_read_as_its_public_view(
    attributes: dict[str, Any], event_names: list[str]
) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("s", attributes=attributes) as live:
        for name in event_names:
            live.add_event(name, {"k": 1})
    span: Any = live
    for readable in (span, ReadableSpan(name="s", attributes=attributes), ReadableSpan(name="s")):
        read = _mapping._SpanReader(readable).attributes
        public = dict(readable.attributes or {})
        assert repr(read) == repr(public)  # the same keys in the same order, the same values
        assert type(read) is dict
        read["probe"] = 1  # a copy: the span keeps what it holds
        assert "probe" not in (readable.attributes or {})
        assert held_events(readable) == readable.events


class _OwnView(ReadableSpan):
    """A span class whose attributes and events are not what it holds."""

    @property
    def attributes(self) -> Any:
        return {"own": 1}

    @property
    def events(self) -> Any:
        return (Event("own"),)


def test_a_span_of_another_class_is_read_through_its_public_view() -> None:
    span = _OwnView(name="s", attributes={"held": 1}, events=[Event("held")])
    assert _mapping._SpanReader(span).attributes == {"own": 1}
    assert [event.name for event in held_events(span)] == ["own"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    keys=st.lists(attribute_key, max_size=12, unique=True),
    data=st.data(),
    event_content=st.dictionaries(attribute_key, attribute_value, max_size=3),
)
def test_the_layout_holds_each_fields_candidates_and_reads_them_as_the_reader_does(
    keys: list[str], data: st.DataObject, event_content: dict[str, Any]
) -> None:
    for _ in range(2):  # the second span's plan (and layout) is the cached one
        attributes = {key: data.draw(hostile_value) for key in keys}
        reader = _mapping._SpanReader(span_with(attributes, event_content))
        layout = reader.layout
        lookup = ChainMap(attributes, event_content) if event_content else attributes
        for field in ("span_kind", "tool_name", "model", "input_tokens", "inputs", "outputs"):
            assert getattr(layout, field) == reader.candidates(getattr(KEYS, field))
        assert layout.instructions == reader.candidates(KEYS.system_instructions)
        assert layout.llm_inputs == reader.candidates(_mapping._LLM_INPUT_KEYS)
        assert layout.llm_outputs == reader.candidates(_mapping._LLM_OUTPUT_KEYS)
        for field in ("request_model", "response_id", "finish_reasons", "provider"):
            assert getattr(layout, field) == reader.candidates(getattr(KEYS, field))
        assert layout.request_parameters == reader.candidates(KEYS.request_parameters)
        for kind, display_keys in _mapping._DISPLAY_NAME_KEYS.items():
            assert layout.display_names[kind] == reader.candidates(display_keys)
        assert layout.usage == reader._plan.group(_mapping._USAGE_KEY_LISTS)
        for flag, key_lists in (
            (layout.thread, _mapping._THREAD_KEY_LISTS),
            (layout.wb_run, _mapping._WB_RUN_KEY_LISTS),
            (layout.vercel_reply, _mapping._VERCEL_REPLY_KEY_LISTS),
        ):
            assert flag == any(key in lookup for keys_ in key_lists for key in keys_)
        assert layout.openinference_outputs == any(
            key == "llm.output_messages" or key.startswith("llm.output_messages.") for key in lookup
        )
        # A text read without _as_str's call for a plain text is _as_str's answer.
        for key_list in KEY_LISTS:
            if not any(key.endswith(".*") for key in key_list):
                found = full_scan_peek(lookup, key_list)
                expected = None if found is None else _mapping._as_str(found.value)
                assert reader.text(reader.candidates(key_list)) == expected


def test_a_key_plan_keeps_the_answers_for_few_key_lists() -> None:
    plan = _mapping._KeyPlan(("a", "b"))
    for index in range(_mapping._KEY_LISTS_KEPT * 3):
        assert plan.candidates(("a", f"x{index}")) == ("a",)  # a new list each time
    assert len(plan._found) <= _mapping._KEY_LISTS_KEPT


def test_a_scopes_texts_are_worked_out_once_per_scope_and_read_anew_for_others() -> None:
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope

    scope = InstrumentationScope("caf\u00e9", "1.0")
    assert _mapping._scope_json(scope) == {"name": "caf\u00e9", "version": "1.0"}
    first = _mapping._scope_json(scope)
    assert _mapping._scope_json(scope) == first
    assert _mapping._scope_json(scope) is not first  # a new dict: callers may change it
    assert _mapping._scope_json(InstrumentationScope("other")) == {
        "name": "other",
        "version": None,
    }
    assert _mapping._scope_json(None) == {"name": None, "version": None}

    class _Changing:
        version = None

        def __init__(self) -> None:
            self.name = "one"

    changing: Any = _Changing()
    assert _mapping._scope_json(changing)["name"] == "one"
    changing.name = "two"
    assert _mapping._scope_json(changing)["name"] == "two"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=json_text | many_brackets | conversation, count_brackets=st.booleans())
def test_safe_json_unwalked_leaves_only_the_walk_to_do(text: str, count_brackets: bool) -> None:
    safe, whole = _sanitize.safe_json_unwalked(text, count_brackets=count_brackets)
    expected = _sanitize.safe_json_from(text)
    if whole:
        assert repr(safe) == repr(expected)
    else:
        assert repr(safe) == repr(_sanitize.decode_json_text(text))
        walked = safe if _sanitize.nests_within(safe, _sanitize.MAX_DEPTH) else None
        assert repr(expected) == repr(walked if walked is not None else _sanitize.json_safe(safe))


def deep_conversation(turns: int, depth: int) -> str:
    """A GenAI conversation of many brackets, its tool call's arguments ``depth`` levels deep."""
    arguments: Any = 1
    for _ in range(depth):
        arguments = {"a": [arguments]}
    call = {"type": "tool_call", "id": "c", "name": "f", "arguments": arguments}
    text = [{"role": "user", "parts": [{"type": "text", "content": f"t{n}"}]} for n in range(turns)]
    return json.dumps([*text, {"role": "assistant", "parts": [call]}])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=json_text
    | many_brackets
    | conversation
    | st.builds(deep_conversation, st.integers(0, 12), st.integers(0, 20)),
    key=st.sampled_from(["gen_ai.input.messages", "input.value", "llm.input_messages.0.content"]),
    mime_type=st.none() | st.sampled_from(["application/json", "text/plain"]),
)
def test_messages_taken_are_chat_messages_of_the_content_taken(
    text: str, key: str, mime_type: str | None
) -> None:
    attributes: dict[str, Any] = {key: text}
    if mime_type is not None:
        attributes["input.mime_type"] = mime_type
    taken = _mapping._SpanReader(span_with(attributes, {}))
    content, messages = taken.take_messages_of(taken.layout.llm_inputs)
    general = _mapping._SpanReader(span_with(attributes, {}))
    expected = general.take_content_of(general.layout.llm_inputs)
    assert repr(content) == repr(expected)
    assert repr(messages) == repr(None if expected is None else chat_messages(expected))
    assert taken.consumed == general.consumed
    plain = _mapping._SpanReader(span_with(attributes, {}))
    content, messages = plain.take_plain_messages_of(plain.layout.llm_inputs)
    assert repr(content) == repr(expected)
    if messages is not None:
        assert repr(messages) == repr(plain_chat_messages(expected, _sanitize.MAX_DEPTH))
    assert plain.consumed == general.consumed


@settings(max_examples=300, deadline=None)
@given(
    name=any_text
    | st.integers(0, 3).map(lambda extra: "n" * (_mapping.OP_NAME_MAX_LENGTH - 2 + extra))
    | st.sampled_from(["", "caf\u00e9", "\ud800", "x" * 1_000_001])
)
def test_a_span_names_op_and_display_names_are_those_of_the_general_steps(name: str) -> None:
    span = ReadableSpan(name=name, context=SpanContext(1, 2, is_remote=False))
    start = _mapping.span_to_call(span, "e/p").start
    assert start.op_name == _mapping.op_name_for(name)
    assert start.display_name == _mapping._as_str(name)


def test_spans_alike_share_one_otel_context_which_is_what_each_would_get_alone() -> None:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanKind, Status, StatusCode

    from opentelemetry.exporter.weave._call import is_shared

    scope, resource = InstrumentationScope("caf\u00e9", "1.0"), Resource({"service.name": "s"})
    usual: dict[str, Any] = {
        "kind": SpanKind.CLIENT,
        "status": Status(StatusCode.OK),
        "instrumentation_scope": scope,
        "resource": resource,
        "start_time": 1_000,
        "end_time": 2_000,
    }
    chat = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai"}

    def context_of(attributes: dict[str, Any] = chat, **fields: Any) -> Any:
        span = ReadableSpan(
            name="s", context=SpanContext(1, 2, False), attributes=attributes, **{**usual, **fields}
        )
        return _mapping.span_to_call(span, "e/p").start.attributes["otel"]

    shared = context_of()
    assert is_shared(shared)
    assert context_of() is shared
    assert shared == {
        "span_kind": "CLIENT",
        "llm_span_kind": "chat",
        "llm_provider": "openai",
        "status": {"code": "OK", "description": None},
        "scope": {"name": "caf\u00e9", "version": "1.0"},
        "resource": {"service.name": "s"},
        "events": [],
    }
    # Each fact of its own: another context, shared by the spans of that fact.
    others = [
        context_of(kind=SpanKind.INTERNAL),
        context_of({**chat, "gen_ai.operation.name": "embeddings"}),
        context_of({**chat, "gen_ai.provider.name": "anthropic"}),
        context_of(status=Status(StatusCode.UNSET)),
        context_of(instrumentation_scope=InstrumentationScope("caf\u00e9", "1.0")),
        context_of(resource=Resource({"service.name": "s"})),
    ]
    assert len({id(context) for context in [shared, *others]}) == 7
    assert all(is_shared(context) for context in others)
    assert others[0]["span_kind"] == "INTERNAL"
    assert others[3]["status"]["code"] == "UNSET"
    assert others[4] == others[5] == shared
    # What only some spans have: a context of their own, not shared.
    own = [
        context_of(status=Status(StatusCode.ERROR, "boom")),
        context_of(events=[Event("e", {"a": 1}, timestamp=5)]),
        context_of(end_time=-1),  # a time out of range: clamped, and marked
        context_of({**chat, "otel": "displaced"}),
        context_of(instrumentation_scope=mock.Mock(name="scope", version=None)),
    ]
    assert not any(is_shared(context) for context in own)
    assert own[0]["status"] == {"code": "ERROR", "description": "boom"}
    assert own[1]["events"][0]["name"] == "e"
    assert "adjusted_times" in own[2]
    assert own[3]["span_attributes"] == {"otel": "displaced"}


def test_the_weave_kind_is_one_shared_dict_per_kind() -> None:
    from opentelemetry.exporter.weave._call import is_shared

    def kind_of(attributes: dict[str, Any]) -> Any:
        span = ReadableSpan(name="s", context=SpanContext(1, 2, False), attributes=attributes)
        return _mapping.span_to_call(span, "e/p").start.attributes["weave"]

    llm = kind_of({"gen_ai.operation.name": "chat"})
    assert llm == {"kind": "llm"}
    assert is_shared(llm)
    assert kind_of({"gen_ai.operation.name": "chat", "a": 1}) is llm
    assert kind_of({"gen_ai.operation.name": "execute_tool"}) == {"kind": "tool"}


def test_more_contexts_than_are_kept_leave_the_kinds_and_the_kept_contexts_shared() -> None:
    from opentelemetry.sdk.resources import Resource

    from opentelemetry.exporter.weave import _call

    def attributes_of(resource: Resource) -> Any:
        span = ReadableSpan(
            name="s",
            context=SpanContext(1, 2, False),
            attributes={"gen_ai.operation.name": "chat"},
            resource=resource,
            start_time=1_000,
            end_time=2_000,
        )
        return _mapping.span_to_call(span, "e/p").start.attributes

    # A new resource for each span (each a context of its own): many times what is kept.
    resources = [Resource({"service.name": f"s{index}"}) for index in range(5_000)]
    contexts = [attributes_of(resource)["otel"] for resource in resources]

    assert _call.is_shared(attributes_of(resources[-1])["weave"])
    assert _call.is_shared(contexts[-1])
    assert attributes_of(resources[-1])["otel"] is contexts[-1]
    # The contexts no longer kept are forgotten as shared, and no longer kept alive.
    assert not _call.is_shared(contexts[0])
    assert len(_call._shared) <= _mapping._SHARED_CONTEXTS_KEPT + len(_mapping._WEAVE_KINDS)
