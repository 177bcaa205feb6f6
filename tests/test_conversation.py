"""The conversation memo: a trace's next chat input converted from where its last one ended
gives exactly what converting the whole text gives (the general path is the judge), over
conversations that grow, shrink, fork, break off and hold hostile values; and it stays bounded.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanContext

from opentelemetry.exporter.weave import _mapping, _sanitize
from opentelemetry.exporter.weave._conversation import ConversationMemo
from opentelemetry.exporter.weave._mapping import span_to_call
from opentelemetry.exporter.weave._redaction import Redactor


def text_message(role: str, text: str) -> dict[str, Any]:
    return {"role": role, "parts": [{"type": "text", "content": text}]}


def tool_call(depth: int) -> dict[str, Any]:
    arguments: Any = 1
    for _ in range(depth):
        arguments = {"a": [arguments]}
    call = {"type": "tool_call", "id": "c1", "name": "f", "arguments": arguments}
    return {"role": "assistant", "parts": [call]}


_PLAIN_MESSAGE = st.one_of(
    st.builds(
        text_message,
        st.sampled_from(["user", "assistant", "system", "model"]),
        st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=12),
    ),
    st.builds(tool_call, st.sampled_from([0, 1, 2, 5, 13, 14])),
    st.builds(
        lambda id_, response: {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": id_, "response": response}],
        },
        st.sampled_from(["c1", "c2"]),
        st.sampled_from(["ok", {"a": [1]}, None]),
    ),
)
_ODD_MESSAGE = st.one_of(
    st.builds(
        text_message,
        st.sampled_from(["user", "tool", "", "human"]),
        st.sampled_from(["caf\u00e9", "\ud800 lone", "a\\u0041", "]", ","]),
    ),
    st.builds(tool_call, st.sampled_from([15, 30])),  # too deep for the fast conversions
    st.sampled_from([1, "text", None, [], {}, {"role": "user"}, {"role": "user", "content": "x"}]),
)


def element_text(message: Any, ensure_ascii: bool) -> str:
    return json.dumps(message, ensure_ascii=ensure_ascii, allow_nan=True)


_PLAIN_ELEMENT = st.builds(element_text, _PLAIN_MESSAGE, st.booleans())
# A written-out list element that is no plain message, or something that breaks the list.
_ODD_ELEMENT = st.builds(element_text, _ODD_MESSAGE, st.booleans()) | st.sampled_from(
    ["", " ", "{", "1 2", '"\\ud800"', "NaN", "1e999", ",", "]"]
)


@st.composite
def element(draw: st.DrawFn) -> str:
    """Mostly a message the fast conversions take, as agents' conversations are."""
    return draw(_ODD_ELEMENT if draw(_ODD_ONE) else _PLAIN_ELEMENT)


_ODD_ONE = st.sampled_from([False] * 9 + [True])


_SEPARATOR = st.sampled_from([", ", ",", " , ", ",\n"])
_CLOSE = st.sampled_from(["]"] * 6 + [" ]", "] ", "],", ""])
_STEP = st.sampled_from(["grow"] * 4 + ["same", "shrink", "fork", "re-space"])


@st.composite
def conversations(draw: st.DrawFn) -> list[str]:
    """The chat inputs of a trace's model calls: mostly a growing list, sometimes the same,
    shorter, forked, re-spaced or broken."""
    elements = draw(st.lists(_PLAIN_ELEMENT, min_size=1, max_size=6))
    upto = len(elements)
    separator = draw(_SEPARATOR)
    texts = []
    for _ in range(draw(st.integers(1, 6))):
        texts.append("[" + separator.join(elements[:upto]) + draw(_CLOSE))
        step = draw(_STEP)
        if step == "grow":  # the next call adds the reply and a question
            elements[upto:] = draw(st.lists(element(), min_size=1, max_size=2))
            upto = len(elements)
        elif step == "shrink":
            upto = draw(st.integers(0, upto))
        elif step == "fork" and upto:
            elements[draw(st.integers(0, upto - 1))] = draw(element())
        elif step == "re-space":
            separator = draw(_SEPARATOR)
    return texts


def chat_span(text: str, trace_id: int = 7) -> ReadableSpan:
    return ReadableSpan(
        name="chat",
        context=SpanContext(trace_id, 2, is_remote=False),
        attributes={"gen_ai.operation.name": "chat", "gen_ai.input.messages": text},
    )


def taken(text: str, memo: ConversationMemo | None, trace_id: int = 7) -> tuple[str, str]:
    reader = _mapping._SpanReader(chat_span(text))
    conversation = None if memo is None else (memo, trace_id)
    content, messages = reader.take_plain_messages_of(reader.layout.llm_inputs, conversation)
    return repr(content), repr(messages)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=conversations())
def test_a_trace_s_inputs_taken_with_the_memo_are_those_taken_without(texts: list[str]) -> None:
    memo = ConversationMemo()
    for text in texts:
        (content, messages), (whole_content, whole_messages) = taken(text, memo), taken(text, None)
        assert messages == whole_messages, text
        # The memo answers with the messages only (the content is read only without them).
        answered = content == repr(None) and messages != repr(None)
        assert content == whole_content or answered, text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=conversations())
