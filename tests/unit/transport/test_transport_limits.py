# mypy: disable-error-code="no-untyped-call"
"""LimitReporter (counting and rate-limited logging of limit hits) and the UDP size limit.

The stream limits are tested beside their modules: test_stream (connection
caps), test_stream_connection (header timeout, unread output), test_outbound
(the outbound pool), test_backpressure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, formatEvent

from sipsock.seams import SocketCounters
from sipsock.sockdef import parse_row
from sipsock.testing import RecordingSink
from sipsock.transport.base import LimitReporter
from sipsock.transport.udp import UdpListener

MESSAGE = (
    b"OPTIONS sip:a@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 1.2.3.4;branch=z9hG4bK1\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def messages_of(events: Sequence[dict[str, Any]]) -> list[str]:
    return [formatEvent(event) for event in events]


# -- the reporter -----------------------------------------------------------------------


class Owner:
    def __init__(self) -> None:
        self.sdef = parse_row(1, "udp:10.0.0.1:5060")
        self.slot: int | None = 7
        self.counters = SocketCounters()


def test_reporter_counts_every_hit_and_logs_the_first_then_a_summary() -> None:
    clock, owner = MemoryReactorClock(), Owner()
    reporter = LimitReporter(owner, clock, interval=60)
    with capturedLogs() as events:
        for _ in range(500):
            reporter.hit("oversize", "datagram too big", ("192.0.2.1", 5060))
            clock.advance(0.01)
        clock.advance(55.001)  # the period ends 60 s after the first hit
    lines = messages_of(events)
    assert owner.counters.limit_oversize == 500
    assert len(lines) == 2
    assert "udp:10.0.0.1:5060 (slot 7): limit oversize hit by 192.0.2.1:5060" in lines[0]
    assert "datagram too big" in lines[0]
    assert "limit oversize hit 499 more times in the last 60 s" in lines[1]
    clock.advance(60)  # a quiet period: nothing more to say, the timer ends
    assert len(events) == 2
    assert clock.getDelayedCalls() == []


def test_reporter_stop_logs_what_is_left_and_leaves_no_timer() -> None:
    clock, owner = MemoryReactorClock(), Owner()
    reporter = LimitReporter(owner, clock, interval=60)
    with capturedLogs() as events:
        reporter.hit("connections", "refused")
        reporter.hit("connections", "refused")
        reporter.stop()
    assert "1 more times" in messages_of(events)[-1]
    assert clock.getDelayedCalls() == []


# -- UDP ------------------------------------------------------------------------------


def test_oversize_datagram_is_dropped_and_counted() -> None:
    sink = RecordingSink()
    listener = UdpListener(
        parse_row(1, "udp:10.0.0.1:5060"),
        1,
        sink,
        reactor=MemoryReactorClock(),
        max_message_size=1024,
    )
    listener.protocol.datagramReceived(MESSAGE + b"x" * 1024, ("192.0.2.1", 5060))
    listener.protocol.datagramReceived(MESSAGE, ("192.0.2.1", 5060))
    assert listener.counters.limit_oversize == 1
    assert [data for data, _ in sink.messages] == [MESSAGE]
