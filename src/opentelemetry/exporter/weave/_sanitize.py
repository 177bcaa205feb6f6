"""Turn anything a span can carry into JSON the service accepts, without ever raising."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_STRING_CHARS",
    "clean_str",
    "json_safe",
    "nests_within",
    "safe_json_from",
    "safe_json_unwalked",
]

MAX_DEPTH = 32
MAX_STRING_CHARS = 1_000_000
MAX_NODES = 100_000

_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def clean_str(text: str) -> str:
    """``text`` as valid UTF-8 (lone surrogates replaced), cut at ``MAX_STRING_CHARS`` visibly."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if len(text) > MAX_STRING_CHARS:
        cut = len(text) - MAX_STRING_CHARS
        text = f"{text[:MAX_STRING_CHARS]}…[truncated {cut} chars]"
    return text


def json_safe(value: object) -> Any:
    """A JSON-serialisable copy of ``value``.

    bytes are decoded (undecodable bytes escaped), NaN and infinities become strings, sequences
    become lists, mapping keys become strings, anything else its ``repr``. Nesting deeper than
    ``MAX_DEPTH``, a container inside itself, and anything past ``MAX_NODES`` values (a
    structure sharing its parts can stand for far more than it holds) become markers.
    """
    # Most attribute values are plain scalars or a short sequence of them (what the SDK lets
    # an attribute hold): the same answers as the walk, without it.
    kind = type(value)
    if kind is str:
        return clean_str(value)  # type: ignore[arg-type]
    if value is None or kind is int or kind is bool:
        return value
    if kind is float:
        return _safe_float(value)  # type: ignore[arg-type]
    if (kind is tuple or kind is list) and len(value) <= MAX_NODES:  # type: ignore[arg-type]
        items = _scalars(value)  # type: ignore[arg-type]
        if items is not None:
            return items
    return _SafeCopy().of(value, 0)


def _safe_float(value: float) -> float | str:
    return value if math.isfinite(value) else _NON_FINITE.get(value, "NaN")


def _scalars(values: tuple[object, ...] | list[object]) -> list[Any] | None:
    """What the walk makes of a sequence of plain scalars, None if an item is anything else."""
    safe: list[Any] = []
    for item in values:
        kind = type(item)
        if kind is str:
            safe.append(clean_str(item))  # type: ignore[arg-type]
        elif item is None or kind is int or kind is bool:
            safe.append(item)
        elif kind is float:
            safe.append(_safe_float(item))  # type: ignore[arg-type]
        else:
            return None
    return safe


