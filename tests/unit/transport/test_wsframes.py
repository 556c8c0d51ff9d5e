# mypy: disable-error-code="no-untyped-call"
"""WebSocket frames read and written without autobahn: the same messages, fewer writes."""

from __future__ import annotations

import os
import struct
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from sipsock.transport.wsrules import read_frame, server_frame, unmask
from tests.unit.transport.test_ws_protocol import frame, handshake, make_listener, server_frames

ANSWER = b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"
REQUEST = (
    b"OPTIONS sip:a@10.0.0.1 SIP/2.0\r\nVia: SIP/2.0/WS 1.2.3.4;branch=z9hG4bK1\r\n"
    b"Content-Length: 0\r\n\r\n"
)


class _Writes:
    """Counts the writes reaching a string transport."""

    def __init__(self, transport: Any) -> None:
        self.count = 0
        write = transport.write

        def counted(data: bytes) -> None:
            self.count += 1
            write(data)

        transport.write = counted


def _answering() -> tuple[Any, Any, Any]:
    listener, sink, _ = make_listener()
    proto, transport = handshake(listener)
    transport.clear()

    def answer(data: bytes, origin: Any) -> None:
        sink.messages.append((data, origin))
        origin.reply(ANSWER)

    sink.message_received = answer  # type: ignore[method-assign]
    return proto, transport, sink


def _autobahn_only(proto: Any) -> None:
    """Every frame through autobahn, messages written by autobahn: sipsock before this change."""
    proto._frame_limit = 0
    proto._messages.frames_itself = False


def test_the_answers_to_one_read_leave_in_one_write() -> None:
    proto, transport, sink = _answering()
    writes = _Writes(transport)
    proto.dataReceived(frame(0x1, REQUEST) + frame(0x2, REQUEST) + frame(0x1, REQUEST))
    assert [data for data, _ in sink.messages] == [REQUEST] * 3
    assert writes.count == 1
    assert server_frames(transport.value()) == [(0x1, ANSWER)] * 3


def test_frames_split_across_reads_and_control_frames_keep_their_order() -> None:
    proto, transport, sink = _answering()
    whole = frame(0x1, REQUEST)
    ping = frame(0x9, b"hello")
    data = whole + ping + whole + whole[:7]
    proto.dataReceived(data)
    proto.dataReceived(whole[7:] + whole)
    assert [data for data, _ in sink.messages] == [REQUEST] * 4
    # The answer to the first message leaves before autobahn's pong.
    assert (
        server_frames(transport.value()) == [(0x1, ANSWER), (0xA, b"hello")] + [(0x1, ANSWER)] * 3
    )


@settings(max_examples=300, deadline=None)
@given(
    first=st.sampled_from([0x81, 0x82, 0x01, 0x02, 0x80, 0x88, 0x89, 0x8A, 0xC1, 0x91, 0x83]),
    masked=st.booleans(),
    payload=st.one_of(
        st.binary(max_size=300),
        st.text(max_size=200).map(lambda text: text.encode()),
    ),
    long_form=st.booleans(),
    cut=st.integers(min_value=0, max_value=400),
)
def test_read_frame_delivers_only_what_autobahn_delivers(
    first: int, masked: bool, payload: bytes, long_form: bool, cut: int
) -> None:
    size = len(payload)
    mask = os.urandom(4) if masked else b""
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if masked else payload
    flag = 0x80 if masked else 0
    if long_form or size >= 126:
        head = struct.pack("!BBH", first, flag | 126, size)
    else:
        head = struct.pack("!BB", first, flag | size)
    data = (head + mask + body)[: max(cut, 2)]
    cutting = read_frame(data, 0, True, 1024)
    if cutting is None:
        return  # autobahn reads it, whatever it is
    # What read_frame takes, autobahn delivers as the same message, with no fault.
    listener, sink, _ = make_listener()
    proto, transport = handshake(listener)
    _autobahn_only(proto)
    transport.clear()
    proto.dataReceived(data)
    message, binary, end = cutting
    assert end == len(data)
    assert [got for got, _ in sink.messages] == [message] == [payload]
    assert binary is (first == 0x82)
    assert transport.value() == b""  # no close


@given(st.binary(max_size=2000), st.binary(min_size=4, max_size=4))
def test_unmask_is_rfc_6455_masking(payload: bytes, mask: bytes) -> None:
    assert unmask(payload, mask) == bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@given(st.one_of(st.binary(max_size=70000), st.text(max_size=300).map(str.encode)))
@settings(max_examples=50, deadline=None)
def test_server_frames_are_the_frames_autobahn_writes(payload: bytes) -> None:
    listener, _, _ = make_listener(max_message_size=1 << 20)
    proto, transport = handshake(listener)
    transport.clear()
    is_binary = payload != b"" and server_frame(payload)[0] == 0x82
    proto.sendMessage(payload, isBinary=is_binary)
    assert transport.value() == server_frame(payload)
