"""Scrubbing secrets out of calls before they leave the process.

The default scrubber replaces the value of any secret-looking key (``api_key``, ``apiKey``,
``authorization``, ``password``, …, whatever the value's type) and any secret-looking substring
of a value (bearer tokens, provider API keys, JWTs, credentials in URLs, ``name=value`` or
``"name": "value"`` text naming a secret) with ``[REDACTED]``, in inputs, output, attributes
and the exception text. JSON text is scrubbed as what it encodes. A user callback runs after
it; what it returns is made JSON-safe. Should the callback raise, the call is still exported —
its timing, status and usage — with its content (inputs, output, attributes) replaced by a
marker: failing closed, so a broken callback cannot leak what it was meant to remove, nor drop
the call silently.
"""

from __future__ import annotations

import copy
import heapq
import json
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from operator import is_
from typing import Any

from opentelemetry.exporter.weave._call import OTEL_ATTRIBUTES_KEY, WeaveCall, is_shared
from opentelemetry.exporter.weave._config import RedactionCallback
from opentelemetry.exporter.weave._sanitize import clean_str, json_safe

__all__ = ["DEFAULT_SECRET_KEYS", "REDACTED", "Redactor"]

logger = logging.getLogger(__package__)

REDACTED = "[REDACTED]"


DEFAULT_SECRET_KEYS = (
    r"api[-_.]?key",
    r"x[-_]api[-_]key",
    r"authorization",
    r"proxy[-_]authorization",
    r"(access|api|auth|bearer|id|private|refresh|security|session|csrf|xsrf)[-_.]?token",
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

# Every default secret key holds one of these, lower-cased: a text none is in names no secret.
# `sig` is for query strings (`&sig=`, `X-Amz-Signature=`).
_NAME_STEMS = ("key", "token", "secret", "pass", "auth", "credential", "cookie", "sig")

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
            r"(?<=://)[A-Za-z0-9._~%+-]{16,}(?=@)",  # a token as a URL's whole userinfo
        )
    )
)

# What follows a secret's name in text: `=`, `:` (with the name's closing quote, escaped or
# not), then the value, quoted or bare; an HTTP auth scheme is kept with its credentials.
_AFTER_NAME = re.compile(
    r"""(?P<close>\\*["'])?[ \t]*(?:[:=]=?)[ \t]*(?:
        (?P<dq>\\*")(?P<dq_value>[^"\\\r\n]*)
      | (?P<sq>\\*')(?P<sq_value>[^'\\\r\n]*)
      | (?P<bare>(?![{\[])
            (?:(?i:basic|bearer|digest|negotiate|token)[ \t]+)?[^\s"'\\&,;<>]+)
    )""",
    re.VERBOSE,
)
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
_MAX_NAME_CHARS = 128
# Secret only as a URL query parameter (`?key=…`, `&token=…`, `&sig=…`).
_QUERY_SECRET_NAMES = re.compile(r"(?:x-amz-|x-goog-)?(?:key|token|sig|signature)", re.I)

# `openaiApiKey` is `openai_Api_Key`, `XApiKey` is `X_Api_Key`: camelCase humps are words.
_CAMEL_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")

# JSON text larger or deeper than this is scrubbed as text (by the value and name patterns),
# not decoded: decoding is the costly part, and the nesting bounds the scrubber's recursion.
MAX_JSON_TEXT_CHARS = 100_000
_MAX_NESTING = 64

