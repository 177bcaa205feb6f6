"""The chat conversion's shortcuts give exactly the answers of the general paths they skip.

Each test holds a shortcut against the general path (kept in the code, or written out here), over
generated messages near the shortcut's shape, so that every condition it checks is met and
missed: odd ids, extra keys, missing keys, other part types, hostile values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from opentelemetry.exporter.weave import _chat
from opentelemetry.exporter.weave._sanitize import nests_within

_ROLE = st.sampled_from(["user", "assistant", "system", "tool", "function", "ai", "human"])
_ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
_ID = st.one_of(st.text(max_size=6), st.text(max_size=6), st.integers(), st.none(), _ODD)
_ARGUMENTS = st.one_of(
    st.sampled_from(['{"a": 1}', "not json", "[1, 2]", "", "{"]),
    st.dictionaries(st.text(max_size=4), _ODD, max_size=3),
    _ODD,
)
_TEXT_PART = st.fixed_dictionaries({"type": st.just("text"), "content": st.text(max_size=8)})
_TOOL_CALL_PART = st.fixed_dictionaries(
    {"type": st.just("tool_call"), "id": _ID, "name": _ID, "arguments": _ARGUMENTS}
)
_TOOL_RESULT_PART = st.fixed_dictionaries(
    {"type": st.just("tool_call_response"), "id": _ID, "response": _ARGUMENTS}
)


def _near(part: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """The part (most often), or the part with a key left out or one more key."""
    return st.one_of(
        part,
        part,
        part,
        part.flatmap(
            lambda value: st.sampled_from(sorted(value)).map(
                lambda left_out: {k: v for k, v in value.items() if k != left_out}
            )
        ),
        part.map(lambda value: {**value, "call_id": "c"}),
        part.map(lambda value: {**value, "extra": 1}),
    )


# Parts the fast path takes (ids and names text, arguments and responses anything but None).
_TAKEN_PART = st.one_of(
    _TEXT_PART,
    st.fixed_dictionaries(
        {
            "type": st.just("tool_call"),
            "id": st.text(max_size=6),
            "name": st.text(max_size=6),
            "arguments": _ARGUMENTS.filter(lambda value: value is not None),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("tool_call_response"),
            "id": st.text(max_size=6),
            "response": _ARGUMENTS.filter(lambda value: value is not None),
        }
    ),
)
_PART = st.one_of(
    _near(_TEXT_PART),
    _near(_TOOL_CALL_PART),
    _near(_TOOL_RESULT_PART),
    st.fixed_dictionaries({"type": st.just("reasoning"), "content": st.text(max_size=4)}),
    st.text(max_size=4),
    _ODD,
)


def _genai_message(
    role: Any, parts: Any, finish_reason: Any, has_finish_reason: bool, extra: str | None
) -> dict[str, Any]:
    """An OTel GenAI message as the property tests draw it: a ``finish_reason`` if asked for,
    and one more key (``extra``) if given."""
    message: dict[str, Any] = {"role": role, "parts": parts}
    if has_finish_reason:
        message["finish_reason"] = finish_reason
    if extra is not None:
        message[extra] = "x"
    return message


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    role=_ROLE | _ROLE | st.text(max_size=6) | _ODD,
    parts=st.one_of(
        st.lists(_TAKEN_PART, min_size=1, max_size=3),
        # Parts taken and one that may not be, anywhere among them.
        st.tuples(st.lists(_TAKEN_PART, max_size=2), _PART, st.booleans()).map(
            lambda drawn: [drawn[1], *drawn[0]] if drawn[2] else [*drawn[0], drawn[1]]
        ),
        st.lists(_PART, max_size=4),
        _ODD,
    ),
    finish_reason=st.sampled_from(["stop", "tool_calls"]) | _ODD,
    has_finish_reason=st.booleans(),
    extra=st.sampled_from([None, None, None, "name", "tool_call_id", "content"]),
)
def test_the_genai_parts_fast_path_converts_exactly_as_the_full_one(
    role: Any, parts: Any, finish_reason: Any, has_finish_reason: bool, extra: str | None
) -> None:
    message = _genai_message(role, parts, finish_reason, has_finish_reason, extra)
    fast = _chat._genai_parts(message)
    full = _chat._converted_in_full(message)
    if fast is not None:
        # repr tells 1 from 1.0 and True, a list from a tuple, and shows the keys' order.
        assert repr(fast) == repr(full)
    assert repr(_chat._converted(message)) == repr(full)


_PART_SHAPES = [
    {"type": "text", "content": "t"},
    {"type": "tool_call", "id": "c1", "name": "f", "arguments": {"a": 1}},
    {"type": "tool_call_response", "id": "c1", "response": "r"},
]
_ODD_VALUES = [None, 0, 1.5, True, "", [], {}, {"a": [1]}, '{"a": 1}', "[1]"]


def test_the_genai_parts_fast_path_converts_each_odd_part_as_the_full_one() -> None:
    # Every key of every part shape set to each odd value, or left out, or joined by another,
    # in each role, alone and beside a text part.
    variants: list[Any] = []
    for shape in _PART_SHAPES:
        variants.append(shape)
        variants.append({**shape, "extra": 1})
        for key in shape:
            variants.append({k: v for k, v in shape.items() if k != key})
            variants.extend({**shape, key: odd} for odd in _ODD_VALUES)
    for part in variants:
        for role in ("user", "assistant", "tool", "function", "ai"):
            for parts in ([part], [part, _PART_SHAPES[0]], [_PART_SHAPES[0], part]):
                for finish in ({}, {"finish_reason": "stop"}, {"finish_reason": None}):
                    message = {"role": role, "parts": parts, **finish}
                    fast = _chat._genai_parts(message)
                    full = _chat._converted_in_full(message)
                    if fast is not None:
                        assert repr(fast) == repr(full), message
                    assert repr(_chat._converted(message)) == repr(full), message


def test_the_genai_parts_fast_path_takes_tool_calls_and_their_results() -> None:
    call = {"type": "tool_call", "id": "c1", "name": "lookup", "arguments": {"q": 1}}
    result = {"type": "tool_call_response", "id": "c1", "response": '{"ok": true}'}
    assistant = {"role": "assistant", "parts": [call], "finish_reason": "tool_calls"}
    assert _chat._genai_parts(assistant) == [
        {
            "role": "assistant",
            "finish_reason": "tool_calls",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"q": 1}'},
                }
            ],
        }
    ]
    assert _chat._genai_parts({"role": "tool", "parts": [result]}) == [
        {"role": "tool", "tool_call_id": "c1", "content": '{"ok": true}'}
    ]
    assert _chat._genai_parts({"role": "user", "parts": [{**call, "extra": 1}]}) is None


def _general_chat_completion(
    value: Any,
    *,
    model: str | None,
    response_id: str | None,
    finish_reasons: Sequence[str] | None,
    usage: Mapping[str, int] | None,
    created: int | None = None,
) -> dict[str, Any] | None:
    """chat_completion without its shortcuts (a message list's items, a list left undecoded,
    an ABC's check skipped for a dict or a list): every item through the choice steps."""
    value = _chat._decoded(value)
    extras: dict[str, Any] = {}
    stop_reason = None
    is_mapping = isinstance(value, Mapping)
    if isinstance(value, str):
        items: list[Any] = [{"role": "assistant", "content": value}]
    elif is_mapping and isinstance(value.get("choices"), list):
        items, extras = value["choices"], _chat._rest(value, "choices", "object")
    elif is_mapping and value.get("object") == "response" and isinstance(value.get("output"), list):
        items, extras = value["output"], _chat._rest(value, "output", "object")
    elif is_mapping and value.get("type") == "message" and "content" in value:
        items = [{"role": value.get("role", "assistant"), "content": value["content"]}]
        extras, stop_reason = (
            _chat._rest(value, "type", "role", "content", "stop_reason"),
            value.get("stop_reason"),
        )
    elif is_mapping:
        items = [value]
    elif isinstance(value, list) and value:
        items = value
    else:
        return None
    choices: list[dict[str, Any]] = []
    for item in items:
        choice = (
            item if isinstance(item, Mapping) and "message" in item and "role" not in item else None
        )
        converted = _chat._converted_in_full(choice["message"] if choice is not None else item)
        if converted is None:
            return None
        for message in converted:
            position = len(choices)
            reason = (
                message.pop("finish_reason", None)
                or (choice or {}).get("finish_reason")
                or stop_reason
            )
            if reason is None and finish_reasons:
                reason = finish_reasons[min(position, len(finish_reasons) - 1)]
            index = (choice or {}).get("index")
            index = index if type(index) is int and len(converted) == 1 else position
            choices.append(
                {
                    **_chat._rest(choice or {}, "message", "index", "finish_reason"),
                    "index": index,
                    "message": message,
                    "finish_reason": _chat._json_text(reason) if reason is not None else None,
                }
            )
    completion: dict[str, Any] = {
        **extras,
        "id": response_id if response_id is not None else extras.get("id"),
        "object": "chat.completion",
        "model": model if model is not None else extras.get("model"),
        "choices": choices,
    }
    if created is not None:
        completion["created"] = created
    own_usage = extras.get("usage")
    if usage is not None:
        completion["usage"] = _chat._openai_usage(usage)
    elif isinstance(own_usage, Mapping):
        completion["usage"] = _chat._openai_usage(own_usage)
    return completion


_MESSAGE = st.one_of(
    st.fixed_dictionaries(
        {"role": _ROLE, "parts": st.lists(_PART, max_size=3)},
        optional={"finish_reason": _ODD | st.just("stop")},
    ),
    st.fixed_dictionaries(
        {"role": _ROLE, "content": st.text(max_size=5) | _ODD},
        optional={"finish_reason": _ODD, "tool_calls": st.lists(_ODD, max_size=2)},
    ),
    st.fixed_dictionaries(
        {"message": st.fixed_dictionaries({"role": _ROLE, "content": st.text(max_size=5)})},
        optional={"index": _ODD, "finish_reason": _ODD, "logprobs": _ODD},
    ),
    _ODD,
)


# A completion's details, as the two completion property tests draw them.
_FINISH_REASONS = st.none() | st.lists(st.sampled_from(["stop", "length"]), max_size=2)
_USAGE = st.none() | st.just({"input_tokens": 3, "output_tokens": 4, "total_tokens": 7})
_CREATED = st.none() | st.integers(0, 10**10)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=st.one_of(
        st.lists(_MESSAGE, max_size=3),
        _MESSAGE,
        st.fixed_dictionaries({"choices": st.lists(_MESSAGE, max_size=2)}),
        st.sampled_from(["a reply", '[{"role": "assistant", "content": "x"}]', "[]", "{}"]),
    ),
    finish_reasons=_FINISH_REASONS,
    usage=_USAGE,
    created=_CREATED,
)
def test_chat_completion_is_what_the_general_steps_make(
    value: Any,
    finish_reasons: list[str] | None,
    usage: dict[str, int] | None,
    created: int | None,
) -> None:
    details: dict[str, Any] = {
        "model": "m",
        "response_id": None,
        "finish_reasons": finish_reasons,
        "usage": usage,
        "created": created,
    }
    fast = _chat.chat_completion(value, **details)
    assert repr(fast) == repr(_general_chat_completion(value, **details))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=st.lists(_MESSAGE | st.lists(_MESSAGE, max_size=2), max_size=3)
    | _MESSAGE
    | st.sampled_from(['[{"role": "user", "content": "x"}]', "{}", "[]", "text"]),
    parameters=st.none()
    | st.dictionaries(st.sampled_from(["temperature", "messages", "model", "n"]), _ODD),
)
def test_chat_messages_and_inputs_are_what_the_general_steps_make(
    value: Any, parameters: dict[str, Any] | None
) -> None:
    decoded = _chat._decoded(value)
    if isinstance(decoded, Mapping):
        decoded = decoded["messages"] if isinstance(decoded.get("messages"), list) else [decoded]
    expected: list[Any] | None = None
    if isinstance(decoded, list) and decoded:
        if all(isinstance(item, list) for item in decoded):
            decoded = [item for batch in decoded for item in batch]
        converted = [_chat._converted_in_full(raw) for raw in decoded]
        if all(messages is not None for messages in converted):
            expected = [message for messages in converted for message in messages or []] or None
    messages = _chat.chat_messages(value)
    assert repr(messages) == repr(expected)
    inputs = _chat.chat_inputs(messages or [], model="m", parameters=parameters)
    assert repr(inputs) == repr(
        {
            "messages": messages or [],
            "model": "m",
            **_chat._rest(parameters or {}, "messages", "model"),
        }
    )


