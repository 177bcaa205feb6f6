"""Noticing Weave's own SDK exporting the spans we send as calls, to its Agents view.

``weave.init()`` (weave ≥ 0.53) sets a global SDK ``TracerProvider`` unless one is set already:
its resource's ``service.name`` is ``weave-conversation-sdk``, and its ``BatchSpanProcessor``
sends every span as OTLP to ``{trace server}/agents/otel/v1/traces``, the Agents view (beside
an ``EvalLinkSpanProcessor``). Our processor added to that provider, or our exporter behind
one of its processors, sends the same spans again, as calls. That is allowed, but should not
happen unnoticed: the first batch we export looks for it, and warns once.

Read only through ``getattr`` with defaults (the SDK's processor list is private): a provider
of another shape is simply not recognised, never an error.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan

__all__ = ["AGENTS_OTLP_PATH", "WEAVE_SDK_SERVICE_NAME", "CoexistenceCheck", "agents_endpoint"]

logger = logging.getLogger(__package__)

AGENTS_OTLP_PATH = "/agents/otel/v1/traces"
WEAVE_SDK_SERVICE_NAME = "weave-conversation-sdk"
_MAX_PROCESSORS = 64
"""Processors of one provider looked at, at most: the check stays O(1)."""


def _processors(provider: object) -> tuple[object, ...]:
    multi = getattr(provider, "_active_span_processor", None)
    processors = getattr(multi, "_span_processors", ())
    return tuple(processors[:_MAX_PROCESSORS]) if isinstance(processors, (tuple, list)) else ()


def agents_endpoint(provider: object) -> str | None:
    """The Agents view's endpoint that one of ``provider``'s processors exports to, if any."""
    for processor in _processors(provider):
        endpoint = getattr(getattr(processor, "span_exporter", None), "_endpoint", None)
        if isinstance(endpoint, str) and endpoint.rstrip("/").endswith(AGENTS_OTLP_PATH):
            return endpoint
    return None


def _carries(provider: object, ours: object) -> bool:
    """Whether ``ours`` (a processor, or an exporter behind one) is among its processors."""
    return any(
        processor is ours or getattr(processor, "span_exporter", None) is ours
        for processor in _processors(provider)
    )


def _made_by_weave_sdk(span: ReadableSpan) -> bool:
    attributes = span.resource.attributes if span.resource is not None else {}
    return attributes.get("service.name") == WEAVE_SDK_SERVICE_NAME


class CoexistenceCheck:
    """Warns once if ``ours`` exports the spans that weave.init()'s provider exports too."""

    def __init__(self, ours: object) -> None:
        self._ours = ours
        self._checks = itertools.count()
        """``next()`` is an atomic test-and-set: 0 for the first caller only."""

    def check(self, spans: Sequence[ReadableSpan]) -> None:
        """Look, on the first batch only; call it where exporting runs, not on the app's thread."""
        if not spans or next(self._checks):
            return
        provider = trace.get_tracer_provider()
        endpoint = agents_endpoint(provider)
        if endpoint is None:
            return
        if not (_carries(provider, self._ours) or _made_by_weave_sdk(spans[0])):
            return  # our spans come from a provider of their own: nothing is sent twice
        name = type(self._ours).__name__
        logger.warning(
            "Weave: spans are exported twice: weave.init() set the global TracerProvider, which "
            "sends every span to Weave's Agents view (%s), and this %s sends the same spans to "
            "Weave as calls. To keep only the calls, set your own TracerProvider (with this "
            "%s) as the global one before calling weave.init(), which then leaves it alone; to "
            "keep only the Agents view, don't add this %s.",
            endpoint,
            name,
            name,
            name,
        )