# Keys repeat from call to call (attribute names, `role`, `content`): classify each once, but
# only short ones, and so many: the cache stays under a few MiB whatever the keys. A longer
# text is not looked up: its hash would cost as much as the scan that clears it.
_CACHED_KEY_CHARS = 256
_CACHED_KEYS = 4096
_CACHED_TEXT_CHARS = 64
_CACHED_TEXTS = 4096
# A list's objects (chat messages) scrubbed and left as they were are remembered by identity,
# kept alive until the batch they came in is mapped (forget_items) or there are so many: few,
# as objects kept alive count towards the garbage collector's next run (4,096 made it run five
# times as often on calls of no conversation); a trace's next call comes soon after its last.
_CACHED_ITEMS = 256
# A list of objects this long is remembered whole as well (a conversation's messages): the
# next call's holds the same objects and more, and is looked at from where this one ended,
# at an identity test per object; a shorter one costs more to remember than it saves.
_LONG_LIST = 8
# The shared dicts (OTel contexts) remembered as clear: a process has a few scopes, resources
# and kinds of span. Looked for in the fields of a call only (inputs, output, attributes), where
# the mapping puts them.
_CACHED_SHARED = 256
# What a container's items are, when the scrubber has nothing to look at in them.
_UNSCRUBBED_TYPES = frozenset({int, float, bool, type(None)})


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
        extra_keys = tuple(extra_keys)
        self._secret_key = _key_pattern((*DEFAULT_SECRET_KEYS, *extra_keys))
        # Extra keys hold no known stem: their own patterns find them in text.
        self._extra_key_words = (
            re.compile("|".join(f"(?:{key})" for key in extra_keys), re.IGNORECASE)
            if extra_keys
            else None
        )
        self._key_cache: dict[str, bool] = {}
        self._clear_keys: set[str] = set()
        """The keys of ``_key_cache`` that name no secret."""
        self._clear_texts: set[str] = set()
        self._clear_items: dict[int, tuple[dict[Any, Any], int]] = {}
        """The objects in lists (chat messages) scrubbed and left as they were, by ``id``, with
        how deep they lay (which tells how deep JSON text in them is decoded). Calls are not
        changed in place, and a conversation's next call holds the same message objects
        (ConversationMemo): each is scrubbed once. Kept alive here, so that no other object
        takes its ``id`` meanwhile."""
        self._clear_lists: dict[int, tuple[Sequence[Any], int]] = {}
        """The long lists of objects scrubbed and left as they were (``_LONG_LIST``), by the
        ``id`` of their first object, with how deep they lay; kept and forgotten as
        ``_clear_items``."""
        self._clear_shared: dict[int, dict[Any, Any]] = {}
        """The shared dicts (``is_shared``: never changed) in a call's fields scrubbed and left
        as they were, by ``id``: kept across batches, as the mapping keeps them."""
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
            inputs = self._scrub(inputs, 0)
            output = self._scrub(output, 0)
            attributes = self._scrub(attributes, 0)
            exception = None if exception is None else self._scrub(exception, 0)
        if self._callback is not None:
            # Scrubbing shares what it leaves as it was: a callback editing in place must not
            # change the call.
            inputs, output, attributes = copy.deepcopy((inputs, output, attributes))
            before_callback = attributes
            try:
                # Whatever the callback returns (a set, bytes, NaN, a cycle) must encode.
                inputs = json_safe(self._callback("inputs", inputs))
                output = json_safe(self._callback("output", output))
                attributes = json_safe(self._callback("attributes", attributes))
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

    def forget_items(self) -> None:
        """Let the objects remembered as scrubbed go: the mapping of a batch is done."""
        self._clear_items.clear()
        self._clear_lists.clear()

    def scrub(self, value: Any) -> Any:
        """``value`` with secret-looking keys' values and secret-looking substrings redacted.

        Copy on write: what holds no secret is returned as it is, not copied.
        """
        return self._scrub(value, 0)

    def _scrub(self, value: Any, depth: int) -> Any:
        # Containers first: most values walked into are.
        if isinstance(value, dict):
            scrubbed: dict[Any, Any] | None = None
            clear_keys, clear_texts = self._clear_keys, self._clear_texts
            for key, item in value.items():
                if key in clear_keys:
                    # Most items: a key known not secret and a value plainly left as it is,
                    # told here without a call (_passes' steps); a container is walked into.
                    kind = type(item)
                    if kind is str:
                        if (
                            len(item) <= _CACHED_TEXT_CHARS and item in clear_texts
                        ) or self._newly_clear(item):
                            continue
                    elif kind in _UNSCRUBBED_TYPES:
                        continue
                    clean = (
                        self._scrub_top_dict(item)
                        if depth == 0 and kind is dict
                        else self._scrub(item, depth + 1)
                    )
                elif self._is_secret_key(key):
                    clean = self._redact_all(item, depth)
                elif self._passes(item):
                    continue
                else:
                    clean = self._scrub(item, depth + 1)
                if clean is not item:
                    if scrubbed is None:
                        scrubbed = dict(value)
                    scrubbed[key] = clean
            return value if scrubbed is None else scrubbed
        if isinstance(value, (list, tuple)):
            items: list[Any] | None = None
            clear_texts, clear_items = self._clear_texts, self._clear_items
            long = len(value) >= _LONG_LIST and type(value) is list and type(value[0]) is dict
            kept = self._clear_start(value, depth) if long else 0
            for index, item in enumerate(value[kept:], kept) if kept else enumerate(value):
                kind = type(item)  # as in a dict's items
                if kind is str:
                    if (
                        len(item) <= _CACHED_TEXT_CHARS and item in clear_texts
                    ) or self._newly_clear(item):
                        continue
                elif kind in _UNSCRUBBED_TYPES:
                    continue
                elif kind is dict:
                    known = clear_items.get(id(item))
                    if known is not None and known[0] is item and known[1] == depth:
                        continue
                clean = self._scrub(item, depth + 1)
                if clean is item and kind is dict:
                    if len(clear_items) >= _CACHED_ITEMS:
                        clear_items.clear()
                    clear_items[id(item)] = (item, depth)
                elif clean is not item:
                    if items is None:
                        items = list(value)
                    items[index] = clean
            if long and items is None:
                self._remember_clear_list(value, depth)
            return value if items is None else items
        if isinstance(value, str):
            return self._scrub_str(value, depth)
        return value

    def _scrub_str(self, value: str, depth: int) -> str:
        if _plainly_clear(value):
            return value  # most strings, at a few single-character scans
        lowered = value.lower()
        holds_value = _might_hold_secret(lowered)
        # A secret's name is followed by `=` or `:` (a JSON key too).
        if holds_value or (
            ("=" in value or ":" in value)
            and (self._extra_key_words is not None or _holds_name_stem(lowered))
        ):
            return self._scrub_text(value, depth, holds_value)
        return value  # most strings

    def _clear_start(self, value: Sequence[Any], depth: int) -> int:
        """How many of a long list's first items are, the very same objects, a clear list's
        that lay as deep: none of them needs a look."""
        known = self._clear_lists.get(id(value[0]))
        if known is None or known[1] != depth:
            return 0
        known_list = known[0]
        if (
            known_list[0] is value[0]
            and len(known_list) <= len(value)
            and all(map(is_, known_list, value))
        ):
            return len(known_list)
        return 0

    def _remember_clear_list(self, value: Sequence[Any], depth: int) -> None:
        clear_lists = self._clear_lists
        if len(clear_lists) >= _CACHED_ITEMS:
            clear_lists.clear()
        clear_lists[id(value[0])] = (value, depth)

    def _scrub_top_dict(self, value: dict[Any, Any]) -> Any:
        """A dict in a field of a call (depth 1) under a key known not secret, scrubbed; one
        that many calls share (``is_shared``: the OTel context, the kind) looked at once while
        remembered clear."""
        clear_shared = self._clear_shared
        if clear_shared.get(id(value)) is value:
            return value
        clean = self._scrub(value, 1)
        if clean is value and is_shared(value):
            if len(clear_shared) >= _CACHED_SHARED:
                clear_shared.clear()
            clear_shared[id(value)] = value
        return clean

    def _passes(self, item: object) -> bool:
        """Whether an item of a container is plainly left as it is, without a walk into it: a
        number, a flag, nothing, or a plainly clear text (the short ones remembered: roles,
        models, kinds, resource values repeat from call to call)."""
        if type(item) is not str:  # exactly str: a subclass may hash and compare as it likes
            return type(item) in _UNSCRUBBED_TYPES
        return (len(item) <= _CACHED_TEXT_CHARS and item in self._clear_texts) or self._newly_clear(
            item
        )

    def _newly_clear(self, text: str) -> bool:
        """Whether a text (exactly a str) not remembered is plainly clear; remembered if so
        and short."""
        if not _plainly_clear(text):
            return False
        if len(text) <= _CACHED_TEXT_CHARS:
            clear_texts = self._clear_texts
            if len(clear_texts) >= _CACHED_TEXTS:
                clear_texts.clear()
            clear_texts.add(text)
        return True

    def _redact_all(self, value: Any, depth: int) -> Any:
        """What a secret key holds: every scalar replaced, objects scrubbed by their keys.

        A list keeps its length: a captured header (``["Bearer …"]``) stays a list of strings.
        """
        if isinstance(value, dict):
            return self._scrub(value, depth + 1)
        if isinstance(value, (list, tuple)):
            return [self._redact_all(item, depth + 1) for item in value] if value else value
        return REDACTED

    def _is_secret_key(self, key: Any) -> bool:
        if not isinstance(key, str):
            return False
        is_secret = self._key_cache.get(key)
        if is_secret is not None:
            return is_secret
        is_secret = self._secret_key.search(key) is not None or (
            not key.islower() and self._secret_key.search(_CAMEL_HUMP.sub("_", key)) is not None
        )
        if len(key) <= _CACHED_KEY_CHARS:
            if len(self._key_cache) >= _CACHED_KEYS:
                self._key_cache.clear()
                self._clear_keys.clear()
            self._key_cache[key] = is_secret
            if not is_secret and type(key) is str:  # exactly str, as _passes' texts
                self._clear_keys.add(key)
        return is_secret

    def _scrub_text(self, text: str, depth: int, holds_value: bool) -> str:
        if text[:64].lstrip()[:1] in ("{", "["):
            decoded = self._scrub_json_text(text, depth)
            if decoded is not None:
                return decoded
        if holds_value:
            text = _SECRET_VALUES.sub(REDACTED, text)
        return self._scrub_named_values(text)

    def _scrub_json_text(self, text: str, depth: int) -> str | None:
        """JSON text scrubbed as what it encodes; None if it is not JSON, or too big or deep."""
        if len(text) > MAX_JSON_TEXT_CHARS:
            return None
        try:
            decoded = json.loads(text)
        except (ValueError, RecursionError):
            return None
        if not isinstance(decoded, (dict, list)) or _deeper_than(decoded, _MAX_NESTING - depth):
            return None
        clean = self._scrub(decoded, depth + 1)
        return text if clean is decoded else clean_str(json.dumps(clean, ensure_ascii=False))

    def _scrub_named_values(self, text: str) -> str:
        """``text`` with the value after each secret name (``NAME=…``, ``"name": "…"``) redacted."""
        pieces: list[str] = []
        done = seen = 0
        for hit in self._name_hits(text):
            if hit[0] < seen:
                continue  # in a name or value already seen: each character is looked at once
            start, end = _name_around(text, hit, seen)
            seen = end
            after = _AFTER_NAME.match(text, end)
            if after is None:
                continue
            name = text[start:end]
            in_query = start > 0 and text[start - 1] in "?&;" and text[end] == "="
            if not (
                self._is_secret_key(name)
                or (in_query and _QUERY_SECRET_NAMES.fullmatch(name) is not None)
            ):
                continue
            group = "dq_value" if after["dq"] else "sq_value" if after["sq"] else "bare"
            value_start, value_end = after.span(group)
            if value_start == value_end or after[group] == REDACTED:
                continue
            # A bare value after a JSON key (a number, `null`) becomes a JSON string.
            quoted = group == "bare" and (after["close"] or "").endswith('"')
            pieces += (text[done:value_start], f'"{REDACTED}"' if quoted else REDACTED)
            done = seen = value_end
        if not pieces:
            return text
        pieces.append(text[done:])
        return "".join(pieces)

    def _name_hits(self, text: str) -> Iterator[tuple[int, int]]:
        """Where a secret's name may be, in order: each stem, and each extra key's match."""
        lowered = text.lower()
        sources: list[Iterator[tuple[int, int]]] = (
            [_found(lowered, stem) for stem in _NAME_STEMS]
            if len(lowered) == len(text)  # each character lowered to one: the same positions
            else [(match.span() for match in _STEM_WORDS.finditer(text))]
        )
        if self._extra_key_words is not None:
            sources.append(match.span() for match in self._extra_key_words.finditer(text))
        return heapq.merge(*sources)

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


