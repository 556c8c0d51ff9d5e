"""Free loopback ports for tests, so two runs never collide."""

from __future__ import annotations

import socket


def free_port(*, udp: bool = True, tcp: bool = True, host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP (as asked) on ``host``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(200):
        with socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
            port = int(probe.getsockname()[1])
        if udp and tcp:
            with socket.socket(family, socket.SOCK_STREAM) as other:
                try:
                    other.bind((host, port))
                except OSError:
                    continue
        return port
    raise RuntimeError(f"no free port on {host}")
