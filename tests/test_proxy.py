"""Exporting through a proxy, over real HTTP on 127.0.0.1: a real CONNECT proxy in between.

Which proxy applies (the ``proxy`` setting, else the environment as httpx reads it), that the key
crosses a proxy only inside a TLS tunnel, and that the attempt's deadline bounds a proxy too.
"""

from __future__ import annotations

import base64
import logging
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from opentelemetry.exporter.weave import _transport
from opentelemetry.exporter.weave._call import CALL_START_ROUTE, call_start_body
from opentelemetry.exporter.weave._config import ConfigError
from opentelemetry.exporter.weave._transport import HttpAttempt, PostResult

from .fault_server import ScriptedServer, TLSServer
from .helpers import API_KEY, make_call, settings_for
from .proxy_server import ProxyServer

BODY = call_start_body(make_call())
LOGGER = "opentelemetry.exporter.weave"
PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD")
KEY_FORMS = (API_KEY.encode(), base64.b64encode(f"api:{API_KEY}".encode()), b"uthorization")


@pytest.fixture(autouse=True)
def no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets: the machine's own proxy variables would route it elsewhere."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def proxy() -> Iterator[ProxyServer]:
    with ProxyServer() as server:
        yield server


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as scripted:
        yield scripted


@pytest.fixture
def attempts() -> Iterator[list[HttpAttempt]]:
    made: list[HttpAttempt] = []
    yield made
    for attempt in made:
        attempt.close()


def post_via(
    attempts: list[HttpAttempt], url: str, timeout: float = 5.0, **options: Any
) -> PostResult:
    attempts.append(HttpAttempt(settings_for(url, **options)))
    return attempts[-1].post(CALL_START_ROUTE, BODY, timeout, {})


# Which proxy.


@pytest.mark.parametrize(
    ("variable", "dropped_prefix"),
    [("HTTP_PROXY", ""), ("http_proxy", ""), ("ALL_PROXY", ""), ("HTTP_PROXY", "http://")],
    ids=["HTTP_PROXY", "http_proxy", "ALL_PROXY", "no-scheme"],
)
def test_a_proxy_variable_is_honoured(
    variable: str,
    dropped_prefix: str,
    proxy: ProxyServer,
    server: ScriptedServer,
    attempts: list[HttpAttempt],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(variable, proxy.url.removeprefix(dropped_prefix))
    assert post_via(attempts, server.url).ok
    assert proxy.forwards == [f"{server.url}{CALL_START_ROUTE}"]
    assert server.paths() == [CALL_START_ROUTE]


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "localhost,127.0.0.1", "127.0.0.0/8", "*"])
def test_no_proxy_bypasses_the_proxy(
    no_proxy: str,
    proxy: ProxyServer,
    server: ScriptedServer,
    attempts: list[HttpAttempt],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", no_proxy)
    assert post_via(attempts, server.url).ok
    assert (proxy.forwards, proxy.tunnels) == ([], [])
    assert server.paths() == [CALL_START_ROUTE]


def test_the_proxy_setting_wins_over_the_variables(
    proxy: ProxyServer,
    server: ScriptedServer,
    attempts: list[HttpAttempt],
    closed_port_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", closed_port_url)  # used, it would refuse the connection
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert post_via(attempts, server.url, proxy=proxy.url).ok
    assert proxy.forwards == [f"{server.url}{CALL_START_ROUTE}"]


def test_a_proxy_httpx_cannot_use_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "ftp://proxy.example:21")
    with pytest.raises(ConfigError, match="HTTPS_PROXY"):
        HttpAttempt(settings_for("https://trace.example"))


# The key and the proxy.


@pytest.fixture
def trusted_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TLSServer]:
    """An HTTPS server whose root the transport trusts (in place of the system's roots)."""
    ca = trustme.CA()
    chain = tmp_path / "chain.pem"
    leaf = ca.issue_cert("127.0.0.1")
    chain.write_bytes(leaf.private_key_and_cert_chain_pem.bytes() + ca.cert_pem.bytes())
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(chain)
    trusting = ssl.create_default_context()
    ca.configure_trust(trusting)
    monkeypatch.setattr(_transport, "_verifying_ssl_context", lambda: trusting)
    with TLSServer(server_context) as server:
        yield server


