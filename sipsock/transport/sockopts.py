"""Create, configure and bind the socket of a `SocketDef`.

Everything a socket needs before the reactor sees it: family and type,
non-blocking mode, ``SO_REUSEADDR`` (stream listeners), ``SO_REUSEPORT``
(``reuse_port``), ``IPV6_V6ONLY`` (IPv6), ``IP_TOS``/``IPV6_TCLASS`` (``tos``)
and no path-MTU discovery (``frag``), and for UDP the receive buffer set
once per process by `set_udp_receive_buffer` (``[core] udp_receive_buffer``).
The control process binds a pool's shared UDP descriptor with `bind_socket`,
or one ``SO_REUSEPORT`` member per worker with `bind_member`.
`apply_update` changes tos and frag on a live descriptor.
"""

from __future__ import annotations

import errno
import socket
import time
from pathlib import Path
from typing import Final

from twisted.logger import Logger

from sipsock.seams import ListenError
from sipsock.sockdef import SocketDef

_log = Logger()

#: Listen backlog of stream sockets.
STREAM_BACKLOG: Final = 1024

# Linux values, used when the socket module does not export the name.
IP_MTU_DISCOVER: Final = getattr(socket, "IP_MTU_DISCOVER", 10)
IP_PMTUDISC_DONT: Final = getattr(socket, "IP_PMTUDISC_DONT", 0)
IP_PMTUDISC_WANT: Final = getattr(socket, "IP_PMTUDISC_WANT", 1)
IPV6_MTU_DISCOVER: Final = getattr(socket, "IPV6_MTU_DISCOVER", 23)
IPV6_PMTUDISC_DONT: Final = getattr(socket, "IPV6_PMTUDISC_DONT", 0)
IPV6_PMTUDISC_WANT: Final = getattr(socket, "IPV6_PMTUDISC_WANT", 1)
IPV6_TCLASS: Final = getattr(socket, "IPV6_TCLASS", 67)
SO_RCVBUFFORCE: Final = getattr(socket, "SO_RCVBUFFORCE", 33)

#: Where Linux keeps the largest receive buffer SO_RCVBUF may ask for.
RMEM_MAX_PATH: Final = Path("/proc/sys/net/core/rmem_max")
#: Seconds a read of ``net.core.rmem_max`` is used for (see `_current_limit`).
LIMIT_TTL: Final = 1.0


class _ReceiveBuffer:
    """The receive buffer every new UDP socket of this process asks for (0: kernel default)."""

    size = 0
    #: Granted sizes already logged: one line per figure, not one per socket
    #: (a reload of 500 sockets wrote 500 equal lines).
    logged: set[int] = set()
    #: ``net.core.rmem_max`` as last read, and when (monotonic seconds; never read yet
    #: is further back than `LIMIT_TTL`).
    limit: int | None = None
    limit_read = -LIMIT_TTL


_REASONS: Final = {
    errno.EADDRINUSE: "port already in use",
    errno.EADDRNOTAVAIL: "address not on this host",
    errno.EACCES: "permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)",
    errno.EAFNOSUPPORT: "address family not supported on this host",
}


#: Sockets are made non-blocking by ``socket()`` itself where the OS can
#: (one system call fewer per socket of a reload than ``setblocking``).
_NONBLOCK: Final = getattr(socket, "SOCK_NONBLOCK", 0)


def family_of(sdef: SocketDef) -> socket.AddressFamily:
    """``AF_INET6`` for an IPv6 host, else ``AF_INET``."""
    return socket.AF_INET6 if sdef.is_ipv6 else socket.AF_INET


def kind_of(sdef: SocketDef) -> socket.SocketKind:
    """``SOCK_STREAM`` for stream transports, else ``SOCK_DGRAM``."""
    return socket.SOCK_STREAM if sdef.is_stream else socket.SOCK_DGRAM


def describe_os_error(exc: OSError) -> str:
    """A human reason for an error of socket(), setsockopt(), bind() or listen()."""
    reason = _REASONS.get(exc.errno or 0)
    if reason is not None:
        return reason
    return exc.strerror or str(exc)


