"""Layouts answer a keep-alive like one answered before with the general path's bytes.

`answer_options` records the layout of every OPTIONS it answers by reading
its lines; a later message with the same lines, apart from its Via branch,
From tag and Call-ID, is answered from that layout. These tests answer a
message, then variants of it with other values in those places (tokens,
and things that are not tokens: blanks, commas, CR, LF, ``;``, non-ASCII),
and compare every answer with the general path.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipsock.apps import Dispatcher
from sipsock.sip.checks import check_address
from sipsock.sip.grammar import split_values
from sipsock.sip.options_answer import OptionsReply, _match_plain_address, answer_options
from sipsock.sip.options_layout import answer_by_layout, match_plain_address, match_plain_line
from sipsock.sip.options_memo import ENTRIES as MEMO_LIMIT
from sipsock.sockdef import SocketDef
from tests.unit.sip.test_options_answer import (
    ADVERTISED,
    BAD_ADDRESSES,
    GOOD_ADDRESSES,
    MEMO,
    RESPONDER,
    SIPP,
    UDP,
    V6,
    assert_same,
    general_path,
    options_messages,
    shortcut,
)

PEER = ("192.0.2.7", 5099)
TOKEN = "A-Za-z0-9\\-.!%*_+`'~"
tokens = st.from_regex(f"[{TOKEN}]{{1,24}}", fullmatch=True)
#: Values that are not tokens, or not plain: what must never be taken as one.
odd_values = st.one_of(
    st.sampled_from(["", " ", "a b", "a,b", "a;b", "a\rb", "a\nb", "a\r\n b", "é", "\x0b", '"q"']),
    st.text(max_size=12),
)
values = st.one_of(tokens, tokens, odd_values)


def forget_layouts() -> None:
    MEMO.rport_templates.clear()
    MEMO.line_ids.clear()
    MEMO.layouts.clear()
    MEMO.via_templates.clear()
    MEMO.from_templates.clear()


def by_layout(data: bytes, peer: tuple[str, int], sdef: SocketDef = UDP) -> bytes | None:
    """What `answer_by_layout` alone gives for ``data``."""
    reply = Dispatcher(RESPONDER).options_reply(sdef)
    assert reply is not None
    end = data.find(b"\r\n\r\n")
    lines = data[:end].split(b"\r\n")
    return answer_by_layout(
        lines, len(data) - end - 4, peer[0], peer[1], reply.encoded_salt, reply.encoded_tail, MEMO
    )


def sipp(
    number: int, branch: str | None = None, tag: str | None = None, call_id: str | None = None
) -> bytes:
    """SIPp's OPTIONS for call ``number``, with the values given in place of its own."""
    data = SIPP.decode()
    data = data.replace(
        "z9hG4bK-1234-1-0", f"z9hG4bK-1234-{number}-0" if branch is None else branch
    )
    data = data.replace(";tag=1", f";tag={number if tag is None else tag}")
    data = data.replace(
        "1-1234@127.0.0.1", f"{number}-1234@127.0.0.1" if call_id is None else call_id
    )
    return data.encode("utf-8", "surrogateescape")


# --- SIPp's keep-alives: the third one on is answered by the layout ---------------------


def test_sipp_calls_after_the_second_are_answered_by_the_layout() -> None:
    forget_layouts()
    assert by_layout(sipp(1), PEER) is None
    assert assert_same(sipp(1), PEER) is not None  # its fixed lines seen
    assert by_layout(sipp(2), PEER) is None
    assert assert_same(sipp(2), PEER) is not None  # seen again: its layout recorded
    for number in range(3, 50):
        fast = by_layout(sipp(number), PEER)
        assert fast is not None
        assert general_path(sipp(number), PEER) == [fast]


