"""An OTLP/HTTP gateway: receives traces from any language and any number of services, and
sends them to Weave as calls through the same pipeline as :class:`WeaveSpanProcessor`.

Run it with ``python -m opentelemetry.exporter.weave.gateway [--host H] [--port P]`` or
``weave-otlp-gateway`` (extra ``[gateway]``); see the README's "Gateway" section.
"""

from opentelemetry.exporter.weave.gateway._gateway import Gateway, GatewayStats
from opentelemetry.exporter.weave.gateway._server import GatewayServer
from opentelemetry.exporter.weave.gateway._settings import GatewaySettings

__all__ = ["Gateway", "GatewayServer", "GatewaySettings", "GatewayStats"]
