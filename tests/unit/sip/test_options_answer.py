# mypy: disable-error-code="no-untyped-call"
"""The OPTIONS shortcut answers exactly as the general path, or leaves the message to it.

`answer_options` is run beside the general path (`Dispatcher` + `Responder`,
parse, validate, apply_received, make_response, serialize) over the RFC 4475
torture messages (as they are, and turned into OPTIONS) and over generated
OPTIONS variants: whenever the shortcut answers, the bytes must be the ones
the general path sends.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipsock.apps import Dispatcher, Responder
from sipsock.sip import parse
from sipsock.sip.checks import check_address
from sipsock.sip.errors import SipParseError
from sipsock.sip.options_answer import (
    OptionsReply,
    _match_plain_address,
    answer_options,
    tail_of,
)
from sipsock.sip.options_memo import OptionsMemo
from sipsock.sip.response import stable_tag
from sipsock.sip.via import parse_via, stamp_via, stamp_via_value
from sipsock.sockdef import SocketDef, parse_row
from sipsock.transport import Origin
from tests.sipp import SIPP_OPTIONS

DATA = Path(__file__).parents[2] / "data" / "rfc4475"
UDP = parse_row(1, "udp:10.0.0.1:5060")
ADVERTISED = parse_row(2, "udp:10.0.0.1:5060", advertised="sip.example.com:5080")
V6 = parse_row(3, "udp:[2001:db8::1]:5060")
RESPONDER = Responder(allow=("OPTIONS", "INVITE"), supported=("path",))
#: What the shortcut remembers, shared by the tests of this module and `test_options_layout`
#: as a dispatcher's memo is shared by every message it answers.
MEMO = OptionsMemo()

SIPP = SIPP_OPTIONS


def general_path(
    data: bytes, peer: tuple[str, int], sdef: SocketDef = UDP, app: Responder = RESPONDER
) -> list[bytes]:
    """What the Dispatcher and the application send back for ``data``."""
    replies: list[bytes] = []
    origin = Origin(sdef, 1, peer, replies.append)
    Dispatcher(app).message_received(data, origin)
    return replies


def shortcut(
    data: bytes, peer: tuple[str, int], sdef: SocketDef = UDP, app: Responder = RESPONDER
) -> bytes | None:
    reply = Dispatcher(app).options_reply(sdef)
    assert reply is not None
    return answer_options(data, peer[0], peer[1], reply, MEMO)


def assert_same(
    data: bytes, peer: tuple[str, int], sdef: SocketDef = UDP, app: Responder = RESPONDER
) -> bytes | None:
    """The shortcut's answer, checked against the general path when there is one."""
    fast = shortcut(data, peer, sdef, app)
    if fast is not None:
        assert general_path(data, peer, sdef, app) == [fast]
    return fast


# --- the usual keep-alives are answered, with the general path's bytes -----------------


def test_sipp_options_is_answered_with_the_general_paths_bytes() -> None:
    answer = assert_same(SIPP, ("127.0.0.1", 5061))
    assert answer is not None
    assert b";rport=5061;received=127.0.0.1\r\n" in answer
    assert b"To: <sip:service@127.0.0.1:5070>;tag=" in answer
    assert answer.endswith(b"Content-Length: 0\r\n\r\n")


@pytest.mark.parametrize(
    ("data", "peer", "sdef"),
    [
        (SIPP, ("127.0.0.1", 5061), ADVERTISED),
        (SIPP, ("192.0.2.9", 40000), UDP),  # NAT: received and rport differ from the Via
        (SIPP.replace(b";rport", b""), ("192.0.2.9", 5061), UDP),  # received only
        (SIPP.replace(b";rport", b""), ("127.0.0.1", 5061), UDP),  # nothing to stamp
        (
            SIPP.replace(b"127.0.0.1:5061;branch", b"[2001:db8::7]:5061;branch"),
            ("2001:db8::7", 5061),
            V6,
        ),
        (
            SIPP.replace(b"Via: ", b"v: ").replace(b"From: ", b"f: ").replace(b"To: ", b"t: "),
            ("127.0.0.1", 5061),
            UDP,
        ),
        (
            SIPP.replace(b"Call-ID: ", b"i: ").replace(b"Contact: ", b"m: "),
            ("127.0.0.1", 5061),
            UDP,
        ),
        (
            SIPP.replace(b"To: <sip:service@127.0.0.1:5070>", b"To: <sip:s@h>;tag=abc"),
            ("127.0.0.1", 5061),
            UDP,
        ),
        (
            SIPP.replace(b"Via: ", b"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\nVia: ", 1),
            ("192.0.2.1", 5060),
            UDP,
        ),
        (SIPP.replace(b"VIA", b"via").replace(b"Via:", b"VIA  :\t"), ("127.0.0.1", 5061), UDP),
        (SIPP.replace(b"From: sipp ", b'From: "S\xc3\xa9bastien Q" '), ("127.0.0.1", 5061), UDP),
        (SIPP.replace(b"Content-Length: 0\r\n\r\n", b"\r\n"), ("127.0.0.1", 5061), UDP),
        (
            SIPP.replace(b"Content-Length: 0\r\n\r\n", b"Content-Length: 3\r\n\r\nabc"),
            ("127.0.0.1", 5061),
            UDP,
        ),
    ],
)
def test_common_keepalive_shapes_are_answered_identically(
    data: bytes, peer: tuple[str, int], sdef: SocketDef
) -> None:
    assert assert_same(data, peer, sdef) is not None


