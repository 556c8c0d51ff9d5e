"""Socket counters tell requests from replies."""

from __future__ import annotations

from sipsock.transport import SocketCounters

OPTIONS = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n"
OK = b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"


def test_received_messages_count_replies_apart() -> None:
    counters = SocketCounters()
    counters.count_in(OPTIONS)
    counters.count_in(OK)
    counters.count_in(OPTIONS)
    assert (counters.received, counters.replies_in) == (3, 1)


def test_sent_messages_count_replies_and_bytes() -> None:
    counters = SocketCounters()
    counters.count_out(OK)
    counters.count_out(OPTIONS)
    assert (counters.sent, counters.replies_out) == (2, 1)
    assert counters.bytes_out == len(OK) + len(OPTIONS)
    assert counters.as_dict()["replies_out"] == 1
