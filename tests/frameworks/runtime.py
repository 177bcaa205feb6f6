"""What every framework scenario shares: tracing into the receiver the test started, and captures.

With ``WEAVE_TEST_CAPTURE=1`` a scenario also keeps what the framework emitted, the spans (and
the log records, where it logs) in memory, and writes them as the OTel SDK's JSON to
``<WEAVE_TEST_CAPTURE_DIR>/<capture>.json``: the raw material a mapping is written against.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry import _logs, trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from opentelemetry.exporter.weave import WeaveLogRecordProcessor, WeaveSpanProcessor

RECEIVER_URL_ENV = "WEAVE_TEST_RECEIVER_URL"
"""The URL of the test's receiver; the key and project come in the usual variables."""
CAPTURE_ENV = "WEAVE_TEST_CAPTURE"
CAPTURE_DIR_ENV = "WEAVE_TEST_CAPTURE_DIR"
DEFAULT_CAPTURE_DIR = "/work/tasks/captures"


@dataclass
class Capture:
    """The in-memory copies of one scenario's telemetry, written out by :meth:`Tracing.finish`."""

    name: str
    spans: InMemorySpanExporter = field(default_factory=InMemorySpanExporter)
    log_records: InMemoryLogRecordExporter | None = None
    notes: Mapping[str, str] = field(default_factory=dict)
    """What the file name does not say about the run (a content mode, an opt-in)."""

    def write(self) -> None:
        document: dict[str, object] = {
            **self.notes,
            "spans": [json.loads(span.to_json()) for span in self.spans.get_finished_spans()],
        }
        if self.log_records is not None:
            finished = self.log_records.get_finished_logs()
            document["log_records"] = [json.loads(record.to_json()) for record in finished]
        folder = Path(os.environ.get(CAPTURE_DIR_ENV, DEFAULT_CAPTURE_DIR))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{self.name}.json").write_text(json.dumps(document, indent=1))


@dataclass
class Tracing:
    """The global providers a scenario traces (and logs) with; :meth:`finish` before it exits."""

    provider: TracerProvider
    logger_provider: LoggerProvider | None
    capture: Capture | None

    def finish(self) -> None:
        """Flushes everything into the receiver (by shutting down), then writes the capture."""
        if self.logger_provider is not None:
            self.logger_provider.shutdown()
        self.provider.shutdown()
        if self.capture is not None:
            self.capture.write()


def start_tracing(
    capture: str, *, logs: bool = False, notes: Mapping[str, str] | None = None
) -> Tracing:
    """A global TracerProvider exporting through a WeaveSpanProcessor to the test's receiver.

    ``logs``: also a global LoggerProvider feeding the content log records to the package's
    join. ``capture`` names the capture file, written only with ``WEAVE_TEST_CAPTURE=1``.
    """
    provider = TracerProvider()
    provider.add_span_processor(
        WeaveSpanProcessor(server_url=os.environ[RECEIVER_URL_ENV], schedule_delay_millis=50)
    )
    kept = Capture(capture, notes=notes or {}) if os.environ.get(CAPTURE_ENV) == "1" else None
    if kept is not None:
        provider.add_span_processor(SimpleSpanProcessor(kept.spans))
    trace.set_tracer_provider(provider)
    logger_provider = None
    if logs:
        logger_provider = LoggerProvider()
        logger_provider.add_log_record_processor(WeaveLogRecordProcessor())
        if kept is not None:
            # The SDK leaves this constructor unannotated.
            kept.log_records = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
            logger_provider.add_log_record_processor(SimpleLogRecordProcessor(kept.log_records))
        _logs.set_logger_provider(logger_provider)
    return Tracing(provider, logger_provider, kept)


def expect_failure(
    error_type: type[BaseException], step: Callable[..., object], *args: Any, **kwargs: Any
) -> None:
    """Runs ``step(*args, **kwargs)``, which the scenario makes fail on purpose (a refused
    request, a tool that raises): the scenario exits nonzero unless it raises ``error_type``.
    """
    try:
        step(*args, **kwargs)
    except error_type as error:
        print(f"failed as planned: {type(error).__name__}: {error}")
    else:
        name = getattr(step, "__qualname__", repr(step))
        raise SystemExit(f"{name} should have raised {error_type.__name__}")