def test_answer_carries_the_responders_headers_and_stable_tag() -> None:
    reply = RESPONDER.options_reply(ADVERTISED)
    assert reply is not None
    answer = answer_options(SIPP, "127.0.0.1", 5061, reply, MEMO)
    assert answer is not None
    response = parse(answer)
    assert response.get("Contact") == "<sip:sip.example.com:5080>"
    assert response.get("Allow") == "OPTIONS, INVITE"
    assert response.get("Supported") == "path"
    expected = stable_tag(reply.salt, "1-1234@127.0.0.1", "sipp <sip:sipp@127.0.0.1:5061>;tag=1")
    assert response.get("To") == f"<sip:service@127.0.0.1:5070>;tag={expected}"


# --- anything unusual is left to the general path ------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        SIPP.replace(b"OPTIONS sip", b"INVITE sip").replace(b"1 OPTIONS", b"1 INVITE"),
        SIPP.replace(b"1 OPTIONS", b"1 INVITE"),  # CSeq method mismatch: 400
        SIPP.replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1),  # 505
        SIPP.replace(b"sip:service", b"http:service", 1),  # 416
        SIPP.replace(b"\r\n", b"\n"),  # bare LF line ends
        SIPP.replace(b"Max-Forwards: 70", b"Max-Forwards:\r\n 70"),  # folded
        SIPP.replace(b"Call-ID: 1-1234@127.0.0.1\r\n", b""),  # missing Call-ID: 400
        SIPP.replace(b"CSeq: 1 OPTIONS\r\n", b"CSeq: 1 OPTIONS\r\nCSeq: 2 OPTIONS\r\n"),
        SIPP.replace(b";rport\r\n", b";rport, SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\n"),
        SIPP.replace(b"To: <sip", b"To: <si p"),  # malformed address: 400
        SIPP.replace(b"Max-Forwards: 70", b"Max-Forwards: seventy"),
        SIPP.replace(b"Content-Length: 0", b"Content-Length: 99"),  # body shorter: 400
        SIPP.replace(b"Content-Length: 0", b"Content-Length: " + b"9" * 5000),
        SIPP.replace(b"CSeq: 1 ", b"CSeq: " + b"1" * 5000 + b" "),
        SIPP.replace(b"Via: SIP/2.0/UDP", b"Via: SIP/2.0/UDP 1.2.3.4:99999 x", 1),
        b"\r\n" + SIPP,
        SIPP[:-4],  # no empty line
        SIPP.replace(b"OPTIONS sip:service@127.0.0.1:5070 SIP/2.0", b"OPTIONS  sip:s@h SIP/2.0"),
    ],
)
def test_unusual_requests_are_left_to_the_general_path(data: bytes) -> None:
    assert shortcut(data, ("127.0.0.1", 5061)) is None


def test_oversize_datagram_is_left_to_the_general_path() -> None:
    reply = RESPONDER.options_reply(UDP)
    assert reply is not None
    assert answer_options(SIPP, "127.0.0.1", 5061, reply, MEMO, max_size=len(SIPP) - 1) is None


def test_answering_the_same_message_twice_gives_the_same_bytes() -> None:
    assert shortcut(SIPP, ("127.0.0.1", 5061)) == shortcut(SIPP, ("127.0.0.1", 5061))


def test_tail_of_ends_the_header_section_with_an_empty_body() -> None:
    assert tail_of([("Server", "x")]) == "Server: x\r\nContent-Length: 0\r\n\r\n"
    assert OptionsReply("a", "b") == OptionsReply("a", "b")


# --- RFC 4475: as they are, and turned into OPTIONS ------------------------------------

TORTURE = sorted(DATA.glob("*.dat"))


def as_options(data: bytes) -> bytes:
    """The message with OPTIONS as its method (start line and CSeq)."""
    data = re.sub(rb"^[^ \r\n]+ ", b"OPTIONS ", data, count=1)
    return re.sub(rb"(?im)^(cseq[ \t]*:[ \t]*[0-9]+[ \t]+)[^ \t\r\n]+", rb"\1OPTIONS", data)