@pytest.mark.parametrize("sdef", [UDP, ADVERTISED, V6], ids=["udp", "advertised", "v6"])
@pytest.mark.parametrize("peer", [("192.0.2.7", 5099), ("127.0.0.1", 5061), ("2001:db8::7", 5099)])
def test_each_peer_and_socket_gets_its_own_stamp_and_tail(
    sdef: SocketDef, peer: tuple[str, int]
) -> None:
    forget_layouts()
    assert_same(sipp(1), PEER, sdef)
    assert_same(sipp(1), PEER, sdef)  # the layout, recorded for another peer
    for number in range(2, 5):
        assert assert_same(sipp(number), peer, sdef) is not None


def test_a_body_shorter_than_its_content_length_is_left_to_the_general_path() -> None:
    forget_layouts()
    data = sipp(1).replace(b"Content-Length: 0", b"Content-Length: 3") + b"abc"
    assert assert_same(data, PEER) is not None
    short = sipp(2).replace(b"Content-Length: 0", b"Content-Length: 3") + b"ab"
    assert by_layout(short, PEER) is None
    assert shortcut(short, PEER) is None


def test_another_spelling_of_a_varying_header_is_read_line_by_line() -> None:
    forget_layouts()
    assert_same(sipp(1), PEER)
    for old, new in [(b"Call-ID:", b"i:"), (b"From:", b"f:"), (b"Via:", b"v:")]:
        data = sipp(2).replace(old, new)
        assert by_layout(data, PEER) is None
        assert assert_same(data, PEER) is not None


@pytest.mark.parametrize(
    ("place", "value"),
    [
        ("branch", "a,b"),
        ("branch", "a b"),
        ("branch", "x\ny"),
        ("branch", ""),
        ("tag", "a\rb"),
        ("tag", "é"),
        ("tag", ""),
        ("call_id", " "),
        ("call_id", "a\x0b"),
        ("call_id", "a\nb"),
        ("call_id", "a b"),
    ],
)
def test_odd_values_in_the_varying_places_get_the_general_paths_answer(
    place: str, value: str
) -> None:
    forget_layouts()
    assert_same(sipp(1), PEER)
    data = sipp(2, **{place: value})
    assert by_layout(data, PEER) is None
    assert_same(data, PEER)


@pytest.mark.parametrize("params", [";x=a b;rport", ";rport;x=a b", "; a;b"])
def test_a_via_whose_first_blank_follows_its_branch_gets_the_general_paths_answer(
    params: str,
) -> None:
    """The Via's parameters are cut at its first blank, which lies past the branch here.

    Compiled by mypyc 2.4.1, ``value[params:start]`` with ``params`` beyond
    ``start`` raised ``SystemError`` (Python gives ``b""``): setup.py fixes
    mypyc's runtime copy, and this message shows whether it did.
    """
    forget_layouts()
    assert_same(sipp(1), PEER)
    assert_same(sipp(1), PEER)  # its layout recorded
    data = sipp(2, branch="z9hG4bK-2" + params).replace(b"SIP/2.0/UDP ", b"SIP/2.0/UDP\t")
    assert_same(data, PEER)


def test_every_memo_is_bounded() -> None:
    forget_layouts()
    for number in range(MEMO_LIMIT + 50):
        data = sipp(number).replace(b"Max-Forwards: 70", b"Max-Forwards: %d" % number)
        data = data.replace(b"sipp <sip:sipp@", b"sipp%d <sip:sipp@" % number)
        host = f"10.{number >> 8 & 255}.{number & 255}.1"
        assert answer_options(data, host, 5060, reply(), MEMO)
    for name, memo in MEMO.memos().items():
        assert len(memo) <= MEMO_LIMIT, name
        assert memo.size <= memo.max_bytes, name
    forget_layouts()


def reply() -> OptionsReply:
    made = Dispatcher(RESPONDER).options_reply(UDP)
    assert made is not None
    return made


# --- any message, then variants of it with other values in the varying places -----------


