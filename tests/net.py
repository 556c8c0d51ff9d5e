"""Free loopback ports for tests, so two runs never collide.

Ports are picked below the kernel's ephemeral range
(``net.ipv4.ip_local_port_range``), where ``connect()`` and ``bind(port 0)``
never take one by themselves. A test that closes a listening socket and
opens it again later (a reload that removes and re-adds a row) would
otherwise find its port taken, now and then, by the local end of one of the
many client connections the suite opens meanwhile (MI calls, PostgreSQL,
SIPp over TCP): "port already in use".
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

#: The lowest port handed out.
LOWEST = 10000
#: Where the kernel's ephemeral range starts when it can't be read.
DEFAULT_EPHEMERAL_START = 32768


def ephemeral_start() -> int:
    """The first port of the kernel's ephemeral range."""
    try:
        text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
        return int(text.split()[0])
    except (OSError, ValueError, IndexError):
        return DEFAULT_EPHEMERAL_START


def _bindable(family: int, kind: int, host: str, port: int) -> bool:
    with socket.socket(family, kind) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(*, udp: bool = True, tcp: bool = True, host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP (as asked) on ``host``, below the ephemeral range."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    top = ephemeral_start()
    if top - LOWEST < 1000:  # a machine whose ephemeral range starts low: ask the kernel
        return _kernel_port(family, udp=udp, tcp=tcp, host=host)
    for _ in range(1000):
        port = random.randrange(LOWEST, top)
        if udp and not _bindable(family, socket.SOCK_DGRAM, host, port):
            continue
        if tcp and not _bindable(family, socket.SOCK_STREAM, host, port):
            continue
        return port
    raise RuntimeError(f"no free port on {host} between {LOWEST} and {top}")


def _kernel_port(family: int, *, udp: bool, tcp: bool, host: str) -> int:
    """A free port chosen by the kernel (inside its ephemeral range)."""
    for _ in range(200):
        with socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
            port = int(probe.getsockname()[1])
        if udp and tcp and not _bindable(family, socket.SOCK_STREAM, host, port):
            continue
        return port
    raise RuntimeError(f"no free port on {host}")


def unread_at_server(port: int) -> int:
    """Bytes that TCP connections to 127.0.0.1:``port`` sent and the server has not read.

    Summed over the server's ends of the established connections, from
    ``/proc/net/tcp``: a request that reached a frozen server shows here.
    """
    total = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, queues = fields[1], fields[3], fields[4]
        if state == "01" and local == f"0100007F:{port:04X}":
            total += int(queues.split(":")[1], 16)
    return total
