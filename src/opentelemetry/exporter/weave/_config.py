"""Settings: keyword arguments over environment variables, validated once at construction."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypedDict, TypeVar

from opentelemetry.sdk.trace import ReadableSpan
from pydantic import SecretStr

__all__ = ["AuthScheme", "ConfigError", "SpanSet", "WeaveOptions", "WeaveSettings", "WriteMode"]

DEFAULT_TRACE_SERVER_URL = "https://trace.wandb.ai"
# The service refuses bodies over 32 MiB; Weave's own SDK stays under 31 MiB.
DEFAULT_MAX_REQUEST_BYTES = 31 * 1024 * 1024
WANDB_PUBLIC_BASE_URL = "https://api.wandb.ai"

_T = TypeVar("_T")
_E = TypeVar("_E", bound=Enum)
_C = TypeVar("_C", bound=Callable[..., Any])


class ConfigError(ValueError):
    """A setting is missing or invalid. The message names the variable or argument."""


class WriteMode(str, Enum):
    """How calls are written: see the README's "Write modes" section."""

    AUTO = "auto"
    CALL_END = "call_end"
    UPSERT_BATCH = "upsert_batch"
    CALLS_COMPLETE = "calls_complete"


class SpanSet(str, Enum):
    """Which spans become calls (``WEAVE_OTEL_SPANS``)."""

    ALL = "all"
    GENAI = "genai"
    """Spans of any LLM convention, and their ancestors."""


class AuthScheme(str, Enum):
    BASIC = "basic"
    BEARER = "bearer"


class WeaveOptions(TypedDict, total=False):
    """The keyword arguments of the processor and the exporter; each overrides its variable."""

    api_key: str
    project: str
    server_url: str
    write_mode: str | WriteMode
    auth_scheme: str | AuthScheme
    http_timeout_seconds: float
    max_concurrency: int
    schedule_delay_millis: float
    max_queue_size: int
    max_export_batch_size: int
    export_timeout_millis: float
    max_request_bytes: int
    rollup_max_pending: int
    rollup_max_age_seconds: float
    spans: str | SpanSet
    span_filter: Callable[[ReadableSpan], bool]
    redact: bool
    redact_keys: Sequence[str]
    redaction_callback: Callable[[str, Any], Any]
    on_drop: Callable[[str, int], None]


