"""Hostile JSON on every JSON-RPC front end (HTTP, UDP datagram, FIFO), over real I/O.

Each body below must get a JSON-RPC error answer (never silence, a 500 or a
traceback), and the front end must keep serving the next good request.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted  # type: ignore[import-untyped, unused-ignore]
from twisted.internet import defer, threads
from twisted.internet import reactor as _reactor
from twisted.internet.task import deferLater

from sipsock.mi.datagram import listen_udp
from sipsock.mi.fifo import FifoListener
from sipsock.mi.http import listen_http
from sipsock.testing import FakeRegistry
from tests.integration.test_mi_frontends import (
    TIMEOUT,
    _port_of,
    _send_raw_udp,
    make_table,
)

#: (body, the JSON-RPC error code it must get).
HOSTILE: list[tuple[bytes, int]] = [
    (b'{"jsonrpc":"2.0","id":1e999,"method":"which"}', -32600),
    (b'{"jsonrpc":"2.0","id":-1e999,"method":"which"}', -32600),
    (b'{"jsonrpc":"2.0","id":1.5,"method":"which"}', -32600),
    (b'{"jsonrpc":"2.0","id":true,"method":"which"}', -32600),
    (b'{"jsonrpc":"2.0","id":{"a":1},"method":"which"}', -32600),
    (b'{"jsonrpc":"2.0","id":[1],"method":"which"}', -32600),
    (b'{"jsonrpc":"2.0","id":NaN,"method":"which"}', -32700),
    (b'{"jsonrpc":"2.0","id":Infinity,"method":"which"}', -32700),
    (b'{"jsonrpc":"2.0","id":-Infinity,"method":"which"}', -32700),
    (b'{"jsonrpc":"2.0","id":1,"method":"which","params":[1e999]}', -32600),
    (b'{"jsonrpc":"2.0","id":1,"method":"which","params":{"a":-1e400}}', -32600),
    (b'{"jsonrpc":"2.0","id":' + b"9" * 5000 + b',"method":"which"}', -32700),
    (
        b'{"jsonrpc":"2.0","id":1,"method":"which","params":' + b"[" * 3000 + b"]" * 3000 + b"}",
        -32700,
    ),
    (b'{"jsonrpc":"2.0","id":1,"method":"which","params":"text"}', -32600),
    (b'{"jsonrpc":"2.0","id":1,"method":"which","params":7}', -32600),
    (b'{"jsonrpc":"2.0","id":1,"method":"sockets_list","params":{"details":1e308}}', -32602),
    (b'{"jsonrpc":"2.0","id":1,"method":"' + b"m" * 20000 + b'"}', -32601),
    (b'[{"jsonrpc":"2.0","id":1,"method":"which"}]', -32600),
    (b'"just a string"', -32600),
    (b"1e999", -32600),
    (b'{"jsonrpc":"2.0","id":1,"method":"which","params":["' + b"x" * 200000 + b'"]}', -32700),
]

reactor: Any = _reactor

GOOD = b'{"jsonrpc":"2.0","id":"ok","method":"which"}'

Sender = Callable[[bytes], Awaitable[dict[str, Any]]]


def _post(port: int, body: bytes) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
    try:
        conn.request("POST", "/mi", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@contextlib.asynccontextmanager
async def _http_sender() -> AsyncIterator[Sender]:
    port = listen_http(make_table(FakeRegistry()), interface="127.0.0.1", port=0)
    number = _port_of(port)

    async def send(body: bytes) -> dict[str, Any]:
        status, data = await threads.deferToThread(_post, number, body)
        assert status == (413 if len(body) > 65536 else 200), (status, data[:200])
        reply: dict[str, Any] = json.loads(data)
        return reply

    try:
        yield send
    finally:
        await defer.maybeDeferred(port.stopListening)


@contextlib.asynccontextmanager
async def _udp_sender() -> AsyncIterator[Sender]:
    port = listen_udp(make_table(FakeRegistry()), interface="127.0.0.1", port=0)
    number = _port_of(port)

    async def send(body: bytes) -> dict[str, Any]:
        return await _send_raw_udp(number, body)

    try:
        yield send
    finally:
        await defer.maybeDeferred(port.stopListening)


def _write_all(path: Path, data: bytes) -> None:
    """Write a request to the server FIFO (from a thread: it may block while the reactor reads)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        while data:
            data = data[os.write(fd, data) :]
    finally:
        os.close(fd)


@contextlib.asynccontextmanager
async def _fifo_sender(tmp_path: Path) -> AsyncIterator[Sender]:
    fifo_path = tmp_path / "sipsock_fifo"
    reply_dir = tmp_path / "replies"
    reply_dir.mkdir()
    listener = FifoListener(
        make_table(FakeRegistry()), str(fifo_path), reply_dir=str(reply_dir), frame_timeout=0.5
    )
    listener.startListening()
    count = [0]

    async def send(body: bytes) -> dict[str, Any]:
        count[0] += 1
        name = f"reply_{count[0]}"
        os.mkfifo(reply_dir / name, 0o600)
        read_fd = os.open(reply_dir / name, os.O_RDONLY | os.O_NONBLOCK)
        try:
            await threads.deferToThread(_write_all, fifo_path, f":{name}:".encode() + body)
            answer = b""
            deadline = reactor.seconds() + TIMEOUT
            while not answer.endswith(b"\n"):
                assert reactor.seconds() < deadline, f"no FIFO reply to {body[:80]!r}"
                with contextlib.suppress(BlockingIOError):
                    answer += os.read(read_fd, 65536)
                await deferLater(reactor, 0.01, lambda: None)
        finally:
            os.close(read_fd)
        reply: dict[str, Any] = json.loads(answer)
        return reply

    try:
        yield send
    finally:
        await defer.maybeDeferred(listener.stopListening)


def _front_end(kind: str, tmp_path: Path) -> contextlib.AbstractAsyncContextManager[Sender]:
    if kind == "http":
        return _http_sender()
    if kind == "udp":
        return _udp_sender()
    return _fifo_sender(tmp_path)


@pytest.mark.parametrize("kind", ["http", "udp", "fifo"])
@pytest_twisted.ensureDeferred
async def test_hostile_json_gets_a_jsonrpc_error_and_the_front_end_keeps_serving(
    kind: str, tmp_path: Path
) -> None:
    async with _front_end(kind, tmp_path) as send:
        for body, code in HOSTILE:
            if kind == "udp" and len(body) > 60000:
                continue
            reply = await send(body)
            assert reply.get("error", {}).get("code") == code, (body[:80], reply)
            if code in (-32700, -32600) and b'"id":1,' not in body:
                assert reply["id"] is None, (body[:80], reply)
            good = await send(GOOD)
            assert good["id"] == "ok" and "which" in good["result"], good
