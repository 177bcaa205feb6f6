"""Redactor on its own: the default scrubber, extra keys, the user's callback, failing closed."""

from __future__ import annotations

import functools
import gc
import json
import logging
import math
import re
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, NamedTuple

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from opentelemetry.exporter.weave import WeaveSettings
from opentelemetry.exporter.weave._call import WeaveCall
from opentelemetry.exporter.weave._redaction import (
    _NAME_STEMS,
    _SECRET_VALUES,
    DEFAULT_SECRET_KEYS,
    MAX_JSON_TEXT_CHARS,
    REDACTED,
    Redactor,
    _might_hold_secret,
)

from .helpers import make_call

OPENAI_KEY = "sk-proj-abcdefghijklmnopqrstuvwx"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
BEARER = "Bearer abcdefghijklmnopqrstuvwxyz0123"

BASE_ENV = {"WANDB_API_KEY": "k", "WEAVE_PROJECT": "e/p"}


def redactor_for(env: dict[str, str], **options: Any) -> Redactor:
    """The redactor the export pipeline builds from these settings."""
    settings = WeaveSettings.from_env({**BASE_ENV, **env}, **options)
    return Redactor(settings.redact, settings.redact_keys, settings.redaction_callback)


def identity(field: str, value: Any) -> Any:
    return value


# --- secret keys -------------------------------------------------------------------------

# The first example of each pattern is the pattern's own spelling; the others are the ways
# instrumentations spell it.
SECRET_KEY_EXAMPLES: dict[str, tuple[str, ...]] = {
    r"api[-_.]?key": ("api_key", "openai.api_key", "apiKey", "openaiApiKey", "OPENAI_API_KEY"),
    r"x[-_]api[-_]key": ("x-api-key", "http.request.header.x_api_key"),
    r"authorization": ("authorization", "http.request.header.authorization"),
    r"proxy[-_]authorization": ("proxy-authorization",),
    r"(access|api|auth|bearer|id|private|refresh|security|session|csrf|xsrf)[-_.]?token": (
        "access_token",
        "accessToken",
        "api_token",
        "auth-token",
        "bearerToken",
        "id_token",
        "private-token",
        "refresh.token",
        "x-amz-security-token",
        "session_token",
        "csrf-token",
        "xsrftoken",
    ),
    r"client[-_.]?secret": ("client_secret", "oauth.clientSecret", "clientSecret"),
    r"secret([-_.]?key)?": ("secret", "aws.secret_key", "AWS_SECRET_ACCESS_KEY"),
    r"password": ("password", "user.password", "dbPassword", "DB_PASSWORD"),
    r"passwd": ("passwd",),
    r"passphrase": ("passphrase",),
    r"private[-_.]?key": ("private_key", "tls.private-key"),
    r"credentials?": ("credentials", "credential"),
    r"cookie": ("cookie", "http.request.header.cookie"),
    r"set[-_]cookie": ("set-cookie",),
}
SECRET_KEYS = [key for examples in SECRET_KEY_EXAMPLES.values() for key in examples]
# Words only by their case (`openai|Api|Key`): upper-cased, they are one word.
CAMEL_JOINED = {"openaiApiKey", "dbPassword"}

# Share a word with a secret key, but are not one: keys match as whole words only.
NOT_SECRET_KEYS = [
    "valid_tokens",
    "gen_ai.usage.input_tokens",
    "max_tokens",
    "tokenizer",
    "secretary",
    "author",
]


def at_every_depth(key: str, value: Any) -> dict[str, Any]:
    return {key: value, "messages": [{"role": "user", key: value}], "a": {"b": [[{key: value}]]}}


def test_every_default_secret_key_has_examples() -> None:
    assert list(SECRET_KEY_EXAMPLES) == list(DEFAULT_SECRET_KEYS)
    for pattern, (own_spelling, *_) in SECRET_KEY_EXAMPLES.items():
        assert re.fullmatch(pattern, own_spelling), pattern


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_secret_keys_are_redacted_at_any_depth_in_any_case(key: str) -> None:
    for spelling in (key,) if key in CAMEL_JOINED else (key, key.upper()):
        call = make_call(
            inputs=at_every_depth(spelling, "plain"),
            output=at_every_depth(spelling, "plain"),
            attributes={
                **at_every_depth(spelling, "plain"),
                "otel": {"events": [{"attributes": at_every_depth(spelling, "plain")}]},
            },
        )
        scrubbed = Redactor().apply(call)
        assert scrubbed.start.inputs == at_every_depth(spelling, REDACTED)
        assert scrubbed.end.output == at_every_depth(spelling, REDACTED)
        assert scrubbed.start.attributes == {
            **at_every_depth(spelling, REDACTED),
            "otel": {"events": [{"attributes": at_every_depth(spelling, REDACTED)}]},
        }


