"""The pure WebSocket rules (sipsock.transport.wsrules): the opening handshake's size cap."""

from __future__ import annotations

from sipsock.transport.wsrules import MAX_HANDSHAKE_SIZE, handshake_overflows

HEAD = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n"


def test_short_handshake_never_overflows() -> None:
    assert not handshake_overflows(b"", HEAD, MAX_HANDSHAKE_SIZE)


def test_frames_right_behind_a_handshake_do_not_count() -> None:
    assert not handshake_overflows(b"", HEAD + b"\x81\x7e" * 50000, MAX_HANDSHAKE_SIZE)
    assert not handshake_overflows(HEAD[:10], HEAD[10:] + b"x" * 100000, 1000)


def test_headers_past_the_limit_without_a_blank_line_overflow() -> None:
    assert handshake_overflows(b"", b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 5000, 16384)
    assert handshake_overflows(b"a" * 16000, b"b" * 1000, 16384)


def test_blank_line_just_past_the_limit_overflows() -> None:
    head = b"G" * 100 + b"\r\n\r\n"
    assert not handshake_overflows(b"", head, 100)
    assert handshake_overflows(b"", b"G" + head, 100)
