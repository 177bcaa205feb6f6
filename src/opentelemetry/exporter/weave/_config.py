"""Settings: keyword arguments over environment variables, validated once at construction.

Each setting is declared once, as a field of :class:`WeaveSettings` whose metadata gives its
environment variable, how a raw value is read and what the setting means. :meth:`from_env`
resolves the declarations in field order, and the README's configuration table is rendered
from them (``_docs.py``).
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from enum import Enum
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar
from urllib.parse import SplitResult, urlsplit

from opentelemetry.sdk.environment_variables import (
    OTEL_BSP_EXPORT_TIMEOUT,
    OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
    OTEL_BSP_MAX_QUEUE_SIZE,
    OTEL_BSP_SCHEDULE_DELAY,
)
from opentelemetry.sdk.trace import ReadableSpan
from pydantic import SecretStr

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "SETTINGS",
    "AuthScheme",
    "ConfigError",
    "DropCallback",
    "RedactionCallback",
    "Setting",
    "SpanFilter",
    "SpanSet",
    "WeaveOptions",
    "WeaveSettings",
    "WriteMode",
]

DEFAULT_TRACE_SERVER_URL = "https://trace.wandb.ai"
# The service refuses bodies over 32 MiB; Weave's own SDK stays under 31 MiB.
DEFAULT_MAX_REQUEST_BYTES = 31 * 1024 * 1024
WANDB_PUBLIC_BASE_URL = "https://api.wandb.ai"

SpanFilter = Callable[[ReadableSpan], bool]
"""``span_filter(span) -> bool``: whether a finished span becomes a call."""
RedactionCallback = Callable[[str, Any], Any]
"""``callback(field, value) -> value`` for field ``"inputs"``, ``"output"``, ``"attributes"``."""
DropCallback = Callable[[str, int], None]
"""``on_drop(reason, count)``: how many calls were lost, and why."""

_T = TypeVar("_T")
_E = TypeVar("_E", bound=Enum)


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
        variable: str | None,
        default: _T,
        parse: Callable[[object], _T],
        *,
        shown: Callable[[object], str] = repr,
    ) -> _T:
        """The argument if given, else the variable if set, else the default; parsed.

        A bad value raises ConfigError naming where it came from, with the value as ``shown``.
        """
        if argument is not None:
            source, raw = argument_name, argument
        elif variable is not None and (env_value := self.get(variable)) is not None:
            source, raw = variable, env_value
        else:
            return default
        try:
            return parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{source}: {exc} (got {shown(raw)})") from None


Resolver = Callable[[_Env, "Setting", Any, Mapping[str, Any]], Any]
"""How a setting gets its value: from the environment, its own declaration, its keyword
argument (None if not given) and the settings resolved before it, by field name."""


@dataclass(frozen=True)
class Setting:
    """One setting: a :class:`WeaveSettings` field together with its declaration."""

    name: str
    """The WeaveSettings field's name."""
    keyword: str
    env: str | None
    """The variable it is documented under; None for a keyword-only setting."""
    default: object
    """``dataclasses.MISSING`` for a required setting."""
    doc: str
    """Markdown: the "Meaning" column of the README's configuration table."""
    resolve: Resolver
    bounds: Bounds | None
    """The values a numeric setting accepts; None for the others."""

    @property
    def required(self) -> bool:
        return self.default is MISSING


@dataclass(frozen=True)
class _Declaration:
    """What a field's metadata holds; ``_declared`` adds the field's name and default."""

    env: str | None
    doc: str
    resolve: Resolver
    keyword: str | None
    bounds: Bounds | None


_DECLARATION = "opentelemetry.exporter.weave.setting"