_TOP_VIA_BRANCH = re.compile(r"(?im)^(via|v)([ \t]*:[^\r\n]*?;branch=)z9hG4bK-[78]")
_FROM_TAG = re.compile(r"(?im)^(from|f)([ \t]*:[^\r\n]*>;tag=)9")


def rewrite(data: bytes, branch: str, tag: str, call_id: str) -> bytes:
    """``data`` with other values in the varying places of `options_messages`.

    The first branch of the top Via, the From tag and the Call-ID.
    """
    text = data.decode("utf-8", "surrogateescape")
    text = _TOP_VIA_BRANCH.sub(lambda m: m.group(1) + m.group(2) + branch, text, count=1)
    text = _FROM_TAG.sub(lambda m: m.group(1) + m.group(2) + tag, text, count=1)
    text = text.replace("c1@example.com", call_id)
    return text.encode("utf-8", "surrogateescape")


#: From values with a tag after the ``<URI>`` (what a From template needs).
TAGGED_FROMS = [
    "<sip:a@example.com>;tag=9",
    "Alice <sip:a@example.com>;tag=9",
    '"A. B." <sip:a@b.example>;tag=9;x=1',
    "<sips:[2001:db8::1]:5061;transport=tls>;x;tag=9",
    "<sip:a@example.com;tag=9>;tag=9",
]
_FROM_VALUE = re.compile(r"(?im)^((?:from|f)[ \t]*:[ \t]*)[^\r\n]*")
_TOP_VIA_END = re.compile(r"(?im)^((?:via|v)[ \t]*:[^\r\n]*)")


@st.composite
def keepalives(draw: st.DrawFn, clean: bool = False) -> tuple[bytes, tuple[str, int]]:
    """`options_messages`, mostly with a branch in the top Via and a tag in the From."""
    data, peer = draw(options_messages(clean))
    text = data.decode("utf-8", "surrogateescape")
    if draw(st.integers(0, 4)):
        tagged = draw(st.sampled_from(TAGGED_FROMS))
        text = _FROM_VALUE.sub(lambda m: m.group(1) + tagged, text, count=1)
    if draw(st.integers(0, 4)):
        text = _TOP_VIA_END.sub(
            lambda m: (
                m.group(1) if ";branch=z9" in m.group(1) else m.group(1) + ";branch=z9hG4bK-8"
            ),
            text,
            count=1,
        )
    return text.encode("utf-8", "surrogateescape"), peer


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    keepalives(),
    st.sampled_from([UDP, ADVERTISED, V6]),
    st.lists(st.tuples(values, values, values), min_size=1, max_size=4),
)
def test_variants_of_an_answered_message_get_the_general_paths_answer(
    message: tuple[bytes, tuple[str, int]],
    sdef: SocketDef,
    variants: list[tuple[str, str, str]],
) -> None:
    forget_layouts()
    data, peer = message
    assert_same(data, peer, sdef)
    for branch, tag, call_id in variants:
        assert_same(rewrite(data, branch, tag, call_id), peer, sdef)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    keepalives(clean=True),
    st.sampled_from([UDP, ADVERTISED, V6]),
    st.lists(st.tuples(tokens, tokens, tokens), min_size=1, max_size=4),
)
def test_plain_variants_are_answered_by_the_layout_when_their_first_was(
    message: tuple[bytes, tuple[str, int]],
    sdef: SocketDef,
    variants: list[tuple[str, str, str]],
) -> None:
    forget_layouts()
    data, peer = message
    assert assert_same(data, peer, sdef) is not None
    assert assert_same(data, peer, sdef) is not None  # recorded on second sight
    recorded = by_layout(data, peer, sdef) is not None
    for branch, tag, call_id in variants:
        variant = rewrite(data, branch, tag, call_id)
        fast = by_layout(variant, peer, sdef)
        if recorded:
            assert fast is not None
        if fast is not None:
            assert general_path(variant, peer, sdef) == [fast]


