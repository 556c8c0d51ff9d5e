"""The manhole of the real daemon, over SSH with a Twisted Conch client."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import bcrypt
import pytest
import pytest_twisted  # type: ignore[import-untyped,unused-ignore]
from twisted.conch.ssh import keys
from twisted.internet import reactor

from sipsock.manhole import HOST_KEY_NAME
from tests.daemon import TWISTD, Daemon
from tests.integration.daemon.conftest import DaemonFactory
from tests.net import free_port
from tests.ssh_client import LoginRefusedError, run_shell
from tests.tables import SocketTable
from tests.telnet_client import TelnetClient


def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "manhole-users"
    hashed = bcrypt.hashpw(b"hashed-pw", bcrypt.gensalt(rounds=6)).decode()
    path.write_text(f"# manhole users\nadmin:{hashed}\nops:plain-pw\n")
    path.chmod(0o600)
    return path


def manhole_config(users: Path, ssh_port: int, extra: str = "") -> str:
    return f'[manhole]\nenabled = true\nssh_port = {ssh_port}\nusers_file = "{users}"\n{extra}'


@pytest_twisted.ensureDeferred
async def test_ssh_login_runs_mi_commands_and_refuses_a_wrong_password(
    daemon_factory: DaemonFactory, sqlite_url: str, tmp_path: Path
) -> None:
    table = SocketTable(sqlite_url)
    table.init()
    port = free_port()
    table.insert(f"udp:127.0.0.1:{port}", tag="carrier")
    ssh_port = free_port(udp=False)
    daemon = daemon_factory(sqlite_url, manhole_config(users_file(tmp_path), ssh_port))
    key_file = daemon.state_dir / HOST_KEY_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    output, host_key = await run_shell(
        reactor, ssh_port, "admin", "hashed-pw", ['mi("sockets_list")'], f"127.0.0.1:{port}"
    )
    assert "'tag': 'carrier'" in output
    pinned = keys.Key.fromFile(str(key_file))  # type: ignore[no-untyped-call]
    assert host_key.fingerprint() == pinned.fingerprint()
    # a plain-text user, a slower command (a Deferred the shell prints when it fires),
    # and the namespace
    output, _ = await run_shell(
        reactor,
        ssh_port,
        "ops",
        "plain-pw",
        ['mi("sockets_reload", report=True)', "len(registry.entries), settings.manhole.ssh_port"],
        f"(1, {ssh_port})",
    )
    assert "<Deferred #0>" in output
    with pytest.raises(LoginRefusedError):
        await run_shell(reactor, ssh_port, "admin", "wrong", ["1"], ">>>")
    with pytest.raises(LoginRefusedError):
        await run_shell(reactor, ssh_port, "nobody", "plain-pw", ["1"], ">>>")
    assert "manhole: login refused for admin" in daemon.log()


def start_and_fail(tmp_path: Path, extra: str) -> list[str]:
    """Start the daemon with ``extra``; it must exit 1: the lines it printed."""
    daemon = Daemon(tmp_path, extra=extra)
    command = [TWISTD, "-n", "--pidfile=", "--logfile", str(tmp_path / "log")]
    result = subprocess.run(
        [*command, "sipsock", "-c", str(daemon.config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 1, (result.stdout, result.stderr)
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


def test_a_manhole_on_a_public_address_needs_allow_remote(tmp_path: Path) -> None:
    users = users_file(tmp_path)
    lines = start_and_fail(tmp_path, manhole_config(users, 2222, 'address = "0.0.0.0"\n'))
    assert len(lines) == 1
    assert "[manhole] address" in lines[0] and "allow_remote" in lines[0]


def test_the_manhole_refuses_to_start_without_usable_credentials(tmp_path: Path) -> None:
    missing = start_and_fail(tmp_path, manhole_config(tmp_path / "absent", free_port(udp=False)))
    assert len(missing) == 1 and "no such file" in missing[0]
    users = users_file(tmp_path)
    users.chmod(0o644)
    shared = start_and_fail(tmp_path, manhole_config(users, free_port(udp=False)))
    assert len(shared) == 1 and "chmod 600" in shared[0]


def test_telnet_on_loopback_asks_a_password_and_runs_mi(
    daemon_factory: DaemonFactory, sqlite_url: str, tmp_path: Path
) -> None:
    table = SocketTable(sqlite_url)
    table.init()
    port = free_port()
    table.insert(f"tcp:127.0.0.1:{port}")
    telnet_port = free_port(udp=False)
    config = (
        f"[manhole]\nenabled = true\ntelnet_port = {telnet_port}\n"
        f'users_file = "{users_file(tmp_path)}"\n'
    )
    daemon_factory(sqlite_url, config)
    for password, answer in (("not-it", "Authentication failed"), ("plain-pw", ">>> ")):
        # (one try per connection: Twisted's telnet login does not renegotiate echo well)
        client = TelnetClient(telnet_port)
        try:
            client.read_until("Username: ")
            client.type_line("ops")
            client.read_until("Password: ")
            client.type_line(password)
            client.read_until(answer)
            if answer == ">>> ":
                client.type_line('mi("sockets_list")')
                listed = client.read_until(f"{port}'}}]")
                assert f"[{{'socket': 'tcp:127.0.0.1:{port}'}}]" in listed
        finally:
            client.close()
