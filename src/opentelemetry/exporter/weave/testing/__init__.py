"""A local, Weave-compatible trace receiver for demos and tests.

``LocalWeaveServer`` answers the trace service's call routes over HTTP/1.1 with keep-alive
(on 127.0.0.1 by default, IPv6 too), validates bodies as the service does, and keeps what it
receives for inspection::

    with LocalWeaveServer() as server:
        ...  # point the exporter at server.url
        assert server.calls("entity/project")

Run it on its own with ``python -m opentelemetry.exporter.weave.testing``.
"""

from opentelemetry.exporter.weave.testing._server import LocalWeaveServer, ReceivedRequest
from opentelemetry.exporter.weave.testing._store import call_status

__all__ = ["LocalWeaveServer", "ReceivedRequest", "call_status"]
