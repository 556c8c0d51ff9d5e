"""The HTTP MI against browsers: cross-origin requests and DNS rebinding, over real HTTP.

A web page in a browser on the host can send a "simple" ``text/plain`` POST
to 127.0.0.1, or, with its name rebound to 127.0.0.1, read the answers.
Every such request is refused, on ``/mi`` and ``/metrics``; the stock
``opensips-mi`` and ``opensips-cli`` still work.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import select
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest_twisted  # type: ignore[import-untyped, unused-ignore]
from twisted.internet import defer, threads

from sipsock.mi.http import listen_http
from sipsock.testing import FakeRegistry
from tests.integration.test_mi_frontends import (
    ROOT,
    TIMEOUT,
    _clean_dir,
    _port_of,
    make_table,
    opensips_mi,
    run,
)

OPENSIPS_CLI = str(ROOT / ".venv" / "bin" / "opensips-cli")
JSON = "application/json"
RELOAD = b'{"jsonrpc":"2.0","id":"1","method":"sockets_reload"}'


def _request(
    port: int, method: str, path: str, body: bytes | None, headers: dict[str, str]
) -> tuple[int, bytes]:
    """One request with exactly these headers (Host included: none is added)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@contextlib.asynccontextmanager
async def _mi_server(**limits: Any) -> AsyncIterator[tuple[FakeRegistry, int]]:
    registry = FakeRegistry()

    def metrics() -> defer.Deferred[str]:
        return defer.succeed("sipsock_up 1\n")

    port = listen_http(
        make_table(registry), interface="127.0.0.1", port=0, metrics=metrics, **limits
    )
    try:
        yield registry, _port_of(port)
    finally:
        await defer.maybeDeferred(port.stopListening)


async def _call(port: int, method: str, path: str, body: bytes | None, **headers: str) -> Any:
    named = {name.replace("_", "-"): value for name, value in headers.items()}
    return await threads.deferToThread(_request, port, method, path, body, named)


@pytest_twisted.ensureDeferred
async def test_cross_origin_and_rebound_requests_are_refused_and_run_nothing() -> None:
    async with _mi_server() as (registry, port):
        here = f"127.0.0.1:{port}"
        refused = [
            # The simple cross-origin POST a web page can send without pre-flight.
            {"Host": "evil.example", "Origin": "http://evil.example", "Content_Type": "text/plain"},
            # The same page's request aimed at 127.0.0.1 directly.
            {"Host": here, "Origin": "http://evil.example", "Content_Type": "text/plain"},
            {"Host": here, "Origin": "http://evil.example", "Content_Type": JSON},
            {"Host": here, "Origin": "null", "Content_Type": JSON},
            {
                "Host": here,
                "Origin": f"http://127.0.0.1:{port + 1}",
                "Content_Type": JSON,
            },
            {
                "Host": here,
                "Origin": f"https://127.0.0.1:{port}",
                "Content_Type": JSON,
            },
            {"Host": here, "Sec_Fetch_Site": "cross-site", "Content_Type": JSON},
            # DNS rebinding: the page's own name, now pointing at 127.0.0.1.
            {"Host": f"evil.example:{port}", "Content_Type": JSON},
            {"Host": f"127.0.0.1.evil.example:{port}", "Content_Type": JSON},
            {"Host": f"localhost.evil.example:{port}", "Content_Type": JSON},
            {"Host": f"127.0.0.1:{port + 1}", "Content_Type": JSON},
            {"Host": "", "Content_Type": JSON},
        ]
        for headers in refused:
            status, body = await _call(port, "POST", "/mi", RELOAD, **headers)
            assert status == 403, (headers, status, body)
        # A request no browser can send cross-origin without a pre-flight is required.
        for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
            headers = {"Host": here}
            if content_type is not None:
                headers["Content_Type"] = content_type
            status, body = await _call(port, "POST", "/mi", RELOAD, **headers)
            assert status == 415, (content_type, status, body)
            assert b"application/json" in body
        assert registry.reloads == 0

        # /metrics: readable by a rebound page otherwise.
        for headers in (
            {"Host": f"evil.example:{port}"},
            {"Host": here, "Origin": "http://evil.example"},
        ):
            status, body = await _call(port, "GET", "/metrics", None, **headers)
            assert status == 403 and b"sipsock_up" not in body, (headers, status, body)
        status, body = await _call(port, "GET", "/metrics", None, Host=here)
        assert (status, body) == (200, b"sipsock_up 1\n")


