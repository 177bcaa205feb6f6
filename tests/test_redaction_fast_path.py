"""The scrubber's fast path: a text that plainly holds no secret is passed at a few scans.

It must never pass what the full scrubber would change: the full scrubber (the fast path
switched off) is the judge, over texts made of every pattern's pieces and what could hide
them (escapes, case, characters that case-fold to ASCII), and over whole structures.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any
from unittest import mock

from hypothesis import example, given, settings
from hypothesis import strategies as st

from opentelemetry.exporter.weave import _redaction
from opentelemetry.exporter.weave._call import shared, unshared
from opentelemetry.exporter.weave._redaction import _NAME_STEMS, Redactor, _plainly_clear

from .test_redaction import ORDINARY_LLM_TEXTS, SECRET_KEYS, SECRET_TEXTS

_PIECES = st.sampled_from(
    [
        *_NAME_STEMS,
        *("api", "API", "Api", "x-", "access", "private", "id", "client", "set-", "word", "s"),
        *("bearer ", "BeArEr ", "sk-", "SK-", "AKIA", "AIza", "eyJ", "eyj", "ghp_", "xoxb-"),
        *("://", "a:b@", "@", "/", "=", ":", '"', "'", "\\", "\\u0061", "\\n", "\\/", "\n"),
        *("\t", "\x01", " ", "?", "&", ";", "_", "-", ".", "a", "Z", "0", "é"),
        *("\u0130", "\u0131", "\u017f", "\u212a", "A1b2C3d4E5f6G7h8I9j0"),
    ]
)
TEXTS = st.lists(_PIECES, max_size=24).map("".join) | st.text(max_size=40)
_SCALARS = TEXTS | st.integers() | st.floats(allow_nan=False) | st.booleans() | st.none()


def _values(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(TEXTS, children, max_size=4)
        ),
        max_leaves=12,
    )


# JSON text inside strings, as instrumentations record messages: the scrubber decodes it.
_JSON_TEXTS = st.builds(
    lambda value, ascii_only: json.dumps(value, ensure_ascii=ascii_only),
    _values(_SCALARS),
    st.booleans(),
)
VALUES = _values(_SCALARS | _JSON_TEXTS)


def full_scrub(redactor: Redactor, value: Any) -> Any:
    """What the scrubber makes of ``value`` with its fast path switched off."""
    with mock.patch.object(_redaction, "_plainly_clear", return_value=False):
        return redactor.scrub(value)


@settings(max_examples=2000, deadline=None)
@given(TEXTS | _JSON_TEXTS)
@example("a\napi_key=hunter2")
@example('{"x": "a\\napi_key=hunter2"}')
@example('["\\u0073k-abcdefghijklmnopqrstu"]')
@example('["eyj", "\\u0073k-abcdefghijklmnopqrstu"]')
@example("BeArEr abcdefghijklmnopqrstuvwxyz0123")
@example("https:\\/\\/bob:pw@host")
def test_a_text_the_fast_path_passes_the_scrubber_leaves_as_it_is(text: str) -> None:
    for redactor in (Redactor(), Redactor(extra_keys=["gen_ai\\.request\\.model", "note"])):
        if _plainly_clear(text):
            assert full_scrub(redactor, text) is text


@settings(max_examples=1000, deadline=None)
@given(VALUES)
@example({"a\napi_key": "x", "b": ["sk-abcdefghijklmnopqrstu"]})
@example({"token" + "-" * 124 + "-api_key": "x"})
@example({"\u017fecret": "x", "note": "password=hunter2"})
def test_the_scrubber_with_its_fast_path_changes_exactly_what_it_does_without(
    value: Any,
) -> None:
    judge = full_scrub(Redactor(), value)  # a fresh one: nothing remembered as clear
    redactor = Redactor()
    assert redactor.scrub(value) == judge
    # Again, its caches warm: what it remembers of keys and texts holds for them.
    assert redactor.scrub(value) == judge


def test_every_secret_the_scrubber_tests_know_goes_the_full_way() -> None:
    for param in SECRET_TEXTS:
        text = param.values[0]
        assert not _plainly_clear(text), text
    for key in SECRET_KEYS:
        assert not _plainly_clear(f"{key}=1"), key


def test_ordinary_llm_text_without_a_colon_or_equals_sign_takes_the_fast_path() -> None:
    passed = [text for text in ORDINARY_LLM_TEXTS if _plainly_clear(text)]
    # A `:` or `=` (JSON text, `key: value`, URLs) sends a text the full way; it is kept.
    assert passed == [text for text in ORDINARY_LLM_TEXTS if ":" not in text and "=" not in text]
    assert passed
    for text in ORDINARY_LLM_TEXTS:
        assert Redactor().scrub(text) is text


def test_a_list_s_object_left_as_it_was_is_not_walked_again_until_forgotten() -> None:
    plain = {"role": "user", "content": "Note: the order ships in three days."}
    secret = {"role": "user", "content": "Note: the key is sk-" + "a" * 40}
    redactor = Redactor()
    first = redactor.scrub({"messages": [plain, secret]})
    added = {"role": "assistant", "content": "Noted: three days."}
    with mock.patch.object(_redaction, "_plainly_clear", wraps=_plainly_clear) as scans:
        again = redactor.scrub({"messages": [plain, secret, added]})
        # The message left as it was is passed; the one with a secret is scrubbed again.
        looked_at = {call.args[0] for call in scans.call_args_list}
        assert plain["content"] not in looked_at
        assert {secret["content"], added["content"]} <= looked_at
        assert again["messages"][:2] == first["messages"]
        assert "sk-" not in again["messages"][1]["content"]
        for elsewhere in ([[{"messages": [plain]}]], [plain, [plain]]):
            scans.reset_mock()
            redactor.scrub(elsewhere)  # deeper: JSON text in it may be decoded otherwise
            assert plain["content"] in {call.args[0] for call in scans.call_args_list}
        redactor.forget_items()
        scans.reset_mock()
        redactor.scrub({"messages": [plain]})
        assert plain["content"] in {call.args[0] for call in scans.call_args_list}


def test_the_objects_remembered_as_scrubbed_stay_within_their_bound() -> None:
    redactor = Redactor()
    messages = [{"content": f"message {n}"} for n in range(_redaction._CACHED_ITEMS + 10)]
    redactor.scrub({"messages": messages})
    assert 0 < len(redactor._clear_items) <= _redaction._CACHED_ITEMS


_MESSAGES = st.dictionaries(TEXTS, _SCALARS | _JSON_TEXTS, min_size=1, max_size=3)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_MESSAGES, min_size=_redaction._LONG_LIST, max_size=12),
    st.lists(_MESSAGES, max_size=4),
    st.integers(min_value=-1, max_value=11),
    _MESSAGES,
)
def test_a_conversation_s_next_list_is_scrubbed_as_the_full_scrubber_scrubs_it(
    earlier: list[Any], added: list[Any], swapped: int, stranger: Any
) -> None:
    redactor = Redactor()
    redactor.scrub({"messages": earlier})
    later = earlier + added
    if 0 <= swapped < len(earlier):
        later[swapped] = stranger  # another object in a place the last list held: looked at
    assert redactor.scrub({"messages": later}) == full_scrub(Redactor(), {"messages": later})


def test_a_long_list_that_goes_on_from_a_clear_one_is_looked_at_from_where_that_ended() -> None:
    conversation = [
        {"role": "user", "content": f"Message {n}: the order ships in three days."}
        for n in range(_redaction._LONG_LIST)
    ]
    redactor = Redactor()
    assert redactor.scrub({"messages": conversation}) == {"messages": conversation}
    secret = {"role": "assistant", "content": "Note: the key is sk-" + "a" * 40}
    added = {"role": "user", "content": "Noted: three days."}
    with mock.patch.object(_redaction, "_plainly_clear", wraps=_plainly_clear) as scans:

        def looked_at(value: Any) -> set[str]:
            # Not the objects remembered one by one: what is passed here, the list passed.
            redactor._clear_items.clear()
            scans.reset_mock()
            scrubbed = redactor.scrub(value)
            assert "sk-" not in json.dumps(scrubbed)
            return {call.args[0] for call in scans.call_args_list}

        later = looked_at({"messages": [*conversation, secret, added]})
        assert not later & {message["content"] for message in conversation}
        assert {secret["content"], added["content"]} <= later
        # Deeper (JSON text in it may be decoded otherwise): all of it again.
        assert conversation[0]["content"] in looked_at([{"messages": [*conversation, added]}])
        # The same place, another object (equal, or with a secret): the whole list again.
        for stranger in ({**conversation[3]}, {**secret}):
            changed = [*conversation[:3], stranger, *conversation[4:], added]
            assert conversation[0]["content"] in looked_at({"messages": changed})
        # Forgotten with the batch: all of it again.
        contents = {message["content"] for message in conversation}
        looked_at({"messages": [*conversation, added]})
        assert not looked_at({"messages": [*conversation, added, added]}) & contents
        redactor.forget_items()
        assert contents <= looked_at({"messages": [*conversation, added, added]})


@contextlib.contextmanager
def sharing(*values: dict[str, Any]) -> Iterator[None]:
    """The dicts :func:`shared` while the block runs, and forgotten after it: the registry is
    the process's, and a test's dicts are no later test's."""
    for value in values:
        shared(value)
    try:
        yield
    finally:
        for value in values:
            unshared(value)


