"""Weave's SDK next to ours: weave.init()'s global provider exporting the same spans, noticed.

The real thing runs in the ``weave_sdk`` environment (weave 0.53, ``tests/envs/weave_sdk.txt``);
the rest uses a provider built as weave.init() builds it, with a stand-in for its exporter.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from opentelemetry.exporter.weave import WeaveSpanExporter
from opentelemetry.exporter.weave._coexist import (
    AGENTS_OTLP_PATH,
    WEAVE_SDK_SERVICE_NAME,
    CoexistenceCheck,
    agents_endpoint,
)
from opentelemetry.exporter.weave.testing import LocalWeaveServer

from .helpers import API_KEY, PROJECT, make_processor, run_scenario

AGENTS_URL = "https://trace.wandb.ai" + AGENTS_OTLP_PATH
LOGGER = "opentelemetry.exporter.weave"


class AgentsViewExporter(SpanExporter):
    """Stands in for weave.init()'s OTLPSpanExporter: what the check reads is ``_endpoint``."""

    def __init__(self, endpoint: str = AGENTS_URL) -> None:
        self._endpoint = endpoint
        self.exported: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported.extend(spans)
        return SpanExportResult.SUCCESS


def weave_like_provider(endpoint: str = AGENTS_URL) -> TracerProvider:
    """A provider as weave 0.53's _setup_conversation_tracing builds it."""
    provider = TracerProvider(resource=Resource.create({"service.name": WEAVE_SDK_SERVICE_NAME}))
    provider.add_span_processor(BatchSpanProcessor(AgentsViewExporter(endpoint)))
    return provider


