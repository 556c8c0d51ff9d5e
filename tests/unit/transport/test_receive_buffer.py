"""``[core] udp_receive_buffer``: every UDP socket gets the receive buffer asked for."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.logger import ILogObserver, LogEvent, LogLevel, globalLogPublisher
from zope.interface import provider

from sipsock.config import DEFAULT_UDP_RECEIVE_BUFFER, ConfigError, default_settings, parse_config
from sipsock.sockdef import SocketDef, parse_row
from sipsock.transport import sockopts
from sipsock.transport.sockopts import (
    bind_socket,
    receive_buffer_limit,
    set_receive_buffer,
    set_udp_receive_buffer,
)


def _port0(sdef: SocketDef) -> SocketDef:
    return dataclasses.replace(sdef, port=0)


@pytest.fixture
def logged() -> Iterator[list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    sockopts._ReceiveBuffer.logged.clear()

    @provider(ILogObserver)
    def observe(event: LogEvent) -> None:
        events.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(observe)
        set_udp_receive_buffer(0)


def test_default_is_four_mebibytes() -> None:
    assert default_settings().core.udp_receive_buffer == DEFAULT_UDP_RECEIVE_BUFFER == 4194304


def test_config_key_is_read_and_checked() -> None:
    settings = parse_config({"core": {"udp_receive_buffer": 0}}, source="test.toml")
    assert settings.core.udp_receive_buffer == 0
    for value, message in [
        (-1, "udp_receive_buffer: -1 is out of range"),
        (2**31, "udp_receive_buffer: 2147483648 is out of range"),
        ("big", "udp_receive_buffer"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_config({"core": {"udp_receive_buffer": value}}, source="test.toml")


def test_kernel_grants_a_buffer_within_rmem_max() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        # Linux doubles what it is asked, for its bookkeeping.
        assert set_receive_buffer(sock, 65536) == 2 * 65536


def test_root_gets_more_than_rmem_max_with_rcvbufforce() -> None:
    limit = receive_buffer_limit()
    assert limit is not None, "net.core.rmem_max is unreadable"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        granted = set_receive_buffer(sock, limit * 2)
    # The suite runs as root (CAP_NET_ADMIN): SO_RCVBUFFORCE passes the limit.
    assert granted == 4 * limit


def test_every_udp_socket_gets_the_configured_buffer_and_each_figure_is_logged_once(
    logged: list[dict[str, Any]],
) -> None:
    set_udp_receive_buffer(1048576)
    for text in ("udp:127.0.0.1:1", "udp:127.0.0.1:1", "udp:127.0.0.2:1"):
        with bind_socket(_port0(parse_row(1, text))) as sock:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 2 * 1048576
    set_udp_receive_buffer(65536)
    with bind_socket(_port0(parse_row(1, "udp:127.0.0.1:1"))):
        pass
    lines = [e for e in logged if "receive buffer" in e.get("log_format", "")]
    assert [(e["socket"], e["granted"]) for e in lines] == [
        ("udp:127.0.0.1:0", 2 * 1048576),
        ("udp:127.0.0.1:0", 2 * 65536),
    ]
    assert {e["log_level"] for e in lines} == {LogLevel.info}


def test_stream_sockets_keep_the_kernel_default() -> None:
    set_udp_receive_buffer(1048576)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as plain:
            default = plain.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        with bind_socket(_port0(parse_row(1, "tcp:127.0.0.1:1"))) as sock:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == default
    finally:
        set_udp_receive_buffer(0)


def test_zero_keeps_the_kernel_default() -> None:
    set_udp_receive_buffer(0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as plain:
        default = plain.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    with bind_socket(_port0(parse_row(1, "udp:127.0.0.1:1"))) as sock:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == default


def test_negative_size_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        set_udp_receive_buffer(-1)
