"""Every form a credential takes on the wire, and a logging filter that redacts them all.

A server or proxy may echo what it received (the key, the ``Authorization`` value, its base64)
in a status line, a body or a header, escaped or cut short; an exception text may hold it too.
Each live :class:`~opentelemetry.exporter.weave._transport.HttpAttempt` registers its key here
while it exists. The filter then redacts every registered key, in each of its forms and in any
fragment of at least :data:`MIN_FRAGMENT_CHARS` characters of a form, from the message, args,
exception and stack text of each record of this package's logger, and of the httpx and httpcore
records emitted on a thread while it makes an export attempt. A record of one processor is
thereby cleaned of every other processor's key as well.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import urllib.parse
from collections import Counter, deque
from collections.abc import Callable, Sequence

__all__ = [
    "ACTIVE",
    "MIN_FRAGMENT_CHARS",
    "REDACTED",
    "CredentialForms",
    "RedactingFilter",
    "install_log_redaction",
]

REDACTED = "***"
MIN_FRAGMENT_CHARS = 8
"""A fragment this long of a key (or of its base64) is redacted wherever it appears: eight
characters are 32 bits or more of a random key, too many to leave in a log for a guess at the
rest, and few enough that a key cut at any point (a 500-character reason) is still caught."""

# The loggers of the HTTP stack under the transport: they log status lines and headers.
_HTTP_LOGGERS = (
    "httpx",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)


class CredentialForms:
    """One key's wire forms, and the fragments of them that give it away."""

    def __init__(self, key: str) -> None:
        basic = base64.b64encode(f"api:{key}".encode()).decode("ascii")
        raw = {
            key,
            basic,
            base64.b64encode(key.encode()).decode("ascii"),
            json.dumps(key)[1:-1],
            repr(key)[1:-1],
            repr(key.encode())[2:-1],
            urllib.parse.quote(key, safe=""),
            urllib.parse.quote_plus(key),
            urllib.parse.quote(basic, safe=""),
        }
        self.forms = frozenset(form for form in raw if form)
        self.grams = frozenset(
            form[start : start + MIN_FRAGMENT_CHARS]
            for form in self.forms
            if len(form) >= MIN_FRAGMENT_CHARS
            for start in range(len(form) - MIN_FRAGMENT_CHARS + 1)
        )
        self.short = sorted(
            (form for form in self.forms if len(form) < MIN_FRAGMENT_CHARS), key=len, reverse=True
        )

    def redact(self, text: str) -> str:
        return redact_all(text, [self])


def redact_all(text: str, credentials: Sequence[CredentialForms]) -> str:
    """``text`` with every fragment of every credential's forms replaced."""
    for credential in credentials:
        for form in credential.short:  # too short for fragments: only the whole form
            text = text.replace(form, REDACTED)
    grams = [credential.grams for credential in credentials if credential.grams]
    if not grams or len(text) < MIN_FRAGMENT_CHARS:
        return text
    # A run: consecutive or overlapping windows that are each a fragment of a form. All the
    # keys' fragments at once: one key's redaction must not cut another key's run short.
    runs: list[list[int]] = []
    for start in range(len(text) - MIN_FRAGMENT_CHARS + 1):
        window = text[start : start + MIN_FRAGMENT_CHARS]
        if any(window in fragments for fragments in grams):
            if runs and start <= runs[-1][1]:
                runs[-1][1] = start + MIN_FRAGMENT_CHARS
            else:
                runs.append([start, start + MIN_FRAGMENT_CHARS])
    if not runs:
        return text
    pieces, last = [], 0
    for run_start, run_end in runs:
        pieces += [text[last:run_start], REDACTED]
        last = run_end
    pieces.append(text[last:])
    return "".join(pieces)


class _ActiveCredentials:
    """The keys of the live attempts, counted: as many entries as distinct keys in use.

    Readers (the filter, on any thread, perhaps in a signal handler) take no lock, and nor does
    a release: it runs in a garbage-collection finalizer, which may interrupt any thread at any
    allocation, even one inside :meth:`add`. A release is queued, and applied by whoever next
    gets the lock without waiting for it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._forms: dict[str, CredentialForms] = {}
        self._released: deque[str] = deque()
        self._current: tuple[CredentialForms, ...] = ()

    def add(self, key: str) -> None:
        forms = CredentialForms(key)  # outside the lock: listing the fragments takes a while
        with self._lock:
            self._counts[key] += 1
            self._forms.setdefault(key, forms)
            self._apply_releases()

    def release(self, key: str) -> None:
        self._released.append(key)
        self._try_to_apply_releases()

    def current(self) -> tuple[CredentialForms, ...]:
        if self._released:
            self._try_to_apply_releases()
        return self._current

    def _try_to_apply_releases(self) -> None:
        if self._lock.acquire(blocking=False):
            try:
                self._apply_releases()
            finally:
                self._lock.release()

    def _apply_releases(self) -> None:
        while self._released:
            key = self._released.popleft()
            self._counts[key] -= 1
            if self._counts[key] <= 0:
                del self._counts[key]
                del self._forms[key]
        self._current = tuple(self._forms.values())


ACTIVE = _ActiveCredentials()


class RedactingFilter(logging.Filter):
    """Rewrites a record whose text holds an active credential; never drops a record."""

    def __init__(self, applies: Callable[[], bool] = lambda: True) -> None:
        super().__init__()
        self._applies = applies

    def filter(self, record: logging.LogRecord) -> bool:
        credentials = ACTIVE.current()
        if not credentials or not self._applies():
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # arguments that do not fit: a handler would print them
            message = f"{record.msg!s} {record.args!r}"
        redacted = redact_all(message, credentials)
        if redacted != message:
            record.msg, record.args = redacted, None
        exc_text = record.exc_text
        if record.exc_info and not exc_text:
            exc_text = logging.Formatter().formatException(record.exc_info)
        if exc_text and (redacted := redact_all(exc_text, credentials)) != exc_text:
            # Formatted here, redacted: a handler given the exception would print the key.
            record.exc_text, record.exc_info = redacted, None
        if record.stack_info:
            record.stack_info = redact_all(record.stack_info, credentials)
        return True


def install_log_redaction(package_logger: str, in_export: Callable[[], bool]) -> None:
    """Put the filter on this package's logger, and on the HTTP stack's for ``in_export``."""
    logging.getLogger(package_logger).addFilter(RedactingFilter())
    http_filter = RedactingFilter(in_export)
    for name in _HTTP_LOGGERS:
        logging.getLogger(name).addFilter(http_filter)
