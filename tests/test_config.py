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
from opentelemetry.exporter.weave._config import SETTINGS, Setting, WeaveOptions
from opentelemetry.exporter.weave._docs import config_table

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


# Every numeric setting has a range, shown in the README, and a ConfigError outside it.

NUMERIC = [setting for setting in SETTINGS if setting.bounds is not None]


def test_every_numeric_setting_has_bounds() -> None:
    numeric = {
        setting.keyword
        for setting in SETTINGS
        if isinstance(setting.default, (int, float)) and not isinstance(setting.default, bool)
    }
    assert numeric == {setting.keyword for setting in NUMERIC}


@pytest.mark.parametrize("setting", NUMERIC, ids=lambda setting: setting.keyword)
def test_a_number_outside_its_bounds_is_a_config_error(setting: Setting) -> None:
    assert setting.bounds is not None
    options: dict[str, Any] = {}
    if setting.keyword == "max_export_batch_size":
        options["max_queue_size"] = 1_000_000
    low, high = setting.bounds.low, setting.bounds.high
    for value in (low, high):
        accepted = WeaveSettings.from_env(BASE_ENV, **{**options, setting.keyword: value})
        assert getattr(accepted, setting.name) == value
    for value in (high * 10, 1e13, low / 2 if low > 0.001 else 0, -1, float("inf"), "1e400"):
        with pytest.raises(ConfigError, match=f"^{setting.keyword}: must be "):
            WeaveSettings.from_env(BASE_ENV, **{**options, setting.keyword: value})
    assert setting.env is not None
    with pytest.raises(ConfigError, match=f"^{setting.env}: must be "):
        WeaveSettings.from_env({**BASE_ENV, setting.env: str(high * 10)})


def test_an_integer_setting_refuses_digits_int_cannot_read() -> None:
    with pytest.raises(ConfigError, match="WEAVE_OTEL_MAX_CONCURRENCY: must be an integer"):
        WeaveSettings.from_env({**BASE_ENV, "WEAVE_OTEL_MAX_CONCURRENCY": "²"})


def test_the_readme_table_shows_each_range() -> None:
    table = config_table()
    for setting in NUMERIC:
        row = next(line for line in table.splitlines() if f"`{setting.keyword}`" in line)
        assert str(setting.bounds).capitalize() in row


# Every construction error is a ConfigError naming the setting.


@pytest.mark.parametrize("pattern", ["(?i)secret", "(?x)my key", "(?P<k>a)", "x(?s)y"])
def test_a_key_pattern_the_scrubber_cannot_join_is_a_config_error(pattern: str) -> None:
    patterns = [pattern, pattern] if "?P<" in pattern else [pattern]
    with pytest.raises(ConfigError, match=r"^redact_keys: "):
        WeaveSettings.from_env(BASE_ENV, redact_keys=patterns)
    with pytest.raises(ConfigError, match=r"^WEAVE_OTEL_REDACT_KEYS: "):
        WeaveSettings.from_env({**BASE_ENV, "WEAVE_OTEL_REDACT_KEYS": ",".join(patterns)})


def test_key_patterns_that_join_build_the_exporter() -> None:
    settings = WeaveSettings.from_env(BASE_ENV, redact_keys=["(?i:internal)_id", "x(?s:.)y"])
    WeaveSpanExporter(settings).shutdown()


BAD_KEYS = ["kéy-abcdef", "key\x00abcdef", "key\nabcdef", "key abcdef", "key\x7fabcdef", "ключ"]


@pytest.mark.parametrize("scheme", ["basic", "bearer"])
@pytest.mark.parametrize("key", BAD_KEYS, ids=range(len(BAD_KEYS)))
def test_a_key_that_is_no_header_value_is_a_config_error_that_hides_it(
    key: str, scheme: str
) -> None:
    env = {**BASE_ENV, "WEAVE_OTEL_AUTH_SCHEME": scheme}
    for source, environ, options in [
        ("WANDB_API_KEY", {**env, "WANDB_API_KEY": key}, {}),
        ("api_key", env, {"api_key": key}),
    ]:
        with pytest.raises(ConfigError, match=f"^{source}: ") as caught:
            WeaveSettings.from_env(environ, **options)
        message = str(caught.value)
        assert key not in message
        assert repr(key) not in message
        assert "abcdef" not in message


