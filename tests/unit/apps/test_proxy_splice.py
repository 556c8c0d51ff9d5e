"""StatelessProxy forwards the lines it does not touch exactly as received (RFC 3261 16.6, 16.7).

Through the Dispatcher, with recording sockets: compact names and odd
spacing stay as received, Max-Forwards and the stamped top Via are
rewritten, a response loses only the first value of a shared Via line, and
a copy sent on a stream always carries a Content-Length equal to its body.
"""

from __future__ import annotations

from sipsock.sip import Request, Response, parse
from tests.unit.apps.test_proxy_app import TO_UAS, UAC, UAS, World, forwarded

#: An INVITE as some phones write it: compact names, blanks around the colons.
ODD = (
    b"INVITE sip:svc@192.0.2.10:5070 SIP/2.0\r\n"
    b"v:SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-odd;rport\r\n"
    b"f : <sip:alice@192.0.2.1>;tag=f1\r\n"
    b"t:\t<sip:svc@192.0.2.10>\r\n"
    b"i:  call-odd@192.0.2.1 \r\n"
    b"CSeq:1  INVITE\r\n"
    b"m:<sip:alice@192.0.2.1:5060>\r\n"
    b"Max-Forwards :  70\r\n"
    b"X-Note: a ,b\r\n"
    b"c: application/sdp\r\n"
    b"l:  4\r\n"
    b"\r\n"
    b"v=0\n"
)
UNTOUCHED = [
    b"f : <sip:alice@192.0.2.1>;tag=f1",
    b"t:\t<sip:svc@192.0.2.10>",
    b"i:  call-odd@192.0.2.1 ",
    b"CSeq:1  INVITE",
    b"m:<sip:alice@192.0.2.1:5060>",
    b"X-Note: a ,b",
    b"c: application/sdp",
    b"l:  4",
]


def _lines(data: bytes) -> list[bytes]:
    return data.partition(b"\r\n\r\n")[0].split(b"\r\n")


def test_untouched_lines_are_forwarded_byte_for_byte() -> None:
    world = World([TO_UAS])
    world.receive(ODD, world.a)
    [(data, destination)] = world.b.sent
    assert destination == UAS
    lines = _lines(data)
    assert [line for line in lines if line in UNTOUCHED] == UNTOUCHED
    assert data.endswith(b"\r\n\r\nv=0\n")
    # Touched: the proxy's own Via and Record-Route, the stamped Via, Max-Forwards.
    assert lines[1].startswith(b"Via: SIP/2.0/TCP 198.51.100.7:5999;branch=z9hG4bK")
    stamped = b"v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-odd;rport=5060;received=192.0.2.1"
    assert stamped in lines
    assert b"Max-Forwards: 69" in lines
    assert sum(line.startswith(b"Record-Route: ") for line in lines) == 2


def test_a_request_without_content_length_gets_one_on_the_stream() -> None:
    world = World([TO_UAS])
    without = ODD.replace(b"l:  4\r\n", b"").replace(b"Max-Forwards :  70\r\n", b"")
    world.receive(without, world.a)
    [(data, _)] = world.b.sent
    lines = _lines(data)
    assert lines[-2:] == [b"Max-Forwards: 70", b"Content-Length: 4"]
    assert data.endswith(b"\r\n\r\nv=0\n")
    request = forwarded(world.b)
    assert isinstance(request, Request)
    assert request.body == b"v=0\n"


def test_a_wrong_content_length_is_made_right_in_place() -> None:
    world = World([TO_UAS])
    # UDP: the bytes after the declared body are not part of the message.
    world.receive(ODD.replace(b"l:  4", b"l: 3"), world.a)
    [(data, _)] = world.b.sent
    assert b"l: 3" in _lines(data)
    assert data.endswith(b"\r\n\r\nv=0")
    world.receive(ODD.replace(b"l:  4", b"l: 004"), world.a)
    data = world.b.sent[-1][0]
    assert b"l: 4" in _lines(data)
    assert data.endswith(b"\r\n\r\nv=0\n")


def test_a_response_loses_only_the_first_value_of_a_shared_via_line() -> None:
    world = World([TO_UAS])
    world.receive(ODD, world.a)
    request = forwarded(world.b)
    [ours, theirs] = request.get_all("via")
    answer = (
        f"SIP/2.0 200 OK\r\n"
        f"v:{ours} ,  {theirs}\r\n"
        f"f : <sip:alice@192.0.2.1>;tag=f1\r\n"
        f"t:\t<sip:svc@192.0.2.10>;tag=uas1\r\n"
        f"i:  call-odd@192.0.2.1 \r\n"
        f"CSeq:1  INVITE\r\n"
        f"l:0\r\n\r\n"
    ).encode()
    world.receive(answer, world.b, peer=UAS, connection=7)
    [(data, destination)] = world.a.sent
    assert destination == UAC
    assert _lines(data) == [
        b"SIP/2.0 200 OK",
        f"v: {theirs}".encode(),
        b"f : <sip:alice@192.0.2.1>;tag=f1",
        b"t:\t<sip:svc@192.0.2.10>;tag=uas1",
        b"i:  call-odd@192.0.2.1 ",
        b"CSeq:1  INVITE",
        b"l:0",
    ]
    response = parse(data)
    assert isinstance(response, Response)
    assert world.proxy.counters.responses == 1


def test_a_folded_request_is_forwarded_from_its_fields() -> None:
    world = World([TO_UAS])
    folded = ODD.replace(b"X-Note: a ,b\r\n", b"X-Note: a ,\r\n b\r\n")
    world.receive(folded, world.a)
    [(data, _)] = world.b.sent
    # Not one line per field: every line as the fields read (the rule before the splice).
    assert b"X-Note: a , b" in _lines(data)
    assert b"f: <sip:alice@192.0.2.1>;tag=f1" in _lines(data)
