"""A small HTTP proxy on 127.0.0.1: CONNECT tunnels and plain forwards, each counted.

Everything the proxy reads in the clear (request heads, forwarded bodies) is kept in
``cleartext``; what passes through a tunnel is not readable to it and is not kept. With
``connect_reply_interval_seconds``, the proxy answers a CONNECT one byte at a time, that far
apart: a proxy that stalls without ever going silent long enough for a read timeout.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time

_HEAD_MAX_BYTES = 64 * 1024
_CONNECT_REPLY = b"HTTP/1.1 200 Connection established\r\n\r\n"


class ProxyServer:
    def __init__(self, connect_reply_interval_seconds: float = 0.0) -> None:
        self._interval = connect_reply_interval_seconds
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self.tunnels: list[str] = []
        """The ``host:port`` of each CONNECT."""
        self.forwards: list[str] = []
        """The absolute URL of each plainly forwarded request."""
        self.cleartext = b""

    @property
    def url(self) -> str:
        host, port = self._socket.getsockname()[:2]
        return f"http://{host}:{port}"

    def _accept(self) -> None:
        self._socket.settimeout(0.02)  # stopping waits for it
        while not self._stop.is_set():
            try:
                client, _ = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(5)
        with client, contextlib.suppress(OSError):
            head, rest = _read_head(client)
            with self._lock:
                self.cleartext += head + rest
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            if method == "CONNECT":
                self._tunnel(client, target)
            else:
                self._forward(client, head, rest, target)

    def _tunnel(self, client: socket.socket, target: str) -> None:
        with self._lock:
            self.tunnels.append(target)
        host, _, port = target.rpartition(":")
        with socket.create_connection((host, int(port)), timeout=5) as upstream:
            for index in range(len(_CONNECT_REPLY)):
                client.sendall(_CONNECT_REPLY[index : index + 1])
                time.sleep(self._interval)
            self._relay(client, upstream)

    def _forward(self, client: socket.socket, head: bytes, rest: bytes, target: str) -> None:
        with self._lock:
            self.forwards.append(target)
        # http://host:port/path: the origin gets the path, and one request per connection.
        authority, _, path = target.removeprefix("http://").partition("/")
        host, _, port = authority.rpartition(":")
        request_line, _, headers = head.partition(b"\r\n")
        method, _, version = request_line.decode("latin-1").split(" ")
        length = _content_length(headers)
        while len(rest) < length:
            chunk = client.recv(65536)
            if not chunk:
                return
            rest += chunk
        with self._lock:
            self.cleartext += rest
        with socket.create_connection((host, int(port)), timeout=5) as upstream:
            upstream.sendall(f"{method} /{path} {version}\r\n".encode() + headers + rest)
            answer_head, answer_rest = _read_head(upstream)
            status_line, _, answer_headers = answer_head.partition(b"\r\n")
            client.sendall(status_line + b"\r\nConnection: close\r\n" + answer_headers)
            client.sendall(answer_rest)
            remaining = _content_length(answer_headers) - len(answer_rest)
            while remaining > 0:
                chunk = upstream.recv(65536)
                if not chunk:
                    return
                client.sendall(chunk)
                remaining -= len(chunk)

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        while not self._stop.is_set():
            readable, _, _ = select.select(list(peers), [], [], 0.05)
            for source in readable:
                data = source.recv(65536)
                if not data:
                    return
                peers[source].sendall(data)

    def __enter__(self) -> ProxyServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._socket.close()


def _read_head(connection: socket.socket) -> tuple[bytes, bytes]:
    """The head through its blank line, and whatever came after it."""
    received = b""
    while b"\r\n\r\n" not in received:
        if len(received) > _HEAD_MAX_BYTES:
            raise OSError("request head too long")
        chunk = connection.recv(65536)
        if not chunk:
            raise OSError("closed before the end of the head")
        received += chunk
    head, _, rest = received.partition(b"\r\n\r\n")
    return head + b"\r\n\r\n", rest


def _content_length(headers: bytes) -> int:
    for line in headers.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0
