"""The scrubber's fast path: a text that plainly holds no secret is passed at a few scans.

It must never pass what the full scrubber would change: the full scrubber (the fast path
switched off) is the judge, over texts made of every pattern's pieces and what could hide
them (escapes, case, characters that case-fold to ASCII), and over whole structures.
"""

from __future__ import annotations

import json
from typing import Any
from unittest import mock

from hypothesis import example, given, settings
from hypothesis import strategies as st

from opentelemetry.exporter.weave import _redaction
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


def test_a_long_text_left_as_it_is_is_passed_by_identity_when_it_comes_again() -> None:
    plain = "The order ships in three days. " * 4
    noted = "Note: the order ships in three days. " * 4  # a `:`, so not plainly clear
    secret = "Note: the key is sk-" + "a" * 40 + ". " * 40
    redactor = Redactor()
    value = {"messages": [{"content": plain}, {"content": noted}, {"content": secret}]}
    first = redactor.scrub(value)
    with mock.patch.object(_redaction, "_plainly_clear", wraps=_plainly_clear) as scans:
        assert redactor.scrub(value) == first
        # Only the text with a secret is looked at (by the item's check, then the text's own).
        assert {call.args[0] for call in scans.call_args_list} == {secret}
        # An equal text of another object is looked at anew.
        scans.reset_mock()
        assert redactor.scrub({"content": "".join(noted)}) == {"content": noted}
        assert {call.args[0] for call in scans.call_args_list} == {noted}
    assert first["messages"][2]["content"] != secret  # a secret is never remembered as clear
    assert redactor.scrub(value)["messages"][2]["content"] == first["messages"][2]["content"]


def test_the_long_texts_remembered_stay_within_their_bounds() -> None:
    redactor = Redactor()
    texts = [f"{n:06d} " + "x" * 100 for n in range(_redaction._KEPT_LONG_TEXTS + 10)]
    for text in texts:
        redactor.scrub([text])
    assert 0 < len(redactor._unchanged_long_texts) <= _redaction._KEPT_LONG_TEXTS
    huge = "y" * (_redaction._KEPT_LONG_TEXT_CHARS // 3)
    for copy in range(4):
        redactor.scrub([huge + str(copy)])
        assert redactor._unchanged_long_chars <= _redaction._KEPT_LONG_TEXT_CHARS
        kept = redactor._unchanged_long_texts.values()
        assert sum(map(len, kept)) == redactor._unchanged_long_chars
    too_long = "z" * (_redaction._KEPT_LONG_TEXT_CHARS + 1)
    assert redactor.scrub([too_long]) == [too_long]
    assert redactor._unchanged_long_chars == 0