@pytest.mark.parametrize("key", NOT_SECRET_KEYS)
def test_keys_that_only_share_a_word_are_kept(key: str) -> None:
    call = make_call(inputs=at_every_depth(key, 5), attributes=at_every_depth(key, "plain"))
    scrubbed = Redactor().apply(call)
    assert scrubbed.start.inputs == at_every_depth(key, 5)
    assert scrubbed.start.attributes == at_every_depth(key, "plain")


def test_any_scalar_under_a_secret_key_is_redacted() -> None:
    value = {"password": 1234, "api_key": None, "cookie": True, "secret": 1.5}
    assert Redactor().scrub(value) == dict.fromkeys(value, REDACTED)


def test_a_secret_key_holding_an_object_is_scrubbed_inside() -> None:
    value = {"credentials": {"user": "bob", "password": "hunter2", "note": f"key {OPENAI_KEY}"}}
    assert Redactor().scrub(value) == {
        "credentials": {"user": "bob", "password": REDACTED, "note": f"key {REDACTED}"}
    }


@pytest.mark.parametrize("sequence", [list, tuple])
def test_a_secret_key_holding_a_sequence_has_every_item_redacted(sequence: type) -> None:
    # How OTel records a captured header: a sequence of strings, kept a list of the same length.
    value = {
        "http.request.header.x_api_key": sequence(["plain-key"]),
        "http.request.header.cookie": sequence(["theme=dark", "session=abc"]),
        "credentials": sequence([{"user": "bob", "password": "hunter2"}, 42, ["nested"]]),
        "authorization": sequence([]),
    }
    assert Redactor().scrub(value) == {
        "http.request.header.x_api_key": [REDACTED],
        "http.request.header.cookie": [REDACTED, REDACTED],
        "credentials": [{"user": "bob", "password": REDACTED}, REDACTED, [REDACTED]],
        "authorization": sequence([]),
    }


# --- secret values -----------------------------------------------------------------------