@dataclass(frozen=True)
class WeaveSettings:
    """Everything the exporter needs, resolved and validated.

    Build it with :meth:`from_env`; ``repr`` never shows the API key.
    """

    api_key: SecretStr = field(repr=False)
    project_id: str
    server_url: str
    write_mode: WriteMode = WriteMode.AUTO
    auth_scheme: AuthScheme = AuthScheme.BASIC
    http_timeout_seconds: float = 10.0
    max_concurrency: int = 8
    schedule_delay_millis: float = 5000.0
    max_queue_size: int = 2048
    max_export_batch_size: int = 512
    export_timeout_millis: float = 30000.0
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    rollup_max_pending: int = 10_000
    rollup_max_age_seconds: float = 3600.0
    spans: SpanSet = SpanSet.ALL
    span_filter: Callable[[ReadableSpan], bool] | None = None
    """Overrides ``spans``: a span is exported when this returns True (or an exported
    descendant of it ended before it)."""
    redact: bool = True
    redact_keys: tuple[str, ...] = ()
    """Extra secret key patterns (regular expressions), besides the default ones."""
    redaction_callback: Callable[[str, Any], Any] | None = None
    on_drop: Callable[[str, int], None] | None = None
    """Called from the export worker with a reason and a count whenever calls are lost."""

    @property
    def entity(self) -> str:
        return self.project_id.split("/", 1)[0]

    @property
    def project(self) -> str:
        return self.project_id.split("/", 1)[1]

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        api_key: str | None = None,
        project: str | None = None,
        server_url: str | None = None,
        write_mode: str | WriteMode | None = None,
        auth_scheme: str | AuthScheme | None = None,
        http_timeout_seconds: float | None = None,
        max_concurrency: int | None = None,
        schedule_delay_millis: float | None = None,
        max_queue_size: int | None = None,
        max_export_batch_size: int | None = None,
        export_timeout_millis: float | None = None,
        max_request_bytes: int | None = None,
        rollup_max_pending: int | None = None,
        rollup_max_age_seconds: float | None = None,
        spans: str | SpanSet | None = None,
        span_filter: Callable[[ReadableSpan], bool] | None = None,
        redact: bool | str | None = None,
        redact_keys: Sequence[str] | str | None = None,
        redaction_callback: Callable[[str, Any], Any] | None = None,
        on_drop: Callable[[str, int], None] | None = None,
    ) -> WeaveSettings:
        """Resolve every setting: a keyword argument wins over its environment variable."""
        env = _Env(os.environ if environ is None else environ)
        max_queue = env.setting(
            max_queue_size, "max_queue_size", "OTEL_BSP_MAX_QUEUE_SIZE", 2048, _positive_int
        )
        batch_size = env.setting(
            max_export_batch_size,
            "max_export_batch_size",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
            min(512, max_queue),  # a small queue alone must not make the default invalid
            _positive_int,
        )
        if batch_size > max_queue:
            raise ConfigError(
                f"OTEL_BSP_MAX_EXPORT_BATCH_SIZE / max_export_batch_size ({batch_size}) must not "
                f"exceed OTEL_BSP_MAX_QUEUE_SIZE / max_queue_size ({max_queue})"
            )
        return cls(
            api_key=_resolve_api_key(env, api_key),
            project_id=_resolve_project(env, project),
            server_url=_resolve_server_url(env, server_url),
            write_mode=env.setting(
                write_mode,
                "write_mode",
                "WEAVE_OTEL_WRITE_MODE",
                WriteMode.AUTO,
                _enum(WriteMode),
            ),
            auth_scheme=env.setting(
                auth_scheme,
                "auth_scheme",
                "WEAVE_OTEL_AUTH_SCHEME",
                AuthScheme.BASIC,
                _enum(AuthScheme),
            ),
            http_timeout_seconds=env.setting(
                http_timeout_seconds,
                "http_timeout_seconds",
                "WEAVE_OTEL_HTTP_TIMEOUT",
                10.0,
                _positive_float,
            ),
            max_concurrency=env.setting(
                max_concurrency, "max_concurrency", "WEAVE_OTEL_MAX_CONCURRENCY", 8, _positive_int
            ),
            schedule_delay_millis=env.setting(
                schedule_delay_millis,
                "schedule_delay_millis",
                "OTEL_BSP_SCHEDULE_DELAY",
                5000.0,
                _positive_float,
            ),
            max_queue_size=max_queue,
            max_export_batch_size=batch_size,
            export_timeout_millis=env.setting(
                export_timeout_millis,
                "export_timeout_millis",
                "OTEL_BSP_EXPORT_TIMEOUT",
                30000.0,
                _positive_float,
            ),
            max_request_bytes=env.setting(
                max_request_bytes,
                "max_request_bytes",
                "WEAVE_OTEL_MAX_REQUEST_BYTES",
                DEFAULT_MAX_REQUEST_BYTES,
                _positive_int,
            ),
            rollup_max_pending=env.setting(
                rollup_max_pending,
                "rollup_max_pending",
                "WEAVE_OTEL_ROLLUP_MAX_PENDING",
                10_000,
                _positive_int,
            ),
            rollup_max_age_seconds=env.setting(
                rollup_max_age_seconds,
                "rollup_max_age_seconds",
                "WEAVE_OTEL_ROLLUP_MAX_AGE",
                3600.0,
                _positive_float,
            ),
            spans=env.setting(spans, "spans", "WEAVE_OTEL_SPANS", SpanSet.ALL, _enum(SpanSet)),
            span_filter=_callable_or_none("span_filter", span_filter),
            redact=env.setting(redact, "redact", "WEAVE_OTEL_REDACT", True, _switch),
            redact_keys=env.setting(
                redact_keys, "redact_keys", "WEAVE_OTEL_REDACT_KEYS", (), _patterns
            ),
            redaction_callback=_callable_or_none("redaction_callback", redaction_callback),
            on_drop=_callable_or_none("on_drop", on_drop),
        )


