"""Scrubbing secrets out of calls before they leave the process.

The default scrubber replaces the value of any secret-looking key (``api_key``,
``authorization``, ``password``, …) and any secret-looking substring of a value (bearer
tokens, provider API keys, JWTs, credentials in URLs) with ``[REDACTED]``, in inputs, output,
attributes and the exception text. A user callback runs after it. Should the callback raise,
the call is still exported — its timing, status and usage — with its content (inputs, output,
attributes) replaced by a marker: failing closed, so a broken callback cannot leak what it
was meant to remove, nor drop the call silently.
"""

from __future__ import annotations

import copy
import functools
import logging
import re
from collections.abc import Iterable
from typing import Any

from opentelemetry.exporter.weave._call import OTEL_ATTRIBUTES_KEY, WeaveCall
from opentelemetry.exporter.weave._config import RedactionCallback

__all__ = ["DEFAULT_SECRET_KEYS", "REDACTED", "Redactor"]

logger = logging.getLogger(__package__)

REDACTED = "[REDACTED]"


DEFAULT_SECRET_KEYS = (
    r"api[-_.]?key",
    r"x[-_]api[-_]key",
    r"authorization",
    r"proxy[-_]authorization",
    r"(access|auth|bearer|id|refresh|session|csrf|xsrf)[-_.]?token",
    r"client[-_.]?secret",
    r"secret([-_.]?key)?",
    r"password",
    r"passwd",
    r"passphrase",
    r"private[-_.]?key",
    r"credentials?",
    r"cookie",
    r"set[-_]cookie",
)

_SECRET_VALUES = re.compile(
    "|".join(
        (
            r"(?i:bearer)\s+[A-Za-z0-9._~+/=-]{20,}",
            r"\bsk-[A-Za-z0-9_-]{16,}",  # OpenAI, Anthropic (sk-ant-…), many others
            r"\bAKIA[0-9A-Z]{16}\b",  # AWS access key id
            r"\bAIza[0-9A-Za-z_-]{35}",  # Google API key
            r"\bgh[pousr]_[A-Za-z0-9]{30,}",  # GitHub tokens
            r"\bxox[abprs]-[A-Za-z0-9-]{10,}",  # Slack tokens
            r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JWT
            r"(?<=://)[^/\s:@]+:[^/\s@]+(?=@)",  # user:password in a URL
        )
    )
)


def _key_pattern(keys: Iterable[str]) -> re.Pattern[str]:
    # Whole words of a key only: `id_token` is a secret, `valid_tokens` is not.
    words = "|".join(f"(?:{key})" for key in keys)
    return re.compile(rf"(?<![a-z0-9])(?:{words})(?![a-z0-9])", re.IGNORECASE)


class Redactor:
    """The default scrubber (unless switched off), then the user's callback (if any)."""

    def __init__(
        self,
        enabled: bool = True,
        extra_keys: Iterable[str] = (),
        callback: RedactionCallback | None = None,
    ) -> None:
        self._enabled = enabled
        # Keys repeat from call to call (attribute names, `role`, `content`): match each once.
        self._is_secret_key = functools.lru_cache(maxsize=4096)(
            _key_pattern((*DEFAULT_SECRET_KEYS, *extra_keys)).search
        )
        self._callback = callback
        self._callback_failed_types: set[type[BaseException]] = set()

    @property
    def active(self) -> bool:
        return self._enabled or self._callback is not None

    def apply(self, call: WeaveCall) -> WeaveCall:
        if not self.active:
            return call
        inputs: Any = call.start.inputs
        output: Any = call.end.output
        attributes: Any = call.start.attributes
        exception = call.end.exception
        if self._enabled:
            inputs = self.scrub(inputs)
            output = self.scrub(output)
            attributes = self.scrub(attributes)
            exception = None if exception is None else self.scrub(exception)
        if self._callback is not None:
            # Scrubbing shares what it leaves as it was: a callback editing in place must not
            # change the call.
            inputs, output, attributes = copy.deepcopy((inputs, output, attributes))
            before_callback = attributes
            try:
                inputs = self._callback("inputs", inputs)
                output = self._callback("output", output)
                attributes = self._callback("attributes", attributes)
            except Exception as error:
                self._report_callback_failure(call, error)
                marker = f"[removed: the redaction callback raised {type(error).__name__}]"
                inputs, output = {"redaction_failed": marker}, marker
                # The OTel context (events, status, resource) as the default scrubber left it.
                attributes = {
                    OTEL_ATTRIBUTES_KEY: before_callback.get(OTEL_ATTRIBUTES_KEY),
                    "redaction_failed": marker,
                }
        elif (
            inputs is call.start.inputs
            and output is call.end.output
            and attributes is call.start.attributes
            and exception is call.end.exception
        ):
            return call  # nothing secret: most calls
        if not isinstance(inputs, dict):
            inputs = {"input": inputs}
        if not isinstance(attributes, dict):
            attributes = {"attributes": attributes}
        return call.replace(
            inputs=inputs, attributes=attributes, output=output, exception=exception
        )

    def scrub(self, value: Any) -> Any:
        """``value`` with secret-looking keys' values and secret-looking substrings redacted.

        Copy on write: what holds no secret is returned as it is, not copied.
        """
        if isinstance(value, str):
            return _SECRET_VALUES.sub(REDACTED, value) if _might_hold_secret(value) else value
        if isinstance(value, dict):
            scrubbed: dict[Any, Any] | None = None
            for key, item in value.items():
                is_secret = self._is_secret_key(key) and not isinstance(item, (dict, list))
                clean = REDACTED if is_secret else self.scrub(item)
                if clean is not item:
                    if scrubbed is None:
                        scrubbed = dict(value)
                    scrubbed[key] = clean
            return value if scrubbed is None else scrubbed
        if isinstance(value, list):
            items: list[Any] | None = None
            for index, item in enumerate(value):
                clean = self.scrub(item)
                if clean is not item:
                    if items is None:
                        items = list(value)
                    items[index] = clean
            return value if items is None else items
        return value

    def _report_callback_failure(self, call: WeaveCall, error: Exception) -> None:
        if type(error) in self._callback_failed_types:
            return
        self._callback_failed_types.add(type(error))
        logger.error(
            "The Weave redaction callback raised %s on call %r (%s): calls it fails on are "
            "exported without inputs, output or attributes",
            type(error).__name__,
            call.start.op_name,
            call.start.id,
            exc_info=error,
        )


def _might_hold_secret(text: str) -> bool:
    # Every value pattern holds one of these; plain substring tests clear most strings at a
    # fraction of the cost of running the patterns (or one alternation of these markers).
    return (
        "://" in text
        or "sk-" in text
        or "eyJ" in text
        or "earer" in text
        or "EARER" in text
        or "AKIA" in text
        or "AIza" in text
        or "xox" in text
        or "ghp_" in text
        or "gho_" in text
        or "ghu_" in text
        or "ghs_" in text
        or "ghr_" in text
    )
