"""Each trace's last chat input, kept so that the next one decodes and converts only what it adds.

An agent's model calls in one trace send the conversation so far and then some: the input
messages of each call are the previous call's and a few more (WEAVE_WIRE §8). As JSON text,
the previous text with its closing ``]`` turned into ``,`` is the start of the next one. Only
the rest is decoded and converted, and only when that gives exactly what the whole text would:
what is kept is checked equal, character for character, never assumed.
"""

from __future__ import annotations

from opentelemetry.exporter.weave._chat import Message, plain_chat_messages
from opentelemetry.exporter.weave._sanitize import MAX_DEPTH, MAX_NODES, decode_json_text

__all__ = ["ConversationMemo"]


_Remembered = tuple[str, list[Message]]
"""A chat input's text (ending with its list's ``]``) and its messages; a plain tuple: one is
made for each model call."""


class ConversationMemo:
    """The chat input of the last model call of each of the most recent traces: its JSON text
    and the ``plain_chat_messages`` of the list it decodes to. Not the list itself: the objects
    kept alive count towards the garbage collector's next run, and a decoded message is
    several (a part list, each part) where its converted one is mostly one.

    Bounded in traces and in characters of text kept (the messages are about as much): a trace
    past either bound is forgotten, and its next call converted in full. Used by one mapping at
    a time (the pipeline's mapping lock).
    """

    def __init__(self, max_traces: int = 128, max_chars: int = 2_000_000) -> None:
        self._max_traces = max_traces
        self._max_chars = max_chars
        self._chars = 0
        self._traces: dict[int, _Remembered] = {}

    def extended(self, trace_id: int, text: str) -> list[Message] | None:
        """What ``plain_chat_messages`` converts ``safe_json_unwalked(text)`` to, when it
        would and ``text`` is the trace's last text with messages added; None otherwise
        (nothing said about ``text``).

        With the last text ``[a,b]`` and ``text`` ``[a,b,c,d]``: ``[c,d]`` decoded and
        converted, appended to what ``[a,b]`` became. ``[a,b`` ends after a whole value, so
        ``,`` continues the list and ``c,d]`` parses in ``text`` as in ``[c,d]``, to the same
        end. The checks that let ``safe_json_unwalked`` skip its walk (ASCII, no ``\\u``
        escape) held for ``[a,b``: only the added part is searched; ``\\u`` cannot span the
        ``,``. The conversion is message by message, so it converts the two parts as it
        would the whole.
        """
        known = self._traces.get(trace_id)
        if known is None:
            return None
        known_text, known_messages = known
        cut = len(known_text) - 1
        if (
            len(text) <= MAX_NODES
            and text[cut : cut + 1] == ","
            and text.startswith(known_text[:cut])  # copied only for a likely extension
            and (added := "[" + text[cut + 1 :]).isascii()
            and ("\\" not in added or "\\u" not in added)
        ):
            new_content = decode_json_text(added)
            if type(new_content) is list:
                # None for no message: `[a,b,]` is no JSON, though `[]` is.
                new_messages = plain_chat_messages(new_content, MAX_DEPTH)
                if new_messages is not None:
                    messages = known_messages + new_messages
                    self.remember(trace_id, text, messages)
                    return messages
        return None

    def remember(self, trace_id: int, text: str, messages: list[Message]) -> None:
        """Keep ``text`` and its messages as the trace's last chat input."""
        if not (text[:1] == "[" and text[-1:] == "]" and messages):
            return  # no list written plainly, or one whose `]` has nothing before it to extend
        if len(text) > self._max_chars:
            return
        traces = self._traces
        previous = traces.pop(trace_id, None)
        if previous is not None:
            self._chars -= len(previous[0])
        traces[trace_id] = (text, messages)
        self._chars += len(text)
        while len(traces) > self._max_traces or self._chars > self._max_chars:
            oldest = next(iter(traces))
            self._chars -= len(traces.pop(oldest)[0])