@pytest.mark.parametrize("path", TORTURE, ids=[p.stem for p in TORTURE])
@pytest.mark.parametrize("peer", [("192.0.2.7", 5099), ("2001:db8::7", 5099)])
def test_rfc4475_messages_get_the_general_paths_answer(path: Path, peer: tuple[str, int]) -> None:
    data = path.read_bytes()
    assert_same(data, peer)
    assert_same(as_options(data), peer)


def test_rfc4475_turned_into_options_are_answered_by_the_shortcut_where_plain() -> None:
    answered = [
        p.stem for p in TORTURE if shortcut(as_options(p.read_bytes()), ("192.0.2.7", 5099))
    ]
    # The plain ones among the torture messages: the shortcut is not a no-op.
    assert len(answered) >= 3, answered


# --- generated OPTIONS variants ----------------------------------------------------------

NAMES = {
    "via": ["Via", "v", "VIA", "via"],
    "from": ["From", "f", "FROM"],
    "to": ["To", "t", "tO"],
    "call-id": ["Call-ID", "i", "call-id", "CALL-ID"],
    "cseq": ["CSeq", "cseq"],
    "contact": ["Contact", "m"],
    "max-forwards": ["Max-Forwards"],
    "content-length": ["Content-Length", "l"],
    "accept": ["Accept"],
    "user-agent": ["User-Agent"],
}


def pick(draw: st.DrawFn, clean: bool, good: list[str], bad: list[str]) -> str:
    """One of ``good``; unless ``clean``, now and then one of ``bad``."""
    if clean or draw(st.integers(0, 11)):
        return draw(st.sampled_from(good))
    return draw(st.sampled_from(bad))


def via_value(draw: st.DrawFn, clean: bool) -> str:
    transport = pick(draw, clean, ["SIP/2.0/UDP"], ["SIP/2.0/udp", "SIP / 2.0 / UDP", "SIP/2.0"])
    host = pick(
        draw,
        clean,
        ["192.0.2.7", "127.0.0.1", "[2001:db8::7]", "pc.example.com", "10.9.9.9"],
        ["[2001:DB8:0::7]", "host_name", "1.2.3.4.5"],
    )
    port = pick(draw, clean, ["", ":5060", ":5099", ":1"], [":05099", ":65535", ":0", ":70000"])
    params = [
        pick(
            draw,
            clean,
            [
                ";rport",
                ";branch=z9hG4bK-7",
                ";branch=z9hG4bK-8",
                ";received=10.0.0.1",
                ";x",
                ";ttl=1",
            ],
            [";RPORT", ";rport=1234", ";maddr=1.2.3.4", ';q="a b"', " ; rport", ";rport=", ";=x"],
        )
        for _ in range(draw(st.integers(0, 4)))
    ]
    return f"{transport} {host}{port}{''.join(params)}"


GOOD_ADDRESSES = [
    "<sip:a@example.com>",
    "Alice <sip:a@example.com>",
    '"Alice A." <sip:a@example.com>',
    "sip:a@example.com",
    "<sip:a@example.com>;tag=9",
    "<sips:[2001:db8::1]:5061;transport=tls>",
    "<tel:+15551234>",
]
BAD_ADDRESSES = [
    "<sip:a@example.com>;TAG=9",
    "<sip:a@example.com> ; tag = 9",
    "sip:a@example.com?x=y",
    "<sip:a b@example.com>",
    "Bad Name\x01 <sip:a@b>",
    "*",
    "<sip:a@b>, <sip:c@d>",
    '"unterminated <sip:a@b>',
    "",
]