def test_a_line_new_in_each_request_records_no_layout() -> None:
    """A fixed line that changes with each message makes every layout new: none is built."""
    forget_layouts()
    for number in range(1, 20):
        data = sipp(number).replace(b"Max-Forwards: 70", b"Max-Forwards: %d" % number)
        assert by_layout(data, PEER) is None
        assert assert_same(data, PEER) is not None
    assert len(MEMO.layouts) == 0
    forget_layouts()


def test_a_rising_cseq_is_answered_by_the_layout() -> None:
    """The CSeq is a varying line: a peer's keep-alives with a rising CSeq keep their layout."""
    forget_layouts()
    for number in (1, 2):
        assert assert_same(sipp(number).replace(b"CSeq: 1 ", b"CSeq: %d " % number), PEER)
    for number in [3, 4, 99, 1234567890, 2**32 - 1, 0, 7]:
        data = sipp(number).replace(b"CSeq: 1 ", b"CSeq: %d " % number)
        fast = by_layout(data, PEER)
        assert fast is not None
        assert b"\r\nCSeq: %d OPTIONS\r\n" % number in fast
        assert general_path(data, PEER) == [fast]
    assert len(MEMO.layouts) == 1
    forget_layouts()


@pytest.mark.parametrize(
    "cseq",
    [
        b"4294967296 OPTIONS",
        b"99999999999 OPTIONS",
        b"00000000001 OPTIONS",
        b"1  OPTIONS",
        b"1\tOPTIONS",
        b"1 options",
        b"1 INVITE",
        b"1 OPTIONSX",
        b"-1 OPTIONS",
        b"1 OPTIONS 2",
        b"OPTIONS",
        b"",
        b"\xd9\xa1 OPTIONS",
        b"1 OPTIONS\r\nCSeq: 2 OPTIONS",
    ],
)
def test_a_cseq_of_another_shape_is_left_to_the_line_reader(cseq: bytes) -> None:
    forget_layouts()
    assert_same(sipp(1), PEER)
    assert_same(sipp(2), PEER)
    assert by_layout(sipp(3), PEER) is not None
    data = sipp(4).replace(b"CSeq: 1 OPTIONS", b"CSeq: " + cseq)
    assert by_layout(data, PEER) is None
    assert_same(data, PEER)
    forget_layouts()


def test_a_cseq_spelled_otherwise_is_read_line_by_line() -> None:
    forget_layouts()
    assert_same(sipp(1), PEER)
    assert_same(sipp(2), PEER)
    for spelling in (b"cseq:", b"CSEQ:", b"CSeq :"):
        data = sipp(3).replace(b"CSeq:", spelling)
        assert by_layout(data, PEER) is None
        assert assert_same(data, PEER) is not None
    forget_layouts()


def test_keep_alives_from_more_peers_than_the_old_entry_bound_keep_their_layouts() -> None:
    """4,500 peers (a port, a From and a Contact each): every memo holds them all at once."""
    forget_layouts()
    MEMO.lines.clear()
    MEMO.good_addresses.clear()
    peers = []
    for number in range(4500):
        port = 10000 + number
        data = sipp(number).replace(b":5061", b":%d" % port)
        peers.append((data, ("127.0.0.1", port)))
    for round_ in range(2):
        for data, (host, port) in peers:
            rising = data.replace(b"CSeq: 1 ", b"CSeq: %d " % (round_ + 1))
            assert answer_options(rising, host, port, reply(), MEMO) is not None
    for data, peer in peers:
        assert by_layout(data.replace(b"CSeq: 1 ", b"CSeq: 3 "), peer) is not None
    data, peer = peers[-1]
    assert_same(data.replace(b"CSeq: 1 ", b"CSeq: 4 "), peer)
    forget_layouts()


# --- one layout for every peer of the same client software ----------------------------


def from_peer(number: int, port: int, host: str = "127.0.0.1") -> tuple[bytes, tuple[str, int]]:
    """SIPp's OPTIONS for call ``number`` from its socket ``host:port`` (as ``-t un`` sends)."""
    sent_by = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    data = sipp(number).replace(b"127.0.0.1:5061", sent_by.encode())
    return data.replace(b"CSeq: 1 ", b"CSeq: %d " % number), (host, port)


