"""The requests the proxy-rule tests forward: one INVITE, and it as another method."""

from __future__ import annotations

from sipsock.sip import Request, parse
from sipsock.sockdef import parse_row

SECRET = "s3cret"
A = parse_row(1, "udp:127.0.0.1:5070", advertised="192.0.2.10:5070", tag="a")


def invite(
    *, uri: str = "sip:svc@example.com", via: str = "", extra: str = "", to_tag: str = ""
) -> Request:
    text = (
        f"INVITE {uri} SIP/2.0\r\n"
        f"Via: {via or 'SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-abc;rport=5060'}\r\n"
        "From: <sip:alice@example.com>;tag=f1\r\n"
        f"To: <sip:svc@example.com>{';tag=' + to_tag if to_tag else ''}\r\n"
        "Call-ID: call-1@example.com\r\n"
        "CSeq: 7 INVITE\r\n"
        "Max-Forwards: 70\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    )
    message = parse(text.encode())
    assert isinstance(message, Request)
    return message


def as_method(request: Request, method: str, *, to_tag: str = "") -> Request:
    copy = Request(method, request.uri, request.headers, request.body)
    copy.set("CSeq", f"{request.cseq[0]} {method}")
    if to_tag:
        copy.set("To", f"{copy.get('to')};tag={to_tag}")
    return copy
