"""The stock OpenSIPS MI client and sipsock-mi against the real daemon."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.integration.daemon.conftest import DaemonFactory
from tests.net import free_port
from tests.tables import SocketTable

OPENSIPS_MI = str(Path(sys.executable).with_name("opensips-mi"))
SIPSOCK_MI = str(Path(sys.executable).with_name("sipsock-mi"))


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # opensips-mi reads ./.env: run it from an empty directory.
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=30, check=False)


def test_opensips_mi_over_http_datagram_and_fifo(
    daemon_factory: DaemonFactory, sqlite_url: str, tmp_path: Path
) -> None:
    table = SocketTable(sqlite_url)
    table.init()
    datagram_port = free_port()
    fifo = tmp_path / "sipsock_fifo"
    daemon = daemon_factory(sqlite_url, f'[mi]\ndatagram_port = {datagram_port}\nfifo = "{fifo}"\n')
    clean = tmp_path / "clean"
    clean.mkdir()
    port = free_port()
    table.insert(f"udp:127.0.0.1:{port}", tag="carrier_a")
    transports = {
        "http": ["-t", "http", "-i", "127.0.0.1", "-p", str(daemon.http_port)],
        "datagram": ["-t", "datagram", "-i", "127.0.0.1", "-p", str(datagram_port), "-dt", "2"],
        "fifo": ["-t", "fifo", "-f", str(fifo)],
    }
    expected = [{"socket": f"udp:127.0.0.1:{port}", "tag": "carrier_a"}]
    for name, args in transports.items():
        reloaded = run([OPENSIPS_MI, *args, "sockets_reload"], clean)
        assert reloaded.returncode == 0, (name, reloaded.stdout, reloaded.stderr)
        assert "OK" in reloaded.stdout, name
        listed = run([OPENSIPS_MI, *args, "sockets_list"], clean)
        assert listed.returncode == 0, (name, listed.stderr)
        assert json.loads(listed.stdout) == expected, name
        unknown = run([OPENSIPS_MI, *args, "no_such_command"], clean)
        assert "-32601" in unknown.stdout + unknown.stderr, name


def test_http_mi_rejects_bad_json_and_get(daemon_factory: DaemonFactory, sqlite_url: str) -> None:
    SocketTable(sqlite_url).init()
    daemon = daemon_factory(sqlite_url)
    url = f"http://127.0.0.1:{daemon.http_port}/mi"
    bad = urllib.request.Request(
        url, data=b"{not json", method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(bad, timeout=5) as response:
        assert response.status == 200
        assert json.loads(response.read())["error"]["code"] == -32700
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(url, timeout=5)
    assert refused.value.code == 405


def test_sipsock_mi_lists_and_reloads_over_the_unix_socket(
    daemon_factory: DaemonFactory, sqlite_url: str, tmp_path: Path
) -> None:
    table = SocketTable(sqlite_url)
    table.init()
    daemon = daemon_factory(sqlite_url)
    port = free_port()
    table.insert(f"tcp:127.0.0.1:{port}")
    mi_socket = daemon.state_dir / "sipsock-mi.sock"
    assert oct(mi_socket.stat().st_mode & 0o777) == "0o600"
    reloaded = run(
        [SIPSOCK_MI, "-c", str(daemon.config), "sockets_reload", "report=true"], tmp_path
    )
    assert reloaded.returncode == 0, reloaded.stderr
    assert json.loads(reloaded.stdout)["added"] == [f"tcp:127.0.0.1:{port}"]
    listed = run([SIPSOCK_MI, "-s", str(mi_socket), "sockets_list"], tmp_path)
    assert json.loads(listed.stdout) == [{"socket": f"tcp:127.0.0.1:{port}"}]
    table.execute("ALTER TABLE sockets RENAME TO gone")
    failed = run([SIPSOCK_MI, "-c", str(daemon.config), "sockets_reload"], tmp_path)
    assert failed.returncode != 0
    assert "sockets" in failed.stderr