SECRET_VALUES = {
    "bearer": BEARER,
    "bearer-lower-case": "bearer abcdefghijklmnopqrstuvwxyz0123",
    "openai": OPENAI_KEY,
    "anthropic": "sk-ant-api03-abcdefghijklmnopqrstuv",
    "aws-access-key-id": "AKIAIOSFODNN7EXAMPLE",
    "google": "AIzaSyDdI0hCZtE6vySjMm-WEfRq3CPzqKqqsHI",
    **{
        f"github-{prefix}": f"{prefix}_{'A1b2' * 9}"
        for prefix in ("ghp", "gho", "ghu", "ghs", "ghr")
    },
    **{
        f"slack-{prefix}": f"{prefix}-1234567890-abcdef"
        for prefix in ("xoxa", "xoxb", "xoxp", "xoxr", "xoxs")
    },
    "jwt": JWT,
    "bearer-mixed-case": "BeArEr abcdefghijklmnopqrstuvwxyz0123",
}
SECRET_TEXTS = [
    *(
        pytest.param(f"before {secret} after", f"before {REDACTED} after", id=name)
        for name, secret in SECRET_VALUES.items()
    ),
    pytest.param(
        "postgresql://bob:s3cret@db.internal:5432/app",
        f"postgresql://{REDACTED}@db.internal:5432/app",
        id="url-credentials",
    ),
    pytest.param(
        "git clone https://0123456789abcdef0123@github.com/o/r.git",
        f"git clone https://{REDACTED}@github.com/o/r.git",
        id="url-token-only-userinfo",
    ),
    *(
        pytest.param(f"GET https://h/p?{query}", f"GET https://h/p?{expected}", id=f"query-{name}")
        for name, query, expected in [
            ("api_key", "api_key=plain1&q=cats", f"api_key={REDACTED}&q=cats"),
            ("token", "q=cats&token=plain2", f"q=cats&token={REDACTED}"),
            ("access_token", "a=1&access_token=plain3#top", f"a=1&access_token={REDACTED}"),
            ("key", "key=plain4", f"key={REDACTED}"),
            ("sas-sig", "sv=2024&sig=plain5%3D&se=1", f"sv=2024&sig={REDACTED}&se=1"),
            ("amz-signature", "X-Amz-Signature=plain6", f"X-Amz-Signature={REDACTED}"),
        ]
    ),
    *(
        pytest.param(text, expected, id=f"env-{name}")
        for name, text, expected in [
            (
                "openai",
                "OPENAI_API_KEY=plain7 python app.py",
                f"OPENAI_API_KEY={REDACTED} python app.py",
            ),
            ("password", "DB_PASSWORD=hunter2\nDB_HOST=db", f"DB_PASSWORD={REDACTED}\nDB_HOST=db"),
            (
                "export",
                "export AWS_SECRET_ACCESS_KEY=plain8; ls",
                f"export AWS_SECRET_ACCESS_KEY={REDACTED}; ls",
            ),
            ("quoted", 'DB_PASSWORD="hunter 2" ok', f'DB_PASSWORD="{REDACTED}" ok'),
        ]
    ),
    *(
        pytest.param(text, expected, id=f"named-{name}")
        for name, text, expected in [
            ("kwarg", "OpenAI(api_key='plain9')", f"OpenAI(api_key='{REDACTED}')"),
            (
                "spaced",
                '  client = C(password = "hunter2")',
                f'  client = C(password = "{REDACTED}")',
            ),
            (
                "repr",
                "bad config {'clientSecret': 'plainA'}",
                f"bad config {{'clientSecret': '{REDACTED}'}}",
            ),
            ("yaml", "db:\n  password: hunter2\n", f"db:\n  password: {REDACTED}\n"),
            ("header", "Authorization: Basic dXNlcjpwYXNz", f"Authorization: {REDACTED}"),
            ("cookie", "Cookie: sid=plainB; theme=dark", f"Cookie: {REDACTED}; theme=dark"),
            (
                "escaped-json",
                'args: {\\"apiKey\\": \\"plainC\\"}',
                f'args: {{\\"apiKey\\": \\"{REDACTED}\\"}}',
            ),
            ("not-json", '{"password": "plainD", ', f'{{"password": "{REDACTED}", '),
            ("json-number", '{"pin_password": 1234, "x"', f'{{"pin_password": "{REDACTED}", "x"'),
        ]
    ),
]


class Location(NamedTuple):
    """Where in a call a string can hide: how to put it there, and how to read it back."""

    put: Callable[[WeaveCall, str], WeaveCall]
    get: Callable[[WeaveCall], Any]


def _otel_with(text: str) -> dict[str, Any]:
    return {"events": [{"name": "exception", "attributes": {"exception.message": text}}]}


LOCATIONS = {
    "inputs": Location(
        lambda call, text: call.replace(inputs={"messages": [{"content": text}]}),
        lambda call: call.start.inputs["messages"][0]["content"],
    ),
    "output": Location(lambda call, text: call.replace(output=text), lambda call: call.end.output),
    "attributes": Location(
        lambda call, text: call.replace(attributes={**call.start.attributes, "note": text}),
        lambda call: call.start.attributes["note"],
    ),
    "otel": Location(
        lambda call, text: call.replace(
            attributes={**call.start.attributes, "otel": _otel_with(text)}
        ),
        lambda call: call.start.attributes["otel"]["events"][0]["attributes"]["exception.message"],
    ),
    "exception": Location(
        lambda call, text: call.replace(exception=text), lambda call: call.end.exception
    ),
}


@pytest.mark.parametrize(("text", "expected"), SECRET_TEXTS)
def test_secret_values_are_redacted_inside_strings_everywhere(text: str, expected: str) -> None:
    call = make_call()
    for location in LOCATIONS.values():
        call = location.put(call, text)
    scrubbed = Redactor().apply(call)
    for name, location in LOCATIONS.items():
        assert location.get(scrubbed) == expected, name


