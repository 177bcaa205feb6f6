"""Weave's SDK (weave 0.53) and this package in one process: what weave.init() installs.

``weave.init()`` first asks W&B for the user, the project and the server's version, then runs
``_setup_conversation_tracing``, which sets the global TracerProvider. Offline, the scenario
runs that step alone, with the trace server URL pointed at the test's receiver (the OTLP
export then lands there, at ``/agents/otel/v1/traces``). Then it does what a user would: adds
a WeaveSpanProcessor to the global provider and traces a span. It prints one JSON line: what
the provider holds, and the warnings our package logged.

With ``SCENARIO_OURS_FIRST=1`` it follows the README's advice instead: its own provider, with
the processor, set globally before weave.init()'s step, which then leaves it alone.
"""

from __future__ import annotations

import json
import logging
import os

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from opentelemetry.exporter.weave import WeaveSpanProcessor

from .runtime import RECEIVER_URL_ENV


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _describe(provider: object) -> dict[str, object]:
    multi = getattr(provider, "_active_span_processor", None)
    processors = []
    for processor in getattr(multi, "_span_processors", ()):
        exporter = getattr(processor, "span_exporter", None)
        processors.append(
            {
                "processor": f"{type(processor).__module__}.{type(processor).__qualname__}",
                "exporter": None
                if exporter is None
                else f"{type(exporter).__module__}.{type(exporter).__qualname__}",
                "endpoint": getattr(exporter, "_endpoint", None),
            }
        )
    resource = getattr(provider, "resource", None)
    return {
        "provider": f"{type(provider).__module__}.{type(provider).__qualname__}",
        "resource": dict(resource.attributes) if resource is not None else None,
        "processors": processors,
    }


def main() -> None:
    os.environ["WF_TRACE_SERVER_URL"] = os.environ[RECEIVER_URL_ENV]
    import weave
    from weave.trace import weave_init

    kept = _Kept()
    logging.getLogger("opentelemetry.exporter.weave").addHandler(kept)
    processor = WeaveSpanProcessor(
        server_url=os.environ[RECEIVER_URL_ENV], schedule_delay_millis=50
    )
    ours_first = os.environ.get("SCENARIO_OURS_FIRST") == "1"
    if ours_first:
        own = TracerProvider()
        own.add_span_processor(processor)
        trace.set_tracer_provider(own)
    entity, project = os.environ["WEAVE_PROJECT"].split("/")
    weave_init._setup_conversation_tracing(entity, project, os.environ["WANDB_API_KEY"])
    provider = trace.get_tracer_provider()
    installed = _describe(provider)
    if not ours_first:
        provider.add_span_processor(processor)  # type: ignore[attr-defined]
    tracer = trace.get_tracer("scenario_weave_sdk")
    for name in ("first", "second"):  # two batches: the warning comes once
        with tracer.start_as_current_span(name):
            pass
        processor.force_flush()
    provider.shutdown()  # type: ignore[attr-defined]
    print(
        json.dumps({"weave": weave.__version__, "installed": installed, "warnings": kept.messages})
    )


if __name__ == "__main__":
    main()
