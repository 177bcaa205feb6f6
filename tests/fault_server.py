"""A trace-service stand-in on 127.0.0.1 that answers what each test scripts.

A ``responder`` may answer a request by its content; otherwise responses are consumed per route
in order, and once a route's script runs out, it answers 200 ``{}``. Every request is recorded.
``HangingServer`` accepts connections and never answers. ``TLSServer`` serves HTTPS with the
certificate it is given and counts the TLS handshakes it sees; ``untrusted_certificate`` makes
one that no client trusts.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import struct
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0
    reset: bool = False
    """Read the request, then reset the connection (RST) without answering."""
    trickle_interval_seconds: float = 0.0
    """Send the status line and headers, then the body one byte at a time, this far apart."""
    reason_phrase: str | None = None
    """The status line's reason, instead of the status's standard one."""
    claimed_length: int | None = None
    """The ``Content-Length`` announced, instead of the body's: a longer one never comes."""


@dataclass(frozen=True)
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    client_port: int = 0
    """The port the request's connection came from: one per connection."""

    def json(self) -> Any:
        return json.loads(self.body)


class ScriptedServer:
    def __init__(self) -> None:
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)
        # Consulted before the scripts: answers a request by what it carries.
        self.responder: Callable[[Seen], Reply | None] = lambda seen: None
        self._lock = threading.Lock()
        self.seen: list[Seen] = []
        # Each request with the reply it was given, in arrival order.
        self.answers: list[tuple[Seen, Reply]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle(self) -> None:
                # A client that gave up on an answer resets the connection: not a failure here.
                with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                    super().handle()

            def setup(self) -> None:
                super().setup()
                # Headers and body go out as two writes: without this, Nagle holds the body
                # back until the client's delayed ACK, some 40 ms per answer.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                reply = server._record_and_pick(
                    self.path, dict(self.headers.items()), body, self.client_address[1]
                )
                time.sleep(reply.delay_seconds)
                if reply.reset:
                    self._reset()
                    return
                payload = (
                    reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                )
                try:
                    self.send_response(reply.status, reply.reason_phrase)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    length = len(payload) if reply.claimed_length is None else reply.claimed_length
                    self.send_header("Content-Length", str(length))
                    self.end_headers()
                    if reply.trickle_interval_seconds > 0:
                        self._trickle(payload, reply.trickle_interval_seconds)
                    else:
                        self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # a late answer, given up on
                    self.close_connection = True

            def _reset(self) -> None:
                # Linger 0: closing sends RST instead of FIN, as a crashed proxy would.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True
                self.connection.close()

            def _trickle(self, payload: bytes, interval: float) -> None:
                self.wfile.flush()
                for index in range(len(payload)):
                    try:
                        self.wfile.write(payload[index : index + 1])
                        self.wfile.flush()
                    except OSError:  # the client gave up
                        self.close_connection = True
                        return
                    time.sleep(interval)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        # A short poll: stopping waits for it, at the end of every test.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def script(self, path: str, replies: Iterable[Reply]) -> None:
        with self._lock:
            self._scripts[path].extend(replies)

    def reset(self) -> None:
        """Forget every script, the responder and what was seen: one server for many tests."""
        with self._lock:
            self._scripts.clear()
            self.responder = lambda seen: None
            self.seen = []
            self.answers = []

    def _record_and_pick(
        self, path: str, headers: dict[str, str], body: bytes, client_port: int
    ) -> Reply:
        lowered = {name.lower(): value for name, value in headers.items()}
        seen = Seen(path, lowered, body, time.monotonic(), client_port)
        with self._lock:
            self.seen.append(seen)
            reply = self.responder(seen)
            if reply is None:
                script = self._scripts[path]
                reply = script.popleft() if script else Reply()
            self.answers.append((seen, reply))
            return reply

    def paths(self) -> list[str]:
        with self._lock:
            return [request.path for request in self.seen]

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class _RawServer:
    """A listening socket on 127.0.0.1 whose accepted connections go to ``_on_connection``."""

    scheme = "http"

    def __init__(self) -> None:
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._socket.getsockname()[:2]
        return f"{self.scheme}://{host}:{port}"

    def _accept(self) -> None:
        self._socket.settimeout(0.02)  # stopping waits for it
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._on_connection(connection)

    def _on_connection(self, connection: socket.socket) -> None:
        raise NotImplementedError

    def _start(self) -> None:
        self._thread.start()

    def _close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close()


class HangingServer(_RawServer):
    """Accepts connections, reads nothing useful, never answers."""

    def __init__(self) -> None:
        super().__init__()
        self._held: list[socket.socket] = []

    def _on_connection(self, connection: socket.socket) -> None:
        self._held.append(connection)

    def __enter__(self) -> HangingServer:
        self._start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()
        for connection in self._held:
            connection.close()


class TLSServer(_RawServer):
    """HTTPS on 127.0.0.1 with the certificate in ``context``; counts every handshake.

    ``connections`` counts connections as they are accepted (before any handshake, so a
    client can fail one only after it is counted); ``outcomes()`` has, per finished handshake,
    ``"ok"`` or its error. A connection whose handshake succeeds gets ``200 {}`` to its first
    request, then is closed. ``handshake_delay_seconds`` holds each handshake back that long.
    """

    scheme = "https"

    def __init__(self, context: ssl.SSLContext, handshake_delay_seconds: float = 0.0) -> None:
        super().__init__()
        self._context = context
        self._delay = handshake_delay_seconds
        self._lock = threading.Lock()
        self.handshakes: list[str] = []
        self.connections = 0

    def outcomes(self) -> list[str]:
        with self._lock:
            return list(self.handshakes)

    def _on_connection(self, connection: socket.socket) -> None:
        with self._lock:
            self.connections += 1
        threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        connection.settimeout(5)
        time.sleep(self._delay)
        try:
            tls = self._context.wrap_socket(connection, server_side=True)
        except (ssl.SSLError, OSError) as error:
            with self._lock:
                self.handshakes.append(f"failed: {error}")
            connection.close()
            return
        with self._lock:
            self.handshakes.append("ok")
        with tls, contextlib.suppress(OSError):
            self._answer(tls)

    @staticmethod
    def _answer(tls: ssl.SSLSocket) -> None:
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = tls.recv(65536)
            if not chunk:
                return
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = tls.recv(65536)
            if not chunk:
                return
            body += chunk
        tls.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2\r\nConnection: close\r\n\r\n{}"
        )

    def __enter__(self) -> TLSServer:
        self._start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()


def untrusted_certificate(directory: Path) -> tuple[ssl.SSLContext, trustme.CA]:
    """A server context for 127.0.0.1 whose chain ends in a new self-signed root, and the root.

    No client trusts the root unless told to (``ca.configure_trust(context)``).
    """
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    chain = directory / "chain.pem"
    chain.write_bytes(leaf.private_key_and_cert_chain_pem.bytes() + ca.cert_pem.bytes())
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain)
    return context, ca
