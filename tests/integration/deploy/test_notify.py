"""systemd readiness: READY=1, STATUS= and STOPPING=1 on a fake NOTIFY_SOCKET (15.2, 15.7).

The daemon used to send nothing (the unit said ``Type=simple``) and logged no
``ready`` line. A datagram socket stands in for systemd, at a path and in the
abstract namespace (``NOTIFY_SOCKET=@name``).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import Daemon
from tests.net import free_port
from tests.sip_probe import options_udp, status_of
from tests.tables import SocketTable


class FakeSystemd:
    """The receiving end of NOTIFY_SOCKET."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)

    def next(self, timeout: float = 60) -> dict[str, str]:
        """The next notification, as its KEY=value lines."""
        self.sock.settimeout(timeout)
        data = self.sock.recv(65536).decode()
        assert data.endswith("\n"), data
        return dict(line.split("=", 1) for line in data.splitlines())

    def wait_for(self, key: str, timeout: float = 60) -> dict[str, str]:
        """Notifications up to the first one with ``key``; that one."""
        for _ in range(100):
            message = self.next(timeout)
            if key in message:
                return message
        raise AssertionError(f"no {key} in 100 notifications")


@pytest.fixture(params=["path", "abstract"])
def systemd(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FakeSystemd]:
    if request.param == "path":
        address = str(tmp_path / "notify.sock")
    else:
        address = f"@sipsock-test-{uuid.uuid4().hex}"
    fake = FakeSystemd(address)
    try:
        yield fake
    finally:
        fake.sock.close()


def test_ready_status_and_stopping(
    systemd: FakeSystemd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", systemd.address)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")  # WatchdogSec=1: a ping every 0.5 s
    static_port = free_port()
    daemon = Daemon(
        tmp_path,
        extra=f'[core]\nlisten = ["udp:127.0.0.1:{static_port}"]\n',
    )
    daemon.start()
    try:
        ready = systemd.wait_for("READY")
        assert ready["READY"] == "1"
        status = ready["STATUS"]
        # Workers: 2 dynamic UDP (the test daemon's processes), 1 static UDP and
        # 2 stream workers ([core] tcp_workers by default).
        assert status == (
            "sockets: 1 static, 0 dynamic open; workers: 5/5 ready; "
            f"MI: sipsock-mi {daemon.state_dir / 'sipsock-mi.sock'}, "
            f"http 127.0.0.1:{daemon.http_port}; "
            f"database: sqlite:///{daemon.state_dir / 'sipsock.sqlite'} (table loaded)"
        )
        # One ready line, with the same summary, at the same moment.
        ready_lines = [line for line in daemon.log().splitlines() if "] ready: " in line]
        assert len(ready_lines) == 1
        assert ready_lines[0].endswith(f"] ready: {status}")
        reply = options_udp(static_port, timeout=5)
        assert reply is not None and status_of(reply) == 200

        # Only the main process may notify (NotifyAccess=main): workers never see the socket.
        workers = [row["PID"] for row in daemon.mi("ps")["Processes"] if row["ID"] != 0]
        assert len(workers) == 5
        for pid in workers:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            assert not [item for item in environ if item.startswith(b"NOTIFY_SOCKET=")]
            assert not [item for item in environ if item.startswith(b"WATCHDOG_USEC=")]
        assert systemd.wait_for("WATCHDOG", timeout=10) == {"WATCHDOG": "1"}

        # A reload that opens a socket: STATUS follows.
        dynamic_port = free_port()
        SocketTable(daemon.db_url).insert(f"udp:127.0.0.1:{dynamic_port}")
        daemon.reload()
        update = systemd.wait_for("STATUS", timeout=30)
        assert "READY" not in update
        assert update["STATUS"].startswith("sockets: 1 static, 1 dynamic open; workers: 5/5")
    finally:
        assert daemon.stop() == 0
    stopping = systemd.wait_for("STOPPING", timeout=10)
    assert stopping["STOPPING"] == "1"


def test_ready_while_the_database_is_unreachable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first load failed and is retried: ready (static sockets serve), and says so."""
    fake = FakeSystemd(str(tmp_path / "notify.sock"))
    monkeypatch.setenv("NOTIFY_SOCKET", fake.address)
    dead = free_port(udp=False)
    daemon = Daemon(tmp_path, db_url=f"postgres://sipsock:secret@127.0.0.1:{dead}/sipsock")
    daemon.start()
    try:
        ready = fake.wait_for("READY")
        assert ready["STATUS"].endswith(
            f"database: postgres://sipsock:***@127.0.0.1:{dead}/sipsock "
            "(table load failed, retrying)"
        )
        assert "secret" not in daemon.log()
    finally:
        daemon.stop()
        fake.sock.close()


def test_no_notify_socket_no_notification(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside systemd the ready line is still logged."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    daemon = Daemon(tmp_path)
    daemon.start()
    try:
        daemon.wait_for_log(("] ready: sockets: 0 static, 0 dynamic open",), 30)
    finally:
        assert daemon.stop() == 0
    assert os.environ.get("NOTIFY_SOCKET") is None