@pytest_twisted.ensureDeferred
async def test_local_clients_are_served() -> None:
    async with _mi_server() as (registry, port):
        for headers in (
            {"Host": f"127.0.0.1:{port}"},
            {"Host": f"localhost:{port}"},
            {"Host": f"LOCALHOST:{port}", "Content_Type": "Application/JSON; charset=utf-8"},
            {"Host": f"127.0.0.1:{port}", "Origin": f"http://127.0.0.1:{port}"},
            {"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"},
            {"Host": f"127.0.0.1:{port}", "Sec_Fetch_Site": "same-origin"},
            {},  # HTTP/1.0 style, no Host: no browser
        ):
            headers.setdefault("Content_Type", "application/json")
            status, body = await _call(port, "POST", "/mi", RELOAD, **headers)
            assert status == 200, (headers, status, body)
            assert json.loads(body)["result"] == "OK"
        assert registry.reloads == 7


@pytest_twisted.ensureDeferred
async def test_stock_opensips_clients_still_work(tmp_path: Path) -> None:
    async with _mi_server() as (registry, port):
        cwd = _clean_dir(tmp_path)
        out, err, code = await opensips_mi(
            cwd, "-t", "http", "-i", "127.0.0.1", "-p", str(port), "sockets_reload"
        )
        assert (code, json.loads(out)) == (0, "OK"), err
        for host in ("127.0.0.1", "localhost"):
            cli = [
                "-o",
                "communication_type=http",
                "-o",
                f"url=http://{host}:{port}/mi",
                "-x",
                "mi",
                "sockets_reload",
            ]
            out, err, code = await run(OPENSIPS_CLI, cli, cwd)
            assert code == 0, (out, err)
            assert json.loads(out) == "OK"
        assert registry.reloads == 3


def _idle(port: int, count: int, hold: float) -> list[float | None]:
    """Open ``count`` idle connections; for each, seconds until the server closed it."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(count)]
    start = time.monotonic()
    closed: list[float | None] = [None] * count
    try:
        while time.monotonic() - start < hold and None in closed:
            ready, _, _ = select.select(
                [s for s, c in zip(socks, closed, strict=True) if c is None], [], [], 0.05
            )
            for sock in ready:
                try:
                    data = sock.recv(4096)
                except ConnectionResetError:
                    data = b""
                if not data:
                    closed[socks.index(sock)] = time.monotonic() - start
        return closed
    finally:
        for sock in socks:
            sock.close()


@pytest_twisted.ensureDeferred
async def test_idle_connections_are_capped_and_timed_out() -> None:
    async with _mi_server(max_connections=16, idle_timeout=1.0) as (registry, port):
        closed = await threads.deferToThread(_idle, port, 20, 8.0)
        at_once = [t for t in closed if t is not None and t < 0.8]
        idle = [t for t in closed if t is not None and 0.8 <= t < 5.0]
        assert (len(at_once), len(idle)) == (4, 16), closed
        status, _ = await _call(
            port, "POST", "/mi", RELOAD, Host=f"127.0.0.1:{port}", Content_Type=JSON
        )
        assert status == 200 and registry.reloads == 1


@pytest_twisted.ensureDeferred
async def test_answers_do_not_name_the_web_server_version() -> None:
    async with _mi_server() as (_, port):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        try:
            for method, path in (("GET", "/metrics"), ("GET", "/mi"), ("GET", "/nothing")):
                response = await threads.deferToThread(_get, conn, method, path)
                assert response.getheader("Server") == "sipsock", (path, response.getheaders())
        finally:
            conn.close()


def _get(conn: http.client.HTTPConnection, method: str, path: str) -> http.client.HTTPResponse:
    conn.request(method, path)
    response = conn.getresponse()
    response.read()
    return response


@pytest_twisted.ensureDeferred
async def test_form_bodies_are_refused_by_the_mi_not_parsed_by_twisted() -> None:
    # Twisted parsed urlencoded and multipart bodies into request.args (never read
    # here) and answered a broken multipart body with its own 400 before the MI
    # could refuse the type; the MI now answers every non-JSON body the same way.
    async with _mi_server() as (registry, port):
        here = f"127.0.0.1:{port}"
        broken = b"--x\r\nContent-Disposition: form-data\r\n\r\nnot closed"
        for content_type, body in (
            ("multipart/form-data; boundary=x", broken),
            ("multipart/form-data", b"no boundary at all"),
            ("application/x-www-form-urlencoded", b"a=1&b=2"),
        ):
            status, answer = await _call(
                port, "POST", "/mi", body, Host=here, Content_Type=content_type
            )
            assert status == 415, (content_type, status, answer)
            assert b"application/json" in answer
        status, answer = await _call(port, "POST", "/mi", RELOAD, Host=here, Content_Type=JSON)
        assert status == 200
        assert json.loads(answer)["result"] == "OK"
        assert registry.reloads == 1
