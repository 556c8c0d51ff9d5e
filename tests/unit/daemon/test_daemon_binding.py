"""Building the daemon binds nothing; its privileged start binds, its stop lets go.

Real sockets on 127.0.0.1 and a real SQLite store; no worker is spawned (the
pools are never started here).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import pytest_twisted  # type: ignore[import-untyped,unused-ignore]
from twisted.internet import reactor

from sipsock.config import load_config
from sipsock.daemon.admin import AdminFrontEnd
from sipsock.daemon.resources import StateLockService
from sipsock.daemon.static import StaticSockets
from sipsock.tap import build_daemon
from tests.net import free_port


def port_is_free(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def config(tmp_path: Path, *, static: int, http: int, datagram: int) -> Path:
    path = tmp_path / "sipsock.toml"
    path.write_text(
        f'[core]\nstate_dir = "{tmp_path / "var"}"\nlisten = ["tcp:127.0.0.1:{static}"]\n'
        f"[mi]\nhttp_port = {http}\ndatagram_port = {datagram}\n"
        f'fifo = "{tmp_path / "var" / "fifo"}"\n'
        f"[sockets_mgm]\nprocesses = 1\n"
    )
    return path


@pytest_twisted.ensureDeferred
async def test_the_daemon_binds_at_privileged_start_not_when_built(tmp_path: Path) -> None:
    static, http, datagram = free_port(udp=False), free_port(udp=False), free_port(tcp=False)
    settings = load_config(str(config(tmp_path, static=static, http=http, datagram=datagram)))
    daemon = build_daemon(settings, reactor=reactor)
    mi_socket = settings.mi_socket
    assert port_is_free(static, socket.SOCK_STREAM)
    assert port_is_free(http, socket.SOCK_STREAM)
    assert port_is_free(datagram, socket.SOCK_DGRAM)
    assert not mi_socket.exists()
    assert not (tmp_path / "var" / "fifo").exists()

    daemon.privilegedStartService()
    try:
        assert not port_is_free(static, socket.SOCK_STREAM)
        assert not port_is_free(http, socket.SOCK_STREAM)
        assert not port_is_free(datagram, socket.SOCK_DGRAM)
        assert mi_socket.exists()
        assert (tmp_path / "var" / "fifo").exists()
        assert [lst.sdef.socket_text for lst in daemon.registry.static_listeners] == [
            f"tcp:127.0.0.1:{static}"
        ]
        ends = [child for child in daemon if isinstance(child, AdminFrontEnd)]
        assert [end.name for end in ends] == ["mi-amp", "mi-http", "mi-datagram", "mi-fifo"]
        assert daemon.state().mi == (
            f"sipsock-mi {mi_socket}",
            f"http 127.0.0.1:{http}",
            f"datagram 127.0.0.1:{datagram}",
            f"fifo {tmp_path / 'var' / 'fifo'}",
        )
    finally:
        await daemon.stopService()
    assert port_is_free(static, socket.SOCK_STREAM)
    assert port_is_free(http, socket.SOCK_STREAM)
    assert port_is_free(datagram, socket.SOCK_DGRAM)
    assert not (tmp_path / "var" / "fifo").exists()
    assert daemon.registry.static_listeners == []


def test_a_front_end_that_cannot_bind_ends_start_up_with_one_line_and_frees_the_rest(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    static, http, datagram = free_port(udp=False), free_port(udp=False), free_port(tcp=False)
    settings = load_config(str(config(tmp_path, static=static, http=http, datagram=datagram)))
    daemon = build_daemon(settings, reactor=reactor)
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", datagram))
    try:
        with pytest.raises(SystemExit) as exited:
            daemon.privilegedStartService()
    finally:
        holder.close()
    assert exited.value.code == 1
    assert capfd.readouterr().err == (
        f"sipsock: cannot listen on [mi] datagram 127.0.0.1:{datagram}: Address already in use\n"
    )
    # What was bound before it is let go (twistd exits next), the later ones never bound.
    static_sockets = next(child for child in daemon if isinstance(child, StaticSockets))
    assert static_sockets.listeners == []
    ends = {child.name: child for child in daemon if isinstance(child, AdminFrontEnd)}
    assert not any(end.listening for end in ends.values())
    assert not (tmp_path / "var" / "fifo").exists()
    next(child for child in daemon if isinstance(child, StateLockService)).lock.release()
