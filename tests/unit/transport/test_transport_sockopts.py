"""sockopts: sockets built from a SocketDef, their options and bind errors."""

from __future__ import annotations

import dataclasses
import errno
import os
import socket

import pytest

from sipsock.sockdef import SocketDef, parse_row
from sipsock.transport import ListenError
from sipsock.transport.sockopts import (
    IP_PMTUDISC_DONT,
    IP_PMTUDISC_WANT,
    apply_update,
    bind_member,
    bind_socket,
    describe_os_error,
    get_mtu_discover,
    get_tos,
)
from tests.net import free_port


def test_udp_socket_is_nonblocking_bound_with_tos_and_no_pmtu_discovery() -> None:
    sdef = _port0(parse_row(1, "udp:127.0.0.1:1", tos="IPTOS_LOWDELAY", flags="frag,reuse_port"))
    with bind_socket(sdef) as sock:
        assert sock.type == socket.SOCK_DGRAM
        assert sock.getblocking() is False
        assert sock.getsockname()[0] == "127.0.0.1"
        assert get_tos(sock, sdef) == 16
        assert get_mtu_discover(sock, sdef) == IP_PMTUDISC_DONT
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1


def test_tcp_socket_listens_with_reuseaddr() -> None:
    sdef = _port0(parse_row(1, "tcp:127.0.0.1:1"))
    with bind_socket(sdef) as sock:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0


def test_ipv6_socket_is_v6only_with_traffic_class() -> None:
    sdef = _port0(parse_row(1, "udp:[::1]:1", tos="8", flags="frag"))
    with bind_socket(sdef) as sock:
        assert sock.family == socket.AF_INET6
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
        assert get_tos(sock, sdef) == 8
        assert get_mtu_discover(sock, sdef) == IP_PMTUDISC_DONT


def test_port_in_use_is_a_listen_error_naming_the_socket() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        sdef = parse_row(1, f"udp:127.0.0.1:{port}")
        with pytest.raises(ListenError) as caught:
            bind_socket(sdef)
    assert caught.value.sdef == sdef
    assert str(caught.value) == f"udp:127.0.0.1:{port}: port already in use"


def test_address_not_on_this_host_is_a_listen_error() -> None:
    with pytest.raises(ListenError, match="address not on this host"):
        bind_socket(parse_row(1, "tcp:192.0.2.1:5060"))


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (errno.EADDRINUSE, "port already in use"),
        (errno.EADDRNOTAVAIL, "address not on this host"),
        (errno.EACCES, "permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)"),
        (errno.EMFILE, "Too many open files"),
    ],
)
def test_os_errors_get_human_reasons(code: int, reason: str) -> None:
    assert describe_os_error(OSError(code, "Too many open files")) == reason


def test_apply_update_changes_tos_and_frag_on_a_live_socket() -> None:
    old = _port0(parse_row(1, "udp:127.0.0.1:1", tos="8", flags="frag"))
    new = _port0(parse_row(1, "udp:127.0.0.1:1", tag="t", tos="16"))
    with bind_socket(old) as sock:
        apply_update(sock, old, new)
        assert get_tos(sock, new) == 16
        assert get_mtu_discover(sock, new) == IP_PMTUDISC_WANT
        cleared = _port0(parse_row(1, "udp:127.0.0.1:1"))
        apply_update(sock, new, cleared)
        assert get_tos(sock, cleared) == 0


def test_apply_update_refuses_another_endpoint() -> None:
    old = _port0(parse_row(1, "udp:127.0.0.1:1"))
    new = parse_row(1, "udp:127.0.0.1:1", flags="reuse_port")
    with bind_socket(old) as sock, pytest.raises(ValueError, match="cannot update in place"):
        apply_update(sock, old, new)


def _port0(sdef: SocketDef) -> SocketDef:
    """The same definition on port 0: the kernel picks a free port."""
    return dataclasses.replace(sdef, port=0)


def test_members_of_one_group_share_the_port() -> None:
    sdef = parse_row(1, f"udp:127.0.0.1:{free_port()}")
    first, second = bind_member(sdef), bind_member(sdef)
    assert first.getsockname() == second.getsockname()
    first.close()
    second.close()


def test_a_member_of_a_port_held_without_reuseport_is_refused_with_the_reason() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        sdef = parse_row(1, f"udp:127.0.0.1:{holder.getsockname()[1]}")
        with pytest.raises(ListenError, match="port already in use"):
            bind_member(sdef)


class CountingSocket(socket.socket):
    """A socket that counts its ``setblocking`` calls (each one an ioctl)."""

    setblocking_calls = 0

    def setblocking(self, flag: bool) -> None:
        self.setblocking_calls += 1
        super().setblocking(flag)


@pytest.mark.parametrize(
    ("text", "made_nonblocking", "calls"),
    [
        ("udp:127.0.0.1:1", True, 0),
        ("udp:127.0.0.1:1", False, 1),
        ("tcp:127.0.0.1:1", True, 0),
    ],
)
def test_configure_socket_sets_non_blocking_only_when_socket_did_not(
    text: str, made_nonblocking: bool, calls: int
) -> None:
    """A reload binds hundreds: a socket made non-blocking by ``socket()`` is left as it is."""
    from sipsock.transport.sockopts import configure_socket

    sdef = parse_row(1, text)
    kind = socket.SOCK_STREAM if sdef.is_stream else socket.SOCK_DGRAM
    flags = socket.SOCK_NONBLOCK if made_nonblocking else 0
    with CountingSocket(socket.AF_INET, kind | flags) as sock:
        configure_socket(sock, sdef)
        assert sock.getblocking() is False
        assert os.get_blocking(sock.fileno()) is False
        assert sock.setblocking_calls == calls


def test_bound_sockets_are_non_blocking_in_the_kernel() -> None:
    for sdef in (_port0(parse_row(1, "udp:127.0.0.1:1")), _port0(parse_row(2, "tcp:127.0.0.1:1"))):
        with bind_socket(sdef) as sock:
            assert sock.type == (socket.SOCK_STREAM if sdef.is_stream else socket.SOCK_DGRAM)
            assert sock.gettimeout() == 0.0
            assert os.get_blocking(sock.fileno()) is False
    with bind_member(_port0(parse_row(3, "udp:127.0.0.1:1"))) as member:
        assert os.get_blocking(member.fileno()) is False