def _setting(
    *,
    env: str | None,
    doc: str,
    parse: Callable[[object], Any] | None = None,
    resolve: Resolver | None = None,
    keyword: str | None = None,
    bounds: Bounds | None = None,
) -> dict[str, _Declaration]:
    """A WeaveSettings field's metadata. ``parse`` reads a plain setting (keyword argument,
    else variable, else the field's default); ``resolve`` replaces that for the others.
    ``keyword`` is the argument's name when it is not the field's. A numeric setting's
    ``parse`` is its :class:`Bounds`; one with a ``resolve`` of its own declares them."""
    if resolve is None:
        if parse is None:
            raise TypeError("a setting needs parse= or resolve=")
        resolve = _plain(parse)
    if bounds is None and isinstance(parse, Bounds):
        bounds = parse
    return {_DECLARATION: _Declaration(env, doc, resolve, keyword, bounds)}


def _plain(parse: Callable[[object], Any]) -> Resolver:
    def resolve(env: _Env, setting: Setting, argument: object, resolved: Mapping[str, Any]) -> Any:
        return env.setting(argument, setting.keyword, setting.env, setting.default, parse)

    return resolve


@dataclass(frozen=True)
class Bounds:
    """A numeric setting's parser: a number from ``low`` to ``high``, both included.

    Every number has an upper bound: a huge but finite delay or timeout overflows the waits
    of ``threading`` (``threading.TIMEOUT_MAX``) on the worker or in ``shutdown()``.
    """

    low: float
    high: float
    integer: bool = False

    def __call__(self, raw: object) -> float:
        value = self._number(raw)
        if value is None or not self.low <= value <= self.high:
            raise ValueError(f"must be {self}")
        return value

    def _number(self, raw: object) -> float | None:
        if isinstance(raw, bool):
            return None
        if self.integer:
            if isinstance(raw, int):
                return raw
            # Not str.isdigit alone: it accepts digits such as "²" that int() refuses.
            if isinstance(raw, str) and re.fullmatch(r"\s*[0-9]+\s*", raw):
                return int(raw)
            return None
        if isinstance(raw, (int, float)):
            return float(raw)
        if isinstance(raw, str):
            try:
                return float(raw)
            except ValueError:
                return None
        return None

    def __str__(self) -> str:
        kind = "an integer" if self.integer else "a number"
        return f"{kind} from {_number_text(self.low)} to {_number_text(self.high)}"


def _number_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


_MIB = 1024 * 1024
_HOUR_MILLIS = 3_600_000
_MAX_QUEUE_SIZE = 1_000_000
# The most the service accepts in one request body.
_SERVICE_MAX_REQUEST_BYTES = 32 * _MIB


def _enum(enum_type: type[_E]) -> Callable[[object], _E]:
    choices = ", ".join(str(member.value) for member in enum_type)

    def parse(raw: object) -> _E:
        try:
            return enum_type(raw.strip().lower() if isinstance(raw, str) else raw)
        except ValueError:
            raise ValueError(f"must be one of {choices}") from None

    return parse


def _callable(raw: object) -> object:
    if not callable(raw):
        raise ValueError("must be a callable")
    return raw


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
    _check_key_patterns(patterns)
    return patterns


def _check_key_patterns(patterns: tuple[str, ...]) -> None:
    """Build the scrubber with the patterns, as the exporter will: a pattern valid alone can
    break the expression it is joined into (an inline global flag such as ``(?i)``, a group
    name used twice)."""
    # Imported here: the redaction module imports this one.
    from opentelemetry.exporter.weave._redaction import Redactor

    for pattern in patterns:
        try:
            Redactor(extra_keys=(pattern,))
        except re.error as exc:
            raise ValueError(
                f"{pattern!r} cannot be used as a key pattern: {exc} (key names match "
                "case-insensitively already; scope any other flag to a group, as in (?s:...))"
            ) from None
    try:
        Redactor(extra_keys=patterns)
    except re.error as exc:
        raise ValueError(f"the patterns cannot be used together: {exc}") from None


def _resolve_api_key(
    env: _Env, setting: Setting, api_key: str | None, resolved: Mapping[str, Any]
) -> SecretStr:
    assert setting.env is not None
    source, key = (setting.keyword, api_key) if api_key is not None else (setting.env, None)
    if key is None:
        key = env.get(setting.env)
    if key is None or not key.strip():
        raise ConfigError(
            f"No Weave API key: set {setting.env} or pass {setting.keyword}= "
            "(find yours at https://wandb.ai/authorize)"
        )
    key = key.strip()
    # The key goes into the Authorization header as it is (bearer) or base64'd (basic): what
    # is not a token there is a mistake to report now, not an encoding error in each request.
    if not _API_KEY.fullmatch(key):
        raise ConfigError(
            f"{source}: the API key must be printable ASCII without spaces or control "
            "characters (the key is not shown)"
        )
    return SecretStr(key)


