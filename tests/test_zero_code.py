"""``OTEL_TRACES_EXPORTER=weave opentelemetry-instrument python app.py``, for real."""

from __future__ import annotations

import json
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

from opentelemetry.exporter.weave import WeaveSpanExporter
from opentelemetry.exporter.weave.testing import LocalWeaveServer

from .helpers import API_KEY, PROJECT, run_instrumented

# The app traces by hand: loading every instrumentation installed for the other suites (the
# openai one alone imports the openai package) would cost seconds and prove nothing here.
NO_LIBRARY_INSTRUMENTATIONS = {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "*"}

APP = textwrap.dedent(
    """
    from opentelemetry import trace

    tracer = trace.get_tracer("zero-code-app")
    with tracer.start_as_current_span("handle_request"):
        with tracer.start_as_current_span(
            "chat gpt-4o-mini",
            attributes={
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 21,
                "gen_ai.usage.output_tokens": 9,
            },
        ):
            pass
    print("app done")
    """
)


def test_entry_point_is_registered() -> None:
    (entry,) = entry_points(group="opentelemetry_traces_exporter", name="weave")
    assert entry.load() is WeaveSpanExporter


def test_opentelemetry_instrument_exports_to_weave(
    receiver: LocalWeaveServer, tmp_path: Path
) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
    result = run_instrumented(
        app,
        {
            **NO_LIBRARY_INSTRUMENTATIONS,
            "OTEL_SERVICE_NAME": "zero-code-test",
            "WANDB_API_KEY": API_KEY,
            "WEAVE_PROJECT": PROJECT,
            "WF_TRACE_SERVER_URL": receiver.url,
        },
    )
    assert result.returncode == 0, result.stderr
    assert "app done" in result.stdout
    calls = {call["display_name"]: call for call in receiver.calls(PROJECT)}
    assert set(calls) == {"handle_request", "chat gpt-4o-mini"}
    chat = calls["chat gpt-4o-mini"]
    # Op refs are on with no code too: each call names an op that exists.
    ops = {op["object_id"]: op["digest"] for op in receiver.ops(PROJECT)}
    assert chat["op_name"] == f"weave:///{PROJECT}/op/chat_gpt-4o-mini:{ops['chat_gpt-4o-mini']}"
    assert chat["parent_id"] == calls["handle_request"]["id"]
    assert chat["summary"]["usage"]["gpt-4o-mini"]["total_tokens"] == 30
    root_summary = calls["handle_request"]["summary"]  # rolled up across export() calls
    assert root_summary["usage"]["gpt-4o-mini"]["total_tokens"] == 30
    assert root_summary["status_counts"] == {"success": 2, "error": 0}
    resource = chat["attributes"]["otel"]["resource"]
    assert resource["service.name"] == "zero-code-test"
    starts = [
        json.loads(r.body)["start"]["id"] for r in receiver.requests() if r.path == "/call/start"
    ]
    assert len(starts) == 2


def test_opentelemetry_instrument_without_key_says_so(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
    result = run_instrumented(app, {**NO_LIBRARY_INSTRUMENTATIONS, "WEAVE_PROJECT": PROJECT})
    assert "ConfigError: No Weave API key: set WANDB_API_KEY" in result.stderr
    assert "app done" in result.stdout  # a bad setting stops the export, never the app