def bind_socket(sdef: SocketDef, *, backlog: int = STREAM_BACKLOG) -> socket.socket:
    """A new non-blocking socket configured for ``sdef`` and bound to its address.

    Stream sockets are also listening. Any failure closes the socket and raises
    `ListenError` with a human reason ("port already in use", ...).
    """
    try:
        sock = socket.socket(family_of(sdef), kind_of(sdef) | _NONBLOCK)
    except OSError as exc:
        raise ListenError(sdef, describe_os_error(exc)) from exc
    try:
        configure_socket(sock, sdef)
        sock.bind(sockaddr_of(sdef))
        if sdef.is_stream:
            sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ListenError(sdef, describe_os_error(exc)) from exc
    return sock


def bind_member(sdef: SocketDef) -> socket.socket:
    """A new SO_REUSEPORT member of ``sdef``'s UDP group, bound (raises `ListenError`).

    A UDP worker pool in reuseport mode binds one member per worker.
    """
    try:
        sock = socket.socket(family_of(sdef), socket.SOCK_DGRAM | _NONBLOCK)
    except OSError as exc:
        raise ListenError(sdef, describe_os_error(exc)) from exc
    try:
        configure_socket(sock, sdef)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr_of(sdef))
    except OSError as exc:
        sock.close()
        raise ListenError(sdef, describe_os_error(exc)) from exc
    return sock


def sockaddr_of(sdef: SocketDef) -> tuple[str, int] | tuple[str, int, int, int]:
    """The address ``bind()`` takes for ``sdef``."""
    if sdef.is_ipv6:
        return (sdef.host, sdef.port, 0, 0)
    return (sdef.host, sdef.port)


def configure_socket(sock: socket.socket, sdef: SocketDef) -> None:
    """Set every option of ``sdef`` on a socket that is not bound yet (raises OSError)."""
    if sock.gettimeout() != 0.0:  # not made non-blocking at creation (`_NONBLOCK`)
        sock.setblocking(False)
    if sdef.is_stream:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if sdef.reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if sdef.is_ipv6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    if sdef.tos is not None:
        set_tos(sock, sdef, sdef.tos)
    if "frag" in sdef.flags and not sdef.is_stream:
        set_frag(sock, sdef, frag=True)
    if _ReceiveBuffer.size and not sdef.is_stream:
        _apply_receive_buffer(sock, sdef, _ReceiveBuffer.size)


def set_udp_receive_buffer(size: int) -> None:
    """Ask for ``size`` bytes of receive buffer on every UDP socket configured from now on.

    0 keeps the kernel default (``net.core.rmem_default``). Called once at
    start-up with ``[core] udp_receive_buffer``, in the process that binds
    the sockets (workers get descriptors that already have it).
    """
    if size < 0:
        raise ValueError(f"receive buffer size {size} is negative")
    _ReceiveBuffer.size = size


def receive_buffer_limit() -> int | None:
    """``net.core.rmem_max``: the most SO_RCVBUF may ask for (None where unreadable)."""
    try:
        return int(RMEM_MAX_PATH.read_text().strip())
    except (OSError, ValueError):
        return None


def set_receive_buffer(sock: socket.socket, size: int) -> int:
    """Ask for a ``size``-byte receive buffer; returns what the kernel granted.

    Above ``net.core.rmem_max`` a privileged process (root, CAP_NET_ADMIN)
    gets it with SO_RCVBUFFORCE; any other gets at most ``rmem_max`` through
    SO_RCVBUF. The granted figure is the kernel's own (SO_RCVBUF read back:
    Linux doubles the request for its bookkeeping). Raises OSError.
    """
    limit = _current_limit()
    forced = False
    if limit is not None and size > limit:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
            forced = True
        except PermissionError:
            pass
    if not forced:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    granted: int = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    return granted


def _current_limit() -> int | None:
    """`receive_buffer_limit`, read again at most once per `LIMIT_TTL` seconds.

    Opening 500 sockets read the file 500 times (tens of milliseconds of a
    reload); a sysctl change is still seen within a second.
    """
    now = time.monotonic()
    if now - _ReceiveBuffer.limit_read >= LIMIT_TTL:
        _ReceiveBuffer.limit = receive_buffer_limit()
        _ReceiveBuffer.limit_read = now
    return _ReceiveBuffer.limit