def test_a_shared_dict_left_as_it_was_is_looked_at_once_by_each_scrubber() -> None:
    context = {"scope": {"name": "Note: the shop's agent"}, "resource": {"tenant": "acme"}}
    secret = {"resource": {"note": "Note: the key is sk-" + "a" * 40}}
    with sharing(context, secret):
        own = {"scope": {"name": "Note: an app of its own"}}
        call = {"otel": context, "other": own, "leak": secret}
        name = context["scope"]["name"]
        # One that finds no secret in the context (passed once looked at), one that does.
        scrubbers = {Redactor(): True, Redactor(extra_keys=["tenant"]): False}
        with mock.patch.object(_redaction, "_plainly_clear", wraps=_plainly_clear) as scans:
            for redactor, passes in scrubbers.items():

                def looked_at(
                    value: dict[str, Any],
                    redactor: Redactor = redactor,
                    keys: tuple[str, ...] = () if passes else ("tenant",),
                ) -> set[str]:
                    scans.reset_mock()
                    scrubbed = redactor.scrub(value)
                    texts = {call.args[0] for call in scans.call_args_list}
                    assert scrubbed == full_scrub(Redactor(extra_keys=keys), value)
                    return texts

                redactor.scrub({"otel": 0, "other": 0, "leak": 0})  # the keys known not secret
                assert name in looked_at(call)
                again = looked_at(call)
                assert (name not in again) is passes
                assert {own["scope"]["name"], secret["resource"]["note"]} <= again
                # Deeper than a call's field: looked at, as any dict.
                assert name in looked_at({"x": {"otel": context}})
                scrubbed = redactor.scrub(call)
                assert (scrubbed["otel"] is context) is passes
                assert "sk-" not in json.dumps(scrubbed)
                # Forgetting a batch's items keeps what calls share.
                redactor.forget_items()
                assert (name not in looked_at(call)) is passes


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(TEXTS, VALUES, max_size=4), TEXTS)
def test_calls_sharing_a_dict_are_each_scrubbed_as_the_full_scrubber_scrubs_them(
    value: dict[str, Any], key: str
) -> None:
    copy = dict(value)
    calls = [{key: value}, {key: copy, "n": 1}, {key: value}]
    redactor = Redactor()
    with sharing(value, copy):
        for call in calls * 3:
            assert redactor.scrub(call) == full_scrub(Redactor(), call)
