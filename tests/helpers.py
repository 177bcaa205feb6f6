"""Helpers shared by the test modules: clocks, fakes of each layer, calls, tracers, the contract.

Fixtures live in ``conftest.py``; everything a test imports lives here."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace import Tracer

from opentelemetry.exporter.weave import WeaveSettings, WeaveSpanProcessor
from opentelemetry.exporter.weave._call import WeaveCall
from opentelemetry.exporter.weave._delivery import DeliveryReport
from opentelemetry.exporter.weave._models import (
    EndedCallSchemaForInsert,
    StartedCallSchemaForInsert,
    SummaryInsertMap,
)
from opentelemetry.exporter.weave._pipeline import BatchReport
from opentelemetry.exporter.weave._retry import RetryPolicy
from opentelemetry.exporter.weave._stats import ExportStats
from opentelemetry.exporter.weave._transport import PostResult

API_KEY = "test-secret-key-0123456789"
PROJECT = "test-entity/test-project"

CONTRACT_DIR = Path(__file__).parent / "contract"

Record = Callable[[Callable[[Tracer], None]], list[ReadableSpan]]
"""The ``record_spans`` fixture: runs a function against a real tracer, returns its spans."""

NO_WAIT_RETRIES = RetryPolicy(initial_backoff_seconds=0.001, max_backoff_seconds=0.002)
"""Backoff too short to matter, for tests over real HTTP that retry."""


def wait_until(condition: Callable[[], object], seconds: float = 10.0) -> None:
    """Poll ``condition`` until it is true; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.005)


def settings_for(server_url: str = "http://127.0.0.1:9", **options: Any) -> WeaveSettings:
    return WeaveSettings.from_env(
        {}, api_key=API_KEY, project=PROJECT, server_url=server_url, **options
    )


