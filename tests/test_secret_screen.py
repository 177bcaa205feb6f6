"""The screen that spares most calls the scrubber's walk: it must never clear what the
scrubber would change (WEAVE_WIRE-independent: the scrubber itself is the judge)."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from opentelemetry.exporter.weave._call import to_json
from opentelemetry.exporter.weave._redaction import (
    _NAME_STEMS,
    _SCREEN_FOLDING_CHARACTERS,
    DEFAULT_SECRET_KEYS,
    Redactor,
    SecretScreen,
)

from .helpers import make_call
from .test_redaction import ORDINARY_LLM_TEXTS, SECRET_KEYS, SECRET_TEXTS

# Pieces of every pattern the scrubber has, and of what could hide them from an ASCII search
# of JSON: escapes, the characters that case-fold to ASCII letters, separators.
_PIECES = st.sampled_from(
    [
        *_NAME_STEMS,
        "api",
        "API",
        "Api",
        "x-",
        "access",
        "private",
        "id",
        "client",
        "set-",
        "proxy-",
        "word",
        "s",
        "bearer ",
        "BeArEr ",
        "sk-",
        "AKIA",
        "AIza",
        "eyJ",
        "ghp_",
        "xoxb-",
        "://",
        "a:b@",
        "@",
        "/",
        "=",
        ":",
        '"',
        "'",
        "\\",
        "\\u0061",
        "\\n",
        "\\/",
        "\n",
        "\t",
        "\x01",
        " ",
        "?",
        "&",
        ";",
        "_",
        "-",
        ".",
        "a",
        "Z",
        "0",
        "\u0130",
        "\u0131",
        "\u017f",
        "\u212a",
        "é",
        "A1b2C3d4E5f6G7h8I9j0",
    ]
)
_TEXTS = st.lists(_PIECES, max_size=24).map("".join) | st.text(max_size=40)


def _values(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(_TEXTS, children, max_size=4)
        ),
        max_leaves=12,
    )


_SCALARS = _TEXTS | st.integers() | st.floats(allow_nan=False) | st.booleans() | st.none()
# JSON text inside strings, as instrumentations record messages: the scrubber decodes it.
_JSON_TEXTS = st.builds(
    lambda value, ascii_only: json.dumps(value, ensure_ascii=ascii_only),
    _values(_SCALARS),
    st.booleans(),
)
VALUES = _values(_SCALARS | _JSON_TEXTS)


@settings(max_examples=1500, deadline=None)
@given(VALUES)
@example({"a\napi_key": "x"})
@example("a\napi_key=hunter2")
@example('{"x": "a\\napi_key=hunter2"}')
@example('{"\\u0061pi_key": "x"}')
@example({"token" + "-" * 124 + "-api_key": "x"})
@example("https:\\/\\/bob:pw@host")
@example({"\u017fecret": "x"})
def test_what_the_screen_clears_the_scrubber_leaves_unchanged(value: Any) -> None:
    if SecretScreen().clears(to_json(value)):
        assert Redactor().scrub(value) is value


def test_every_secret_the_scrubber_tests_know_is_not_cleared() -> None:
    screen = SecretScreen()
    for param in SECRET_TEXTS:
        text = param.values[0]
        assert not screen.clears(to_json(text)), text
        assert not screen.clears(to_json({"messages": [{"content": text}]})), text
    for key in SECRET_KEYS:
        assert not screen.clears(to_json({key: 1})), key


def test_ordinary_llm_text_is_cleared_unless_it_names_a_secret_or_holds_a_literal() -> None:
    screen = SecretScreen()
    given_up = [text for text in ORDINARY_LLM_TEXTS if not screen.clears(to_json(text))]
    # Prose naming a secret, or a value pattern's literal: the scrubber looks, changes nothing.
    assert [text.split()[:2] for text in given_up] == [["Click", "the"], ["He", "was"]]
    for text in given_up:
        assert Redactor().scrub(text) is text
    value = {"messages": [{"role": "user", "content": text} for text in ORDINARY_LLM_TEXTS]}
    call = make_call(inputs=value, output=ORDINARY_LLM_TEXTS, attributes={"texts": value})
    assert Redactor().apply(call) is call


def test_the_characters_given_up_on_are_every_one_that_folds_to_an_ascii_letter() -> None:
    # Those whose case-insensitive match or lower case is not ASCII's: the scrubber searches
    # with both, the screen with ASCII's only.
    letter = re.compile("(?i)[a-z]")
    folding = [
        char.encode()
        for char in map(chr, range(0x80, 0x110000))
        if letter.fullmatch(char) or any("a" <= each <= "z" for each in char.lower())
    ]
    assert sorted(folding) == sorted(_SCREEN_FOLDING_CHARACTERS)


def test_every_default_secret_key_matches_only_name_characters() -> None:
    # A name is searched for in the runs of name characters around a stem: a pattern that
    # could match another character could match across a run's end.
    for key in DEFAULT_SECRET_KEYS:
        assert re.fullmatch(r"[A-Za-z0-9_.()\[\]|?\-]+", key), key