_API_KEY = re.compile(r"[\x21-\x7e]+")

_NAME_MAX_CHARS = 128
# W&B's own rule for project names (wandb.sdk.artifacts._validators.validate_project_name):
# at most 128 characters, none of these. The percent sign is among them, so a name never
# reaches the path already encoded.
_NAME_FORBIDDEN = frozenset("/\\#?%:")


def _name_problem(name: str, kind: str) -> str | None:
    """Why ``name`` is no W&B entity or project name, if it is not one.

    Entities are user and team names, which hold no spaces; projects may hold inner spaces.
    Neither may be a dot segment (``.``, ``..``), which a URL path would resolve away.
    """
    if not name:
        return f"the {kind} is empty"
    if len(name) > _NAME_MAX_CHARS:
        return f"the {kind} is longer than {_NAME_MAX_CHARS} characters"
    if name in (".", ".."):
        return f"the {kind} cannot be {name!r}"
    if forbidden := sorted(_NAME_FORBIDDEN.intersection(name)):
        return f"the {kind} cannot contain {' '.join(forbidden)}"
    if any(unicodedata.category(char).startswith(("C", "Z")) and char != " " for char in name):
        return f"the {kind} cannot contain control or separator characters"
    if kind == "entity" and " " in name:
        return "the entity cannot contain spaces"
    if name != name.strip():
        return f"the {kind} cannot start or end with a space"
    return None


def _resolve_project(
    env: _Env, setting: Setting, project: str | None, resolved: Mapping[str, Any]
) -> str:
    assert setting.env is not None
    if project is not None:
        source, value = setting.keyword, project
    elif (weave_project := env.get(setting.env)) is not None:
        source, value = setting.env, weave_project
    elif (wandb_project := env.get("WANDB_PROJECT")) is not None:
        source, value = "WANDB_PROJECT", wandb_project
    else:
        raise ConfigError(
            f"No Weave project: set {setting.env}=entity/project (or WANDB_ENTITY and "
            f"WANDB_PROJECT), or pass {setting.keyword}='entity/project'"
        )
    if not isinstance(value, str):
        raise ConfigError(f"{source}: must be 'entity/project' (got {value!r})")
    value = value.strip()
    if "/" not in value:
        entity = env.get("WANDB_ENTITY")
        if entity is None:
            raise ConfigError(
                f"{source}: must be 'entity/project', or set WANDB_ENTITY too (got {value!r})"
            )
        value = f"{entity}/{value}"
    entity_name, _, project_name = value.partition("/")
    if "/" in project_name:
        raise ConfigError(f"{source}: must be 'entity/project' (got {value!r})")
    for name, kind in ((entity_name, "entity"), (project_name, "project")):
        if (problem := _name_problem(name, kind)) is not None:
            raise ConfigError(f"{source}: must be 'entity/project', but {problem} (got {value!r})")
    return value


def _without_userinfo(url: object) -> str:
    """``url`` as it may be shown: anything before its last ``@`` (a ``user:password``, even
    one that breaks the URL) replaced by ``***``."""
    text = str(url)
    if "@" not in text:
        return text
    before, _, after = text.rpartition("@")
    scheme, separator, _ = before.partition("://")
    return f"{scheme}{separator}***@{after}" if separator else f"***@{after}"


def _shown_url(url: object) -> str:
    return repr(_without_userinfo(url))