@pytest.mark.parametrize(
    "text",
    [
        "https://weave.example.com/path?q=1",
        "ask-me-anything-about-tokens-please",
        "Bearer short",
        "sk-short",
        "AKIA-is-not-a-key",
        "eyJhbGciOiJIUzI1NiJ9 alone",
        "xoxb-short",
        "ghp_short",
    ],
)
def test_strings_that_only_look_like_secrets_are_kept(text: str) -> None:
    assert Redactor().scrub(text) == text


def test_values_that_are_not_strings_are_kept() -> None:
    value = {"count": 12, "ratio": 1.5, "flag": True, "nothing": None}
    assert Redactor().scrub(value) == value


# --- settings: switching off, extra keys -------------------------------------------------


def test_extra_keys_are_secret_keys_matched_the_same_way() -> None:
    call = make_call(
        attributes={"gen_ai.request.model": "gpt-4o", "Note": "n", "notes": "kept", "x": "y"}
    )
    redactor = redactor_for({"WEAVE_OTEL_REDACT_KEYS": r"gen_ai\.request\.model, note"})
    assert redactor.apply(call).start.attributes == {
        "gen_ai.request.model": REDACTED,
        "Note": REDACTED,
        "notes": "kept",
        "x": "y",
    }


def test_switched_off_with_no_callback_the_call_is_passed_on() -> None:
    call = make_call(attributes={"openai.api_key": OPENAI_KEY, "note": "n"})
    redactor = redactor_for({"WEAVE_OTEL_REDACT": "off", "WEAVE_OTEL_REDACT_KEYS": "note"})
    assert redactor.apply(call) is call


def test_extra_keys_apply_only_while_the_scrubber_is_on() -> None:
    attributes = {"openai.api_key": OPENAI_KEY, "note": "n"}
    call = make_call(attributes=attributes, output=f"key {OPENAI_KEY}")
    redactor = redactor_for(
        {"WEAVE_OTEL_REDACT": "off"}, redact_keys=["note"], redaction_callback=identity
    )
    redacted = redactor.apply(call)
    assert redacted.start.attributes == attributes
    assert redacted.end.output == f"key {OPENAI_KEY}"


def test_bad_redaction_settings_name_the_variable() -> None:
    with pytest.raises(ValueError, match="WEAVE_OTEL_REDACT_KEYS"):
        WeaveSettings.from_env({**BASE_ENV, "WEAVE_OTEL_REDACT_KEYS": "(unclosed"})
    with pytest.raises(ValueError, match="WEAVE_OTEL_REDACT"):
        WeaveSettings.from_env({**BASE_ENV, "WEAVE_OTEL_REDACT": "sometimes"})


# --- the user's callback -----------------------------------------------------------------


def leaky_call() -> WeaveCall:
    """A failed LLM call with secrets in every field, and usage to count."""
    return make_call(
        inputs={"prompt": f"call the API with {BEARER}", "api_key": "plain"},
        output=f"token {JWT}",
        attributes={
            "openai.api_key": OPENAI_KEY,
            "note": f"the key is {OPENAI_KEY}",
            "otel": {"status": {"code": "ERROR"}, **_otel_with(f"auth failed for {OPENAI_KEY}")},
        },
    ).replace(
        exception=json.dumps({"type": "ValueError", "message": f"auth failed for {OPENAI_KEY}"}),
        summary={"usage": {"gpt-4o": {"input_tokens": 12, "requests": 1}}},
    )


def test_callback_sees_each_field_after_the_scrubber_in_order() -> None:
    seen: list[tuple[str, Any]] = []

    def record(field: str, value: Any) -> Any:
        seen.append((field, value))
        return value

    call = make_call(
        inputs={"api_key": "k"}, output=f"key {OPENAI_KEY}", attributes={"password": "p"}
    )
    Redactor(callback=record).apply(call)
    assert seen == [
        ("inputs", {"api_key": REDACTED}),
        ("output", f"key {REDACTED}"),
        ("attributes", {"password": REDACTED}),
    ]


def test_what_the_callback_returns_replaces_the_field() -> None:
    def drop_note_and_output(field: str, value: Any) -> Any:
        if field == "attributes":
            return {key: item for key, item in value.items() if key != "note"}
        return "removed" if field == "output" else value

    call = make_call(attributes={"openai.api_key": OPENAI_KEY, "note": "n"}, output={"a": 1})
    redacted = Redactor(callback=drop_note_and_output).apply(call)
    assert redacted.start.attributes == {"openai.api_key": REDACTED}
    assert redacted.end.output == "removed"


