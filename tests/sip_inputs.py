"""Hypothesis strategies of hostile SIP input, shared by the fuzz property tests.

`mutated` edits torture messages and plain requests at random places;
`STREAM_ITEMS` are pieces of a TCP stream (messages, keep-alives, stray line
ends, garbage, sizes around the framer limits of `tests.fuzz_targets`);
`NUMBERS` are digit strings of any length.
"""

from __future__ import annotations

from hypothesis import strategies as st

from sipsock.sip import KEEPALIVE_PING
from tests.fuzz_targets import FRAMER_MAX_HEADER, FRAMER_MAX_MESSAGE, VALID_OPTIONS
from tests.fuzzer import RFC4475_DATA

#: The RFC 4475 torture messages, the starting point of most mutations.
TORTURE = [path.read_bytes() for path in sorted(RFC4475_DATA.glob("*.dat"))]


#: Bytes SIP parsing cares about, so random inputs hit the interesting paths.
SIP_BYTES = st.sampled_from(
    [
        *[b"\r\n", b"\n", b"\r", b" ", b"\t", b":", b";", b",", b"<", b">", b'"', b"\\", b"="],
        *[b"SIP/2.0", b"Via", b"v", b"Content-Length", b"l", b"CSeq", b"Call-ID", b"From", b"To"],
        *[b"0", b"9" * 30, b"\x00", b"\xff", b"\xc3\xa9", b"\xed\xa0\x80", b"[::1]", b"@"],
    ]
)
SIP_NOISE = st.lists(st.one_of(SIP_BYTES, st.binary(max_size=8)), max_size=60).map(b"".join)

HEADERS = [
    b"Via: SIP/2.0/UDP 192.0.2.7:5070;branch=z9hG4bK-1;rport",
    b"v: SIP/2.0/TCP [2001:db8::1]:5061;received=192.0.2.1;maddr=224.0.0.1;ttl=5",
    b'From: "A \\"q\\"" <sip:a@example.com>;tag=1',
    b"To: <sip:svc@127.0.0.1>",
    b"Call-ID: c1@example.com",
    b"CSeq: 1 OPTIONS",
    b"Max-Forwards: 70",
    b"Contact: <sip:a@192.0.2.7:5070>, sip:b@example.com;q=0.5",
    b"Route: <sip:p1.example.com;lr>",
    b"Content-Length: 0",
]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A torture message or a plain request, with a few edits at random places."""
    if draw(st.booleans()):
        data = bytearray(draw(st.sampled_from(TORTURE)))
    else:
        lines = draw(st.permutations(HEADERS))
        data = bytearray(
            b"OPTIONS sip:svc@127.0.0.1 SIP/2.0\r\n" + b"\r\n".join(lines) + b"\r\n\r\n"
        )
    for _ in range(draw(st.integers(1, 6))):
        position = draw(st.integers(0, len(data)))
        action = draw(st.sampled_from(["insert", "delete", "replace", "truncate", "repeat"]))
        if action == "insert":
            data[position:position] = draw(st.one_of(SIP_BYTES, st.binary(max_size=4)))
        elif action == "delete":
            del data[position : position + draw(st.integers(1, 16))]
        elif action == "replace" and position < len(data):
            data[position] = draw(st.integers(0, 255))
        elif action == "truncate":
            del data[position:]
        else:
            data[position:position] = data[position : position + draw(st.integers(1, 80))]
    return bytes(data)


#: Digit strings: ordinary, too many digits for int(), zero padded.
NUMBERS = st.one_of(
    st.integers(0, 2**70).map(str),
    st.integers(1, 6000).map(lambda n: "9" * n),
    st.integers(1, 6000).map(lambda n: "0" * n + "7"),
)


def sip_message(body: bytes = b"", length: str | None = None) -> bytes:
    """A valid OPTIONS with ``body`` and a Content-Length of ``length`` (default: right)."""
    size = str(len(body)) if length is None else length
    return VALID_OPTIONS.replace(b"Content-Length: 0", b"Content-Length: " + size.encode()) + body


#: Pieces of a stream: messages, keep-alives, stray line ends, garbage, limits.
STREAM_ITEMS = st.one_of(
    st.binary(max_size=40).map(sip_message),
    st.just(KEEPALIVE_PING),
    st.just(b"\r\n"),
    st.sampled_from([b"\r", b"\n", b"\r\n\r"]),
    st.binary(max_size=40),
    NUMBERS.map(lambda number: sip_message(length=number)),
    st.sampled_from(["-1", "x", "1 2", " 3 ", "\u00b2"]).map(lambda bad: sip_message(length=bad)),
    st.integers(FRAMER_MAX_HEADER - 60, FRAMER_MAX_HEADER + 60).map(
        lambda size: b"OPTIONS sip:x SIP/2.0\r\nX: " + b"a" * size + b"\r\nl: 0\r\n\r\n"
    ),
    st.integers(FRAMER_MAX_MESSAGE - 400, FRAMER_MAX_MESSAGE).map(lambda n: sip_message(b"b" * n)),
    mutated(),
)
