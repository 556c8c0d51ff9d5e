"""The FIFO framing rule (sipsock.mi.fifo.FifoFramer)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from sipsock.mi.fifo import FifoFrame, FifoFramer, check_reply_name

REQUEST = b'{"jsonrpc": "2.0", "id": "1", "method": "which", "params": {}}'


def test_opensips_mi_request_is_one_frame() -> None:
    framer = FifoFramer()
    frames = framer.feed(b":opensips_fifo_reply_12_1700000000_5:" + REQUEST)
    assert frames == [FifoFrame("opensips_fifo_reply_12_1700000000_5", REQUEST)]
    assert not framer.pending


def test_frames_split_across_reads_and_glued_together() -> None:
    stream = b":a:" + REQUEST + b"\n:b:" + REQUEST + b":c:[1,2]"
    framer = FifoFramer()
    frames = []
    for i in range(len(stream)):
        frames += framer.feed(stream[i : i + 1])
    assert [f.reply_name for f in frames] == ["a", "b", "c"]
    assert [f.body for f in frames] == [REQUEST, REQUEST, b"[1,2]"]


def test_brackets_inside_strings_do_not_end_the_frame() -> None:
    body = b'{"jsonrpc":"2.0","id":"}","method":"x\\"}{","params":["]"]}'
    assert FifoFramer().feed(b":r:" + body) == [FifoFrame("r", body)]
    json.loads(body)


def test_empty_reply_name_means_no_reply() -> None:
    assert FifoFramer().feed(b"::" + REQUEST) == [FifoFrame(None, REQUEST)]


def test_forbidden_reply_names_are_refused() -> None:
    for name in (b"../etc/passwd", b"a.b", b"a\\b", b"x\x00"):
        reply_name, error = check_reply_name(name)
        assert reply_name is None
        assert error is not None
    frame = FifoFramer().feed(b":../x:" + REQUEST)[0]
    assert frame.reply_name is None
    assert frame.error is not None


def test_body_that_is_not_json_runs_to_end_of_line() -> None:
    assert FifoFramer().feed(b":r:hello world\n:s:{}") == [
        FifoFrame("r", b"hello world"),
        FifoFrame("s", b"{}"),
    ]


def test_junk_is_skipped_to_the_next_line() -> None:
    assert FifoFramer().feed(b"garbage here\n:r:{}") == [FifoFrame("r", b"{}")]


def test_oversized_body_is_reported_and_stream_recovers() -> None:
    framer = FifoFramer(max_request=100)
    big = b'{"a":"' + b"x" * 1000 + b'"}'
    frames = framer.feed(b":r:" + big + b":s:{}")
    assert frames[0].reply_name == "r"
    assert frames[0].error == "request larger than 100 bytes"
    assert frames[1] == FifoFrame("s", b"{}")


def test_flush_hands_over_an_unfinished_frame() -> None:
    framer = FifoFramer()
    assert framer.feed(b':r:{"jsonrpc":') == []
    pending_before = framer.pending
    assert framer.flush() == [FifoFrame("r", b'{"jsonrpc":')]
    assert (pending_before, framer.pending) == (True, False)
    assert framer.feed(b":s:{}") == [FifoFrame("s", b"{}")]


def test_too_long_reply_name_is_refused() -> None:
    frames = FifoFramer().feed(b":" + b"n" * 300 + b"\n:s:{}")
    assert frames[0].error is not None
    assert frames[-1] == FifoFrame("s", b"{}")


@given(st.binary(max_size=300))
def test_framer_never_raises_and_recovers(junk: bytes) -> None:
    framer = FifoFramer(max_request=128)
    framer.feed(junk)
    framer.flush()
    assert framer.feed(b"\n:r:{}")[-1] == FifoFrame("r", b"{}")


def test_new_request_in_a_fresh_read_ends_a_dead_writers_frame() -> None:
    framer = FifoFramer()
    assert framer.feed_read(b':dead:{"x":') == []
    frames = framer.feed_read(b":alive:" + REQUEST)
    assert frames == [FifoFrame("dead", b'{"x":'), FifoFrame("alive", REQUEST)]


def test_continuation_of_a_request_is_not_mistaken_for_a_new_one() -> None:
    framer = FifoFramer()
    assert framer.feed_read(b':r:{"jsonrpc":"2.0",') == []
    assert framer.feed_read(b'"id":"1","method":"which"}') == [
        FifoFrame("r", b'{"jsonrpc":"2.0","id":"1","method":"which"}')
    ]
