"""The MI front ends over real loopback sockets, a real FIFO and real clients.

The stock ``opensips-mi`` client (PyPI ``opensips``) talks to the HTTP,
datagram and FIFO front ends; ``sipsock-mi`` talks AMP. Both run as
subprocesses from a clean working directory (``opensips-mi`` reads ./.env)
while the reactor serves.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol, Protocol, connectionDone
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.failure import Failure
from twisted.web.client import Agent, ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from sipsock.mi.amp import listen_amp
from sipsock.mi.builtin import build_command_table
from sipsock.mi.commands import CommandTable
from sipsock.mi.datagram import listen_udp, listen_unix_datagram
from sipsock.mi.fifo import FifoListener
from sipsock.mi.http import listen_http
from sipsock.reloadplan import ReloadReport
from sipsock.testing import FakeRegistry

ROOT = Path(__file__).resolve().parents[2]
OPENSIPS_MI = str(ROOT / ".venv" / "bin" / "opensips-mi")
TIMEOUT = 30.0

SOCKETS: list[dict[str, Any]] = [
    {
        "socket": "udp:127.0.0.1:5070",
        "advertised": "1.2.3.4:5060",
        "tag": "a",
        "flags": "frag,reuse_port",
        "tos": 16,
    },
    {"socket": "tcp:127.0.0.1:5071"},
    {"socket": "udp:127.0.0.1:5072", "error": "Address already in use"},
]


REPORT = ReloadReport(added=["udp:127.0.0.1:5070"], seconds=0.0012)


def fake_registry() -> FakeRegistry:
    """The registry stand-in: the fixed `SOCKETS`, a reload that adds one socket."""
    return FakeRegistry(SOCKETS, report=REPORT)


def make_table(registry: FakeRegistry) -> CommandTable:
    return build_command_table(
        registry,
        clock=reactor,
        started_at=reactor.seconds(),
        process_list=lambda: [{"ID": 0, "PID": os.getpid(), "Type": "control"}],
        version="0.1.0",
    )


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENSIPS_MI")}
    env["PYTHONPATH"] = str(ROOT)
    return env


async def run(executable: str, args: list[str], cwd: Path) -> tuple[str, str, int]:
    """Run a client to completion without blocking the reactor."""
    call: Deferred[tuple[bytes, bytes, int]] = getProcessOutputAndValue(  # type: ignore[no-untyped-call]
        executable, args, env=_env(), path=str(cwd)
    )
    call.addTimeout(TIMEOUT, reactor)
    out, err, code = await call
    return out.decode(), err.decode(), code


async def opensips_mi(cwd: Path, *args: str) -> tuple[str, str, int]:
    return await run(OPENSIPS_MI, list(args), cwd)


def _port_of(port: IListeningPort) -> int:
    number: int = port.getHost().port  # type: ignore[attr-defined]
    return number


def _clean_dir(tmp_path: Path) -> Path:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    return cwd


# -- HTTP -------------------------------------------------------------------


class _BodyCollector(Protocol):
    """Collects a response body (twisted.web.client.readBody warns here)."""

    def __init__(self, done: Deferred[bytes]) -> None:
        self.done = done
        self.chunks: list[bytes] = []

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if reason.check(ResponseDone):  # type: ignore[no-untyped-call]
            self.done.callback(b"".join(self.chunks))
        else:
            self.done.errback(reason)


def _read_body(response: IResponse) -> Deferred[bytes]:
    done: Deferred[bytes] = Deferred()
    response.deliverBody(_BodyCollector(done))  # type: ignore[no-untyped-call]
    return done


async def _http(
    method: bytes, url: str, body: bytes | None = None
) -> tuple[int, dict[str, list[str]], bytes]:
    from io import BytesIO

    from twisted.web.client import FileBodyProducer

    agent = Agent(reactor)  # type: ignore[no-untyped-call]
    producer = FileBodyProducer(BytesIO(body)) if body is not None else None  # type: ignore[no-untyped-call]
    request: Deferred[IResponse] = agent.request(
        method, url.encode(), Headers({b"Content-Type": [b"application/json"]}), producer
    )
    request.addTimeout(TIMEOUT, reactor)
    response = await request
    content = await _read_body(response)
    headers = {
        k.decode().lower(): [v.decode() for v in vs]
        for k, vs in response.headers.getAllRawHeaders()
    }
    return response.code, headers, content


async def _http_frontend(tmp_path: Path) -> None:
    registry = fake_registry()
    port = listen_http(make_table(registry), interface="127.0.0.1", port=0)
    number = str(_port_of(port))
    cwd = _clean_dir(tmp_path)
    base = ["-t", "http", "-i", "127.0.0.1", "-p", number]
    url = f"http://127.0.0.1:{number}/mi"
    try:
        out, err, code = await opensips_mi(cwd, *base, "sockets_list")
        assert code == 0, (out, err)
        assert json.loads(out) == SOCKETS

        out, err, code = await opensips_mi(cwd, *base, "sockets_reload")
        assert (code, json.loads(out)) == (0, "OK"), err

        out, err, code = await opensips_mi(
            cwd, *base, "sockets_mgm:reload", "-j", '{"report":true}'
        )
        assert (code, json.loads(out)) == (0, REPORT.as_dict()), err

        out, err, code = await opensips_mi(cwd, *base, "no_such_command")
        assert code == 1
        assert "-32601" in out and "Method not found" in out

        registry.failure = RuntimeError("cannot reach the database at 127.0.0.1:5432")
        out, err, code = await opensips_mi(cwd, *base, "sockets_reload")
        assert code == 1
        assert "500" in out and "cannot reach the database" in out

        status, headers, body = await _http(b"POST", url, b'{"jsonrpc":"2.0","id":"1",')
        assert status == 200
        reply = json.loads(body)
        assert (reply["error"]["code"], reply["id"]) == (-32700, None)
        assert headers["content-type"] == ["application/json"]

        status, headers, _ = await _http(b"GET", url)
        assert status == 405
        assert headers["allow"] == ["POST"]

        status, _, _ = await _http(b"POST", url, b"")
        assert status == 400

        status, _, body = await _http(b"POST", url, b'{"jsonrpc":"2.0","method":"which"}')
        assert (status, body) == (202, b"")

        status, _, _ = await _http(b"POST", url, b"[" * 70000)
        assert status == 413

        status, _, _ = await _http(b"POST", f"http://127.0.0.1:{number}/other", b"{}")
        assert status == 404

        status, _, body = await _http(b"POST", url, b'{"jsonrpc":"2.0","id":7,"method":"version"}')
        assert json.loads(body) == {
            "jsonrpc": "2.0",
            "result": {"Server": "sipsock 0.1.0"},
            "id": 7,
        }
    finally:
        await defer.maybeDeferred(port.stopListening)


def test_http_frontend_with_opensips_mi(tmp_path: Path) -> Deferred[None]:
    return Deferred.fromCoroutine(_http_frontend(tmp_path))


# -- datagram -----------------------------------------------------------------


class _Probe(DatagramProtocol):
    def __init__(self) -> None:
        self.reply: Deferred[bytes] = Deferred()

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        if not self.reply.called:
            self.reply.callback(datagram)


async def _send_raw_udp(port: int, payload: bytes) -> dict[str, Any]:
    probe = _Probe()
    client = reactor.listenUDP(0, probe, interface="127.0.0.1")  # type: ignore[attr-defined]
    try:
        client.write(payload, ("127.0.0.1", port))
        probe.reply.addTimeout(TIMEOUT, reactor)
        reply: dict[str, Any] = json.loads(await probe.reply)
        return reply
    finally:
        await defer.maybeDeferred(client.stopListening)


async def _datagram_frontend(tmp_path: Path) -> None:
    registry = fake_registry()
    table = make_table(registry)
    port = listen_udp(table, interface="127.0.0.1", port=0, max_request=4096)
    number = _port_of(port)
    unix_path = tmp_path / "mi.dgram"
    unix_port = listen_unix_datagram(table, str(unix_path))
    cwd = _clean_dir(tmp_path)
    base = ["-t", "datagram", "-i", "127.0.0.1", "-p", str(number), "-dt", "2"]
    try:
        out, err, code = await opensips_mi(cwd, *base, "sockets_reload")
        assert (code, json.loads(out)) == (0, "OK"), err
        assert registry.reloads == 1

        out, err, code = await opensips_mi(cwd, *base, "sockets_list")
        assert (code, json.loads(out)) == (0, SOCKETS), err

        out, err, code = await opensips_mi(cwd, *base, "sockets_mgm:list")
        assert (code, json.loads(out)) == (0, SOCKETS), err

        out, err, code = await opensips_mi(cwd, *base, "bogus")
        assert code == 1 and "-32601" in out

        reply = await _send_raw_udp(number, b"{this is not json")
        assert (reply["error"]["code"], reply["id"]) == (-32700, None)
        reply = await _send_raw_udp(number, b"x" * 10000)
        assert reply["error"]["code"] == -32700
        reply = await _send_raw_udp(number, b'{"jsonrpc":"2.0","id":3,"method":"uptime"}')
        assert reply["id"] == 3 and reply["result"]["Up time"].endswith("[sec]")

        assert stat.S_IMODE(os.stat(unix_path).st_mode) == 0o600
        out, err, code = await opensips_mi(
            cwd, "-t", "datagram", "-ds", str(unix_path), "-dt", "2", "sockets_list"
        )
        assert (code, json.loads(out)) == (0, SOCKETS), err
    finally:
        await defer.maybeDeferred(port.stopListening)
        await defer.maybeDeferred(unix_port.stopListening)


def test_datagram_frontend_with_opensips_mi(tmp_path: Path) -> Deferred[None]:
    return Deferred.fromCoroutine(_datagram_frontend(tmp_path))


# -- FIFO ---------------------------------------------------------------------


async def _fifo_frontend(tmp_path: Path) -> None:
    registry = fake_registry()
    fifo_path = tmp_path / "sipsock_fifo"
    reply_dir = tmp_path / "replies"
    reply_dir.mkdir()
    listener = FifoListener(
        make_table(registry), str(fifo_path), reply_dir=str(reply_dir), frame_timeout=0.5
    )
    listener.startListening()
    cwd = _clean_dir(tmp_path)
    base = ["-t", "fifo", "-f", str(fifo_path), "-fd", str(reply_dir)]
    try:
        assert stat.S_ISFIFO(os.lstat(fifo_path).st_mode)
        assert stat.S_IMODE(os.lstat(fifo_path).st_mode) == 0o600

        out, err, code = await opensips_mi(cwd, *base, "sockets_list")
        assert (code, json.loads(out)) == (0, SOCKETS), err

        out, err, code = await opensips_mi(cwd, *base, "sockets_reload")
        assert (code, json.loads(out)) == (0, "OK"), err

        # Hostile input straight into the FIFO: junk, a bad reply name, a
        # truncated request; the reader keeps serving.
        fd = os.open(fifo_path, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, b'garbage without a frame\n:../../etc/x:{}\n:nobody_listens:{"x":')
        finally:
            os.close(fd)

        out, err, code = await opensips_mi(cwd, *base, "which")
        assert code == 0, (out, err)
        assert "sockets_reload" in json.loads(out)

        out, err, code = await opensips_mi(cwd, *base, "nope")
        assert code == 1 and "-32601" in out

        # A bad JSON request written the way the client writes, with a reply fifo.
        reply_fifo = reply_dir / "manual_reply"
        os.mkfifo(reply_fifo, 0o600)
        fd = os.open(fifo_path, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, b":manual_reply:{bad json}")
        finally:
            os.close(fd)
        read_fd = os.open(reply_fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            data = await _read_until_newline(read_fd)
        finally:
            os.close(read_fd)
        reply = json.loads(data)
        assert (reply["error"]["code"], reply["id"]) == (-32700, None)
    finally:
        await defer.maybeDeferred(listener.stopListening)
    assert not fifo_path.exists()


async def _read_until_newline(fd: int) -> bytes:
    """Poll a non-blocking reply FIFO from the reactor until a line arrives."""
    from twisted.internet.task import deferLater

    data = b""
    deadline = reactor.seconds() + TIMEOUT
    while not data.endswith(b"\n"):
        assert reactor.seconds() < deadline, "no reply on the reply FIFO"
        with contextlib.suppress(BlockingIOError):
            data += os.read(fd, 65536)
        await deferLater(reactor, 0.01, lambda: None)
    return data


def test_fifo_frontend_with_opensips_mi(tmp_path: Path) -> Deferred[None]:
    return Deferred.fromCoroutine(_fifo_frontend(tmp_path))


# -- AMP and sipsock-mi --------------------------------------------------------


async def sipsock_mi(cwd: Path, *args: str) -> tuple[str, str, int]:
    return await run(sys.executable, ["-m", "sipsock.mi.cli", *args], cwd)


async def _amp_frontend(tmp_path: Path) -> None:
    many = [
        {"socket": f"udp:127.0.0.1:{6000 + i}", "tag": f"tag{i}", "advertised": "203.0.113.9"}
        for i in range(3000)
    ]
    registry = fake_registry()
    socket_path = tmp_path / "var" / "sipsock-mi.sock"
    port = listen_amp(make_table(registry), str(socket_path))
    cwd = _clean_dir(tmp_path)
    try:
        assert stat.S_IMODE(os.stat(socket_path).st_mode) == 0o600

        out, err, code = await sipsock_mi(cwd, "-s", str(socket_path), "sockets_list")
        assert (code, json.loads(out)) == (0, SOCKETS), err
        assert out.startswith("[\n    {")  # indented like opensips-mi

        out, err, code = await sipsock_mi(cwd, "-s", str(socket_path), "sockets_reload")
        assert (code, out) == (
            0,
            "sockets reloaded in 0.001 s: 1 added, 0 updated, 0 removed, 0 kept, "
            "0 rejected, 0 failed\n",
        ), err

        out, err, code = await sipsock_mi(cwd, "-s", str(socket_path), "--json", "sockets_reload")
        assert (code, json.loads(out)) == (0, REPORT.as_dict()), err

        out, err, code = await sipsock_mi(
            cwd, "-s", str(socket_path), "sockets_reload", "report=true"
        )
        assert (code, json.loads(out)) == (0, REPORT.as_dict()), err

        out, err, code = await sipsock_mi(
            cwd, "-s", str(socket_path), "sockets_reload", "--json", '{"report": true}'
        )
        assert (code, json.loads(out)) == (0, REPORT.as_dict()), err

        registry.sockets = many  # larger than one AMP value (64 KiB)
        out, err, code = await sipsock_mi(cwd, "-s", str(socket_path), "sockets_list")
        assert (code, json.loads(out)) == (0, many), err

        out, err, code = await sipsock_mi(cwd, "-s", str(socket_path), "frobnicate")
        assert code == 1
        assert "-32601" in err and "Method not found" in err

        out, err, code = await sipsock_mi(cwd, "-s", str(socket_path), "sockets_list", "a=1")
        assert code == 1 and "-32602" in err

        registry.failure = RuntimeError("table sockets does not exist")
        out, err, code = await sipsock_mi(cwd, "-s", str(socket_path), "sockets_reload")
        assert code == 1
        assert "500: table sockets does not exist" in err
        assert out == ""
    finally:
        await defer.maybeDeferred(port.stopListening)

    out, err, code = await sipsock_mi(cwd, "-s", str(socket_path), "sockets_list")
    assert code == 2 and f"cannot connect to the MI socket {socket_path}" in err


def test_amp_frontend_with_sipsock_mi(tmp_path: Path) -> Deferred[None]:
    return Deferred.fromCoroutine(_amp_frontend(tmp_path))