_STEM_WORDS = re.compile("|".join(_NAME_STEMS), re.IGNORECASE)

# What every change the scrubber makes to a text needs (`_scrub_text`): a value pattern's
# literal, each case-sensitive but `bearer`; or a `:` or `=` after a secret's name (URLs'
# credentials too); or, in JSON text it decodes, an escape (`\u0073k-`) making one of those.
# A text with none of them comes back as it is: `_plainly_clear` says so, at a few scans for
# one character each (memchr), a literal searched for only when a character of it is there.
_XOX = re.compile("xox[abprs]-")
_GITHUB = re.compile("gh[pousr]_")


def _plainly_clear(text: str) -> bool:
    """Whether the scrubber would return ``text`` unchanged, for a reason seen at once (never
    True when it would change it; property-tested against it)."""
    return not (
        ":" in text
        or "=" in text
        or "\\" in text
        or ("-" in text and ("sk-" in text or _XOX.search(text) is not None))
        or ("A" in text and ("AKIA" in text or "AIza" in text))
        or ("J" in text and "eyJ" in text)
        or ("_" in text and _GITHUB.search(text) is not None)
        or (("b" in text or "B" in text) and "bearer" in text.lower())
    )


def _might_hold_secret(lowered: str) -> bool:
    """Whether a text, given lower-cased, may hold a match of the value patterns.

    Never False if it does: every value pattern holds one of these, lower-cased (``BeArEr``
    too). Plain substring tests clear most strings at a fraction of the cost of the patterns.
    """
    return (
        "://" in lowered
        or "sk-" in lowered
        or "eyj" in lowered
        or "bearer" in lowered
        or "akia" in lowered
        or "aiza" in lowered
        or "xox" in lowered
        or "ghp_" in lowered
        or "gho_" in lowered
        or "ghu_" in lowered
        or "ghs_" in lowered
        or "ghr_" in lowered
    )


def _holds_name_stem(lowered: str) -> bool:
    return (
        "key" in lowered
        or "token" in lowered
        or "secret" in lowered
        or "pass" in lowered
        or "auth" in lowered
        or "credential" in lowered
        or "cookie" in lowered
        or "sig" in lowered
    )


def _found(lowered: str, stem: str) -> Iterator[tuple[int, int]]:
    found = lowered.find(stem)
    while found >= 0:
        yield found, found + len(stem)
        found = lowered.find(stem, found + len(stem))


def _name_around(text: str, hit: tuple[int, int], floor: int) -> tuple[int, int]:
    """The whole name (``OPENAI_API_KEY``, ``x-api-key``) a stem was found in."""
    start, end = hit
    floor = max(floor, start - _MAX_NAME_CHARS)
    while start > floor and text[start - 1] in _NAME_CHARS:
        start -= 1
    ceiling = min(len(text), end + _MAX_NAME_CHARS)
    while end < ceiling and text[end] in _NAME_CHARS:
        end += 1
    return start, end


def _deeper_than(value: dict[str, Any] | list[Any], limit: int) -> bool:
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        pending += ((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False
