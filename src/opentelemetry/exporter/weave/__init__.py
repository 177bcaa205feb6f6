"""Export OpenTelemetry spans to W&B Weave as calls.

Add one processor to an existing tracer provider::

    from opentelemetry.exporter.weave import WeaveSpanProcessor

    provider.add_span_processor(WeaveSpanProcessor())

or export with no code at all::

    OTEL_TRACES_EXPORTER=weave opentelemetry-instrument python app.py

Content that instrumentations put on log records instead of spans reaches the calls too: add
``WeaveLogRecordProcessor()`` to the logger provider, or ``install(tracer_provider,
logger_provider)`` for both; with no code, also ``OTEL_LOGS_EXPORTER=weave``.
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
from opentelemetry.exporter.weave._logs import WeaveLogExporter, WeaveLogRecordProcessor, install
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
    "WeaveLogExporter",
    "WeaveLogRecordProcessor",
    "WeaveOptions",
    "WeaveSettings",
    "WeaveSpanExporter",
    "WeaveSpanProcessor",
    "WriteMode",
    "__version__",
    "install",
    "span_to_call",
]
