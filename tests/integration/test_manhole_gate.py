"""The manhole before login, against real telnet and SSH clients on loopback.

Idle connections are capped (in all and per address) and cut after the
login timeout; failed logins throttle their address and are logged folded;
password checks do not wait for the reactor's shared thread pool.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import bcrypt
import pytest
import pytest_twisted  # type: ignore[import-untyped, unused-ignore]
from twisted.internet import defer, threads
from twisted.internet import reactor as _reactor
from twisted.internet.interfaces import IListeningPort
from twisted.logger import ILogObserver, formatEvent, globalLogPublisher
from zope.interface import provider

from sipsock.config import ManholeSettings
from sipsock.manhole import listen_manhole
from tests.net import free_port
from tests.ssh_client import LoginRefusedError, run_shell
from tests.telnet_client import TelnetClient

reactor: Any = _reactor
T = TypeVar("T")


async def in_thread(call: Callable[[], T]) -> T:
    result: T = await threads.deferToThread(call)
    return result


class Manhole:
    """A manhole listening in this process, and the log lines it wrote."""

    def __init__(self, settings: ManholeSettings, ports: list[IListeningPort]) -> None:
        self.settings = settings
        self.ports = ports
        self.lines: list[str] = []

        @provider(ILogObserver)
        def observe(event: dict[str, Any]) -> None:
            text = formatEvent(event)
            if text.startswith("manhole"):
                self.lines.append(text)

        self.observer = observe
        globalLogPublisher.addObserver(observe)

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)

    async def stop(self) -> None:
        globalLogPublisher.removeObserver(self.observer)
        for port in self.ports:
            await defer.maybeDeferred(port.stopListening)


@pytest.fixture
def users(tmp_path: Path) -> Path:
    path = tmp_path / "users"
    hashed = bcrypt.hashpw(b"hashed-pw", bcrypt.gensalt(rounds=4)).decode()
    path.write_text(f"admin:{hashed}\nops:plain-pw\n")
    path.chmod(0o600)
    return path


@pytest_twisted.async_yield_fixture()
async def open_manhole(tmp_path: Path, users: Path) -> AsyncIterator[Callable[..., Manhole]]:
    opened: list[Manhole] = []

    def start(**limits: Any) -> Manhole:
        settings = ManholeSettings(
            enabled=True,
            ssh_port=free_port(udp=False),
            telnet_port=free_port(udp=False),
            users_file=users,
            **limits,
        )
        ports = listen_manhole(settings, tmp_path, {}, reactor=reactor)
        manhole = Manhole(settings, ports)
        opened.append(manhole)
        return manhole

    yield start
    for manhole in opened:
        await manhole.stop()


def idle_connections(port: int, sources: list[str], hold: float) -> list[float | None]:
    """Open one idle connection per source address; for each, the seconds until the
    server closed it (None: still open after ``hold``)."""
    import time

    socks = []
    for source in sources:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        socks.append(sock)
    start = time.monotonic()
    closed: list[float | None] = [None] * len(socks)
    try:
        while time.monotonic() - start < hold and None in closed:
            for i, sock in enumerate(socks):
                if closed[i] is not None:
                    continue
                sock.settimeout(0.01)
                try:
                    while data := sock.recv(4096):
                        del data
                    closed[i] = time.monotonic() - start
                except TimeoutError:
                    pass
                except ConnectionResetError:
                    closed[i] = time.monotonic() - start
        return closed
    finally:
        for sock in socks:
            sock.close()


TOKENS = (">>> ", "Authentication failed", "Too many failed logins")


def telnet_result(port: int, user: str, password: str, source: str = "127.0.0.1") -> str:
    """One telnet login from ``source``: which of `TOKENS` the server answered."""
    client = TelnetClient.__new__(TelnetClient)
    client.sock = socket.create_connection(
        ("127.0.0.1", port), timeout=10, source_address=(source, 0)
    )
    client.text = b""
    client._pending = b""
    try:
        client.read_until("Username: ")
        client.type_line(user)
        client.read_until("Password: ")
        start = len(client.text)
        client.type_line(password)
        client.sock.settimeout(10)
        while True:
            text = client.text[start:].decode(errors="replace")
            for token in TOKENS:
                if token in text:
                    return token
            chunk = client.sock.recv(65536)
            if not chunk:
                return f"closed after {text!r}"
            client._feed(chunk)
    finally:
        client.close()


@pytest.mark.parametrize("kind", ["telnet", "ssh"])
@pytest_twisted.ensureDeferred
async def test_idle_connections_are_capped_and_cut_at_the_login_timeout(
    open_manhole: Callable[..., Manhole], kind: str
) -> None:
    manhole = open_manhole(login_timeout=1.5, max_unauthenticated=12, max_unauthenticated_per_ip=5)
    port = manhole.settings.telnet_port if kind == "telnet" else manhole.settings.ssh_port
    assert port is not None
    # 8 from one address (5 allowed), then 1 each from 10 other addresses (7 more allowed).
    sources = ["127.0.0.1"] * 8 + [f"127.0.0.{i}" for i in range(2, 12)]
    closed = await in_thread(lambda: idle_connections(port, sources, hold=8.0))
    at_once = [t for t in closed if t is not None and t < 1.0]
    at_timeout = [t for t in closed if t is not None and 1.0 <= t < 5.0]
    assert len(at_once) == 3 + 3, closed  # 3 over the per-IP cap, 3 over the total cap
    assert len(at_timeout) == 12, closed
    assert None not in closed
    # The first refusal and the first timeout are logged, the rest folded.
    assert manhole.count("refused: ") == 1, manhole.lines
    assert manhole.count("no login within") == 1, manhole.lines
    # Logging in still works.
    if kind == "telnet":
        assert await in_thread(lambda: telnet_result(port, "ops", "plain-pw")) == ">>> "
    else:
        output, _ = await run_shell(reactor, port, "admin", "hashed-pw", ["6*7"], "42")
        assert "42" in output


@pytest_twisted.ensureDeferred
async def test_failed_logins_throttle_their_address_and_are_logged_folded(
    open_manhole: Callable[..., Manhole],
) -> None:
    manhole = open_manhole(max_login_failures=3, login_failure_window=60.0)
    telnet, ssh = manhole.settings.telnet_port, manhole.settings.ssh_port
    assert telnet is not None and ssh is not None
    for _ in range(3):
        assert await in_thread(lambda: telnet_result(telnet, "ops", "guess")) == (
            "Authentication failed"
        )
    # The right password from that address is refused now, on telnet and SSH.
    assert await in_thread(lambda: telnet_result(telnet, "ops", "plain-pw")) == (
        "Too many failed logins"
    )
    with pytest.raises(LoginRefusedError):
        await run_shell(reactor, ssh, "admin", "hashed-pw", ["1"], ">>>", timeout=20)
    # Other addresses are not.
    assert await in_thread(lambda: telnet_result(telnet, "ops", "plain-pw", "127.0.0.2")) == ">>> "
    # Guesses spread over many addresses: each checked, logged once in all.
    for i in range(3, 13):
        source = f"127.0.0.{i}"
        assert await in_thread(lambda: telnet_result(telnet, "ops", "guess", source)) == (  # noqa: B023
            "Authentication failed"
        )
    assert manhole.count("login refused for") == 1, manhole.lines
    assert manhole.count("login from 127.0.0.1 refused") == 1, manhole.lines


@pytest_twisted.ensureDeferred
async def test_password_checks_do_not_wait_for_the_reactor_thread_pool(
    open_manhole: Callable[..., Manhole],
) -> None:
    manhole = open_manhole()
    assert manhole.settings.ssh_port is not None
    pool = reactor.getThreadPool()
    release = threading.Event()
    # Every thread of the shared pool busy (name resolution would be stuck too).
    blockers = [threads.deferToThread(release.wait, 60) for _ in range(pool.max + 5)]
    try:
        output, _ = await run_shell(
            reactor, manhole.settings.ssh_port, "admin", "hashed-pw", ["6*7"], "42", timeout=20
        )
        assert "42" in output
    finally:
        release.set()
        await defer.gatherResults(blockers)