def test_a_trace_s_calls_mapped_with_the_memo_are_those_mapped_without(texts: list[str]) -> None:
    memo = ConversationMemo()
    for text in texts:
        span = chat_span(text)
        assert span_to_call(span, "e/p", conversations=memo) == span_to_call(span, "e/p")


def conversation_text(turns: int) -> str:
    messages = [text_message("user" if n % 2 else "system", f"turn {n}") for n in range(turns)]
    return json.dumps(messages)


def test_a_next_input_reuses_the_messages_converted_and_converts_only_those_added() -> None:
    memo = ConversationMemo()
    first, second = conversation_text(3), conversation_text(5)
    messages = messages_taken(first, memo)
    extended = memo.extended(7, second)
    assert extended is not None
    assert [m["content"] for m in extended] == [f"turn {n}" for n in range(5)]
    assert all(new is old for new, old in zip(extended, messages, strict=False))
    assert memo.extended(8, second) is None  # another trace's conversation is its own


def test_what_no_extension_of_the_last_text_is_not_answered() -> None:
    memo = ConversationMemo()
    messages_taken(conversation_text(3), memo)
    last = conversation_text(3)
    assert memo.extended(7, last) is None  # the same text: nothing added
    assert memo.extended(7, last[:-1] + ",]") is None  # no value after the `,`
    assert memo.extended(7, last[:-1] + ", 1") is None  # no `]`
    assert memo.extended(7, conversation_text(2)) is None
    accented = json.dumps(text_message("user", "caf\u00e9"), ensure_ascii=False)
    assert memo.extended(7, f"{last[:-1]}, {accented}]") is None  # not ASCII: walked in full
    lone = json.dumps(text_message("user", "\ud800"))
    assert memo.extended(7, f"{last[:-1]}, {lone}]") is None  # a `\u` escape: walked in full
    assert memo.extended(7, last[:-1] + ", 1]") is None  # no message: not plain
    big = json.dumps(text_message("user", "x" * _sanitize.MAX_NODES))
    assert memo.extended(7, f"{last[:-1]}, {big}]") is None  # past MAX_NODES: walked in full
    # The last text up to its last `}` only, then a `,`: the object left open is no JSON.
    added = json.dumps(text_message("user", "x"))
    assert memo.extended(7, f"{last[:-2]} , {added}]") is None


def messages_taken(text: str, memo: ConversationMemo) -> list[Any]:
    reader = _mapping._SpanReader(chat_span(text))
    _, messages = reader.take_plain_messages_of(reader.layout.llm_inputs, (memo, 7))
    assert messages is not None
    return messages


def test_the_memo_keeps_so_many_traces_and_so_many_characters() -> None:
    memo = ConversationMemo(max_traces=3, max_chars=10_000)
    text = conversation_text(2)
    for trace_id in range(5):
        memo.remember(trace_id, text, [{"role": "user", "content": ""}])
    longer = conversation_text(3)
    assert memo.extended(0, longer) is None  # the oldest traces are forgotten
    assert memo.extended(1, longer) is None
    assert memo.extended(4, longer) is not None
    memo = ConversationMemo(max_traces=100, max_chars=len(text) * 2)
    for trace_id in range(3):
        memo.remember(trace_id, text, [{"role": "user", "content": ""}])
    assert memo.extended(0, longer) is None
    assert memo.extended(2, longer) is not None
    huge = json.dumps([text_message("user", "x" * (_sanitize.MAX_NODES // 2))])
    small = ConversationMemo(max_chars=len(huge) - 1)
    small.remember(1, huge, [{"role": "user", "content": ""}])
    assert small.extended(1, huge[:-1] + ", " + json.dumps(text_message("user", "y")) + "]") is None


_SECRETIVE_TEXT = st.sampled_from(
    ["hello", "ok: fine", "sk-abcdefghijklmnopqrstu", "password=hunter2", '{"api_key": "x"}']
)


@st.composite
def secretive_conversations(draw: st.DrawFn) -> list[str]:
    """A trace's growing chat inputs whose messages now and then hold a secret."""
    messages: list[Any] = []
    texts = []
    for _ in range(draw(st.integers(1, 5))):
        roles = st.sampled_from(["user", "assistant", "system"])
        added = st.builds(text_message, roles, _SECRETIVE_TEXT)
        messages += draw(st.lists(added, min_size=1, max_size=3))
        texts.append(json.dumps(messages))
    return texts


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=secretive_conversations())
def test_a_trace_s_calls_scrubbed_by_one_redactor_are_those_a_fresh_one_makes(
    texts: list[str],
) -> None:
    # The memo hands a call the message objects of the trace's last one; the scrubber
    # remembers those it left as they were, and walks the rest (a secret's message) again.
    memo, redactor = ConversationMemo(), Redactor()
    for text in texts:
        span = chat_span(text)
        scrubbed = redactor.apply(span_to_call(span, "e/p", conversations=memo))
        assert scrubbed == Redactor().apply(span_to_call(span, "e/p"))
        assert "hunter2" not in json.dumps(scrubbed.start.inputs)
