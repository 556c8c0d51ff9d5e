"""Slowloris: 1,000 TCP connections that send one byte a second are cut at the header timeout.

The real daemon (``twistd -n sipsock``) serves one dynamic TCP socket with
``[limits] header_timeout = 2``. An attacker thread opens 1,000 connections
to it (200 from each of five loopback source addresses, under the default
per-IP cap of 256) and sends each one more byte of an INVITE every second,
which keeps the idle timer running but never finishes a header section.
Checked: every connection is cut, about ``header_timeout`` seconds after it
was opened; a normal SIP-over-TCP client connects and gets 200 while the
1,000 are held; the cuts show in ``get_statistics`` and ``/metrics``; the
daemon's descriptors come back to their count before the attack. Run with
``-s`` for the figures (connections held, cut times, RSS, descriptors).
"""

from __future__ import annotations

import errno
import re
import select
import socket
import statistics
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.daemon import Daemon
from tests.net import free_port
from tests.polling import poll_until, settle
from tests.reliability.harness import fd_count, rss_kib
from tests.sip_probe import TcpClient
from tests.tables import SocketTable

CONNECTIONS = 1000
SOURCES = ("127.0.0.11", "127.0.0.12", "127.0.0.13", "127.0.0.14", "127.0.0.15")
HEADER_TIMEOUT = 2.0
#: The attack stops by itself after this long, cut or not.
ATTACK_LIMIT = 25.0
#: A request that is never finished: one byte of it a second.
TRICKLE = (
    b"INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKslow\r\n"
)