class _SafeCopy:
    def __init__(self) -> None:
        self._open: set[int] = set()  # the containers being copied: their ids
        self._nodes = 0

    def of(self, value: object, depth: int) -> Any:
        if value is None or isinstance(value, (bool, int)):
            return value
        if isinstance(value, float):
            return _safe_float(value)
        if isinstance(value, str):
            return clean_str(value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return clean_str(bytes(value).decode("utf-8", "backslashreplace"))
        if not isinstance(value, (Mapping, list, tuple, set, frozenset)):
            return clean_str(_safe_repr(value))
        if depth >= MAX_DEPTH:
            return f"[nested deeper than {MAX_DEPTH} levels]"
        self._nodes += len(value)
        if self._nodes > MAX_NODES:
            return f"[more than {MAX_NODES} values]"
        if id(value) in self._open:
            return "[a container inside itself]"
        self._open.add(id(value))
        try:
            if isinstance(value, Mapping):
                return {_key(key): self.of(item, depth + 1) for key, item in value.items()}
            return [self.of(item, depth + 1) for item in value]
        finally:
            self._open.discard(id(value))


def decode_json_text(value: object) -> Any:
    """A JSON object or array given as text, decoded; any other value as it is.

    Instrumentations put messages on spans as JSON strings; plain text stays text.
    """
    if not isinstance(value, str):
        return value
    # Most texts have no whitespace around them to skip: their first character tells.
    if value[:1] in _OPENERS:
        start = 0
    elif value[:64].lstrip()[:1] in _OPENERS:
        start = len(value) - len(value.lstrip(_JSON_WHITESPACE))
    else:
        return value
    # JSONDecoder.decode's steps, its scanner called directly (json.loads would build a
    # decoder per call; its only other step, refusing a leading BOM, cannot apply: the text
    # starts with a bracket).
    try:
        decoded, end = _SCAN_ONCE(value, start)
    except (StopIteration, ValueError, RecursionError):
        return value
    if end != len(value) and len(value.rstrip(_JSON_WHITESPACE)) != end:
        return value  # more than whitespace after the value
    return decoded


def safe_json_from(value: object) -> Any:
    """``json_safe(decode_json_text(value))``, skipping the walk when the text cannot need it.

    Decoding already turns NaN, infinities and overflowing numbers into text. ASCII JSON text
    with no ``\\u`` escape (a lone surrogate), no longer than ``MAX_NODES`` characters (each
    value takes one at least) decodes to valid UTF-8, no string longer than the text, within
    the node bound: safe as it is once it nests no deeper than ``MAX_DEPTH``, which fewer
    brackets than that prove without a look, and a walk over its containers otherwise (a long
    conversation has many brackets, few levels). That is most message lists.
    """
    safe, whole = safe_json_unwalked(value)
    if whole or nests_within(safe, MAX_DEPTH):
        return safe
    return json_safe(safe)


def safe_json_unwalked(value: object, *, count_brackets: bool = True) -> tuple[Any, bool]:
    """``(safe_json_from(value), True)``; or, when all that answer still needs is the walk over
    the decoded containers (:func:`safe_json_from`), ``(decoded, False)``: the answer is
    ``decoded`` if ``nests_within(decoded, MAX_DEPTH)``, else ``json_safe(decoded)``. A caller
    that looks at every container anyway can tell their nesting without the walk.

    Without ``count_brackets``, decoded containers are left to the walk even when too few
    brackets to nest deeper are written: the count reads every character of the text, which
    costs a caller whose conversion tells the nesting of the containers it takes more than
    the walk it saves."""
    if (
        isinstance(value, str)
        and len(value) <= MAX_NODES
        and value.isascii()
        # A one-character search first: most texts have no backslash, and it is the faster.
        and ("\\" not in value or "\\u" not in value)
    ):
        decoded = decode_json_text(value)
        if decoded is value:
            return json_safe(decoded), True
        return decoded, count_brackets and value.count("[") + value.count("{") < MAX_DEPTH
    return json_safe(decode_json_text(value)), True


def nests_within(container: Any, levels: int) -> bool:
    """Whether no container in decoded JSON lies more than ``levels`` deep, ``container``
    itself one level: what the walk keeps whole. Only containers are visited (a call each
    measured cheaper than a stack of iterators)."""
    if levels <= 0:
        return False
    below = levels - 1
    for child in container.values() if type(container) is dict else container:
        kind = type(child)
        if (kind is dict or kind is list) and not nests_within(child, below):
            return False
    return True


def _finite_or_text(literal: str) -> float | str:
    return _safe_float(float(literal))


def _non_finite_text(literal: str) -> str:
    return {"-Infinity": "-Infinity", "Infinity": "Infinity"}.get(literal, "NaN")


_DECODER = json.JSONDecoder(parse_float=_finite_or_text, parse_constant=_non_finite_text)
# The decoder's C scanner (typeshed leaves the attribute out).
_SCAN_ONCE: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]
_OPENERS = ("{", "[")
"""The first characters of the JSON texts decoded (an object's, an array's)."""
_JSON_WHITESPACE = " \t\n\r"
"""What JSON counts as whitespace (``json.decoder.WHITESPACE``)."""


def _key(key: object) -> str:
    return clean_str(key) if isinstance(key, str) else clean_str(_safe_repr(key))


def _safe_repr(value: object) -> str:
    try:
        return repr(value)
    except Exception:  # a hostile __repr__ must not cost the span
        return f"<unrepresentable {type(value).__name__}>"
