# mypy: disable-error-code="no-untyped-call"
"""TLS, WS and WSS against the real daemon: dynamic rows, static sockets, domains, reload.

Certificates are made per test with trustme. Clients: Twisted's TLS and the
standard library's ssl, the `websockets` library, a raw WebSocket client for
bad frames, and JsSIP under Node (a SIP-over-WebSocket client nobody here
wrote), installed from tests/jssip by ``npm ci``.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted  # type: ignore[import-untyped, unused-ignore]
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.daemon import Daemon, MIError
from tests.integration.daemon.conftest import DaemonFactory
from tests.integration.transport.test_tls_transport import ask, close, tls_connect
from tests.net import free_port
from tests.sip_probe import options_request, status_of
from tests.tables import SocketTable
from tests.tlsfiles import CertFiles, TestPKI, domain_toml, peer_common_name
from tests.wsclient import RawWebSocket, options_over_raw, ws_connect, ws_options

JSSIP_DIR = Path(__file__).parents[2] / "jssip"


@pytest.fixture
def pki(tmp_path: Path) -> TestPKI:
    return TestPKI(tmp_path / "pki")


@pytest.fixture
def sqlite_table(sqlite_url: str) -> SocketTable:
    table = SocketTable(sqlite_url)
    table.init()
    return table


def tls_options(sock: ssl.SSLSocket, port: int) -> int | None:
    """One OPTIONS on an open TLS connection; the status of the answer."""
    sock.sendall(options_request("127.0.0.1", port, sock.getsockname()[1], "TLS"))
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65535)
        if not chunk:
            return None
        data += chunk
    return status_of(data)


def connect_tls(
    port: int, pki: TestPKI, server_name: str = "localhost", client: CertFiles | None = None
) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        return pki.client_context(client).wrap_socket(raw, server_hostname=server_name)
    except BaseException:
        raw.close()
        raise


def refused(port: int, pki: TestPKI, client: CertFiles | None = None) -> bool:
    """True when the server refuses the TLS session (at the handshake, or just after it)."""
    try:
        sock = connect_tls(port, pki, client=client)
    except (ssl.SSLError, ConnectionResetError):
        return True
    with sock:
        try:
            return tls_options(sock, port) is None
        except (ssl.SSLError, ConnectionResetError):
            return True


def report_failed(report: dict[str, Any]) -> dict[str, str]:
    return {entry["socket"]: entry["reason"] for entry in report["failed"]}


# -- dynamic TLS -----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_dynamic_tls_row_answers_a_twisted_tls_client_and_refuses_after_removal(
    daemon_factory: DaemonFactory, table: SocketTable, db_url: str, pki: TestPKI
) -> None:
    files = pki.issue("server", "localhost", "127.0.0.1")
    daemon = daemon_factory(db_url, extra=domain_toml("default", files))
    port = free_port()
    row = table.insert(f"tls:127.0.0.1:{port}", tag="secure")
    report = daemon.reload()
    assert report["added"] == [f"tls:127.0.0.1:{port}"]
    client = await tls_connect(port, pki)
    assert client.peer_cn == "localhost"
    answer = await ask(client, port, "dyn")
    assert answer.startswith(b"SIP/2.0 200 OK\r\n")
    assert f"Contact: <sip:127.0.0.1:{port};transport=tls>".encode() in answer
    await close(client)
    table.delete(row)
    assert daemon.reload()["removed"] == [f"tls:127.0.0.1:{port}"]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_tls_row_no_domain_serves_fails_with_the_reason_and_the_reload_goes_on(
    daemon_factory: DaemonFactory, sqlite_table: SocketTable, sqlite_url: str, pki: TestPKI
) -> None:
    files = pki.issue("server", "localhost")
    served, lonely, udp = free_port(), free_port(), free_port()
    daemon = daemon_factory(
        sqlite_url, extra=domain_toml("only", files, match_address=f"127.0.0.1:{served}")
    )
    sqlite_table.insert(f"tls:127.0.0.1:{lonely}")
    sqlite_table.insert(f"wss:127.0.0.1:{served}")
    sqlite_table.insert(f"udp:127.0.0.1:{udp}")
    report = daemon.reload()
    assert report["added"] == [f"wss:127.0.0.1:{served}", f"udp:127.0.0.1:{udp}"]
    reason = report_failed(report)[f"tls:127.0.0.1:{lonely}"]
    assert reason.startswith(f"no TLS domain matches 127.0.0.1:{lonely}")
    listed = {e["socket"]: e for e in daemon.mi("sockets_list")}
    assert listed[f"tls:127.0.0.1:{lonely}"]["error"].startswith(f"{reason} (")  # + attempts


def test_required_client_certificate_refuses_strangers_and_accepts_the_ca_list(
    daemon_factory: DaemonFactory, sqlite_table: SocketTable, sqlite_url: str, pki: TestPKI
) -> None:
    clients = TestPKI(pki.directory / "clients", name="clients")
    extra = domain_toml(
        "mtls",
        pki.issue("server", "localhost"),
        ca_list=clients.ca_file,
        require_client_cert=True,
    )
    daemon = daemon_factory(sqlite_url, extra=extra)
    port = free_port()
    sqlite_table.insert(f"tls:127.0.0.1:{port}")
    daemon.reload()
    assert refused(port, pki)
    stranger = TestPKI(pki.directory / "stranger", name="stranger")
    assert refused(port, pki, client=stranger.issue("phone", "phone.example"))
    with connect_tls(port, pki, client=clients.issue("phone", "phone.example")) as sock:
        assert tls_options(sock, port) == 200
    [entry] = daemon.mi("sockets_list", {"details": True})
    assert entry["counters"]["handshake_failures"] == 2


def test_two_domains_on_one_socket_are_picked_by_sni(
    daemon_factory: DaemonFactory, sqlite_table: SocketTable, sqlite_url: str, pki: TestPKI
) -> None:
    extra = domain_toml(
        "alpha", pki.issue("alpha", "alpha.example"), match_sni=["alpha.example"]
    ) + domain_toml("beta", pki.issue("beta", "beta.example"), match_sni=["beta.example"])
    daemon = daemon_factory(sqlite_url, extra=extra)
    port = free_port()
    sqlite_table.insert(f"tls:127.0.0.1:{port}")
    daemon.reload()
    for name in ("alpha.example", "beta.example"):
        with connect_tls(port, pki, server_name=name) as sock:
            assert peer_common_name(sock) == name
            assert tls_options(sock, port) == 200


# -- tls_reload ----------------------------------------------------------------------------


def test_tls_reload_new_connections_see_the_new_certificate_old_ones_keep_working(
    daemon_factory: DaemonFactory, sqlite_table: SocketTable, sqlite_url: str, pki: TestPKI
) -> None:
    files = pki.issue("server", "localhost", "old.example")
    daemon = daemon_factory(sqlite_url, extra=domain_toml("main", files))
    port = free_port()
    sqlite_table.insert(f"tls:127.0.0.1:{port}")
    daemon.reload()
    before = connect_tls(port, pki, server_name="old.example")
    assert tls_options(before, port) == 200
    old_fingerprint = daemon.mi("tls_list")[0]["sha256"]

    fresh = pki.issue("fresh", "new.example", "localhost")
    files.certificate.write_bytes(fresh.certificate.read_bytes())
    files.private_key.write_bytes(fresh.private_key.read_bytes())
    assert daemon.mi("tls_reload") == "OK"
    [listed] = daemon.mi("tls_list")
    assert listed["sha256"] != old_fingerprint
    assert listed["subject"].startswith("CN=new.example,")
    with connect_tls(port, pki, server_name="new.example") as after:
        assert peer_common_name(after) == "new.example"
        assert tls_options(after, port) == 200
    assert tls_options(before, port) == 200  # the connection made before the reload
    before.close()

    # A broken file: the old certificate stays and the command says so.
    files.certificate.write_text("-----BEGIN CERTIFICATE-----\ngarbage\n")
    with pytest.raises(MIError) as caught:
        daemon.mi("tls_reload")
    assert caught.value.code == 500
    assert "domain 'main'" in caught.value.message
    assert str(files.certificate) in caught.value.message
    assert "old certificate kept" in caught.value.message
    with connect_tls(port, pki, server_name="new.example") as again:
        assert peer_common_name(again) == "new.example"
        assert tls_options(again, port) == 200
    assert daemon.mi("tls_list")[0]["sha256"] == listed["sha256"]


# -- start-up ------------------------------------------------------------------------------


def test_broken_domain_at_start_is_a_one_line_error_naming_it(
    tmp_path: Path, sqlite_url: str, pki: TestPKI
) -> None:
    files = pki.issue("server", "localhost")
    files.private_key.unlink()
    workdir = tmp_path / "broken"
    workdir.mkdir()
    daemon = Daemon(workdir, db_url=sqlite_url, extra=domain_toml("edge", files))
    with pytest.raises(RuntimeError) as caught:
        daemon.start()
    lines = [line for line in str(caught.value).splitlines() if line.startswith("sipsock:")]
    assert lines == [
        f"sipsock: {daemon.config}: [tls] TLS domain 'edge': private_key "
        f"{files.private_key}: no such file"
    ]


def test_static_tls_socket_without_a_domain_stops_start_up(tmp_path: Path, sqlite_url: str) -> None:
    port = free_port()
    workdir = tmp_path / "nodomain"
    workdir.mkdir()
    extra = f'[core]\nlisten = ["tls:127.0.0.1:{port}"]\n'
    daemon = Daemon(workdir, db_url=sqlite_url, extra=extra)
    with pytest.raises(RuntimeError) as caught:
        daemon.start()
    assert f"cannot open static socket tls:127.0.0.1:{port}: no TLS domain is configured" in str(
        caught.value
    )


# -- static TLS and WSS ----------------------------------------------------------------------


def test_static_tls_and_wss_sockets_answer(
    daemon_factory: DaemonFactory, sqlite_table: SocketTable, sqlite_url: str, pki: TestPKI
) -> None:
    tls_port, wss_port = free_port(), free_port()
    extra = (
        f'[core]\nlisten = ["tls:127.0.0.1:{tls_port}", "wss:127.0.0.1:{wss_port}"]\n'
        + domain_toml("default", pki.issue("server", "localhost", "127.0.0.1"))
    )
    daemon_factory(sqlite_url, extra=extra)
    with connect_tls(tls_port, pki) as sock:
        assert tls_options(sock, tls_port) == 200
    with ws_connect(wss_port, tls=pki.client_context()) as client:
        status, answer = ws_options(client, wss_port)
    assert status == 200
    assert "Via: SIP/2.0/WSS " in answer
    assert client.subprotocol == "sip"


# -- dynamic WS ----------------------------------------------------------------------------


def test_dynamic_ws_row_serves_websockets_and_refuses_bad_clients(
    daemon_factory: DaemonFactory, sqlite_table: SocketTable, sqlite_url: str
) -> None:
    daemon = daemon_factory(sqlite_url, extra="[websocket]\nmax_message_size = 4096\n")
    port = free_port()
    sqlite_table.insert(f"ws:127.0.0.1:{port}")
    assert daemon.reload()["added"] == [f"ws:127.0.0.1:{port}"]

    with ws_connect(port) as steady:
        assert steady.subprotocol == "sip"
        assert ws_options(steady, port)[0] == 200

        with pytest.raises(InvalidStatus) as caught:
            ws_connect(port, subprotocols=None)
        assert caught.value.response.status_code == 400

        garbage = RawWebSocket(port)
        garbage.send_raw(b"\x8b\x80\x00\x00\x00\x00" + os.urandom(64))
        assert garbage.close_code() == 1002
        garbage.close()

        with ws_connect(port) as big:
            big.send("OPTIONS " + "x" * 5000)
            with pytest.raises(ConnectionClosed) as closed:
                big.recv(timeout=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009

        # The socket, and the connection opened before, still serve.
        assert ws_options(steady, port)[0] == 200
        other = RawWebSocket(port)
        assert options_over_raw(other, port) == 200
        other.close()
    [entry] = daemon.mi("sockets_list", {"details": True})
    assert entry["counters"]["parse_errors"] == 1
    assert entry["counters"]["limit_oversize"] == 1
    assert entry["counters"]["handshake_failures"] == 1


# -- JsSIP -------------------------------------------------------------------------------


def jssip(url: str, *requests: str, ca: Path | None = None) -> list[dict[str, Any]]:
    """Run the JsSIP client (tests/jssip/client.js) under Node; its JSON lines."""
    node = shutil.which("node")
    assert node is not None, "node is not installed (scripts/test installs Debian nodejs npm)"
    assert (JSSIP_DIR / "node_modules" / "jssip").is_dir(), (
        "JsSIP is not installed: run npm ci --prefix tests/jssip (scripts/test does)"
    )
    env = {**os.environ}
    if ca is not None:
        env["NODE_EXTRA_CA_CERTS"] = str(ca)
    done = subprocess.run(
        [node, "--experimental-websocket", str(JSSIP_DIR / "client.js"), url, *requests],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr[-2000:])
    return lines


def answers(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {line["method"]: line for line in lines if "method" in line}


def test_jssip_over_ws_gets_200_to_options_and_501_to_register(
    daemon_factory: DaemonFactory, sqlite_table: SocketTable, sqlite_url: str
) -> None:
    daemon = daemon_factory(sqlite_url, extra="[websocket]\nrequire_origin = false\n")
    port = free_port()
    sqlite_table.insert(f"ws:127.0.0.1:{port}")
    daemon.reload()
    got = answers(jssip(f"ws://127.0.0.1:{port}", "options", "register"))
    assert (got["OPTIONS"]["status"], got["OPTIONS"]["reason"]) == (200, "OK")
    assert got["OPTIONS"]["via"].startswith("SIP/2.0/WS ")
    assert got["REGISTER"]["status"] == 501


def test_jssip_over_wss_with_the_test_ca_trusted(
    daemon_factory: DaemonFactory, sqlite_table: SocketTable, sqlite_url: str, pki: TestPKI
) -> None:
    extra = "[websocket]\nrequire_origin = false\n" + domain_toml(
        "web", pki.issue("server", "localhost", "127.0.0.1")
    )
    daemon = daemon_factory(sqlite_url, extra=extra)
    port = free_port()
    sqlite_table.insert(f"wss:127.0.0.1:{port}")
    daemon.reload()
    got = answers(jssip(f"wss://localhost:{port}", "options", ca=pki.ca_file))
    assert got["OPTIONS"]["status"] == 200
    assert got["OPTIONS"]["via"].startswith("SIP/2.0/WSS ")


def test_daemon_raises_its_open_files_limit_to_the_hard_limit(
    daemon_factory: DaemonFactory, sqlite_url: str
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(1024, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    try:
        daemon = daemon_factory(sqlite_url)  # inherits the low soft limit
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    limits = Path(f"/proc/{daemon.pid}/limits").read_text()
    [line] = [entry for entry in limits.splitlines() if entry.startswith("Max open files")]
    assert line.split()[3:5] == [str(hard), str(hard)]
    if low < hard:
        assert f"open-files limit raised from {low} to {hard}" in daemon.log()