@dataclass
class Slowloris:
    """Holds ``count`` connections to ``port``, one byte a second each, until each is cut."""

    port: int
    count: int = CONNECTIONS
    opened_at: dict[int, float] = field(default_factory=dict)
    cut_after: dict[int, float] = field(default_factory=dict)
    bytes_sent: dict[int, int] = field(default_factory=dict)
    connect_failures: int = 0
    all_open: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc
            self.all_open.set()

    def _run(self) -> None:
        poller = select.epoll()
        sockets: dict[int, socket.socket] = {}
        try:
            for index in range(self.count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.bind((SOURCES[index % len(SOURCES)], 0))
                sock.settimeout(10)
                try:
                    sock.connect(("127.0.0.1", self.port))
                except OSError:
                    self.connect_failures += 1
                    sock.close()
                    continue
                sock.setblocking(False)
                fd = sock.fileno()
                sockets[fd] = sock
                self.opened_at[fd] = time.monotonic()
                self.bytes_sent[fd] = 0
                poller.register(fd, select.EPOLLIN | select.EPOLLRDHUP)
            self.all_open.set()
            start = time.monotonic()
            next_tick = start
            while sockets and time.monotonic() - start < ATTACK_LIMIT:
                now = time.monotonic()
                if now >= next_tick:
                    next_tick += 1.0
                    for fd, sock in list(sockets.items()):
                        position = self.bytes_sent[fd] % len(TRICKLE)
                        try:
                            sock.send(TRICKLE[position : position + 1])
                            self.bytes_sent[fd] += 1
                        except OSError as exc:
                            if exc.errno not in (errno.EPIPE, errno.ECONNRESET):
                                raise
                            self._cut(fd, sockets, poller)
                for fd, _ in poller.poll(max(0.0, min(0.05, next_tick - time.monotonic()))):
                    if fd not in sockets:
                        continue
                    try:
                        data = sockets[fd].recv(4096)
                    except (ConnectionResetError, BlockingIOError) as exc:
                        if isinstance(exc, BlockingIOError):
                            continue
                        data = b""
                    if not data:
                        self._cut(fd, sockets, poller)
        finally:
            for sock in sockets.values():
                sock.close()
            poller.close()

    def _cut(self, fd: int, sockets: dict[int, socket.socket], poller: select.epoll) -> None:
        self.cut_after[fd] = time.monotonic() - self.opened_at[fd]
        poller.unregister(fd)
        sockets.pop(fd).close()


def metrics(daemon: Daemon) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{daemon.http_port}/metrics", timeout=10) as r:
        text: str = r.read().decode()
    return text


def normal_client(port: int) -> int | None:
    client = TcpClient(port, timeout=5)
    try:
        return client.options()
    finally:
        client.close()


def test_slowloris_connections_are_cut_at_the_header_timeout_and_others_are_served(
    tmp_path: Path,
) -> None:
    db_url = f"sqlite:///{tmp_path / 'var' / 'sipsock.sqlite'}"
    (tmp_path / "var").mkdir()
    table = SocketTable(db_url)
    table.init()
    port = free_port()
    table.insert(f"tcp:127.0.0.1:{port}")
    daemon = Daemon(tmp_path, db_url=db_url, extra=f"[limits]\nheader_timeout = {HEADER_TIMEOUT}\n")
    daemon.start()
    try:
        assert [row["socket"] for row in daemon.mi("sockets_list")] == [f"tcp:127.0.0.1:{port}"]
        assert normal_client(port) == 200
        pid = daemon.pid
        rss_before, fds_before = rss_kib(pid), fd_count(pid)

        attack = Slowloris(port)
        thread = threading.Thread(target=attack.run, name="slowloris", daemon=True)
        started = time.monotonic()
        thread.start()
        assert attack.all_open.wait(30), "the attacker could not open its connections"
        opened_in = time.monotonic() - started
        # While they are held: the daemon holds them, a normal client is served.
        statuses = [normal_client(port)]
        held = fds_during = rss_during = 0

        def sample_until_the_cut_nears() -> bool:
            nonlocal held, fds_during, rss_during
            [entry] = daemon.mi("sockets_list", {"details": True})
            held = max(held, entry["counters"]["connections"])
            fds_during, rss_during = max(fds_during, fd_count(pid)), max(rss_during, rss_kib(pid))
            return time.monotonic() - started >= HEADER_TIMEOUT * 0.8

        poll_until(sample_until_the_cut_nears, HEADER_TIMEOUT, "sampling while held", 0.1)
        statuses += [normal_client(port) for _ in range(2)]
        thread.join(ATTACK_LIMIT + 10)
        assert not thread.is_alive(), "the attacker did not finish"
        if attack.error is not None:
            raise attack.error

        cuts = sorted(attack.cut_after.values())
        settle(lambda: fd_count(pid) <= fds_before, 10)
        rss_after, fds_after = rss_kib(pid), fd_count(pid)
        stats = daemon.mi("get_statistics", {"statistics": ["sockets:limit_header_timeout"]})
        exposition = metrics(daemon)
        after = normal_client(port)
        daemon.stop()  # the last summary line is logged as the socket closes
        limit_lines = [line for line in daemon.log().splitlines() if ": limit " in line]

        print(
            f"\nslowloris: {len(attack.opened_at)} connections opened in {opened_in:.2f} s "
            f"({attack.connect_failures} failed), {held} held by the daemon at once; "
            f"header_timeout {HEADER_TIMEOUT} s"
            f"\n  cut: {len(cuts)} of {len(attack.opened_at)}; seconds after opening: "
            f"min {cuts[0]:.2f}, median {statistics.median(cuts):.2f}, "
            f"p95 {cuts[int(len(cuts) * 0.95) - 1]:.2f}, max {cuts[-1]:.2f}; "
            f"bytes sent per connection: max {max(attack.bytes_sent.values())}"
            f"\n  normal client during the attack: {statuses}, after: {after}"
            f"\n  daemon RSS KiB before/during/after: {rss_before}/{rss_during}/{rss_after}; "
            f"descriptors before/during/after: {fds_before}/{fds_during}/{fds_after}"
            f"\n  sockets:limit_header_timeout = {stats['sockets:limit_header_timeout']}"
            f"\n  daemon log lines about the limit: {len(limit_lines)}"
            + "".join(f"\n    {line}" for line in limit_lines[:4])
        )
        assert attack.connect_failures == 0
        assert held >= CONNECTIONS * 0.95
        assert len(cuts) == CONNECTIONS
        assert cuts[0] >= HEADER_TIMEOUT - 0.3
        assert cuts[-1] <= HEADER_TIMEOUT + 5.0
        assert max(attack.bytes_sent.values()) <= HEADER_TIMEOUT + 6
        assert statuses == [200, 200, 200]
        assert after == 200
        assert stats["sockets:limit_header_timeout"] == CONNECTIONS
        sample = re.search(
            rf'^sipsock_socket_limit_hits_total{{socket="tcp:127.0.0.1:{port}",[^}}]*'
            rf'limit="header_timeout"}} (\d+)$',
            exposition,
            re.M,
        )
        assert sample is not None and int(sample[1]) == CONNECTIONS, exposition[-2000:]
        assert fds_after <= fds_before + 2
        # Logged once, then summed up: never once per connection.
        assert 1 <= len(limit_lines) <= 5
    finally:
        daemon.stop()
