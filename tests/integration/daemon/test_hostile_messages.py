"""Messages from issue 16 round 2 against the real daemon and the Responder.

* TCP: valid messages sent in one write with a bad one are all answered
  before the bad one is answered and the connection closed (16.15); RFC
  4475 ``dblreq`` over TCP gives both of its requests.
* UDP: RFC 4475 ``bext01`` (Require of an unknown extension) gets 420 Bad
  Extension with Unsupported, also after plain OPTIONS taught the OPTIONS
  shortcut this peer's layout (16.17).
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from tests.daemon import Daemon
from tests.integration.daemon.conftest import DaemonFactory
from tests.net import free_port
from tests.polling import poll_until
from tests.sip_probe import options_request, options_udp, status_of
from tests.tables import SocketTable

RFC4475 = Path(__file__).resolve().parents[2] / "data" / "rfc4475"
#: Seconds to wait for the answers of one write.
READ_TIMEOUT = 10.0


def start(daemon_factory: DaemonFactory, sqlite_url: str, *sockets: str) -> Daemon:
    table = SocketTable(sqlite_url)
    table.init()
    for text in sockets:
        table.insert(text)
    return daemon_factory(sqlite_url)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the daemon writes until it closes the connection (bounded in time)."""
    data = b""
    deadline = time.monotonic() + READ_TIMEOUT
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65535)
        except TimeoutError:
            continue
        if not chunk:
            return data
        data += chunk
    raise AssertionError(f"connection still open after {READ_TIMEOUT:g} s; got {data[:300]!r}")


def statuses(data: bytes) -> list[int | None]:
    """The status codes of the responses in ``data`` (each with Content-Length: 0)."""
    return [status_of(b"SIP/2.0 " + part) for part in data.split(b"SIP/2.0 ")[1:]]


def test_messages_before_a_bad_one_in_one_tcp_write_are_all_answered(
    daemon_factory: DaemonFactory, sqlite_url: str
) -> None:
    port = free_port(udp=False)
    start(daemon_factory, sqlite_url, f"tcp:127.0.0.1:{port}")
    with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
        local = sock.getsockname()[1]
        good = [options_request("127.0.0.1", port, local, "TCP") for _ in range(5)]
        bad = good[0].replace(b"Content-Length: 0\r\n", b"Content-Length: x\r\n")
        sock.sendall(b"".join(good) + bad)
        assert statuses(read_until_closed(sock)) == [200] * 5 + [400]


def test_rfc4475_dblreq_over_tcp_answers_both_requests_then_closes(
    daemon_factory: DaemonFactory, sqlite_url: str
) -> None:
    port = free_port(udp=False)
    start(daemon_factory, sqlite_url, f"tcp:127.0.0.1:{port}")
    with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
        sock.sendall((RFC4475 / "dblreq.dat").read_bytes())
        data = read_until_closed(sock)
    assert statuses(data) == [501, 501], data  # REGISTER, then INVITE (the Responder's 501)
    assert b"CSeq: 8 REGISTER" in data and b"CSeq: 8 INVITE" in data


def test_rfc4475_bext01_over_udp_gets_420_even_after_the_shortcut_learned_the_peer(
    daemon_factory: DaemonFactory, sqlite_url: str
) -> None:
    port = free_port()
    start(daemon_factory, sqlite_url, f"udp:127.0.0.1:{port}")
    poll_until(lambda: options_udp(port) is not None, timeout=30, what="the socket answers")
    bext01 = (RFC4475 / "bext01.dat").read_bytes()
    plain = bext01.replace(b"Require: nothingSupportsThis, nothingSupportsThisEither\r\n", b"")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(READ_TIMEOUT)
        answers = []
        for data in (plain, plain, bext01, bext01):
            sock.sendto(data, ("127.0.0.1", port))
            answers.append(sock.recvfrom(65535)[0])
    assert [status_of(answer) for answer in answers] == [200, 200, 420, 420]
    assert b"\r\nUnsupported: nothingSupportsThis, nothingSupportsThisEither\r\n" in answers[2]
