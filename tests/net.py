"""Free loopback ports for tests, so two runs never collide.

Ports are picked below the kernel's ephemeral range
(``net.ipv4.ip_local_port_range``), where ``connect()`` and ``bind(port 0)``
never take one by themselves. A test that closes a listening socket and
opens it again later (a reload that removes and re-adds a row) would
otherwise find its port taken, now and then, by the local end of one of the
many client connections the suite opens meanwhile (MI calls, PostgreSQL,
SIPp over TCP): "port already in use".

Two runs on one machine (two checkouts, a test run beside a benchmark) must
not hand out each other's ports either: a test that closes a socket and binds
the same port again would lose it to the other run. So each process claims a
block of the range with an exclusive ``flock`` on a lock file (released when
the process ends, however it ends) and hands its block's ports out in turn,
so no port is handed out twice before the whole block has been used.
"""

from __future__ import annotations

import fcntl
import os
import random
import socket
import tempfile
import threading
from pathlib import Path

#: The lowest port handed out.
LOWEST = 10000
#: Where the kernel's ephemeral range starts when it can't be read.
DEFAULT_EPHEMERAL_START = 32768
#: Ports in the block one process claims.
BLOCK_SIZE = 2000
#: Where the block locks live (shared by every run on the machine).
LOCK_DIR = Path(tempfile.gettempdir()) / "sipsock-test-ports"


class PortBlock:
    """The ports this process may hand out: a block claimed with ``flock``."""

    def __init__(self, first: int, size: int, lock_fd: int | None) -> None:
        self.first = first
        self.size = size
        self._lock_fd = lock_fd  # held open for the life of the process
        self._next = random.randrange(size)

    def ports(self) -> list[int]:
        """Every port of the block once, starting after the last one handed out."""
        start = self._next
        return [self.first + (start + step) % self.size for step in range(self.size)]

    def handed_out(self, port: int) -> None:
        """Remember ``port`` was handed out: the next search starts after it."""
        self._next = (port - self.first + 1) % self.size


_blocks: dict[int, PortBlock] = {}
#: One search at a time, per process: two threads of a test (a helper thread
#: adding rows, the main one starting SIPp) would otherwise probe the same port
#: free and both take it. (Per pid: a forked child may have copied the lock
#: held by another thread.)
_searching: dict[int, threading.Lock] = {}


def claim_block(lowest: int, top: int, *, lock_dir: Path = LOCK_DIR) -> PortBlock:
    """The first block of ``[lowest, top)`` no other process holds, locked for this one.

    With every block held (or no place for the locks), the whole range, shared.
    """
    count = (top - lowest) // BLOCK_SIZE
    try:
        lock_dir.mkdir(mode=0o755, exist_ok=True)
    except OSError:
        count = 0
    for index in range(count):
        first = lowest + index * BLOCK_SIZE
        try:
            fd = os.open(lock_dir / f"{first}.lock", os.O_CREAT | os.O_RDWR, 0o644)
        except OSError:
            break
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        return PortBlock(first, BLOCK_SIZE, fd)
    return PortBlock(lowest, top - lowest, None)


def _block(top: int) -> PortBlock:
    block = _blocks.get(os.getpid())
    if block is None:  # first call, or a forked child that must not share its parent's block
        block = _blocks[os.getpid()] = claim_block(LOWEST, top)
    return block


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
    with _searching.setdefault(os.getpid(), threading.Lock()):
        block = _block(top)
        for port in block.ports():
            if udp and not _bindable(family, socket.SOCK_DGRAM, host, port):
                continue
            if tcp and not _bindable(family, socket.SOCK_STREAM, host, port):
                continue
            block.handed_out(port)
            return port
    raise RuntimeError(f"no free port on {host} in {block.first}-{block.first + block.size - 1}")


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
