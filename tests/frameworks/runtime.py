"""What every framework scenario shares: tracing into the receiver the test started."""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from opentelemetry.exporter.weave import WeaveSpanProcessor

RECEIVER_URL_ENV = "WEAVE_TEST_RECEIVER_URL"
"""The URL of the test's receiver; the key and project come in the usual variables."""


def start_tracing(*, set_global: bool = True) -> tuple[TracerProvider, WeaveSpanProcessor]:
    """A TracerProvider exporting through a WeaveSpanProcessor to the test's receiver.

    Call ``provider.shutdown()`` (or ``processor.force_flush()``) before the scenario exits.
    """
    processor = WeaveSpanProcessor(
        server_url=os.environ[RECEIVER_URL_ENV], schedule_delay_millis=50
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    if set_global:
        trace.set_tracer_provider(provider)
    return provider, processor