def _deep(levels: int) -> Any:
    value: Any = "leaf"
    for level in range(levels):
        value = [value] if level % 2 else {"k": value}
    return value


_FREE = st.one_of(_ODD, st.integers(0, 40).map(_deep))
_PLAIN_MESSAGE = st.fixed_dictionaries(
    {
        "role": _ROLE,
        "parts": st.lists(
            st.one_of(
                _TEXT_PART,
                st.fixed_dictionaries(
                    {
                        "type": st.just("tool_call"),
                        "id": st.text(max_size=3),
                        "name": st.text(max_size=3),
                        "arguments": _FREE,
                    }
                ),
                st.fixed_dictionaries(
                    {"type": st.just("tool_call_response"), "id": _ID, "response": _FREE}
                ),
                _PART,
            ),
            min_size=1,
            max_size=3,
        ),
    },
    optional={"finish_reason": _FREE},
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=st.lists(_PLAIN_MESSAGE | _MESSAGE, min_size=1, max_size=4) | st.just([]),
    levels=st.integers(0, 40),
)
def test_plain_chat_messages_are_chat_messages_of_what_nests_within(
    value: list[Any], levels: int
) -> None:
    plain = _chat.plain_chat_messages(value, levels)
    if plain is not None:
        assert nests_within(value, levels)
        assert repr(plain) == repr(_chat.chat_messages(value))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=st.lists(_PLAIN_MESSAGE | _MESSAGE, min_size=1, max_size=4),
    finish_reasons=_FINISH_REASONS,
    usage=_USAGE,
    created=_CREATED,
)
def test_a_completion_of_plain_messages_is_the_completion_of_their_content(
    value: list[Any],
    finish_reasons: list[str] | None,
    usage: dict[str, int] | None,
    created: int | None,
) -> None:
    details: dict[str, Any] = {
        "model": "m",
        "response_id": "r",
        "finish_reasons": finish_reasons,
        "usage": usage,
        "created": created,
    }
    messages = _chat.plain_chat_messages(value, 40)
    if messages is not None:
        completion = _chat.chat_completion(value, **details, messages=messages)
        assert repr(completion) == repr(_general_chat_completion(value, **details))


