"""sipsock.sdnotify: datagrams on a real UNIX socket, at a path and in the abstract namespace."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

from sipsock.sdnotify import Notifier


def _receiver(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + address[1:] if address.startswith("@") else address)
    sock.settimeout(5)
    return sock


def test_from_environ_takes_the_variables_out() -> None:
    environ = {
        "NOTIFY_SOCKET": "/run/x",
        "WATCHDOG_USEC": "20000000",
        "WATCHDOG_PID": str(os.getpid()),
        "PATH": "/bin",
    }
    notifier = Notifier.from_environ(environ)
    assert notifier.address == "/run/x"
    assert notifier.watchdog_usec == 20_000_000
    assert environ == {"PATH": "/bin"}


def test_watchdog_for_another_pid_is_ignored() -> None:
    environ = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}
    assert Notifier.from_environ(environ).watchdog_usec is None


def test_no_socket_sends_nothing() -> None:
    notifier = Notifier.from_environ({})
    assert not notifier.enabled
    assert notifier.ready("x") is False


def test_ready_status_stopping_at_a_path(tmp_path: Path) -> None:
    address = str(tmp_path / "notify")
    with _receiver(address) as receiver:
        notifier = Notifier(address)
        assert notifier.ready("2 sockets\nopen")
        assert receiver.recv(4096) == b"READY=1\nSTATUS=2 sockets open\n"
        assert notifier.status("one")
        assert receiver.recv(4096) == b"STATUS=one\n"
        assert notifier.stopping()
        assert receiver.recv(4096) == b"STOPPING=1\nSTATUS=stopping\n"


def test_abstract_namespace() -> None:
    address = f"@sipsock-unit-{uuid.uuid4().hex}"
    with _receiver(address) as receiver:
        assert Notifier(address).watchdog()
        assert receiver.recv(4096) == b"WATCHDOG=1\n"


def test_nobody_listening_is_not_an_error(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "gone"))
    assert notifier.ready("x") is False
    assert notifier.status("y") is False