@pytest.mark.parametrize("returned", ["text", ["a", "b"], None, 3])
def test_callback_results_that_are_not_objects_are_wrapped(returned: Any) -> None:
    redacted = Redactor(callback=lambda field, value: returned).apply(make_call())
    assert redacted.start.inputs == {"input": returned}
    assert redacted.start.attributes == {"attributes": returned}
    assert redacted.end.output == returned  # an output may be anything


@pytest.mark.parametrize("failing_field", ["inputs", "output", "attributes"])
def test_a_failing_callback_fails_closed(failing_field: str) -> None:
    def broken(field: str, value: Any) -> Any:
        if field == failing_field:
            raise KeyError("oops")
        return "leaked by the callback"

    call = leaky_call()
    redacted = Redactor(callback=broken).apply(call)
    marker = "[removed: the redaction callback raised KeyError]"
    assert redacted.start.inputs == {"redaction_failed": marker}
    assert redacted.end.output == marker
    # The OTel context stays, as the scrubber left it; nothing else of the attributes does.
    assert redacted.start.attributes == {
        "otel": {"status": {"code": "ERROR"}, **_otel_with(f"auth failed for {REDACTED}")},
        "redaction_failed": marker,
    }
    assert redacted.end.exception is not None
    assert json.loads(redacted.end.exception)["message"] == f"auth failed for {REDACTED}"
    assert redacted.end.summary == call.end.summary  # the call still counts
    sent = redacted.start_json + redacted.end_json
    assert OPENAI_KEY.encode() not in sent
    assert b"leaked by the callback" not in sent


def test_callback_failures_are_logged_once_per_exception_type(
    caplog: pytest.LogCaptureFixture,
) -> None:
    errors: list[type[Exception]] = [KeyError, KeyError, ValueError, KeyError, ValueError]

    def broken(field: str, value: Any) -> Any:
        raise errors.pop(0)("oops")

    redactor = Redactor(callback=broken)
    with caplog.at_level(logging.ERROR, logger="opentelemetry.exporter.weave"):
        for index in range(5):
            redactor.apply(make_call(f"{index:016x}"))
    failures = [r for r in caplog.records if "redaction callback raised" in r.getMessage()]
    assert [record.exc_info[0] for record in failures if record.exc_info] == [KeyError, ValueError]
    assert "0000000000000000" in failures[0].getMessage()
    assert "0000000000000002" in failures[1].getMessage()


def edit_in_place(field: str, value: Any) -> Any:
    if isinstance(value, dict):
        value.clear()
    return value


def raise_type_error(field: str, value: Any) -> Any:
    raise TypeError("bug")


@pytest.mark.parametrize(
    "redactor",
    [
        pytest.param(Redactor, id="scrubber"),
        pytest.param(lambda: Redactor(callback=edit_in_place), id="editing-callback"),
        pytest.param(lambda: Redactor(callback=raise_type_error), id="failing-callback"),
        pytest.param(
            lambda: Redactor(enabled=False, callback=edit_in_place),
            id="editing-callback-without-scrubber",
        ),
    ],
)
def test_the_original_call_is_not_changed(redactor: Callable[[], Redactor]) -> None:
    call = leaky_call()
    before = (asdict(call.start), asdict(call.end))
    redacted = redactor().apply(call)
    assert redacted is not call
    assert (asdict(call.start), asdict(call.end)) == before


# --- JSON text, false positives, the pre-filter ------------------------------------------


def tool_call_message(arguments: str) -> dict[str, Any]:
    return {
        "role": "assistant",
        "tool_calls": [{"id": "c1", "function": {"name": "fetch", "arguments": arguments}}],
    }