@st.composite
def options_messages(draw: st.DrawFn, clean: bool = False) -> tuple[bytes, tuple[str, int]]:
    uri = pick(
        draw,
        clean,
        ["sip:svc@10.0.0.1", "sip:10.0.0.1:5060", "sips:h"],
        ["SIP:svc@h", "tel:+1", "sip:a@b?c=d", "<sip:x>"],
    )
    fields = [("via", via_value(draw, clean)) for _ in range(draw(st.integers(1, 3)))]
    if not clean and draw(st.integers(0, 9)) == 0:
        fields[0] = ("via", f"{fields[0][1]}, {via_value(draw, clean)}")
    fields += [
        ("from", pick(draw, clean, GOOD_ADDRESSES, BAD_ADDRESSES)),
        ("to", pick(draw, clean, GOOD_ADDRESSES, BAD_ADDRESSES)),
        ("call-id", pick(draw, clean, ["c1@example.com", "x"], ["", " a b ", "a\x0b"])),
        (
            "cseq",
            pick(
                draw,
                clean,
                ["1 OPTIONS", "4294967295 OPTIONS"],
                ["4294967296 OPTIONS", "1 INVITE", "1  OPTIONS", "x OPTIONS", "1 options"],
            ),
        ),
    ]
    optional = [
        ("contact", pick(draw, clean, GOOD_ADDRESSES, BAD_ADDRESSES)),
        ("max-forwards", pick(draw, clean, ["70", "0"], ["x", "", "070"])),
        ("accept", "application/sdp"),
        ("user-agent", "probe/1.0"),
        ("content-length", pick(draw, clean, ["0"], ["2", "5", "x", "00"])),
    ]
    fields += draw(st.lists(st.sampled_from(optional), max_size=5, unique=True))
    fields = draw(st.permutations(fields))
    if not clean and draw(st.integers(0, 14)) == 0:
        fields = fields[1:]  # a missing header
    if not clean and draw(st.integers(0, 14)) == 0 and fields:
        fields = [*fields, fields[0]]  # a duplicate
    lines = [f"OPTIONS {uri} SIP/2.0"]
    for key, value in fields:
        name = draw(st.sampled_from(NAMES[key]))
        separator = pick(draw, clean, [": "], [":", " : ", ":\t", ":  ", "\t:"])
        lines.append(f"{name}{separator}{value}")
    if not clean and draw(st.integers(0, 14)) == 0:
        index = draw(st.integers(1, len(lines) - 1)) if len(lines) > 1 else 0
        lines[index] = lines[index].replace(" ", "\r\n ", 1)  # a folded line
    end = "\n" if not clean and draw(st.integers(0, 19)) == 0 else "\r\n"
    data = (end.join(lines) + end + end).encode("utf-8")
    if not any(key == "content-length" for key, _ in fields):
        data += draw(st.sampled_from([b"", b"hi"]))
    peer = draw(
        st.sampled_from(
            [("192.0.2.7", 5099), ("127.0.0.1", 5060), ("2001:db8::7", 5099), ("10.9.9.9", 1)]
        )
    )
    return data, peer


@settings(max_examples=200, deadline=None)
@given(options_messages(clean=True), st.sampled_from([UDP, ADVERTISED, V6]))
def test_generated_plain_options_are_answered_by_the_shortcut_identically(
    message: tuple[bytes, tuple[str, int]], sdef: SocketDef
) -> None:
    data, peer = message
    assert assert_same(data, peer, sdef) is not None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(options_messages(), st.sampled_from([UDP, ADVERTISED, V6]))
def test_generated_options_get_the_general_paths_answer(
    message: tuple[bytes, tuple[str, int]], sdef: SocketDef
) -> None:
    data, peer = message
    assert_same(data, peer, sdef)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(options_messages(), options_messages())
def test_header_lines_remembered_from_other_messages_change_no_answer(
    first: tuple[bytes, tuple[str, int]], second: tuple[bytes, tuple[str, int]]
) -> None:
    """A line read before (the ``lines`` memo) is read as a new one would be."""
    MEMO.lines.clear()
    cold = shortcut(*second)
    shortcut(*first)
    shortcut(*second)
    assert shortcut(*second) == cold
    assert len(MEMO.lines) <= MEMO.lines.max_entries


def test_the_line_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(MEMO.lines, "max_entries", 8)
    MEMO.lines.clear()
    for number in range(20):
        data = SIPP.replace(b"Max-Forwards: 70", b"Max-Forwards: %d" % number)
        assert shortcut(data, ("192.0.2.7", 5099)) is not None
        assert len(MEMO.lines) <= 8
    MEMO.lines.clear()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([b"", SIPP[:120], SIPP]))
def test_arbitrary_bytes_never_make_the_shortcut_disagree(noise: bytes, prefix: bytes) -> None:
    assert_same(prefix + noise, ("192.0.2.7", 5099))
    assert_same(SIPP[:200] + noise + SIPP[200:], ("192.0.2.7", 5099))


@given(st.from_regex(_match_plain_address.__self__, fullmatch=True))  # type: ignore[attr-defined]
def test_plain_address_pattern_accepts_only_what_check_address_accepts(value: str) -> None:
    try:
        check_address(value)
    except SipParseError as error:  # pragma: no cover - the failure message
        pytest.fail(f"{value!r} matches the shortcut pattern but check_address says {error}")


# --- the Via stamp on raw text is the stamp on the parsed Via ---------------------------


@settings(max_examples=400, deadline=None)
@given(
    st.data(),
    st.sampled_from(["192.0.2.7", "127.0.0.1", "2001:db8::7", "10.0.0.1", "pc.example.com"]),
    st.integers(1, 65535),
)
def test_stamp_via_value_is_the_parsed_stamp(data: st.DataObject, host: str, port: int) -> None:
    value = data.draw(st.builds(via_value, st.just(data.draw), st.booleans()))
    try:
        via = parse_via(value)
    except SipParseError:
        with pytest.raises(SipParseError):
            stamp_via_value(value, host, port)
        return
    stamped = stamp_via(via, host, port)
    assert stamp_via_value(value, host, port) == (None if stamped is via else str(stamped))
