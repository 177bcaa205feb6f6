from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import settings as hypothesis_settings
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

from opentelemetry.exporter.weave import WeaveSpanProcessor
from opentelemetry.exporter.weave._transport import HttpAttempt, PostResult
from opentelemetry.exporter.weave.testing import LocalWeaveServer

from .helpers import API_KEY, PROJECT

CONTRACT_DIR = Path(__file__).parent / "contract"

# In CI the property-based tests run the same examples every time: a red build is reproducible.
hypothesis_settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

_SETTING_PREFIXES = ("WANDB_", "WEAVE_", "WF_TRACE_", "OTEL_")


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


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the settings they set themselves."""
    for name in list(os.environ):
        if name.startswith(_SETTING_PREFIXES):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def contract_check(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every body the package posts in any test must satisfy the contract schema."""
    violations: list[str] = []
    original_post = HttpAttempt.post

    def checked_post(
        self: HttpAttempt, path: str, body: bytes, timeout: float, headers: Mapping[str, str]
    ) -> PostResult:
        violations.extend(contract_errors(path, json.loads(body)))
        return original_post(self, path, body, timeout, headers)

    monkeypatch.setattr(HttpAttempt, "post", checked_post)
    yield violations
    assert violations == [], "bodies that break the contract were sent"


@pytest.fixture
def receiver() -> Iterator[LocalWeaveServer]:
    with LocalWeaveServer(api_key=API_KEY) as server:
        yield server


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


@pytest.fixture
def record_spans() -> Callable[[Callable[[Tracer], None]], list[ReadableSpan]]:
    """Run a function against a real tracer and return the finished spans, in end order."""

    def run(emit: Callable[[Tracer], None]) -> list[ReadableSpan]:
        memory = InMemorySpanExporter()
        provider, tracer = make_tracer(SimpleSpanProcessor(memory))
        emit(tracer)
        provider.shutdown()
        return list(memory.get_finished_spans())

    return run


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