def test_plain_chat_messages_walk_what_may_nest_and_take_no_other_message() -> None:
    call = {"type": "tool_call", "id": "c", "name": "f", "arguments": _deep(3)}
    message = {"role": "assistant", "parts": [call], "finish_reason": _deep(2)}
    assert _chat.plain_chat_messages([message], 8) == _chat.chat_messages([message])
    assert _chat.plain_chat_messages([message], 7) == _chat.chat_messages([message])
    assert _chat.plain_chat_messages([message], 6) is None  # the arguments: 3 levels below 4
    assert _chat.plain_chat_messages([{**message, "finish_reason": _deep(7)}], 8) is None
    assert _chat.plain_chat_messages([{"role": "user", "content": "hi"}], 8) is None
    assert _chat.plain_chat_messages([], 8) is None
    assert _chat.plain_chat_messages([{"role": "user", "parts": [_PART_SHAPES[0]]}], 3) is None


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    role=_ROLE | _ROLE | st.text(max_size=6) | _ODD,
    parts=st.one_of(
        st.lists(_near(_TEXT_PART), min_size=1, max_size=1),
        st.lists(_near(_TEXT_PART) | _PART, max_size=3),
        st.lists(
            st.fixed_dictionaries({"type": st.just("text"), "content": _ODD | st.text()}),
            min_size=1,
            max_size=1,
        ),
        _ODD,
    ),
    # Half of them a container, nesting anything from no level to past the message's own.
    finish_reason=st.booleans().flatmap(
        lambda container: (
            st.integers(0, 8).map(lambda levels: [_deep(levels)])
            if container
            else _FREE | st.just("stop")
        )
    ),
    has_finish_reason=st.booleans(),
    extra=st.sampled_from([None, None, None, "name", "content", "finish"]),
)
def test_the_one_text_part_shortcut_converts_exactly_as_the_full_one(
    role: Any, parts: Any, finish_reason: Any, has_finish_reason: bool, extra: str | None
) -> None:
    message: dict[str, Any] = {"parts": parts, "role": role} if extra == "finish" else {}
    message.update(role=role, parts=parts)
    if has_finish_reason:
        message["finish_reason"] = finish_reason
    if extra not in (None, "finish"):
        message[extra] = "x"
    one = _chat._one_text(message)
    full = _chat._converted_in_full(message)
    text_only = _chat._text_only(message)
    if text_only is not None:
        assert repr(text_only) == repr(full)
    if one is not None:
        assert repr([one]) == repr(full)
        assert repr([one]) == repr(text_only)
        assert nests_within([message], 4)  # why plain_chat_messages need not walk it


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    role=_ROLE | _ROLE | st.text(max_size=6) | _ODD,
    parts=st.lists(_near(_TEXT_PART), min_size=1, max_size=3) | st.lists(_PART, max_size=3),
    finish_reason=_FREE | st.just("stop"),
    has_finish_reason=st.booleans(),
    extra=st.sampled_from([None, None, None, "name", "content"]),
)
def test_the_genai_parts_fast_path_takes_each_message_the_text_only_one_takes(
    role: Any, parts: Any, finish_reason: Any, has_finish_reason: bool, extra: str | None
) -> None:
    # Why a conversion may skip _text_only for _genai_parts.
    message = _genai_message(role, parts, finish_reason, has_finish_reason, extra)
    text_only = _chat._text_only(message)
    if text_only is not None:
        assert repr(_chat._genai_parts(message)) == repr(text_only)


def test_the_one_text_part_shortcut_takes_the_commonest_message_only() -> None:
    part = {"type": "text", "content": "Hi"}
    message = {"role": "ai", "parts": [part], "finish_reason": "stop"}
    assert _chat._one_text(message) == {
        "role": "assistant",
        "finish_reason": "stop",
        "content": "Hi",
    }
    assert _chat._one_text({"role": "user", "parts": [part]}) == {"role": "user", "content": "Hi"}
    for other in (
        {**message, "role": "tool"},
        {**message, "finish_reason": {"a": 1}},
        {**message, "finish_reason": [[["deep"]]]},
        {**message, "name": "x"},
        {"parts": [part], "finish_reason": "stop", "name": "x"},
        {**message, "parts": [part, part]},
        {**message, "parts": [{**part, "x": 1}]},
        {**message, "parts": [{"type": "text", "content": 1}]},
        {**message, "role": 1},
    ):
        assert _chat._one_text(other) is None, other