def _url(raw: object, schemes: tuple[str, ...]) -> SplitResult:
    """``raw`` as a URL with one of ``schemes`` and a host; ValueError (that never shows the
    URL) otherwise."""
    names = ", ".join(f"{scheme}://" for scheme in schemes)
    if not isinstance(raw, str):
        raise ValueError(f"must be a {names} URL")
    try:
        url = urlsplit(raw.strip())
        url.port  # noqa: B018 -- parses the port: a bad one raises ValueError here
    except ValueError:
        raise ValueError(f"must be a {names} URL") from None
    if url.scheme.lower() not in schemes or not url.hostname:
        raise ValueError(f"must be a {names} URL")
    if any(char.isspace() or unicodedata.category(char) == "Cc" for char in raw.strip()):
        raise ValueError("must not contain spaces or control characters")
    return url


def _server_url(raw: object) -> str:
    url = _url(raw, ("http", "https"))
    text = str(raw)
    if url.username is not None or url.password is not None:
        # httpx would send these instead of the API key.
        raise ValueError("must not contain credentials (user:password@): the API key authenticates")
    if "?" in text or "#" in text:
        raise ValueError("must not have a query or a fragment: routes are appended to it")
    return url.geturl().rstrip("/")


def _resolve_server_url(
    env: _Env, setting: Setting, server_url: str | None, resolved: Mapping[str, Any]
) -> str:
    assert setting.env is not None
    if server_url is not None:
        source, url = setting.keyword, server_url
    elif (trace_server := env.get(setting.env)) is not None:
        source, url = setting.env, trace_server
    elif (base_url := env.get("WANDB_BASE_URL")) is not None and base_url.rstrip(
        "/"
    ) != WANDB_PUBLIC_BASE_URL:
        source, url = "WANDB_BASE_URL", f"{base_url.rstrip('/')}/traces"
    else:
        source, url = setting.keyword, None  # the default
    assert isinstance(setting.default, str)
    return env.setting(url, source, None, setting.default, _server_url, shown=_shown_url)


def _proxy_url(raw: object) -> str:
    # Unlike the server URL, a proxy URL may carry the proxy's own credentials.
    return _url(raw, ("http", "https", "socks5")).geturl()


def _resolve_proxy(
    env: _Env, setting: Setting, proxy: str | None, resolved: Mapping[str, Any]
) -> str | None:
    default: str | None = None
    return env.setting(proxy, setting.keyword, setting.env, default, _proxy_url, shown=_shown_url)


_LIVE_AFTER_BOUNDS = Bounds(0.001, 7 * 24 * 3600)


def _live_after(raw: object) -> float | None:
    if isinstance(raw, str) and raw.strip().lower() in ("off", "false"):
        return None
    try:
        return _LIVE_AFTER_BOUNDS(raw)
    except ValueError:
        raise ValueError(f"must be off or {_LIVE_AFTER_BOUNDS}") from None


def _spool_dir(raw: object) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise ValueError("must be a directory path")
    if "\0" in raw:
        raise ValueError("must not contain NUL characters")
    return raw


def _resolve_batch_size(
    env: _Env, setting: Setting, argument: object, resolved: Mapping[str, Any]
) -> int:
    max_queue: int = resolved["max_queue_size"]
    assert isinstance(setting.default, int)
    batch_size = env.setting(
        argument,
        setting.keyword,
        setting.env,
        # A small queue alone must not make the default invalid.
        float(min(setting.default, max_queue)),
        _QUEUE_SIZES,
    )
    if batch_size > max_queue:
        raise ConfigError(
            f"{setting.env} / {setting.keyword} ({batch_size}) must not "
            f"exceed {OTEL_BSP_MAX_QUEUE_SIZE} / max_queue_size ({max_queue})"
        )
    return int(batch_size)


_QUEUE_SIZES = Bounds(1, _MAX_QUEUE_SIZE, integer=True)


