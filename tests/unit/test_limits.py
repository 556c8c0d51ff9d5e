"""The pure limit rules: rate-limited logging, connection admission, the header rule."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipsock.limits import (
    LIMITS,
    HeaderWatch,
    LimitError,
    LimitLog,
    Summary,
    address_key,
    connection_refusal,
    is_size_error,
)
from sipsock.seams import SocketCounters
from sipsock.sip import FramingKind, SipFramingError, StreamFramer

REQUEST = (
    b"OPTIONS sip:a SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nContent-Length: 4\r\n\r\nbody"
)

# -- LimitLog ---------------------------------------------------------------------------


def test_first_hit_is_logged_and_repeats_are_only_counted() -> None:
    log = LimitLog(60)
    assert log.hit("oversize", 0.0)
    assert [log.hit("oversize", t) for t in (1.0, 2.0, 59.0)] == [False, False, False]
    assert log.flush(30.0) == []
    assert log.flush(60.0) == [Summary("oversize", 3, 60.0)]


def test_a_flood_gives_one_summary_per_period() -> None:
    log = LimitLog(60)
    summaries: list[Summary] = []
    logged = 0
    for second in range(600):  # 10 minutes, 100 hits a second
        for _ in range(100):
            logged += log.hit("connections", float(second))
        summaries += log.flush(float(second))
    assert logged == 1
    assert 9 <= len(summaries) <= 10
    assert all(summary.seconds == 60.0 for summary in summaries)
    assert (
        sum(s.suppressed for s in summaries)
        + sum(s.suppressed for s in log.flush(1e9, closing=True))
        == 100 * 600 - 1
    )


def test_a_quiet_period_forgets_the_key_so_the_next_hit_is_logged_again() -> None:
    log = LimitLog(60)
    assert log.hit("header_timeout", 0.0)
    assert log.flush(60.0) == []
    assert len(log) == 0
    assert log.hit("header_timeout", 61.0)


def test_limits_of_one_socket_are_logged_apart() -> None:
    log = LimitLog(60)
    assert log.hit("oversize", 0.0)
    assert log.hit("connections", 0.5)
    assert not log.hit("oversize", 1.0)
    assert log.next_due() == 60.0


def test_closing_summarizes_every_open_key_at_once() -> None:
    log = LimitLog(60)
    log.hit("oversize", 0.0)
    log.hit("oversize", 1.0)
    log.hit("outbound", 2.0)
    assert log.flush(10.0, closing=True) == [Summary("oversize", 1, 10.0)]
    assert len(log) == 0
    assert log.next_due() is None


def test_log_interval_must_be_positive() -> None:
    with pytest.raises(LimitError, match="log_interval"):
        LimitLog(0)


def test_every_limit_has_a_counter() -> None:
    counters = SocketCounters()
    for name in LIMITS:
        assert getattr(counters, f"limit_{name}") == 0


# -- admission --------------------------------------------------------------------------


def test_connection_under_both_caps_is_accepted() -> None:
    assert (
        connection_refusal(socket_count=9, ip_count=1, per_socket=10, per_ip=2, ip="192.0.2.1")
        is None
    )


def test_connection_over_the_socket_cap_names_the_key() -> None:
    reason = connection_refusal(
        socket_count=10, ip_count=0, per_socket=10, per_ip=5, ip="192.0.2.1"
    )
    assert reason is not None and "max_connections_per_socket" in reason


def test_connection_over_the_ip_cap_names_the_ip_and_the_key() -> None:
    reason = connection_refusal(
        socket_count=3, ip_count=2, per_socket=10, per_ip=2, ip="2001:db8::1"
    )
    assert reason is not None and "2001:db8::1" in reason and "max_connections_per_ip" in reason


def test_per_ip_cap_counts_an_ipv6_host_by_its_64() -> None:
    assert address_key("192.0.2.1") == "192.0.2.1"
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("[2001:db8:1:2::ffff]")
    assert address_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key("fe80::1%eth0") == "fe80::/64"
    assert address_key("Host.Example") == "host.example"


# -- HeaderWatch ------------------------------------------------------------------------


def feed(watch: HeaderWatch, framer: StreamFramer, data: bytes) -> bool:
    messages = framer.feed(data)
    return watch.fed(data, messages, framer.pending)


def test_new_connection_waits_until_its_first_whole_message() -> None:
    watch, framer = HeaderWatch(first_message=True), StreamFramer()
    assert watch.waiting
    assert feed(watch, framer, REQUEST[:30])
    assert feed(watch, framer, REQUEST[30:60])
    assert not feed(watch, framer, REQUEST[60:])


def test_keepalive_pings_are_not_a_first_message() -> None:
    watch, framer = HeaderWatch(first_message=True), StreamFramer()
    assert feed(watch, framer, b"\r\n\r\n")
    assert feed(watch, framer, b"\r\n\r\n")


def test_outbound_connection_waits_only_inside_a_header_section() -> None:
    watch, framer = HeaderWatch(first_message=False), StreamFramer()
    assert not watch.waiting
    assert feed(watch, framer, b"SIP/2.0 200 OK\r\nCSeq: 1 OPT")
    assert not feed(watch, framer, b"IONS\r\nContent-Length: 0\r\n\r\n")


def test_a_finished_header_stops_the_clock_while_the_body_is_read() -> None:
    watch, framer = HeaderWatch(first_message=False), StreamFramer()
    header, body = REQUEST.split(b"\r\n\r\n")
    assert not feed(watch, framer, header + b"\r\n\r\n")
    assert not feed(watch, framer, body[:2])
    assert not feed(watch, framer, body[2:])


def test_a_message_started_after_a_whole_one_opens_a_header_section() -> None:
    watch, framer = HeaderWatch(first_message=True), StreamFramer()
    assert feed(watch, framer, REQUEST + b"INVITE sip:b SIP/2.0\r\nVia: x")
    assert not feed(watch, framer, b"\r\nContent-Length: 0\r\n\r\n")


def test_one_byte_at_a_time_keeps_the_header_section_open() -> None:
    watch, framer = HeaderWatch(first_message=False), StreamFramer()
    waiting = [feed(watch, framer, REQUEST[i : i + 1]) for i in range(len(REQUEST))]
    header_end = REQUEST.index(b"\r\n\r\n") + 4
    assert all(waiting[: header_end - 1])
    assert not any(waiting[header_end - 1 :])


@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30))
def test_any_split_of_whole_messages_ends_not_waiting(cuts: list[int]) -> None:
    stream = REQUEST * 3
    watch, framer = HeaderWatch(first_message=True), StreamFramer()
    position = 0
    for cut in cuts:
        feed(watch, framer, stream[position : position + cut])
        position += cut
        if position >= len(stream):
            break
    if position < len(stream):
        feed(watch, framer, stream[position:])
    assert not watch.waiting


def test_framer_size_errors_are_told_apart_from_broken_framing() -> None:
    framer = StreamFramer(max_message_size=1024, max_header_size=512)
    with pytest.raises(SipFramingError) as big:
        framer.feed(b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 5000\r\n\r\n")
    with pytest.raises(SipFramingError) as long_header:
        StreamFramer(max_header_size=512).feed(b"OPTIONS sip:a SIP/2.0\r\nX: " + b"y" * 600)
    with pytest.raises(SipFramingError) as garbage:
        StreamFramer().feed(b"GET / HTTP/1.1\r\n\r\n")
    assert is_size_error(big.value)
    assert is_size_error(long_header.value)
    assert not is_size_error(garbage.value)


def test_size_errors_are_told_by_their_kind_not_their_text() -> None:
    looks_like_size = SipFramingError("message of 9 bytes above 1", kind=FramingKind.NOT_SIP)
    plain_text = SipFramingError("too big, sorry", kind=FramingKind.OVERSIZE_MESSAGE)
    assert not is_size_error(looks_like_size)
    assert is_size_error(plain_text)
    sizes = {kind for kind in FramingKind if is_size_error(SipFramingError("x", kind=kind))}
    assert sizes == {FramingKind.OVERSIZE_HEADER, FramingKind.OVERSIZE_MESSAGE}