def test_json_text_is_scrubbed_as_what_it_encodes_at_any_depth() -> None:
    arguments = json.dumps({"url": "https://h/p", "headers": {"x-api-key": "plain1"}})
    attribute = json.dumps({"openaiApiKey": "plain2", "user": {"dbPassword": 7}, "n": 1})
    content = json.dumps([{"type": "text", "text": "ok", "accessToken": "plain3"}])
    # JSON text in JSON text: a tool call's arguments in a JSON message list.
    nested = json.dumps([tool_call_message(arguments)])
    scrubbed = Redactor().scrub(
        {
            "messages": [tool_call_message(arguments), {"role": "user", "content": content}],
            "llm.config": attribute,
            "gen_ai.output.messages": nested,
        }
    )
    decoded_arguments = {"url": "https://h/p", "headers": {"x-api-key": REDACTED}}
    function = scrubbed["messages"][0]["tool_calls"][0]["function"]
    assert json.loads(function["arguments"]) == decoded_arguments
    assert json.loads(scrubbed["messages"][1]["content"]) == [
        {"type": "text", "text": "ok", "accessToken": REDACTED}
    ]
    assert json.loads(scrubbed["llm.config"]) == {
        "openaiApiKey": REDACTED,
        "user": {"dbPassword": REDACTED},
        "n": 1,
    }
    (message,) = json.loads(scrubbed["gen_ai.output.messages"])
    assert json.loads(message["tool_calls"][0]["function"]["arguments"]) == decoded_arguments


def test_the_exception_text_and_its_stack_trace_are_scrubbed() -> None:
    traceback = (
        'Traceback (most recent call last):\n  File "app.py", line 3, in <module>\n'
        "    client = OpenAI(api_key=\"plain1\")\nValueError: bad {'password': 'plain2'}\n"
    )
    exception = json.dumps(
        {"type": "ValueError", "message": "login with DB_PASSWORD=plain3", "traceback": traceback}
    )
    scrubbed = Redactor().apply(make_call().replace(exception=exception))
    assert scrubbed.end.exception is not None
    assert json.loads(scrubbed.end.exception) == {
        "type": "ValueError",
        "message": f"login with DB_PASSWORD={REDACTED}",
        "traceback": traceback.replace("plain1", REDACTED).replace("plain2", REDACTED),
    }


def compact_json(value: Any) -> str:
    """JSON text the scrubber would not re-encode the same way (it adds spaces)."""
    return json.dumps(value, separators=(",", ":"))


@pytest.mark.parametrize(
    "text",
    [
        compact_json({"filler": "x" * MAX_JSON_TEXT_CHARS, "api_key": "plain1"}),
        compact_json(
            {"api_key": "plain1", "deep": functools.reduce(lambda a, _: [a], range(64), [])}
        ),
        '{"api_key":"plain1","cut":"…[truncated 12 chars]',
    ],
    ids=["too-big", "too-deep", "not-json"],
)
def test_json_text_not_decoded_is_scrubbed_as_text(text: str) -> None:
    scrubbed = Redactor().scrub({"payload": text})["payload"]
    assert scrubbed == text.replace('"api_key":"plain1"', f'"api_key":"{REDACTED}"')


def test_json_text_within_the_limits_is_decoded() -> None:
    deep = functools.reduce(lambda a, _: [a], range(60), [])
    text = compact_json({"filler": "x" * 1000, "api_key": "plain1", "deep": deep})
    scrubbed = Redactor().scrub({"payload": text})["payload"]
    assert scrubbed == json.dumps({"filler": "x" * 1000, "api_key": REDACTED, "deep": deep})


ORDINARY_LLM_TEXTS = [
    "Your token budget is almost spent: 12 tokens left.",
    "Click the password reset link we sent; the passcode expires in 5 minutes.",
    "He was the Bearer of bad news: the key insight was wrong. Author: Ann, signed: yes",
    "Set max_tokens=256 and temperature: 0.2 for the tokenizer.",
    "keyboard: qwerty; monkey=business; passage: 3; design=flat; cookies: baked",
    json.dumps({"max_tokens": 256, "usage": {"input_tokens": 12, "output_tokens": 3}}),
    json.dumps({"tokenizer": "cl100k", "logprobs": [{"token": "Hi", "logprob": -0.1}]}),
    json.dumps([{"role": "user", "content": "what is a session key? and a passkey?"}]),
    "https://docs.example.com/auth/tokens?page=2&sort_by=name",
]


def test_ordinary_llm_text_comes_through_unchanged_and_uncopied() -> None:
    value = {"messages": [{"role": "user", "content": text} for text in ORDINARY_LLM_TEXTS]}
    call = make_call(inputs=value, output=ORDINARY_LLM_TEXTS, attributes={"texts": value})
    assert Redactor().scrub(value) is value
    assert Redactor().apply(call) is call