def _apply_receive_buffer(sock: socket.socket, sdef: SocketDef, size: int) -> None:
    """`set_receive_buffer` for ``sdef``, logged for the first socket that gets each figure."""
    granted = set_receive_buffer(sock, size)
    if granted in _ReceiveBuffer.logged:
        return
    _ReceiveBuffer.logged.add(granted)
    if granted < size:
        _log.warn(
            "socket {socket}: receive buffer {granted} bytes, less than the {size} asked "
            "([core] udp_receive_buffer): net.core.rmem_max is {limit} and this process may "
            "not exceed it (raise it with sysctl, or run with CAP_NET_ADMIN); later UDP "
            "sockets that get the same are not logged",
            socket=sdef.socket_text,
            granted=granted,
            size=size,
            limit=_current_limit(),
        )
    else:
        _log.info(
            "socket {socket}: receive buffer {granted} bytes (kernel figure for the {size} "
            "asked); later UDP sockets that get the same are not logged",
            socket=sdef.socket_text,
            granted=granted,
            size=size,
        )


def set_tos(sock: socket.socket, sdef: SocketDef, tos: int) -> None:
    """Set IP_TOS (IPv4) or IPV6_TCLASS (IPv6)."""
    if sdef.is_ipv6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_TCLASS, tos)
    else:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)


def get_tos(sock: socket.socket, sdef: SocketDef) -> int:
    """Read back IP_TOS (IPv4) or IPV6_TCLASS (IPv6)."""
    if sdef.is_ipv6:
        return sock.getsockopt(socket.IPPROTO_IPV6, IPV6_TCLASS)
    return sock.getsockopt(socket.IPPROTO_IP, socket.IP_TOS)


def set_frag(sock: socket.socket, sdef: SocketDef, *, frag: bool) -> None:
    """``frag``: no path-MTU discovery, so the kernel fragments and DF is not set.

    Without ``frag`` the kernel default (``PMTUDISC_WANT``) is restored.
    """
    if sdef.is_ipv6:
        value = IPV6_PMTUDISC_DONT if frag else IPV6_PMTUDISC_WANT
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, value)
    else:
        value = IP_PMTUDISC_DONT if frag else IP_PMTUDISC_WANT
        sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, value)


def get_mtu_discover(sock: socket.socket, sdef: SocketDef) -> int:
    """Read back IP_MTU_DISCOVER (IPv4) or IPV6_MTU_DISCOVER (IPv6)."""
    if sdef.is_ipv6:
        return sock.getsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER)
    return sock.getsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER)


def check_same_endpoint(old: SocketDef, new: SocketDef) -> None:
    """Raise ValueError unless ``new`` can be applied to the socket of ``old`` in place."""
    if old.endpoint != new.endpoint:
        raise ValueError(
            f"{old.socket_text}: cannot update in place to {new.socket_text} "
            "(proto, host, port or reuse_port changed)"
        )


def apply_update(sock: socket.socket, old: SocketDef, new: SocketDef) -> None:
    """Change tos and frag of a live socket from ``old`` to ``new`` (raises OSError).

    Tag and advertised address live in the `SocketDef` only; ``proto``,
    ``host``, ``port`` and ``reuse_port`` cannot change on a descriptor (the
    registry replaces the socket instead).
    """
    check_same_endpoint(old, new)
    if old.tos != new.tos:
        set_tos(sock, new, new.tos or 0)
    old_frag = "frag" in old.flags
    new_frag = "frag" in new.flags
    if old_frag != new_frag and not new.is_stream:
        set_frag(sock, new, frag=new_frag)


def apply_update_fd(fd: int, old: SocketDef, new: SocketDef) -> None:
    """`apply_update` on a descriptor number; the descriptor stays open."""
    sock = socket.socket(family_of(new), kind_of(new), fileno=fd)
    try:
        apply_update(sock, old, new)
    finally:
        sock.detach()
