"""Export OpenTelemetry spans to W&B Weave as calls.

Add one processor to an existing tracer provider::

    from opentelemetry.exporter.weave import WeaveSpanProcessor

    provider.add_span_processor(WeaveSpanProcessor())

or export with no code at all::

    OTEL_TRACES_EXPORTER=weave opentelemetry-instrument python app.py
"""

from opentelemetry.exporter.weave._call import WeaveCall
from opentelemetry.exporter.weave._config import (
    AuthScheme,
    ConfigError,
    SpanSet,
    WeaveOptions,
    WeaveSettings,
    WriteMode,
)
from opentelemetry.exporter.weave._exporter import WeaveSpanExporter
from opentelemetry.exporter.weave._mapping import span_to_call
from opentelemetry.exporter.weave._processor import WeaveSpanProcessor
from opentelemetry.exporter.weave._stats import ExportStats
from opentelemetry.exporter.weave._version import __version__

__all__ = [
    "AuthScheme",
    "ConfigError",
    "ExportStats",
    "SpanSet",
    "WeaveCall",
    "WeaveOptions",
    "WeaveSettings",
    "WeaveSpanExporter",
    "WeaveSpanProcessor",
    "WriteMode",
    "__version__",
    "span_to_call",
]