# Text made of the patterns' own pieces, in any case, so that matches are frequent.
_PIECES = st.sampled_from(
    [
        "bearer",
        "Bearer",
        "BeArEr",
        " ",
        "\t",
        "sk-",
        "AKIA",
        "AIza",
        "eyJ",
        ".",
        "gh",
        "p_",
        "o_",
        "xox",
        "b-",
        "://",
        ":",
        "@",
        "/",
        "a",
        "Z",
        "0",
        "_",
        "-",
        "A1b2C3d4E5f6G7h8",
    ]
)


@settings(max_examples=300)
@given(st.lists(_PIECES, max_size=40).map("".join) | st.text(max_size=80))
@example("BeArEr abcdefghijklmnopqrstuvwxyz0123")
def test_the_pre_filter_passes_whatever_the_value_patterns_match(text: str) -> None:
    if _SECRET_VALUES.search(text):  # what the pre-filter must never miss
        assert _might_hold_secret(text.lower())  # it is given the text lower-cased


def test_every_default_secret_key_holds_a_name_stem() -> None:
    # Text is searched for names by these stems: a secret key without one would be missed.
    for key in SECRET_KEYS:
        assert any(stem in key.lower() for stem in _NAME_STEMS), key


def test_extra_keys_name_values_in_text_too() -> None:
    redactor = redactor_for({"WEAVE_OTEL_REDACT_KEYS": r"customer[-_.]?email"})
    text = 'CUSTOMER_EMAIL=ann@example.com and {"customerEmail": "bob@example.com"}'
    assert redactor.scrub(text) == (
        f'CUSTOMER_EMAIL={REDACTED} and {{"customerEmail": "{REDACTED}"}}'
    )


# --- the scrubber's memory ---------------------------------------------------------------


def retained_bytes(work: Callable[[], object]) -> int:
    """Bytes still allocated after ``work`` returns (what it kept alive)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        work()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("count", "chars"), [(100, 100_000), (20_000, 200)], ids=["huge-keys", "many-keys"]
)
def test_the_key_cache_is_bounded_in_bytes(count: int, chars: int) -> None:
    redactor = Redactor()

    def scrub_distinct_keys() -> None:
        for index in range(count):
            redactor.scrub({f"{index:08d}".ljust(chars, "k"): 1})

    # 10 MB of huge keys, or 4 MB of short ones, went through: a few MiB at most stay.
    assert retained_bytes(scrub_distinct_keys) < 3 * 2**20


# --- what the callback returns -----------------------------------------------------------


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque>"


def _self_referencing() -> list[Any]:
    loop: list[Any] = ["start"]
    loop.append(loop)
    return loop


CALLBACK_RESULTS = {
    "set-and-tuple": ({"tags": {"a"}, "pair": (1, 2)}, {"tags": ["a"], "pair": [1, 2]}),
    "custom-class": ({"obj": Opaque()}, {"obj": "<Opaque>"}),
    "bytes": ({"raw": b"\xffok"}, {"raw": "\\xffok"}),
    "nan": ({"score": math.nan, "big": math.inf}, {"score": "NaN", "big": "Infinity"}),
    "non-str-keys": ({1: "one", (2, 3): "pair"}, {"1": "one", "(2, 3)": "pair"}),
}


@pytest.mark.parametrize(("returned", "sent"), CALLBACK_RESULTS.values(), ids=CALLBACK_RESULTS)
def test_what_the_callback_returns_is_made_json_safe(returned: Any, sent: Any) -> None:
    redacted = Redactor(callback=lambda field, value: returned).apply(make_call())
    assert redacted.start.inputs == sent
    assert redacted.end.output == sent
    assert redacted.start.attributes == sent
    assert json.loads(redacted.start_json)["inputs"] == sent
    assert json.loads(redacted.end_json)["output"] == sent


def test_a_self_referencing_callback_result_still_encodes() -> None:
    redacted = Redactor(callback=lambda field, value: _self_referencing()).apply(make_call())
    output = json.loads(redacted.end_json)["output"]
    assert output[0] == "start"
    assert redacted.start.inputs["input"][0] == "start"