def test_a_new_peer_of_the_same_client_is_answered_by_the_layout() -> None:
    """Its Via, From and Contact name its own address: the layout of others answers it."""
    forget_layouts()
    for number in (1, 2):
        assert assert_same(*from_peer(number, 20000 + number)) is not None
    assert len(MEMO.layouts) == 1
    for number, host in enumerate(["127.0.0.1", "192.0.2.9", "2001:db8::5", "10.1.2.3"], 3):
        data, peer = from_peer(number, 30000 + number, host)
        fast = by_layout(data, peer)
        assert fast is not None, host
        assert general_path(data, peer) == [fast]
    assert len(MEMO.layouts) == 1
    assert len(MEMO.rport_templates) == 1  # SIPp's Via has an empty rport: one for every peer
    assert len(MEMO.via_templates) == 1  # the peer whose message was recorded
    forget_layouts()


def test_new_peers_leave_nothing_behind_once_a_layout_answers_them() -> None:
    forget_layouts()
    assert_same(*from_peer(1, 20001))
    assert_same(*from_peer(2, 20002))
    before = len(MEMO)
    for number in range(3, 200):
        assert by_layout(*from_peer(number, 20000 + number)) is not None
    assert len(MEMO) == before
    forget_layouts()


@pytest.mark.parametrize(
    "contact",
    [
        b"*",
        b"<sip:a@b>, <sip:c@d>",
        b'"Quoted Name" <sip:a@b>',
        b"sip:bare@host",
        b"<sip:a b@host>",
        b"<sip:a@host>;TAG=x",
        b"<sip:a@host>;p=\xc3\xa9",
        b"<sip:a@host>\x0b",
        b"<sip:a@host>\rx",
        b'<sip:a@host>;x="y"',
        b"",
        b"<sip:a@host> ; x",
        b"<sip:a,b@host>",
        b"  <sip:a@host>\t",
    ],
)
def test_an_odd_contact_gets_the_general_paths_answer(contact: bytes) -> None:
    forget_layouts()
    assert_same(*from_peer(1, 20001))
    assert_same(*from_peer(2, 20002))
    data, peer = from_peer(3, 20003)
    data = re.sub(rb"Contact: [^\r]*", lambda _: b"Contact: " + contact, data)
    assert_same(data, peer)
    forget_layouts()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    keepalives(clean=True),
    st.sampled_from([UDP, ADVERTISED, V6]),
    st.lists(
        st.tuples(
            st.sampled_from(["192.0.2.7", "127.0.0.1", "2001:db8::7", "10.9.9.9"]),
            st.integers(1, 65535),
            st.sampled_from(GOOD_ADDRESSES + BAD_ADDRESSES),
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_other_peers_and_contacts_get_the_general_paths_answer(
    message: tuple[bytes, tuple[str, int]],
    sdef: SocketDef,
    others: list[tuple[str, int, str]],
) -> None:
    """A recorded message, then the same from other peers with other Contacts."""
    forget_layouts()
    data, peer = message
    assert_same(data, peer, sdef)
    assert_same(data, peer, sdef)
    text = data.decode("utf-8", "surrogateescape")
    for host, port, contact in others:
        other = with_contact(text, contact).encode("utf-8", "surrogateescape")
        assert_same(other, (host, port), sdef)


_CONTACT_VALUE = re.compile(r"(?im)^((?:contact|m)[ \t]*:[ \t]*)[^\r\n]*")


def with_contact(text: str, contact: str) -> str:
    """``text`` with ``contact`` as the value of its Contact lines."""
    return _CONTACT_VALUE.sub(lambda match: match.group(1) + contact, text)


@given(st.from_regex(match_plain_line.__self__, fullmatch=True))  # type: ignore[attr-defined]
def test_plain_address_bytes_are_plain_addresses_for_the_line_reader(value: bytes) -> None:
    """What the layout takes as one plain address, the line reader accepts as one too."""
    text = value.decode()  # visible ASCII and blanks only
    stripped = text.strip(" \t")
    assert match_plain_address(value.strip(b" \t")) is not None
    assert _match_plain_address(stripped) is not None
    assert split_values(stripped) == [stripped]
    check_address(stripped)


@pytest.mark.parametrize(
    "via",
    [
        "SIP/2.0/UDP {sent_by};branch=z9hG4bK-{n};rport",
        "SIP/2.0/UDP {sent_by};rport;branch=z9hG4bK-{n}",
        "SIP/2.0/UDP {sent_by};x=1;rport;ttl=3;branch=z9hG4bK-{n};y",
        "SIP/2.0/UDP {sent_by};branch=z9hG4bK-{n};RPort;rport",
        "SIP/2.0/UDP {sent_by};branch=z9hG4bK-{n};rport;received=192.0.2.99",
        "SIP/2.0/UDP {sent_by};branch=z9hG4bK-{n};rport=5",
        "SIP/2.0/UDP {sent_by};branch=z9hG4bK-{n}",
        "SIP/2.0/TCP {sent_by};branch=z9hG4bK-{n};rport",
        "SIP/2.0/udp {sent_by};branch=z9hG4bK-{n};rport",
    ],
)
@pytest.mark.parametrize(
    "sent_by",
    [
        "pc{n}.example.com",
        "10.0.{n}.1:5060",
        "10.0.{n}.1:065535",
        "10.0.{n}.1:65535",
        "10.0.{n}.1:65536",
        "h:0",
        "[2001:db8::{n}]:5062",
        "1.2.3.4.5.{n}",
        "a_b{n}",
    ],
)
def test_the_top_via_of_any_peer_gets_the_general_paths_stamp(via: str, sent_by: str) -> None:
    """Many peers, each Via its own sent-by, stamped by the rport template where it applies."""
    forget_layouts()
    peers = [("192.0.2.7", 5099), ("10.0.3.1", 5060), ("2001:db8::7", 1), ("127.0.0.1", 65535)]
    for number in range(1, 7):
        top = via.format(sent_by=sent_by.format(n=number), n=number)
        sipps = b"SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1234-%d-0;rport" % number
        data = sipp(number).replace(sipps, top.encode())
        assert data != sipp(number)
        assert_same(data, peers[number % len(peers)])
    forget_layouts()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    keepalives(),
    st.lists(
        st.tuples(
            st.sampled_from(["192.0.2.7", "127.0.0.1", "2001:db8::7", "10.9.9.9"]),
            st.integers(1, 65535),
            st.sampled_from(["10.1.1.1:5060", "pc.example.com", "[2001:db8::1]", "10.1.1.1:99999"]),
            tokens,
        ),
        min_size=1,
        max_size=4,
    ),
)
def test_other_sent_bys_from_other_peers_get_the_general_paths_answer(
    message: tuple[bytes, tuple[str, int]], others: list[tuple[str, int, str, str]]
) -> None:
    """A recorded message, then the same with other sent-bys and branches from other peers."""
    forget_layouts()
    data, peer = message
    assert_same(data, peer)
    assert_same(data, peer)
    text = data.decode("utf-8", "surrogateescape")
    for host, port, sent_by, branch in others:
        other = _TOP_VIA_SENT_BY.sub(rf"\g<1>{sent_by}", text, count=1)
        other = _TOP_VIA_BRANCH.sub(rf"\g<1>\g<2>{branch}", other, count=1)
        assert_same(other.encode("utf-8", "surrogateescape"), (host, port))


_TOP_VIA_SENT_BY = re.compile(r"(?im)^((?:via|v)[ \t]*:[ \t]*SIP/2\.0/UDP )[^;\r\n]+")