class WeaveOptions(TypedDict, total=False):
    """The keyword arguments of the processor and the exporter; each overrides its variable.

    One key per :data:`SETTINGS` entry, in the same order (a test holds them together).
    """

    api_key: str
    project: str
    server_url: str
    write_mode: str | WriteMode
    auth_scheme: str | AuthScheme
    proxy: str
    http_timeout_seconds: float
    max_concurrency: int
    schedule_delay_millis: float
    max_queue_size: int
    max_export_batch_size: int
    export_timeout_millis: float
    max_request_bytes: int
    spool_dir: str
    spool_max_bytes: int
    rollup_max_pending: int
    rollup_max_age_seconds: float
    spans: str | SpanSet
    span_filter: SpanFilter
    op_refs: bool
    live_after_seconds: float | None
    end_open_spans_at_exit: bool
    end_on_sigterm: bool
    redact: bool
    redact_keys: Sequence[str]
    redaction_callback: RedactionCallback
    on_drop: DropCallback


@dataclass(frozen=True)
class WeaveSettings:
    """Everything the exporter needs, resolved and validated.

    Build it with :meth:`from_env`; ``repr`` never shows the API key. Each field's metadata
    declares the setting (see ``_setting``); the ``doc`` texts are the README's.
    """

    api_key: SecretStr = field(
        repr=False,
        metadata=_setting(
            env="WANDB_API_KEY",
            resolve=_resolve_api_key,
            doc="W&B API key ([wandb.ai/authorize](https://wandb.ai/authorize)).",
        ),
    )
    project_id: str = field(
        metadata=_setting(
            env="WEAVE_PROJECT",
            keyword="project",
            resolve=_resolve_project,
            doc="`entity/project` the calls go to. Without it, `WANDB_PROJECT` is used; a "
            "project given without `entity/` takes the entity from `WANDB_ENTITY`.",
        )
    )
    server_url: str = field(
        default=DEFAULT_TRACE_SERVER_URL,
        metadata=_setting(
            env="WF_TRACE_SERVER_URL",
            resolve=_resolve_server_url,
            doc="Trace service base URL. Without it, `<WANDB_BASE_URL>/traces` when "
            f"`WANDB_BASE_URL` is set to anything but `{WANDB_PUBLIC_BASE_URL}` "
            "(dedicated / self-managed W&B).",
        ),
    )
    write_mode: WriteMode = field(
        default=WriteMode.AUTO,
        metadata=_setting(
            env="WEAVE_OTEL_WRITE_MODE",
            parse=_enum(WriteMode),
            doc="How calls are written: `auto`, `call_end`, `upsert_batch` or `calls_complete` "
            "(see [Write modes](#write-modes)).",
        ),
    )
    auth_scheme: AuthScheme = field(
        default=AuthScheme.BASIC,
        metadata=_setting(
            env="WEAVE_OTEL_AUTH_SCHEME",
            parse=_enum(AuthScheme),
            doc="`basic` (user `api`, the key as password, as Weave's SDK does) or `bearer` "
            "(`Authorization: Bearer <key>`).",
        ),
    )
    proxy: str | None = field(
        default=None,
        metadata=_setting(
            env="WEAVE_OTEL_PROXY",
            resolve=_resolve_proxy,
            doc="Proxy URL for the trace service (`http://`, `https://` or `socks5://`…); "
            "without it the standard `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` / `NO_PROXY` "
            "variables apply, as in httpx.",
        ),
    )
    http_timeout_seconds: float = field(
        default=10.0,
        metadata=_setting(
            env="WEAVE_OTEL_HTTP_TIMEOUT",
            parse=Bounds(0.001, 3600),
            doc="Timeout of one HTTP request, seconds.",
        ),
    )
    max_concurrency: int = field(
        default=8,
        metadata=_setting(
            env="WEAVE_OTEL_MAX_CONCURRENCY",
            parse=Bounds(1, 256, integer=True),
            doc="`call_end` mode: the most calls of a batch on their way at once (and the "
            "connection pool size); one sender starts, another whenever a call has been on its "
            "way for 2 ms.",
        ),
    )
    schedule_delay_millis: float = field(
        default=5000.0,
        metadata=_setting(
            env=OTEL_BSP_SCHEDULE_DELAY,
            parse=Bounds(1, _HOUR_MILLIS),
            doc="Processor: longest wait before queued spans are exported, ms.",
        ),
    )
    max_queue_size: int = field(
        default=2048,
        metadata=_setting(
            env=OTEL_BSP_MAX_QUEUE_SIZE,
            parse=_QUEUE_SIZES,
            doc="Processor: spans queued at most; more are dropped and counted.",
        ),
    )
    max_export_batch_size: int = field(
        default=512,
        metadata=_setting(
            env=OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
            resolve=_resolve_batch_size,
            bounds=_QUEUE_SIZES,
            doc="Processor: spans per export batch; must not exceed `max_queue_size`.",
        ),
    )
    export_timeout_millis: float = field(
        default=30000.0,
        metadata=_setting(
            env=OTEL_BSP_EXPORT_TIMEOUT,
            parse=Bounds(1, _HOUR_MILLIS),
            doc="Deadline of one export batch (retries included), and of `shutdown()`, ms.",
        ),
    )
    max_request_bytes: int = field(
        default=DEFAULT_MAX_REQUEST_BYTES,
        metadata=_setting(
            env="WEAVE_OTEL_MAX_REQUEST_BYTES",
            parse=Bounds(1024, _SERVICE_MAX_REQUEST_BYTES, integer=True),
            doc="Largest request body sent; the service refuses more than 32 MiB. A call too "
            "large on its own has its largest fields cut (see [Delivery](#delivery)).",
        ),
    )
    spool_dir: str | None = field(
        default=None,
        metadata=_setting(
            env="WEAVE_OTEL_SPOOL_DIR",
            parse=_spool_dir,
            doc="Directory of the on-disk spool for calls that could not be delivered (off "
            "when unset); see [Delivery](#delivery).",
        ),
    )
    spool_max_bytes: int = field(
        default=256 * _MIB,
        metadata=_setting(
            env="WEAVE_OTEL_SPOOL_MAX_BYTES",
            parse=Bounds(1, 2**40, integer=True),
            doc="Size cap of the spool; the oldest calls go first beyond it, counted.",
        ),
    )
    rollup_max_pending: int = field(
        default=10_000,
        metadata=_setting(
            env="WEAVE_OTEL_ROLLUP_MAX_PENDING",
            parse=Bounds(1, 1_000_000, integer=True),
            doc="Roll-up: most parents whose ended children's totals are held until the parent "
            "ends; the oldest are given up beyond it. Also bounds what the span filter tracks.",
        ),
    )
    rollup_max_age_seconds: float = field(
        default=3600.0,
        metadata=_setting(
            env="WEAVE_OTEL_ROLLUP_MAX_AGE",
            parse=Bounds(0.001, 7 * 24 * 3600),
            doc="Roll-up: longest such totals are held, seconds.",
        ),
    )
    spans: SpanSet = field(
        default=SpanSet.ALL,
        metadata=_setting(
            env="WEAVE_OTEL_SPANS",
            parse=_enum(SpanSet),
            doc="Which spans become calls: `all`, or `genai` (spans of an LLM convention, and "
            "their ancestors). See [Choosing what to export](#choosing-what-to-export).",
        ),
    )
    span_filter: SpanFilter | None = field(
        default=None,
        metadata=_setting(
            env=None,
            parse=_callable,
            doc="`span_filter(span) -> bool` on each finished `ReadableSpan`; overrides `spans`.",
        ),
    )
    op_refs: bool = field(
        default=True,
        metadata=_setting(
            env="WEAVE_OTEL_OP_REFS",
            parse=_switch,
            doc="Each call's `op_name` a ref to an op named after its span, created once per "
            "name per process, as Weave's own OTel ingestion does (the Op filter and Trace "
            "links need it): `on` or `off` (also `true`/`false`, `1`/`0`). When the op routes "
            "fail, calls are sent with their plain name all the same (`ops_fallback`).",
        ),
    )
    live_after_seconds: float | None = field(
        default=10.0,
        metadata=_setting(
            env="WEAVE_OTEL_LIVE_AFTER",
            parse=_live_after,
            bounds=_LIVE_AFTER_BOUNDS,
            doc="A span still open this many seconds after it started is shown in Weave as "
            "running: its start is sent then, its end when it ends (the processor only; "
            "`off` disables). The default is longer than most model calls and tools, which "
            "stay on the batched path, and short enough that a slow agent run shows while it "
            "runs; see [Long-running spans](#long-running-spans).",
        ),
    )
    end_open_spans_at_exit: bool = field(
        default=False,
        metadata=_setting(
            env="WEAVE_OTEL_END_OPEN_SPANS_AT_EXIT",
            parse=_switch,
            doc="At shutdown, also send the spans still open that were never shown as "
            "running, ended with a `ProcessExit` exception, so a crashed run keeps its parent "
            "(`on`/`off`). Spans shown as running are always ended at shutdown.",
        ),
    )
    end_on_sigterm: bool = field(
        default=False,
        metadata=_setting(
            env="WEAVE_OTEL_END_ON_SIGTERM",
            parse=_switch,
            doc="On SIGTERM, shut the processor down (ending its running calls) before the "
            "signal's previous handling goes on (`on`/`off`; set from the main thread).",
        ),
    )
    redact: bool = field(
        default=True,
        metadata=_setting(
            env="WEAVE_OTEL_REDACT",
            parse=_switch,
            doc="The default secret scrubber: `on` or `off` (also `true`/`false`, `1`/`0`). "
            "See [Security](#security).",
        ),
    )
    redact_keys: tuple[str, ...] = field(
        default=(),
        metadata=_setting(
            env="WEAVE_OTEL_REDACT_KEYS",
            parse=_patterns,
            doc="More secret key names for the scrubber, as regular expressions (the variable: "
            "comma-separated).",
        ),
    )
    redaction_callback: RedactionCallback | None = field(
        default=None,
        metadata=_setting(
            env=None,
            parse=_callable,
            doc='`callback(field, value) -> value`, run after the scrubber on `"inputs"`, '
            '`"output"` and `"attributes"`.',
        ),
    )
    on_drop: DropCallback | None = field(
        default=None,
        metadata=_setting(
            env=None,
            parse=_callable,
            doc="`on_drop(reason, count)`, called whenever calls are lost "
            "(see [Delivery](#delivery)).",
        ),
    )

    def __repr__(self) -> str:
        # Not the dataclass's: a URL's credentials (a proxy's) are never shown either.
        shown = (
            f"{spec.name}={_without_userinfo(value)!r}"
            if type(value := getattr(self, spec.name)) is str and "://" in value
            else f"{spec.name}={value!r}"
            for spec in fields(self)
            if spec.repr
        )
        return f"{type(self).__name__}({', '.join(shown)})"

    @property
    def entity(self) -> str:
        return self.project_id.split("/", 1)[0]

    @property
    def project(self) -> str:
        return self.project_id.split("/", 1)[1]

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **options: Unpack[WeaveOptions]
    ) -> WeaveSettings:
        """Resolve every setting: a keyword argument wins over its environment variable."""
        # TypedDict keys are checked statically only; at run time a misspelt one must still fail.
        given: Mapping[str, object] = options
        if unknown := sorted(given.keys() - _KEYWORDS):
            raise TypeError(
                f"{cls.__name__}.from_env() got an unexpected keyword argument {unknown[0]!r}"
            )
        env = _Env(os.environ if environ is None else environ)
        resolved: dict[str, Any] = {}
        for setting in SETTINGS:
            argument = given.get(setting.keyword)
            resolved[setting.name] = setting.resolve(env, setting, argument, resolved)
        return cls(**resolved)


def _declared(settings_class: type[WeaveSettings]) -> tuple[Setting, ...]:
    declared = []
    for spec in fields(settings_class):
        declaration: _Declaration = spec.metadata[_DECLARATION]
        declared.append(
            Setting(
                name=spec.name,
                keyword=declaration.keyword or spec.name,
                env=declaration.env,
                default=spec.default,
                doc=declaration.doc,
                resolve=declaration.resolve,
                bounds=declaration.bounds,
            )
        )
    return tuple(declared)


SETTINGS = _declared(WeaveSettings)
"""Every setting, in field order: the order they are resolved and documented in."""
_KEYWORDS = frozenset(setting.keyword for setting in SETTINGS)
