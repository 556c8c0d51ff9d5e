"""Inputs that once broke sipsock, saved under ``tests/data/fuzz/``, replayed through every target.

Every file there (and each RFC 4475 torture message) goes through each
target of `tests.fuzz_targets`; the named tests below pin what a user sees
for each saved input.

Found so far:

``huge-number-*``
    A number of more than 4300 digits (Content-Length, CSeq, Max-Forwards,
    Via ``ttl``/``rport``) made ``int()`` raise ``ValueError`` out of `parse`,
    the checks and `StreamFramer.feed` (CPython's limit on the length of an
    integer string): the datagram was dropped with a traceback in the log and
    never answered, a stream connection was torn down by Twisted. Numbers
    are now read by `sipsock.sip.grammar.parse_number`.
``stateless-branch-undecodable-call-id.sip``
    A byte that is not UTF-8 in the Call-ID (or the Request-URI, a tag, the
    top Via) of a request without a magic-cookie branch made
    `stateless_branch` raise ``UnicodeEncodeError``: the stateless proxy
    never forwarded such a request and logged a traceback for each copy.

Found while reading the code the fuzzers ran (pinned at the end of this file):
a Via parameter pattern with exponential backtracking, and a stream framer
that rescanned the pending header section on every read.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sipsock.sip import (
    Request,
    SipFramingError,
    SipParseError,
    StreamFramer,
    framer,
    parse,
    parse_via,
)
from sipsock.sip.parser import find_header_end
from sipsock.sip.via import MAGIC_COOKIE, stateless_branch
from tests.fuzz_targets import TARGETS, datagram_socket
from tests.fuzzer import FUZZ_DATA, RFC4475_DATA

SAVED = sorted(path for path in FUZZ_DATA.iterdir() if path.is_file())
TORTURE = sorted(RFC4475_DATA.glob("*.dat"))


def test_saved_inputs_exist() -> None:
    assert any(path.name.startswith("huge-number-") for path in SAVED)


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("path", SAVED + TORTURE, ids=lambda path: path.name)
def test_saved_input_keeps_every_property(path: Path, target: str) -> None:
    TARGETS[target](path.read_bytes())


def status_of(name: str) -> int | None:
    """The status line code the datagram socket answers the saved input with (None: dropped)."""
    replies = datagram_socket().send((FUZZ_DATA / name).read_bytes())
    return int(replies[0][8:11]) if replies else None


def test_huge_content_length_is_answered_400_not_crashed_on() -> None:
    data = (FUZZ_DATA / "huge-number-content-length.sip").read_bytes()
    with pytest.raises(SipParseError, match="larger than the 0 bytes") as caught:
        parse(data)
    assert caught.value.status == 400
    assert status_of("huge-number-content-length.sip") == 400


def test_huge_content_length_on_a_stream_is_a_framing_error() -> None:
    data = (FUZZ_DATA / "huge-number-content-length.sip").read_bytes()
    with pytest.raises(SipFramingError, match="above 65535"):
        StreamFramer().feed(data)


def test_huge_cseq_number_is_refused_with_400_and_dropped_by_the_socket() -> None:
    message = parse((FUZZ_DATA / "huge-number-cseq.sip").read_bytes())
    assert isinstance(message, Request)
    assert message.error_response == (400, "Bad Request")
    # An unreadable CSeq leaves nothing to build a response from: dropped, counted.
    assert status_of("huge-number-cseq.sip") is None


def test_huge_max_forwards_is_read_as_a_large_number() -> None:
    message = parse((FUZZ_DATA / "huge-number-max-forwards.sip").read_bytes())
    assert message.max_forwards is not None
    assert message.max_forwards > 2**32
    assert status_of("huge-number-max-forwards.sip") == 200


def test_huge_via_ttl_and_rport_are_ignored() -> None:
    message = parse((FUZZ_DATA / "huge-number-via-ttl-rport.sip").read_bytes())
    via = message.top_via
    assert (via.ttl, via.rport) == (None, None)
    assert status_of("huge-number-via-ttl-rport.sip") == 200


def test_zero_padded_content_length_frames_the_body() -> None:
    data = (FUZZ_DATA / "zero-padded-content-length.sip").read_bytes()
    assert parse(data).body == b"abc"
    assert StreamFramer().feed(data + data) == [data, data]


def test_undecodable_bytes_get_a_stable_stateless_branch() -> None:
    data = (FUZZ_DATA / "stateless-branch-undecodable-call-id.sip").read_bytes()
    request = parse(data)
    assert isinstance(request, Request)
    assert "\udca0" in request.call_id  # the byte 0xa0, kept as it came
    copy = parse(data)
    assert isinstance(copy, Request)
    branch = stateless_branch(request, "salt")
    assert branch.startswith(MAGIC_COOKIE)
    assert branch == stateless_branch(copy, "salt") != stateless_branch(request, "pepper")


# -- cost: inputs whose handling used to grow faster than their size ----------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("gap", [" ", "  ", "\t \t"])
def test_via_with_many_spaced_parameters_and_a_bad_end_is_refused_at_once(gap: str) -> None:
    # The parameter pattern let the blanks around each ";" match in two places:
    # a failing match tried every split of every gap (16 parameters: seconds;
    # 40: longer than the universe). One datagram froze a worker.
    value = "SIP/2.0/UDP host" + f";p{gap}" * 40 + "@"
    with pytest.raises(SipParseError, match="malformed Via parameters") as caught:
        parse_via(value)
    assert caught.value.status == 400
    spaced = parse_via("SIP/2.0/UDP host" + f"{gap};p{gap}=v{gap}" * 40)
    assert spaced.params == (("p", "v"),) * 40


def test_a_message_sent_one_byte_at_a_time_is_scanned_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The framer searched the whole pending header section for its end, and
    # copied and re-read it for Content-Length, on every read: a 64 KB message
    # sent in 1-byte segments cost seconds of CPU.
    scanned = 0

    def counting(data: bytes | bytearray, start: int = 0) -> tuple[int, int]:
        nonlocal scanned
        scanned += len(data) - start
        return find_header_end(data, start)

    monkeypatch.setattr(framer, "find_header_end", counting)
    header = b"OPTIONS sip:x SIP/2.0\r\nX-Pad: " + b"a" * 8000 + b"\r\n"
    message = header + b"Content-Length: 20000\r\n\r\n" + b"b" * 20000
    feeder = StreamFramer()
    out = [
        item for index in range(len(message)) for item in feeder.feed(message[index : index + 1])
    ]
    assert out == [message]
    assert scanned < 5 * len(header)  # it was about len(header) ** 2 / 2
