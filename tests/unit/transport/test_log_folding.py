"""Problems a peer can cause once per packet or connection are logged once per period:
the first in full, the rest folded into one summary (issue 15.10)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import FakeDatagramTransport
from twisted.logger import ILogObserver, LogLevel, formatEvent, globalLogPublisher

from sipsock.apps import Dispatcher, Responder
from sipsock.sockdef import parse_row
from sipsock.transport.udp import UdpListener
from tests.unit.transport.test_udp_options_shortcut import OPTIONS, PEER


class TooLong(FakeDatagramTransport):
    def write(self, packet: bytes, addr: Any = None) -> None:
        raise OSError(90, "Message too long")


@pytest.fixture
def lines() -> Iterator[list[tuple[Any, str]]]:
    seen: list[tuple[Any, str]] = []

    def observe(event: dict[str, Any]) -> None:
        if str(event.get("log_namespace", "")).startswith("sipsock"):
            seen.append((event.get("log_level"), formatEvent(event)))

    observer = cast(ILogObserver, observe)
    globalLogPublisher.addObserver(observer)
    yield seen
    globalLogPublisher.removeObserver(observer)


def test_two_hundred_refused_replies_give_one_line_and_one_summary(
    lines: list[tuple[Any, str]],
) -> None:
    clock = Clock()
    listener = UdpListener(
        parse_row(7, "udp:10.0.0.1:5060"), 3, Dispatcher(Responder()), reactor=clock
    )
    listener.protocol.makeConnection(TooLong())  # type: ignore[no-untyped-call]
    for _ in range(200):
        listener.protocol.datagramReceived(OPTIONS, PEER)
    assert listener.counters.drops == 200
    assert [text for _, text in lines] == [
        "socket udp:10.0.0.1:5060 (slot 3): cannot send to ('192.0.2.5', 5070): "
        "Message too long (more send failures are summed up every 60 s)"
    ]
    clock.advance(60)
    assert lines[-1] == (
        LogLevel.warn,
        "socket udp:10.0.0.1:5060 (slot 3): 199 more send failures in the last 60 s",
    )
    clock.advance(60)  # a quiet period: nothing more, and the next one is news again
    assert len(lines) == 2
    clock.advance(60)
    listener.protocol.datagramReceived(OPTIONS, PEER)
    assert "cannot send" in lines[-1][1]
    listener.protocol.datagramReceived(OPTIONS, PEER)
    listener.stop()
    assert "socket udp:10.0.0.1:5060 (slot 3): 1 more send failures in the last 0 s" in [
        text for _, text in lines
    ]


def test_connections_that_break_framing_or_idle_out_are_folded_per_socket(
    lines: list[tuple[Any, str]],
) -> None:
    from tests.unit.transport.test_transport_stream import accept, make_listener

    listener, _, reactor = make_listener(idle_timeout=10)
    for index in range(100):
        protocol, transport = accept(listener, ("192.0.2.9", 40000 + index))
        protocol.dataReceived(b"OPTIONS sip:a SIP/2.0\r\nContent-Length: x\r\n\r\n")
        assert transport.disconnecting
        protocol.connectionLost(None)  # type: ignore[arg-type]
    for index in range(100):
        accept(listener, ("192.0.2.10", 40000 + index))
    reactor.advance(10)
    texts = [text for _, text in lines]
    assert listener.counters.parse_errors == 100
    assert len([t for t in texts if "closed: " in t and "Content-Length" in t]) == 1
    assert len([t for t in texts if "closed: idle for 10 s" in t]) == 1
    reactor.advance(60)
    texts = [text for _, text in lines]
    assert any("99 more connections closed on a framing error" in t for t in texts), texts
    assert any("99 more idle connections closed" in t for t in texts), texts


def test_messages_the_application_fails_on_are_folded_per_socket(
    lines: list[tuple[Any, str]],
) -> None:
    from sipsock.transport import Origin
    from tests.unit.apps.test_apps_responder_dispatch import UDP, Recorder, request

    clock = Clock()
    dispatcher = Dispatcher(Recorder(fail=True), clock=clock)
    origin = Origin(UDP, 1, PEER, lambda data: None)
    for _ in range(50):
        dispatcher.message_received(request("INVITE"), origin)
    assert dispatcher.app_errors == 50
    failed = [(level, text) for level, text in lines if "application failed" in text]
    assert len(failed) == 1 and failed[0][0] == LogLevel.critical
    clock.advance(60)
    assert lines[-1][1] == (
        "socket udp:10.0.0.1:5060 (slot 1): the application failed on 49 more messages "
        "in the last 60 s"
    )
