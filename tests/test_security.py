"""Secrets stay home: redaction, the API key, clear-text warnings; loss callbacks."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from opentelemetry.trace import Status, StatusCode, Tracer

from opentelemetry.exporter.weave import WeaveSettings, WeaveSpanExporter
from opentelemetry.exporter.weave.testing import LocalWeaveServer

from .conftest import API_KEY, PROJECT, make_processor, make_tracer
from .fault_server import Reply, ScriptedServer

OPENAI_KEY = "sk-proj-abcdefghijklmnopqrstuvwx"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
BEARER = "Bearer abcdefghijklmnopqrstuvwxyz0123"


def emit_leaky(tracer: Tracer) -> None:
    attributes = {
        "openai.api_key": OPENAI_KEY,
        "http.request.header.authorization": BEARER,
        "user.password": "hunter2",
        "db.connection_string": "postgresql://bob:s3cret@db.internal:5432/app",
        "note": f"the key is {OPENAI_KEY}, keep it safe",
        "gen_ai.usage.input_tokens": 12,
        "gen_ai.request.model": "gpt-4o",
        "valid_tokens": 5,
        "gen_ai.input.messages": json.dumps(
            [{"role": "user", "content": f"call the API with {BEARER}", "api_key": "plain"}]
        ),
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "content": f"token {JWT}"}]),
    }
    with tracer.start_as_current_span("leaky", attributes=attributes) as span:
        span.record_exception(ValueError(f"auth failed for {OPENAI_KEY}"))
        span.set_status(Status(StatusCode.ERROR, "auth failed"))


def export(receiver: LocalWeaveServer, **options: Any) -> dict[str, Any]:
    processor = make_processor(receiver.url, **options)
    provider, tracer = make_tracer(processor)
    emit_leaky(tracer)
    provider.shutdown()
    (call,) = receiver.calls(PROJECT)
    return call


def test_default_scrubber_redacts_keys_and_values(receiver: LocalWeaveServer) -> None:
    call = export(receiver)
    stored = json.dumps(call)
    for secret in (OPENAI_KEY, JWT, "hunter2", "s3cret", "abcdefghijklmnopqrstuvwxyz0123"):
        assert secret not in stored
    attributes = call["attributes"]
    assert attributes["openai.api_key"] == "[REDACTED]"
    assert attributes["http.request.header.authorization"] == "[REDACTED]"
    assert attributes["user.password"] == "[REDACTED]"
    assert attributes["db.connection_string"] == "postgresql://[REDACTED]@db.internal:5432/app"
    assert attributes["note"] == "the key is [REDACTED], keep it safe"
    assert call["inputs"]["messages"][0] == {
        "role": "user",
        "content": "call the API with [REDACTED]",
        "api_key": "[REDACTED]",
    }
    assert call["output"] == [{"role": "assistant", "content": "token [REDACTED]"}]
    assert json.loads(call["exception"])["message"] == "auth failed for [REDACTED]"
    # what only looks like a secret by name fragments is left alone
    assert attributes["valid_tokens"] == 5
    assert attributes["gen_ai.usage.input_tokens"] == 12
    assert call["summary"]["usage"]["gpt-4o"]["input_tokens"] == 12


def test_scrubber_can_be_switched_off(
    receiver: LocalWeaveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEAVE_OTEL_REDACT", "off")
    call = export(receiver)
    assert call["attributes"]["openai.api_key"] == OPENAI_KEY


def test_extra_secret_keys(receiver: LocalWeaveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEAVE_OTEL_REDACT_KEYS", r"gen_ai\.request\.model, note")
    call = export(receiver)
    assert call["attributes"]["gen_ai.request.model"] == "[REDACTED]"
    assert call["attributes"]["note"] == "[REDACTED]"


def test_bad_redaction_settings_name_the_variable() -> None:
    env = {"WANDB_API_KEY": "k", "WEAVE_PROJECT": "e/p"}
    with pytest.raises(ValueError, match="WEAVE_OTEL_REDACT_KEYS"):
        WeaveSettings.from_env({**env, "WEAVE_OTEL_REDACT_KEYS": "(unclosed"})
    with pytest.raises(ValueError, match="WEAVE_OTEL_REDACT"):
        WeaveSettings.from_env({**env, "WEAVE_OTEL_REDACT": "sometimes"})


def test_user_callback_runs_after_the_default(receiver: LocalWeaveServer) -> None:
    seen: list[str] = []

    def drop_note(field: str, value: Any) -> Any:
        seen.append(field)
        if field == "attributes":
            return {key: item for key, item in value.items() if key != "note"}
        return value

    call = export(receiver, redaction_callback=drop_note)
    assert seen == ["inputs", "output", "attributes"]
    assert "note" not in call["attributes"]
    assert call["attributes"]["openai.api_key"] == "[REDACTED]"


def test_failing_callback_exports_the_call_without_content(
    receiver: LocalWeaveServer, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(field: str, value: Any) -> Any:
        raise KeyError("oops")

    with caplog.at_level(logging.ERROR, logger="opentelemetry.exporter.weave"):
        call = export(receiver, redaction_callback=broken)
    marker = "[removed: the redaction callback raised KeyError]"
    assert call["inputs"] == {"redaction_failed": marker}
    assert call["output"] == marker
    assert call["attributes"]["redaction_failed"] == marker
    assert "openai.api_key" not in call["attributes"]
    assert OPENAI_KEY not in json.dumps(call)  # not in the exception event either
    assert call["attributes"]["otel"]["events"][0]["name"] == "exception"
    assert call["summary"]["usage"]["gpt-4o"]["input_tokens"] == 12  # the call still counts
    assert call["exception"] is not None
    failures = [r for r in caplog.records if "redaction callback raised" in r.getMessage()]
    assert len(failures) == 1


def test_api_key_never_in_logs_reprs_or_stats(caplog: pytest.LogCaptureFixture) -> None:
    with ScriptedServer() as server:
        server.script("/call/start", [Reply(503), Reply(401, {"reason": f"bad key {API_KEY}"})])
        with caplog.at_level(logging.DEBUG):  # every logger, httpx and httpcore included
            processor = make_processor(server.url, write_mode="call_end")
            provider, tracer = make_tracer(processor)
            with tracer.start_as_current_span("one"):
                pass
            processor.force_flush(10_000)
            provider.shutdown()
    assert any(record.name.startswith("httpx") for record in caplog.records)
    texts = [caplog.text, repr(processor), repr(processor.settings), str(processor.stats())]
    for text in texts:
        assert API_KEY not in text
    assert "bad key ***" in caplog.text


@pytest.mark.parametrize(
    ("url", "warned"),
    [
        ("http://weave.example.com", True),
        ("http://10.1.2.3:8080", True),
        ("http://127.0.0.1:8080", False),
        ("http://localhost:8080", False),
        ("http://[::1]:8080", False),
        ("https://weave.example.com", False),
    ],
)
def test_clear_text_credentials_draw_a_warning(
    url: str, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="opentelemetry.exporter.weave"):
        exporter = WeaveSpanExporter(api_key=API_KEY, project=PROJECT, server_url=url)
        exporter.shutdown()
    warnings = [r for r in caplog.records if "unencrypted" in r.getMessage()]
    assert bool(warnings) is warned


def test_on_drop_reports_each_loss_once(receiver: LocalWeaveServer) -> None:
    drops: list[tuple[str, int]] = []
    with ScriptedServer() as server:
        server.script("/call/start", [Reply(400, {"reason": "no"})] * 2)
        processor = make_processor(
            server.url, write_mode="call_end", on_drop=lambda *drop: drops.append(drop)
        )
        provider, tracer = make_tracer(processor)
        for name in ("a", "b", "c"):
            with tracer.start_as_current_span(name):
                pass
        processor.force_flush(10_000)
        provider.shutdown()
        with tracer.start_as_current_span("late"):
            pass
    assert drops == [("rejected", 2)]
    assert processor.stats().calls_rejected == 2
    assert processor.stats().calls_exported == 1


def test_failing_on_drop_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    def broken(reason: str, count: int) -> None:
        raise RuntimeError("callback bug")

    with ScriptedServer() as server:
        server.script("/call/start", [Reply(400, {"reason": "no"})] * 5)
        processor = make_processor(server.url, write_mode="call_end", on_drop=broken)
        provider, tracer = make_tracer(processor)
        with caplog.at_level(logging.ERROR, logger="opentelemetry.exporter.weave"):
            for _ in range(2):
                with tracer.start_as_current_span("x"):
                    pass
                processor.force_flush(10_000)
        provider.shutdown()
    assert len([r for r in caplog.records if "on_drop callback raised" in r.getMessage()]) == 1
    assert processor.stats().calls_rejected == 2
