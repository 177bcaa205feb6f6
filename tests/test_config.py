from __future__ import annotations

from collections.abc import Sequence
from types import NoneType, UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

import pytest
from pydantic import SecretStr

from opentelemetry.exporter.weave import (
    AuthScheme,
    ConfigError,
    WeaveSettings,
    WeaveSpanExporter,
    WeaveSpanProcessor,
    WriteMode,
)
from opentelemetry.exporter.weave._config import SETTINGS, WeaveOptions

BASE_ENV = {"WANDB_API_KEY": "env-key-abcdef", "WEAVE_PROJECT": "team/proj"}


def test_defaults_from_minimal_environment() -> None:
    settings = WeaveSettings.from_env(BASE_ENV)
    assert settings.api_key.get_secret_value() == "env-key-abcdef"
    assert settings.project_id == "team/proj"
    assert (settings.entity, settings.project) == ("team", "proj")
    assert settings.server_url == "https://trace.wandb.ai"
    assert settings.write_mode is WriteMode.AUTO
    assert settings.auth_scheme is AuthScheme.BASIC
    assert settings.http_timeout_seconds == 10.0
    assert settings.max_concurrency == 8
    assert settings.schedule_delay_millis == 5000
    assert settings.max_queue_size == 2048
    assert settings.max_export_batch_size == 512
    assert settings.export_timeout_millis == 30000


def test_every_variable_is_read() -> None:
    env = {
        **BASE_ENV,
        "WF_TRACE_SERVER_URL": "http://127.0.0.1:9/",
        "WEAVE_OTEL_WRITE_MODE": "CALL_END",
        "WEAVE_OTEL_AUTH_SCHEME": "bearer",
        "WEAVE_OTEL_HTTP_TIMEOUT": "2.5",
        "WEAVE_OTEL_MAX_CONCURRENCY": "3",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_BSP_MAX_QUEUE_SIZE": "64",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "16",
        "OTEL_BSP_EXPORT_TIMEOUT": "700",
    }
    settings = WeaveSettings.from_env(env)
    assert settings.server_url == "http://127.0.0.1:9"
    assert settings.auth_scheme is AuthScheme.BEARER
    assert settings.http_timeout_seconds == 2.5
    assert settings.max_concurrency == 3
    assert settings.schedule_delay_millis == 100
    assert settings.max_queue_size == 64
    assert settings.max_export_batch_size == 16
    assert settings.export_timeout_millis == 700


def test_keyword_arguments_override_environment() -> None:
    settings = WeaveSettings.from_env(
        {**BASE_ENV, "OTEL_BSP_MAX_QUEUE_SIZE": "not-a-number"},
        api_key="kw-key",
        project="kw/proj",
        max_queue_size=10,
        max_export_batch_size=5,
    )
    assert settings.api_key.get_secret_value() == "kw-key"
    assert settings.project_id == "kw/proj"
    assert settings.max_queue_size == 10


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WANDB_BASE_URL": "https://wandb.example.com/"}, "https://wandb.example.com/traces"),
        ({"WANDB_BASE_URL": "https://api.wandb.ai"}, "https://trace.wandb.ai"),
        (
            {"WANDB_BASE_URL": "https://wandb.example.com", "WF_TRACE_SERVER_URL": "https://t.x"},
            "https://t.x",
        ),
    ],
)
def test_server_url_resolution(env: dict[str, str], expected: str) -> None:
    assert WeaveSettings.from_env({**BASE_ENV, **env}).server_url == expected


def test_project_from_wandb_entity_and_project() -> None:
    env = {"WANDB_API_KEY": "k", "WANDB_ENTITY": "ent", "WANDB_PROJECT": "proj"}
    assert WeaveSettings.from_env(env).project_id == "ent/proj"
    env = {"WANDB_API_KEY": "k", "WANDB_ENTITY": "ent", "WEAVE_PROJECT": "proj"}
    assert WeaveSettings.from_env(env).project_id == "ent/proj"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"WEAVE_PROJECT": "team/proj"}, "WANDB_API_KEY"),
        ({"WANDB_API_KEY": "k"}, "WEAVE_PROJECT"),
        ({"WANDB_API_KEY": "k", "WEAVE_PROJECT": "no-entity"}, "WEAVE_PROJECT"),
        ({"WANDB_API_KEY": "k", "WEAVE_PROJECT": "a/b/c"}, "WEAVE_PROJECT"),
        ({**BASE_ENV, "WF_TRACE_SERVER_URL": "ftp://x"}, "WF_TRACE_SERVER_URL"),
        ({**BASE_ENV, "WEAVE_OTEL_WRITE_MODE": "sometimes"}, "WEAVE_OTEL_WRITE_MODE"),
        ({**BASE_ENV, "WEAVE_OTEL_AUTH_SCHEME": "digest"}, "WEAVE_OTEL_AUTH_SCHEME"),
        ({**BASE_ENV, "WEAVE_OTEL_HTTP_TIMEOUT": "-1"}, "WEAVE_OTEL_HTTP_TIMEOUT"),
        ({**BASE_ENV, "WEAVE_OTEL_HTTP_TIMEOUT": "nan"}, "WEAVE_OTEL_HTTP_TIMEOUT"),
        ({**BASE_ENV, "WEAVE_OTEL_MAX_CONCURRENCY": "0"}, "WEAVE_OTEL_MAX_CONCURRENCY"),
        ({**BASE_ENV, "OTEL_BSP_SCHEDULE_DELAY": "soon"}, "OTEL_BSP_SCHEDULE_DELAY"),
        ({**BASE_ENV, "OTEL_BSP_MAX_QUEUE_SIZE": "1.5"}, "OTEL_BSP_MAX_QUEUE_SIZE"),
        ({**BASE_ENV, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "-3"}, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"),
        ({**BASE_ENV, "OTEL_BSP_EXPORT_TIMEOUT": "0"}, "OTEL_BSP_EXPORT_TIMEOUT"),
        (
            {**BASE_ENV, "OTEL_BSP_MAX_QUEUE_SIZE": "8", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "9"},
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        ),
    ],
)
def test_bad_setting_names_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        WeaveSettings.from_env(env)