class _Env:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def get(self, name: str) -> str | None:
        value = self._environ.get(name, "").strip()
        return value or None

    def setting(
        self,
        argument: object,
        argument_name: str,
        variable: str,
        default: _T,
        parse: Callable[[object], _T],
    ) -> _T:
        """The argument if given, else the variable if set, else the default; parsed.

        A bad value raises ConfigError naming where it came from.
        """
        if argument is not None:
            source, raw = argument_name, argument
        else:
            env_value = self.get(variable)
            if env_value is None:
                return default
            source, raw = variable, env_value
        try:
            return parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc} (got {raw!r})") from None


def _positive_int(raw: object) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str) and raw.strip().isdigit():
        value = int(raw)
    else:
        raise ValueError("must be a positive integer")
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _positive_float(raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise ValueError("must be a positive number")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("must be a positive number") from None
    if not 0 < value < float("inf"):
        raise ValueError("must be a positive number")
    return value


def _enum(enum_type: type[_E]) -> Callable[[object], _E]:
    choices = ", ".join(str(member.value) for member in enum_type)

    def parse(raw: object) -> _E:
        try:
            return enum_type(raw.strip().lower() if isinstance(raw, str) else raw)
        except ValueError:
            raise ValueError(f"must be one of {choices}") from None

    return parse


def _callable_or_none(name: str, function: _C | None) -> _C | None:
    if function is not None and not callable(function):
        raise ConfigError(f"{name}: must be a callable (got {function!r})")
    return function


_SWITCH_VALUES = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}


def _switch(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _SWITCH_VALUES:
        return _SWITCH_VALUES[raw.strip().lower()]
    raise ValueError("must be on or off")


def _patterns(raw: object) -> tuple[str, ...]:
    if isinstance(raw, str):
        patterns = tuple(part.strip() for part in raw.split(",") if part.strip())
    elif isinstance(raw, (list, tuple)) and all(isinstance(part, str) for part in raw):
        patterns = tuple(raw)
    else:
        raise ValueError("must be regular expressions, comma-separated")
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from None
    return patterns


def _resolve_api_key(env: _Env, api_key: str | None) -> SecretStr:
    key = api_key if api_key is not None else env.get("WANDB_API_KEY")
    if key is None or not key.strip():
        raise ConfigError(
            "No Weave API key: set WANDB_API_KEY or pass api_key= "
            "(find yours at https://wandb.ai/authorize)"
        )
    return SecretStr(key.strip())


def _resolve_project(env: _Env, project: str | None) -> str:
    if project is not None:
        source, value = "project", project
    elif (weave_project := env.get("WEAVE_PROJECT")) is not None:
        source, value = "WEAVE_PROJECT", weave_project
    elif (wandb_project := env.get("WANDB_PROJECT")) is not None:
        source, value = "WANDB_PROJECT", wandb_project
    else:
        raise ConfigError(
            "No Weave project: set WEAVE_PROJECT=entity/project (or WANDB_ENTITY and "
            "WANDB_PROJECT), or pass project='entity/project'"
        )
    value = value.strip()
    if "/" not in value:
        entity = env.get("WANDB_ENTITY")
        if entity is None:
            raise ConfigError(
                f"{source}: must be 'entity/project', or set WANDB_ENTITY too (got {value!r})"
            )
        value = f"{entity}/{value}"
    entity_name, _, project_name = value.partition("/")
    if not entity_name or not project_name or "/" in project_name:
        raise ConfigError(f"{source}: must be 'entity/project' (got {value!r})")
    return value


def _resolve_server_url(env: _Env, server_url: str | None) -> str:
    if server_url is not None:
        source, url = "server_url", server_url
    elif (trace_server := env.get("WF_TRACE_SERVER_URL")) is not None:
        source, url = "WF_TRACE_SERVER_URL", trace_server
    elif (base_url := env.get("WANDB_BASE_URL")) is not None and base_url.rstrip(
        "/"
    ) != WANDB_PUBLIC_BASE_URL:
        source, url = "WANDB_BASE_URL", f"{base_url.rstrip('/')}/traces"
    else:
        return DEFAULT_TRACE_SERVER_URL
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")) or len(url.split("://", 1)[1]) == 0:
        raise ConfigError(f"{source}: must be an http:// or https:// URL (got {url!r})")
    return url
