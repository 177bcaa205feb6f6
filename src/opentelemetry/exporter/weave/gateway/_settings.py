"""The gateway's own settings, declared once each as :class:`WeaveSettings`'s are.

What the calls go through (project, key, server, redaction, roll-up, delivery, spool…) is the
package's :class:`WeaveSettings`, read from the same variables; these settings are only about
receiving: where to listen, how long a trace is held, how much the gateway takes in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from opentelemetry.exporter.weave._config import (
    _DECLARATION,
    Bounds,
    ConfigError,
    Setting,
    _Declaration,
    _Env,
    _setting,
)

__all__ = ["GATEWAY_SETTINGS", "ConfigError", "GatewaySettings"]

_MIB = 1024 * 1024
_DAY_SECONDS = 24 * 3600


def _host(raw: object) -> str:
    if not isinstance(raw, str) or not raw.strip() or any(char.isspace() for char in raw.strip()):
        raise ValueError("must be a host name or address")
    return raw.strip()


@dataclass(frozen=True)
class GatewaySettings:
    """How the gateway receives; build it with :meth:`from_env`."""

    host: str = field(
        default="127.0.0.1",
        metadata=_setting(
            env="WEAVE_GATEWAY_HOST",
            parse=_host,
            doc="Address to listen on (`--host`); `0.0.0.0` for every interface.",
        ),
    )
    port: int = field(
        default=4318,
        metadata=_setting(
            env="WEAVE_GATEWAY_PORT",
            parse=Bounds(0, 65535, integer=True),
            doc="Port to listen on (`--port`; the OTLP/HTTP port by default; `0`: any free one).",
        ),
    )
    trace_wait_seconds: float = field(
        default=5.0,
        metadata=_setting(
            env="WEAVE_GATEWAY_TRACE_WAIT",
            parse=Bounds(0, 3600),
            doc="How long a trace's spans are held after its root (a span with no parent) "
            "arrived, for the spans other services send later, seconds.",
        ),
    )
    max_trace_wait_seconds: float = field(
        default=60.0,
        metadata=_setting(
            env="WEAVE_GATEWAY_MAX_TRACE_WAIT",
            parse=Bounds(0.001, _DAY_SECONDS),
            doc="Longest a trace whose root never arrives is held, from its first span, "
            "seconds; then it is exported as it is (`traces_timed_out`).",
        ),
    )
    max_held_spans: int = field(
        default=100_000,
        metadata=_setting(
            env="WEAVE_GATEWAY_MAX_HELD_SPANS",
            parse=Bounds(1, 10_000_000, integer=True),
            doc="Most spans held waiting for their trace; beyond it the oldest traces are "
            "exported early (`traces_exported_early`).",
        ),
    )
    max_held_traces: int = field(
        default=20_000,
        metadata=_setting(
            env="WEAVE_GATEWAY_MAX_HELD_TRACES",
            parse=Bounds(1, 1_000_000, integer=True),
            doc="Most traces held at once; beyond it the oldest are exported early.",
        ),
    )
    max_queue_spans: int = field(
        # About 4.4 KiB a queued span of ~1 KB of messages (benchmarks/gateway.py): some
        # 220 MiB with the backend down.
        default=50_000,
        metadata=_setting(
            env="WEAVE_GATEWAY_MAX_QUEUE_SPANS",
            parse=Bounds(1, 10_000_000, integer=True),
            doc="Most spans taken in and not yet exported (held or waiting for the backend); "
            "a request beyond it is answered 503 with `Retry-After`, for the client to retry. "
            "A queued span takes a few KiB (about 4.4 KiB for ~1 KB of messages).",
        ),
    )
    max_queue_bytes: int = field(
        default=512 * _MIB,
        metadata=_setting(
            env="WEAVE_GATEWAY_MAX_QUEUE_BYTES",
            parse=Bounds(1024, 2**40, integer=True),
            doc="The same bound in bytes of decoded request bodies.",
        ),
    )
    max_body_bytes: int = field(
        default=32 * _MIB,
        metadata=_setting(
            env="WEAVE_GATEWAY_MAX_BODY_BYTES",
            parse=Bounds(1024, 2**31, integer=True),
            doc="Largest request body, before and after decompression; more is answered 413.",
        ),
    )
    max_pipelines: int = field(
        default=32,
        metadata=_setting(
            env="WEAVE_GATEWAY_MAX_PIPELINES",
            parse=Bounds(1, 10_000, integer=True),
            doc="Most export pipelines (one per project and API key) open at once; the least "
            "recently used is closed beyond it.",
        ),
    )
    export_workers: int = field(
        default=2,
        metadata=_setting(
            env="WEAVE_GATEWAY_EXPORT_WORKERS",
            parse=Bounds(1, 256, integer=True),
            doc="Threads exporting batches, each to one pipeline at a time.",
        ),
    )
    retry_after_seconds: int = field(
        default=1,
        metadata=_setting(
            env="WEAVE_GATEWAY_RETRY_AFTER",
            parse=Bounds(1, 3600, integer=True),
            doc="The `Retry-After` of a 503 answer (queue full, or draining), seconds.",
        ),
    )
    max_connections: int = field(
        default=1024,
        metadata=_setting(
            env="WEAVE_GATEWAY_MAX_CONNECTIONS",
            parse=Bounds(1, 100_000, integer=True),
            doc="Connections and requests served at once; more are answered 503.",
        ),
    )
    drain_timeout_seconds: float = field(
        default=30.0,
        metadata=_setting(
            env="WEAVE_GATEWAY_DRAIN_TIMEOUT",
            parse=Bounds(0.001, 3600),
            doc="On SIGTERM or SIGINT: longest time to export what is held and queued before "
            "exiting, seconds.",
        ),
    )

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **options: object
    ) -> GatewaySettings:
        """Resolve every setting: a keyword argument (a command-line flag) wins over its
        variable; a bad value raises :class:`ConfigError` naming it."""
        if unknown := sorted(options.keys() - {setting.keyword for setting in GATEWAY_SETTINGS}):
            raise TypeError(f"unknown gateway setting {unknown[0]!r}")
        env = _Env(os.environ if environ is None else environ)
        resolved: dict[str, Any] = {}
        for setting in GATEWAY_SETTINGS:
            resolved[setting.name] = setting.resolve(
                env, setting, options.get(setting.keyword), resolved
            )
        return cls(**resolved)


def _declared() -> tuple[Setting, ...]:
    declared = []
    for spec in fields(GatewaySettings):
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


GATEWAY_SETTINGS = _declared()
"""Every gateway setting, in field order (resolved and documented in it)."""
