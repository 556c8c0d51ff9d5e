"""``[mi]`` and ``[manhole]``: where the admin front ends listen, and who may use them.

The JSON-RPC MI has no authentication, so its listeners are loopback only;
the manhole always asks for a password and offers telnet on loopback only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sipsock.addresses import parse_ip
from sipsock.config.reader import Reader


@dataclass(frozen=True)
class MISettings:
    """``[mi]``: the admin front ends. JSON-RPC listeners are loopback only."""

    http: bool = True
    http_address: str = "127.0.0.1"
    http_port: int = 8888
    datagram_address: str = "127.0.0.1"
    datagram_port: int | None = None
    fifo: Path | None = None
    socket: Path | None = None


@dataclass(frozen=True)
class ManholeSettings:
    """``[manhole]``: the admin shell, off by default (see `sipsock.manhole`).

    At least one of ``ssh_port`` / ``telnet_port`` when enabled, a
    ``users_file`` always; telnet only on a loopback ``address``; a
    non-loopback address needs ``allow_remote`` and SSH only. Before a login
    succeeds a connection has ``login_timeout`` seconds, and counts against
    ``max_unauthenticated`` (in all) and ``max_unauthenticated_per_ip``; an
    address with ``max_login_failures`` failed logins within
    ``login_failure_window`` seconds is refused until they age out.
    """

    enabled: bool = False
    address: str = "127.0.0.1"
    ssh_port: int | None = None
    telnet_port: int | None = None
    users_file: Path | None = None
    allow_remote: bool = False
    login_timeout: float = 30.0
    max_unauthenticated: int = 32
    max_unauthenticated_per_ip: int = 8
    max_login_failures: int = 5
    login_failure_window: float = 60.0


def read_mi(reader: Reader, data: Mapping[str, Any]) -> MISettings:
    sec = reader.section(data, "mi", MISettings)
    http_address = sec.get("http_address", str)
    datagram_address = sec.get("datagram_address", str)
    for key, address in (("http_address", http_address), ("datagram_address", datagram_address)):
        if not _is_loopback(address):
            sec.fail(
                key,
                f"{address!r} is not a loopback address; the JSON-RPC MI has no "
                "authentication, so it listens on 127.0.0.1 or ::1 only "
                "(use the manhole over SSH for remote administration)",
            )
    datagram_port = sec.optional_integer("datagram_port", 1, 65535)
    fifo = sec.get("fifo", str)
    socket = sec.get("socket", str)
    return MISettings(
        http=sec.get("http", bool),
        http_address=http_address,
        http_port=sec.integer("http_port", 1, 65535),
        datagram_address=datagram_address,
        datagram_port=datagram_port,
        fifo=Path(fifo) if fifo else None,
        socket=Path(socket) if socket else None,
    )


def read_manhole(reader: Reader, data: Mapping[str, Any]) -> ManholeSettings:
    sec = reader.section(data, "manhole", ManholeSettings)
    enabled = sec.get("enabled", bool)
    address = sec.get("address", str)
    ip = None if address.startswith("[") else parse_ip(address, zone="keep")
    if ip is None:
        sec.fail("address", f"{address[:70]!r} is not an IP address")
    assert ip is not None
    ports = {key: sec.optional_integer(key, 1, 65535) for key in ("ssh_port", "telnet_port")}
    users = sec.get("users_file", str)
    allow_remote = sec.get("allow_remote", bool)
    if enabled:
        if ports["ssh_port"] is None and ports["telnet_port"] is None:
            sec.fail("enabled", "needs ssh_port or telnet_port (or both)")
        if not users:
            sec.fail(
                "users_file",
                "missing: the manhole always asks for a password (a file of name:password "
                "lines, the password bcrypt-hashed or plain)",
            )
        if not ip.is_loopback:
            if ports["telnet_port"] is not None:
                sec.fail(
                    "telnet_port",
                    f"telnet sends passwords in clear text: only on a loopback address, "
                    f"not {address} (use ssh_port)",
                )
            if not allow_remote:
                sec.fail(
                    "address",
                    f"{address} is not a loopback address: set allow_remote = true to "
                    "offer the manhole (SSH only) beyond this host",
                )
    return ManholeSettings(
        enabled=enabled,
        address=ip.compressed,
        ssh_port=ports["ssh_port"],
        telnet_port=ports["telnet_port"],
        users_file=Path(users) if users else None,
        allow_remote=allow_remote,
        login_timeout=sec.number("login_timeout", 1.0, 3600.0),
        max_unauthenticated=sec.integer("max_unauthenticated", 1, 10000),
        max_unauthenticated_per_ip=sec.integer("max_unauthenticated_per_ip", 1, 10000),
        max_login_failures=sec.integer("max_login_failures", 1, 1000),
        login_failure_window=sec.number("login_failure_window", 1.0, 86400.0),
    )


def _is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    # A bare address: the listeners are given it as written (no brackets).
    ip = None if address.startswith("[") else parse_ip(address, zone="keep")
    return ip is not None and ip.is_loopback
