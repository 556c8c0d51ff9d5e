"""Print SIP parser throughput (messages per second of CPU, one core). Not a test.

Run from the repository root: ``python bench/parse.py [seconds-per-case]``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from sipsock.sip import Request, make_response, parse

OPTIONS = (
    b"OPTIONS sip:proxy.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:proxy.example.com>\r\n"
    b"From: <sip:monitor@example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.example.com\r\n"
    b"CSeq: 63104 OPTIONS\r\n"
    b"Contact: <sip:monitor@192.0.2.10:5060>\r\n"
    b"Accept: application/sdp\r\n"
    b"User-Agent: sipsock-bench/1.0\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

SDP = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
    b"a=sendrecv\r\n"
)

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnashds8;received=192.0.2.1\r\n"
    b"Record-Route: <sip:p1.example.com;lr>\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    b"Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY\r\n"
    b"Supported: replaces, timer\r\n"
    b"User-Agent: sipsock-bench/1.0\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n"
    b"\r\n" + SDP
)


def parse_options() -> None:
    """Parse a typical OPTIONS keep-alive, lazily: start line, header split, Content-Length."""
    parse(OPTIONS)


def parse_validate_options() -> None:
    """Parse a typical OPTIONS and run the RFC 3261 checks (what every request goes through)."""
    parse(OPTIONS).validate()


def parse_validate_invite() -> None:
    """Parse an INVITE with SDP and run the RFC 3261 checks."""
    parse(INVITE).validate()


def invite_round_trip() -> None:
    """Parse an INVITE with SDP, read top Via, Call-ID and CSeq, serialize it."""
    message = parse(INVITE)
    _ = message.top_via.branch
    _ = message.call_id
    _ = message.cseq
    bytes(message)


def _options_request() -> Request:
    request = parse(OPTIONS)
    assert isinstance(request, Request)
    return request


OPTIONS_REQUEST = _options_request()


def options_response() -> None:
    """Build and serialize the 200 answer to a parsed OPTIONS."""
    bytes(make_response(OPTIONS_REQUEST, 200, "OK"))


def measure(case: Callable[[], None], seconds: float) -> float:
    """Messages per second of ``case`` over about ``seconds`` of this thread's CPU time.

    CPU time, not wall time: on a shared machine, time spent waiting for a
    core is not the parser's.
    """
    count = 0
    batch = 1000
    start = time.thread_time()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            case()
        count += batch
        now = time.thread_time()
        if now >= deadline:
            return count / (now - start)


def main() -> None:
    """Run every case and print its rate."""
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    cases: list[tuple[str, Callable[[], None]]] = [
        ("OPTIONS parse (lazy: header values not read)", parse_options),
        ("OPTIONS parse + validate", parse_validate_options),
        ("INVITE parse + validate", parse_validate_invite),
        ("INVITE parse + top Via/Call-ID/CSeq + serialize", invite_round_trip),
        ("make_response(OPTIONS, 200) + serialize", options_response),
    ]
    for name, case in cases:
        measure(case, 0.2)
        rate = measure(case, seconds)
        print(f"{name:50} {rate:>10,.0f} messages/s {1e6 / rate:7.1f} us each")


if __name__ == "__main__":
    main()
