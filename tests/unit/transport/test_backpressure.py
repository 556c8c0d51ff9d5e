# mypy: disable-error-code="no-untyped-call"
"""pending_output and overflowing: output a peer has not taken, and when it is too much."""

from __future__ import annotations

from sipsock.transport.backpressure import overflowing, pending_output
from tests.unit.transport.streamkit import Backlog, runtime_imports


def test_pending_output_reads_the_tcp_buffer_through_tls_and_websocket_layers() -> None:
    tcp = Backlog()
    tcp.dataBuffer, tcp.offset, tcp._tempDataLen = b"x" * 100, 40, 7

    class Tls:
        transport = tcp
        _appSendBuffer = [b"abc"]

    class Ws:
        class protocol:  # noqa: N801 - the attribute autobahn's protocol has
            transport = Tls()

    assert pending_output(tcp) == (67, 60)
    assert pending_output(Tls()) == (70, 60)
    assert pending_output(Ws()) == (70, 60)
    assert pending_output(object()) == (0, 0)


def test_a_peer_is_cut_past_the_limit_once_refused_and_past_twice_the_limit_in_any_case() -> None:
    assert not overflowing(100, 0, 100)
    assert not overflowing(101, 0, 100)  # a burst of this turn, not offered yet
    assert overflowing(101, 1, 100)
    assert not overflowing(200, 0, 100)
    assert overflowing(201, 0, 100)


def test_the_rules_need_no_reactor() -> None:
    from sipsock.transport import backpressure

    assert not {name for name in runtime_imports(backpressure) if name.startswith("twisted")}


def test_a_plain_tcp_connection_reads_its_descriptor_directly() -> None:
    import socket

    from twisted.internet import reactor
    from twisted.internet.protocol import Protocol
    from twisted.internet.tcp import Connection

    from sipsock.transport.backpressure import descriptor_output
    from sipsock.transport.stream_connection import StreamConnection
    from tests.unit.transport.streamkit import make_listener

    ours, theirs = socket.socketpair()
    try:
        tcp = Connection(ours, Protocol(), reactor)
        tcp.dataBuffer, tcp.offset, tcp._tempDataLen = b"x" * 100, 40, 7
        assert descriptor_output(tcp) == pending_output(tcp) == (67, 60)
        listener, _, _ = make_listener()
        connection = StreamConnection(listener, tcp, ("192.0.2.1", 5060))
        assert connection._descriptor is tcp
        listener.limits = listener.limits.__class__(max_pending_send=60)
        connection.check_pending_output()
        assert listener.counters.limit_send_buffer == 1
    finally:
        ours.close()
        theirs.close()