@pytest.fixture
def global_provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Whatever the test puts in it is the global TracerProvider (the SDK sets one only once)."""
    holder: list[Any] = [trace.NoOpTracerProvider()]
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: holder[0])
    yield holder
    for provider in holder:
        if isinstance(provider, TracerProvider):
            provider.shutdown()


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == LOGGER and "exported twice" in record.getMessage()
    ]


def trace_spans(provider: TracerProvider, count: int) -> None:
    tracer = provider.get_tracer("test")
    for index in range(count):
        with tracer.start_as_current_span(f"span{index}"):
            pass


def test_a_processor_added_to_weave_init_s_provider_warns_once_from_its_worker(
    global_provider: list[Any], receiver: LocalWeaveServer, caplog: pytest.LogCaptureFixture
) -> None:
    provider = weave_like_provider()
    global_provider[0] = provider
    processor = make_processor(receiver.url, max_export_batch_size=1)
    provider.add_span_processor(processor)

    trace_spans(provider, 3)
    assert processor.force_flush()
    trace_spans(provider, 2)
    assert processor.force_flush()

    (warning,) = warnings_of(caplog)
    assert warning.levelno == logging.WARNING
    assert warning.threadName == "WeaveSpanProcessor"  # never on the app's thread
    message = warning.getMessage()
    assert AGENTS_URL in message
    assert "WeaveSpanProcessor" in message
    assert "before calling weave.init()" in message
    assert len(receiver.calls()) == 5  # a warning, never a failure


def test_an_exporter_behind_one_of_its_processors_warns_once(
    global_provider: list[Any], receiver: LocalWeaveServer, caplog: pytest.LogCaptureFixture
) -> None:
    provider = weave_like_provider()
    global_provider[0] = provider
    exporter = WeaveSpanExporter(api_key=API_KEY, project=PROJECT, server_url=receiver.url)
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    trace_spans(provider, 3)

    (warning,) = warnings_of(caplog)
    assert "WeaveSpanExporter" in warning.getMessage()
    assert len(receiver.calls()) == 3


def test_spans_of_a_provider_of_their_own_are_sent_once_and_not_warned_of(
    global_provider: list[Any], receiver: LocalWeaveServer, caplog: pytest.LogCaptureFixture
) -> None:
    global_provider[0] = weave_like_provider()
    own = TracerProvider()
    processor = make_processor(receiver.url)
    own.add_span_processor(processor)

    trace_spans(own, 2)
    assert processor.force_flush()
    own.shutdown()

    assert warnings_of(caplog) == []


@pytest.mark.parametrize(
    "provider",
    [
        pytest.param(TracerProvider, id="plain-sdk-provider"),
        pytest.param(lambda: weave_like_provider("http://collector:4318/v1/traces"), id="otlp"),
        pytest.param(trace.NoOpTracerProvider, id="no-op"),
        pytest.param(object, id="odd-shape"),
    ],
)
def test_no_agents_view_export_no_warning(
    global_provider: list[Any], provider: Any, caplog: pytest.LogCaptureFixture
) -> None:
    global_provider[0] = provider()
    spans_from = weave_like_provider()  # even spans that say they are weave's own
    recorded = AgentsViewExporter()
    spans_from.add_span_processor(SimpleSpanProcessor(recorded))
    trace_spans(spans_from, 1)
    check = CoexistenceCheck(object())

    check.check(recorded.exported)

    assert warnings_of(caplog) == []


def test_agents_endpoint_reads_the_exporter_s_endpoint() -> None:
    assert agents_endpoint(weave_like_provider(AGENTS_URL + "/")) == AGENTS_URL + "/"
    assert agents_endpoint(weave_like_provider("http://x/v1/traces")) is None
    assert agents_endpoint(TracerProvider()) is None


def test_the_check_looks_once_whatever_comes_later(
    global_provider: list[Any], caplog: pytest.LogCaptureFixture
) -> None:
    provider = weave_like_provider()
    recorded = AgentsViewExporter()
    provider.add_span_processor(SimpleSpanProcessor(recorded))
    trace_spans(provider, 1)
    check = CoexistenceCheck(object())

    check.check([])  # nothing to judge by: it does not count
    check.check(recorded.exported)  # the global provider is not weave's yet
    global_provider[0] = provider
    check.check(recorded.exported)

    assert warnings_of(caplog) == []  # one look, at the first batch: O(1) after it


@pytest.mark.parametrize("ours_first", [False, True], ids=["weave-first", "ours-first"])
def test_weave_init_s_provider_in_weave_0_53_is_recognised(
    receiver: LocalWeaveServer, ours_first: bool
) -> None:
    result = run_scenario(
        "weave_sdk",
        "scenario_weave_sdk",
        receiver.url,
        SCENARIO_OURS_FIRST="1" if ours_first else "0",
    )

    report = json.loads(result.stdout.strip().splitlines()[-1])
    installed = report["installed"]
    exported_to_agents = [
        request for request in receiver.requests() if request.path == AGENTS_OTLP_PATH
    ]
    assert report["weave"] == "0.53.0"
    assert len(receiver.calls()) == 2
    if ours_first:
        # weave.init() leaves a global SDK provider alone: spans go one way only.
        assert installed["resource"].get("service.name") != WEAVE_SDK_SERVICE_NAME
        assert report["warnings"] == []
        assert exported_to_agents == []
        return
    assert installed["provider"] == "opentelemetry.sdk.trace.TracerProvider"
    assert installed["resource"]["service.name"] == WEAVE_SDK_SERVICE_NAME
    assert installed["processors"][0] == {
        "processor": "opentelemetry.sdk.trace.export.BatchSpanProcessor",
        "exporter": "opentelemetry.exporter.otlp.proto.http.trace_exporter.OTLPSpanExporter",
        "endpoint": receiver.url + AGENTS_OTLP_PATH,
    }
    assert installed["processors"][1]["processor"] == (
        "weave.evaluation.otel_eval_linker.EvalLinkSpanProcessor"
    )
    (warning,) = report["warnings"]
    assert "exported twice" in warning
    assert receiver.url + AGENTS_OTLP_PATH in warning
    assert exported_to_agents  # the same spans went to the Agents view too
