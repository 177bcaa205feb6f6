"""The key's wire forms and the log filter that redacts them: units, no network.

That no form reaches a log over real HTTP (echoing servers, httpx's own records) is
``test_transport.py``'s; through the whole pipeline, ``test_faults.py``'s.
"""

from __future__ import annotations

import base64
import gc
import json
import logging
import threading
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from opentelemetry.exporter.weave._config import WeaveSettings
from opentelemetry.exporter.weave._secrets import (
    ACTIVE,
    MIN_FRAGMENT_CHARS,
    CredentialForms,
    RedactingFilter,
    _ActiveCredentials,
)
from opentelemetry.exporter.weave._transport import HttpAttempt

from .helpers import PROJECT

KEY = 'Zq7"w\\x/+%=kP3mV9tR2yL8'
BASIC = base64.b64encode(f"api:{KEY}".encode()).decode()
FORMS = {
    "raw": KEY,
    "basic-header": f"Basic {BASIC}",
    "bearer-header": f"Bearer {KEY}",
    "base64": base64.b64encode(KEY.encode()).decode(),
    "json-escaped": json.dumps(KEY)[1:-1],
    "repr-escaped": repr(KEY)[1:-1],
    "bytes-repr": repr(KEY.encode())[2:-1],
    "url-encoded": quote(KEY, safe=""),
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_wire_form_is_redacted(form: str) -> None:
    redacted = CredentialForms(KEY).redact(f"echo: {FORMS[form]} (end)")
    assert redacted in {"echo: *** (end)", "echo: Basic *** (end)", "echo: Bearer *** (end)"}


@pytest.mark.parametrize(
    "piece",
    [KEY[:MIN_FRAGMENT_CHARS], KEY[-MIN_FRAGMENT_CHARS:], KEY[5:18], BASIC[:20], BASIC[10:]],
    ids=["head", "tail", "middle", "base64-head", "base64-tail"],
)
def test_a_piece_of_eight_characters_or_more_is_redacted(piece: str) -> None:
    assert CredentialForms(KEY).redact(f"cut: {piece}|") == "cut: ***|"


def test_a_shorter_piece_is_left_alone() -> None:
    # Seven characters of a random key are not enough to matter, and common enough to collide.
    piece = KEY[: MIN_FRAGMENT_CHARS - 1]
    assert CredentialForms(KEY).redact(f"cut: {piece}|") == f"cut: {piece}|"


def test_two_forms_side_by_side_are_both_redacted() -> None:
    text = f"{KEY} and {BASIC}, again {KEY}"
    assert CredentialForms(KEY).redact(text) == "*** and ***, again ***"


@pytest.fixture
def record_of() -> Iterator[logging.Logger]:
    logger = logging.getLogger("tests.secrets.filtered")
    redacting = RedactingFilter()
    logger.addFilter(redacting)
    yield logger
    logger.removeFilter(redacting)


def attempt_with_key(key: str) -> HttpAttempt:
    return HttpAttempt(
        WeaveSettings.from_env({}, api_key=key, project=PROJECT, server_url="http://127.0.0.1:9")
    )


def test_the_filter_redacts_message_args_exception_and_stack(
    record_of: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    attempt = attempt_with_key(KEY)
    try:
        with caplog.at_level(logging.DEBUG, logger=record_of.name):
            record_of.warning("message %s, args %r", KEY, {"auth": f"Basic {BASIC}"})
            try:
                raise ValueError(f"answer held {KEY}")
            except ValueError:
                record_of.exception("failed", stack_info=True)
    finally:
        attempt.close()
    assert KEY[:MIN_FRAGMENT_CHARS] not in caplog.text
    assert BASIC[:MIN_FRAGMENT_CHARS] not in caplog.text
    assert "ValueError: answer held ***" in caplog.text
    assert "Stack (most recent call last)" in caplog.text


def test_a_record_is_cleaned_of_every_live_key(
    record_of: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    # Two processors with different keys: a line about one never shows the other's key. The
    # keys share a tail: redacting one first must not leave the other's head behind.
    first, second = (
        attempt_with_key("1st-key-0123456789"),
        attempt_with_key("2nd-one-key-0123456789"),
    )
    try:
        with caplog.at_level(logging.DEBUG, logger=record_of.name):
            record_of.warning("1st-key-0123456789 / 2nd-one-key-0123456789")
    finally:
        first.close()
        second.close()
    assert caplog.records[-1].getMessage() == "*** / ***"


def test_a_key_is_forgotten_with_its_last_attempt() -> None:
    gc.collect()
    before = len(ACTIVE.current())
    attempts = [attempt_with_key(f"key-number-{index:04}") for index in range(50)]
    shared = [attempt_with_key("one-shared-key-000") for _ in range(3)]
    assert len(ACTIVE.current()) == before + 51
    for attempt in attempts + shared[:2]:
        attempt.close()
    del attempts, attempt
    del shared[:2]
    gc.collect()
    assert len(ACTIVE.current()) == before + 1  # the shared key, still in use by one attempt
    shared[0].close()
    del shared
    gc.collect()
    assert len(ACTIVE.current()) == before


def test_a_record_whose_arguments_do_not_fit_is_redacted_whole(
    record_of: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    attempt = attempt_with_key(KEY)
    try:
        with caplog.at_level(logging.DEBUG, logger=record_of.name):
            record_of.warning("one %s, two %s", KEY)
    finally:
        attempt.close()
    assert caplog.records[-1].getMessage() == "one %s, two %s ('***',)"


def test_a_release_never_waits_for_the_lock_its_own_thread_holds() -> None:
    # A garbage collection can run an attempt's finalizer inside add(), on the thread holding
    # the registry's lock: a release that waited for it would hang that thread for good.
    credentials = _ActiveCredentials()
    credentials.add("released-key-0123")

    def collect_inside_add() -> None:
        with credentials._lock:
            credentials.release("released-key-0123")

    thread = threading.Thread(target=collect_inside_add, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    assert credentials.current() == ()  # applied once the lock was free