def test_bad_keyword_names_the_argument() -> None:
    with pytest.raises(ConfigError, match="max_concurrency"):
        WeaveSettings.from_env(BASE_ENV, max_concurrency=0)
    with pytest.raises(ConfigError, match="max_queue_size"):
        WeaveSettings.from_env(BASE_ENV, max_queue_size=True)


def test_processor_and_exporter_fail_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEAVE_PROJECT", "team/proj")
    with pytest.raises(ConfigError, match="WANDB_API_KEY"):
        WeaveSpanProcessor()
    with pytest.raises(ConfigError, match="WANDB_API_KEY"):
        WeaveSpanExporter()


def test_processor_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**BASE_ENV, "OTEL_BSP_MAX_QUEUE_SIZE": "99"}.items():
        monkeypatch.setenv(name, value)
    processor = WeaveSpanProcessor()
    try:
        assert processor.settings.project_id == "team/proj"
        assert processor.settings.max_queue_size == 99
    finally:
        processor.shutdown()


def test_api_key_never_in_repr_or_errors() -> None:
    secret = "sup3r-s3cret-value"
    settings = WeaveSettings.from_env({"WANDB_API_KEY": secret, "WEAVE_PROJECT": "t/p"})
    exporter = WeaveSpanExporter(settings)
    try:
        for text in (repr(settings), str(settings), repr(exporter)):
            assert secret not in text
            assert "t/p" in text
    finally:
        exporter.shutdown()
    with pytest.raises(ConfigError) as caught:
        WeaveSettings.from_env({"WANDB_API_KEY": secret, "WEAVE_PROJECT": "bad"})
    assert secret not in str(caught.value)


# Keyword arguments that are converted on their way to their field, not only checked.
CONVERTED = {"api_key": (str, SecretStr), "redact_keys": (Sequence[str], tuple[str, ...])}


def _members(annotation: object) -> set[object]:
    if get_origin(annotation) in (Union, UnionType):
        return set(get_args(annotation)) - {NoneType}
    return {annotation}


def test_keyword_arguments_are_the_declared_settings() -> None:
    options = get_type_hints(WeaveOptions)
    assert list(options) == [setting.keyword for setting in SETTINGS]
    stored = get_type_hints(WeaveSettings)
    assert list(stored) == [setting.name for setting in SETTINGS]
    for setting in SETTINGS:
        accepted, field_type = options[setting.keyword], stored[setting.name]
        if setting.keyword in CONVERTED:
            assert (accepted, field_type) == CONVERTED[setting.keyword]
        else:
            # What a field holds can be passed back as its keyword argument.
            assert _members(field_type) <= _members(accepted), setting.keyword


def test_defaults_are_the_declared_ones() -> None:
    settings = WeaveSettings.from_env(BASE_ENV)
    for setting in SETTINGS:
        if not setting.required:
            assert getattr(settings, setting.name) == setting.default, setting.name


def test_unknown_keyword_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="'max_queue'"):
        WeaveSettings.from_env(BASE_ENV, max_queue=10)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="'project_id'"):
        WeaveSpanProcessor(project_id="team/proj")  # type: ignore[call-arg]


def test_blank_variable_is_unset() -> None:
    env = {**BASE_ENV, "WEAVE_OTEL_MAX_CONCURRENCY": "  ", "OTEL_BSP_MAX_QUEUE_SIZE": ""}
    settings = WeaveSettings.from_env(env)
    assert settings.max_concurrency == 8
    assert settings.max_queue_size == 2048


def test_batch_size_default_follows_a_small_queue() -> None:
    settings = WeaveSettings.from_env({**BASE_ENV, "OTEL_BSP_MAX_QUEUE_SIZE": "100"})
    assert (settings.max_queue_size, settings.max_export_batch_size) == (100, 100)
    with pytest.raises(ConfigError, match="max_export_batch_size"):
        WeaveSettings.from_env(BASE_ENV, max_queue_size=8, max_export_batch_size=9)


@pytest.mark.parametrize("name", ["span_filter", "redaction_callback", "on_drop"])
def test_keyword_only_setting_must_be_callable(name: str) -> None:
    not_callable: dict[str, Any] = {name: "not callable"}
    with pytest.raises(ConfigError, match=f"^{name}: must be a callable"):
        WeaveSettings.from_env(BASE_ENV, **not_callable)
    function: dict[str, Any] = {name: print}
    assert getattr(WeaveSettings.from_env(BASE_ENV, **function), name) is print
