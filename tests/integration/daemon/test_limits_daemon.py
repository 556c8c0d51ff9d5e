"""``[limits]`` in the real daemon: the UDP workers and the stream sockets apply them,
and the hits show in ``get_statistics`` and ``/metrics``."""

from __future__ import annotations

import re
import socket
import urllib.request
from pathlib import Path

from tests.integration.daemon.conftest import DaemonFactory
from tests.net import free_port
from tests.polling import poll_until
from tests.sip_probe import TcpClient, options_request, options_udp, status_of
from tests.tables import SocketTable


def limit_sample(text: str, socket_text: str, limit: str) -> int | None:
    match = re.search(
        rf'^sipsock_socket_limit_hits_total{{socket="{re.escape(socket_text)}",[^}}]*'
        rf'limit="{limit}"}} (\d+)$',
        text,
        re.M,
    )
    return int(match[1]) if match else None


def test_limits_from_the_config_apply_in_workers_and_stream_sockets(
    daemon_factory: DaemonFactory, sqlite_url: str, tmp_path: Path
) -> None:
    (tmp_path / "var").mkdir(exist_ok=True)
    table = SocketTable(sqlite_url)
    table.init()
    udp, tcp = free_port(), free_port()
    table.insert(f"udp:127.0.0.1:{udp}")
    table.insert(f"tcp:127.0.0.1:{tcp}")
    daemon = daemon_factory(
        sqlite_url, "[limits]\nmax_udp_message_size = 2000\nmax_connections_per_ip = 2\n"
    )

    # UDP, in a worker process: the oversize datagram is dropped, the next one served.
    request = options_request("127.0.0.1", udp, 5999)
    big = request.replace(b"Content-Length", b"X-Pad: " + b"x" * 3000 + b"\r\nContent-Length")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1.0)
        sock.sendto(big, ("127.0.0.1", udp))
        try:
            answered: bytes | None = sock.recv(65535)
        except TimeoutError:
            answered = None
    assert answered is None
    reply = options_udp(udp)
    assert reply is not None and status_of(reply) == 200

    # TCP: a third connection from the same IP is closed at once. The two held
    # ones are served first: connections opened in the same instant, accepted by
    # different stream workers, have no order, and the daemon-wide cap closes
    # whichever the control process hears of last.
    held = [TcpClient(tcp), TcpClient(tcp)]
    assert [client.options() for client in held] == [200, 200]
    extra = socket.create_connection(("127.0.0.1", tcp), timeout=5)
    try:
        extra.settimeout(2)
        try:
            refused = extra.recv(1) == b""
        except ConnectionResetError:
            refused = True
        statuses = [client.options() for client in held]
    finally:
        extra.close()
        for client in held:
            client.close()
    assert refused
    assert statuses == [200, 200]

    names = [f"udp:127.0.0.1:{udp}:limit_oversize", f"tcp:127.0.0.1:{tcp}:limit_connections"]
    poll_until(
        lambda: daemon.mi("get_statistics", {"statistics": names}) == dict.fromkeys(names, 1),
        10,
        "both limit hits counted",
        0.2,
    )
    with urllib.request.urlopen(f"http://127.0.0.1:{daemon.http_port}/metrics", timeout=10) as r:
        text = r.read().decode()
    assert limit_sample(text, f"udp:127.0.0.1:{udp}", "oversize") == 1
    assert limit_sample(text, f"tcp:127.0.0.1:{tcp}", "connections") == 1
    assert limit_sample(text, f"tcp:127.0.0.1:{tcp}", "header_timeout") == 0
    kinds = daemon.mi("list_statistics", {"statistics": ["sockets:"]})
    assert kinds["sockets:limit_send_buffer"] == "incremental"