class FakeClock:
    """A monotonic clock that moves only when told to, or when something waits on it.

    ``wait`` returns at once, as if the time had passed (or the interrupt was already set),
    and records what was waited for.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.waits: list[float] = []

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def wait(self, seconds: float, interrupt: threading.Event) -> bool:
        if interrupt.is_set():
            return True
        with self._lock:
            self.waits.append(seconds)
            self._now += seconds
        return False


@dataclass
class ScriptedAttempt:
    """A one-attempt poster that answers from a script, then 200; records each attempt."""

    script: list[PostResult] = field(default_factory=list)
    clock: FakeClock | None = None
    seconds_per_attempt: float = 0.0
    """How far each attempt moves ``clock``, as if the request took that long."""
    attempts: list[tuple[str, bytes, float, dict[str, str]]] = field(default_factory=list)

    def post(
        self, path: str, body: bytes, timeout: float, headers: Mapping[str, str]
    ) -> PostResult:
        self.attempts.append((path, body, timeout, dict(headers)))
        if self.clock is not None:
            self.clock.advance(self.seconds_per_attempt)
        return self.script.pop(0) if self.script else PostResult(200)


def http_error(status: int, reason: str = "", **extra: Any) -> PostResult:
    """What the HTTP layer answers for ``status``."""
    return PostResult(status, reason, retryable=status in (408, 409, 429) or status >= 500, **extra)


@dataclass
class RecordingPoster:
    """A retrying poster stand-in: answers by route and body via ``answer``; records requests."""

    answer: Callable[[str, bytes], PostResult] = lambda path, body: PostResult(200)
    requests: list[tuple[str, bytes]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def post(self, path: str, body: bytes, deadline: float) -> PostResult:
        with self._lock:
            self.requests.append((path, body))
        return self.answer(path, body)

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]


@dataclass
class RecordingSender:
    """A call sender stand-in: delivers everything (or what ``answer`` says); records batches."""

    answer: Callable[[Sequence[WeaveCall]], DeliveryReport] = lambda calls: DeliveryReport(
        delivered=len(calls)
    )
    batches: list[list[WeaveCall]] = field(default_factory=list)

    def send(self, calls: Sequence[WeaveCall], deadline: float) -> DeliveryReport:
        self.batches.append(list(calls))
        return self.answer(calls)


_NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def make_call(
    call_id: str = "0123456789abcdef",
    parent_id: str | None = None,
    inputs: dict[str, Any] | None = None,
    output: Any = None,
    attributes: dict[str, Any] | None = None,
) -> WeaveCall:
    """A small valid call, without a span."""
    return WeaveCall(
        start=StartedCallSchemaForInsert(
            project_id=PROJECT,
            id=call_id,
            op_name="op",
            trace_id="0123456789abcdef0123456789abcdef",
            parent_id=parent_id,
            started_at=_NOW,
            attributes=attributes or {},
            inputs=inputs or {},
        ),
        end=EndedCallSchemaForInsert(
            project_id=PROJECT,
            id=call_id,
            started_at=_NOW,
            ended_at=_NOW,
            output=output,
            summary=SummaryInsertMap(),
        ),
    )


def make_calls(count: int) -> list[WeaveCall]:
    return [make_call(f"{index:016x}") for index in range(count)]


class FakeBatchExporter:
    """What the processor drives, with no mapping and no HTTP: records batches, answers ``ok``.

    ``block`` (an Event) holds every export until it is set; ``fail_next`` makes the next
    batch report a loss.
    """

    def __init__(self, clock: FakeClock | None = None, **options: Any) -> None:
        self.settings = settings_for(**options)
        self.clock = clock or FakeClock()
        self.batches: list[tuple[list[ReadableSpan], float]] = []
        self.block: threading.Event | None = None
        self.fail_next = False
        self.forked = 0
        self.closed = 0
        self._lock = threading.Lock()

    def export_batch(self, spans: Sequence[ReadableSpan], deadline: float) -> BatchReport:
        if self.block is not None:
            self.block.wait(10)
        with self._lock:
            self.batches.append((list(spans), deadline))
            failed, self.fail_next = self.fail_next, False
        delivered = len(spans) - (1 if failed and spans else 0)
        failures = DeliveryReport.failed([make_call()], "/fake", PostResult(400)).failures
        return BatchReport(
            spans=len(spans),
            filtered=0,
            unmappable=0,
            delivery=DeliveryReport(delivered=delivered, failures=failures if failed else ()),
        )

    def exported(self) -> list[ReadableSpan]:
        with self._lock:
            return [span for spans, _ in self.batches for span in spans]

    def stats(self) -> ExportStats:
        return ExportStats(calls_exported=len(self.exported()))

    def spill(self, spans: Sequence[ReadableSpan]) -> int:
        return 0  # no spool: the processor counts them as dropped

    def after_fork(self) -> None:
        self.forked += 1

    def close(self) -> None:
        self.closed += 1


def load_validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((CONTRACT_DIR / name).read_text())
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


ROUTE_VALIDATORS = {
    "/call/start": load_validator("call_start.schema.json"),
    "/call/end": load_validator("call_end.schema.json"),
}
CALLS_COMPLETE_VALIDATOR = load_validator("calls_complete.schema.json")
CALLS_COMPLETE_ROUTE = re.compile(r"/v2/[^/]+/[^/]+/calls/complete")


def contract_errors(path: str, body: Any) -> list[str]:
    """What in ``body`` breaks the contract of the route it is posted to."""
    if path in ROUTE_VALIDATORS:
        return [_describe(path, error) for error in ROUTE_VALIDATORS[path].iter_errors(body)]
    if CALLS_COMPLETE_ROUTE.fullmatch(path):
        return [_describe(path, error) for error in CALLS_COMPLETE_VALIDATOR.iter_errors(body)]
    if path == "/call/upsert_batch":
        if not isinstance(body, dict) or set(body) != {"batch"}:
            return [f"{path}: body must be exactly {{'batch': [...]}}"]
        errors = []
        for item in body["batch"]:
            mode = item.get("mode")
            if set(item) != {"mode", "req"} or mode not in ("start", "end"):
                errors.append(f"{path}: bad item keys or mode: {sorted(item)}")
            else:
                errors.extend(contract_errors(f"/call/{mode}", item["req"]))
        return errors
    return [f"no contract for route {path}"]


def _describe(path: str, error: jsonschema.ValidationError) -> str:
    return f"{path}: {error.message} at {list(error.absolute_path)}"


def make_processor(server_url: str, **options: Any) -> WeaveSpanProcessor:
    settings: dict[str, Any] = {
        "api_key": API_KEY,
        "project": PROJECT,
        "server_url": server_url,
        "schedule_delay_millis": 50,
        "export_timeout_millis": 10_000,
    }
    settings.update(options)
    return WeaveSpanProcessor(**settings)


def make_tracer(*processors: Any) -> tuple[TracerProvider, Tracer]:
    provider = TracerProvider(shutdown_on_exit=False)
    for processor in processors:
        provider.add_span_processor(processor)
    return provider, provider.get_tracer("tests", "1.0")


def run_instrumented(
    app: Path, env_overrides: dict[str, str], clear_prefixes: tuple[str, ...] = ("OTEL_",)
) -> subprocess.CompletedProcess[str]:
    """``OTEL_TRACES_EXPORTER=weave opentelemetry-instrument python app`` in a subprocess.

    Variables starting with ``clear_prefixes`` are not inherited; ``env_overrides`` win.
    """
    command = Path(sys.executable).parent / "opentelemetry-instrument"
    if not command.exists():
        pytest.fail("opentelemetry-instrument is missing: install the [test] extra")
    env = {name: value for name, value in os.environ.items() if not name.startswith(clear_prefixes)}
    env.update(
        {
            "OTEL_TRACES_EXPORTER": "weave",
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            **env_overrides,
        }
    )
    return subprocess.run(
        [str(command), sys.executable, str(app)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