@pytest.mark.parametrize(
    "url",
    [
        "https://user:hunter2pass@trace.example.com",
        "https://hunter2pass@trace.example.com",
        "https://:hunter2pass@trace.example.com/traces",
    ],
)
def test_a_server_url_with_credentials_is_a_config_error_that_hides_them(url: str) -> None:
    for source, env, options in [
        ("server_url", BASE_ENV, {"server_url": url}),
        ("WF_TRACE_SERVER_URL", {**BASE_ENV, "WF_TRACE_SERVER_URL": url}, {}),
        ("WANDB_BASE_URL", {**BASE_ENV, "WANDB_BASE_URL": url}, {}),
    ]:
        with pytest.raises(ConfigError, match=f"^{source}: must not contain credentials") as e:
            WeaveSettings.from_env(env, **options)
        assert "hunter2pass" not in str(e.value)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://user:hunter2pass@x",
        "https://",
        "https://host:99999",
        "https://host:port",
        "https://ho st",
        "https://host/a\x00b",
        "https://host?x=1",
        "https://host/#frag",
    ],
)
def test_a_bad_server_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match=r"^server_url: must ") as caught:
        WeaveSettings.from_env(BASE_ENV, server_url=url)
    assert "hunter2pass" not in str(caught.value)


def test_repr_never_shows_url_credentials() -> None:
    settings = WeaveSettings.from_env(BASE_ENV, proxy="http://proxyuser:hunter2pass@proxy:3128")
    assert settings.proxy == "http://proxyuser:hunter2pass@proxy:3128"  # the transport's
    for text in (repr(settings), str(settings)):
        assert "hunter2pass" not in text
        assert "proxyuser" not in text
        assert "proxy:3128" in text


@pytest.mark.parametrize(
    "proxy", ["http://proxy:3128", "https://proxy", "socks5://user:pw@127.0.0.1:1080"]
)
def test_a_proxy_url_is_read(proxy: str) -> None:
    assert WeaveSettings.from_env(BASE_ENV, proxy=proxy).proxy == proxy
    assert WeaveSettings.from_env({**BASE_ENV, "WEAVE_OTEL_PROXY": proxy}).proxy == proxy


@pytest.mark.parametrize(
    "proxy", ["ftp://proxy", "proxy:3128", "http://", "http://proxy:port", "socks4://p"]
)
def test_a_bad_proxy_is_a_config_error_that_hides_its_credentials(proxy: str) -> None:
    with_password = proxy.replace("://", "://u:hunter2pass@", 1)
    for value in (proxy, with_password):
        with pytest.raises(ConfigError, match=r"^WEAVE_OTEL_PROXY: must ") as caught:
            WeaveSettings.from_env({**BASE_ENV, "WEAVE_OTEL_PROXY": value})
        assert "hunter2pass" not in str(caught.value)


def test_the_spool_settings_are_read() -> None:
    settings = WeaveSettings.from_env(
        {
            **BASE_ENV,
            "WEAVE_OTEL_SPOOL_DIR": "/var/spool/weave",
            "WEAVE_OTEL_SPOOL_MAX_BYTES": "4096",
        }
    )
    assert (settings.spool_dir, settings.spool_max_bytes) == ("/var/spool/weave", 4096)
    assert WeaveSettings.from_env(BASE_ENV).spool_dir is None


@pytest.mark.parametrize("spool_dir", ["", "   ", "/tmp/a\x00b"])
def test_a_bad_spool_dir_is_a_config_error(spool_dir: str) -> None:
    with pytest.raises(ConfigError, match=r"^spool_dir: must "):
        WeaveSettings.from_env(BASE_ENV, spool_dir=spool_dir)


@pytest.mark.parametrize(
    "proxy",
    ["user:hunter2pass@proxy:3128", "http://user:hunter2/pass@proxy:3128", "http://u:hunter2pass@"],
)
def test_a_proxy_url_too_broken_to_parse_still_hides_its_credentials(proxy: str) -> None:
    with pytest.raises(ConfigError, match=r"^proxy: must ") as caught:
        WeaveSettings.from_env(BASE_ENV, proxy=proxy)
    assert "hunter2" not in str(caught.value)