def test_an_https_server_is_reached_through_a_connect_tunnel(
    trusted_tls: TLSServer,
    proxy: ProxyServer,
    attempts: list[HttpAttempt],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    result = post_via(attempts, trusted_tls.url)
    assert result.ok, result.reason
    assert proxy.tunnels == [trusted_tls.url.removeprefix("https://")]
    assert proxy.forwards == []
    assert trusted_tls.outcomes() == ["ok"]
    # All the proxy read in the clear was the CONNECT: no Authorization, no key in any form.
    assert proxy.cleartext.startswith(b"CONNECT ")
    assert [form for form in KEY_FORMS if form in proxy.cleartext] == []


def test_the_deadline_bounds_a_proxy_that_stalls(
    trusted_tls: TLSServer,
    attempts: list[HttpAttempt],
) -> None:
    # Each byte of the CONNECT answer well within a read timeout; all of it takes 4 s.
    with ProxyServer(connect_reply_interval_seconds=0.1) as stalling:
        result = post_via(
            attempts, trusted_tls.url, 0.3, proxy=stalling.url, http_timeout_seconds=10.0
        )
        assert len(stalling.tunnels) == 1
    # Waited out, the tunnel would have carried the request to a 200.
    assert (result.status_code, result.retryable) == (None, True)
    assert "Timeout" in result.reason


@pytest.mark.parametrize(
    ("server_url", "warned"),
    [("http://127.0.0.1:9", True), ("https://trace.example", False)],
    ids=["http-server", "https-server"],
)
def test_plain_http_through_a_remote_proxy_warns_the_proxy_sees_the_key(
    server_url: str,
    warned: bool,
    attempts: list[HttpAttempt],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        attempts.append(
            HttpAttempt(settings_for(server_url, proxy="http://me:pr0xy-pw@10.255.255.1:3128"))
        )
    warnings = [record.getMessage() for record in caplog.records if record.name == LOGGER]
    assert bool(warnings) is warned
    for warning in warnings:
        assert "through the proxy http://10.255.255.1:3128" in warning
        assert "pr0xy-pw" not in warning


@pytest.mark.parametrize(
    ("host", "no_proxy", "bypassed"),
    [
        ("trace.example.com", "example.com", True),  # the domain and its subdomains
        ("example.com", "example.com", True),
        ("notexample.com", "example.com", False),
        ("example.com", ".example.com", False),  # a leading dot: subdomains only
        ("trace.example.com", ".example.com", True),
        ("TRACE.Example.com", "other.org, example.COM", True),
        ("10.1.2.3", "10.0.0.0/8", True),
        ("11.1.2.3", "10.0.0.0/8", False),
        ("anything.example", "*", True),
        ("trace.example.com", "", False),
    ],
)
def test_no_proxy_names_hosts_domains_and_networks_as_httpx_reads_them(
    host: str, no_proxy: str, bypassed: bool
) -> None:
    assert _transport._bypassed(httpx.URL(f"https://{host}/traces"), no_proxy) is bypassed


def test_the_proxy_password_is_redacted_from_the_logs_like_the_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    password = "proxy-pass-0123456789"
    attempt = HttpAttempt(
        settings_for("https://trace.example", proxy=f"http://user:{password}@127.0.0.1:9")
    )
    with caplog.at_level(logging.DEBUG, logger="opentelemetry.exporter.weave"):
        logging.getLogger("opentelemetry.exporter.weave").warning("proxy said %s", password)
    attempt.close()

    assert password not in caplog.text
    assert "proxy said ***" in caplog.text
