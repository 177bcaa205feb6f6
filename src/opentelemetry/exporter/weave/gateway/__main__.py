"""``python -m opentelemetry.exporter.weave.gateway [--host H] [--port P]``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from opentelemetry.exporter.weave._config import ConfigError
from opentelemetry.exporter.weave.gateway._gateway import Gateway
from opentelemetry.exporter.weave.gateway._server import serve
from opentelemetry.exporter.weave.gateway._settings import GatewaySettings

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="weave-otlp-gateway",
        description="Receive OTLP/HTTP traces (POST /v1/traces) and send them to Weave as calls. "
        "Settings: WANDB_API_KEY, WEAVE_PROJECT, WF_TRACE_SERVER_URL, WEAVE_OTEL_*, "
        "WEAVE_GATEWAY_* (see the README's Gateway section).",
    )
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", help="port to listen on (default 4318; 0: any free one)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    options = {name: value for name, value in vars(args).items() if value is not None}
    try:
        gateway = Gateway(GatewaySettings.from_env(**options))
    except ConfigError as error:
        print(f"weave-otlp-gateway: {error}", file=sys.stderr)
        return 2
    return serve(gateway)


if __name__ == "__main__":
    sys.exit(main())
