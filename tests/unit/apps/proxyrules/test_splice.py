"""The proxy's spliced bytes (`proxyrules.splice`) pinned to a reference model and the old rule.

The contract (RFC 3261 16.6, 16.7): every header line the proxy does not
touch goes out exactly as received, the lines it touches as the rule says,
the body byte for byte. Each test builds received bytes with compact
names, odd spacing, repeated and multi-valued Via, Route, Record-Route,
Max-Forwards and Content-Length, and checks the splice against

* a reference model that edits the received lines one RFC step at a time
  (`_model_request`, `_model_response`), and
* the rule it replaces (`wire.forward_bytes`, `wire.response_bytes_without_top_via`,
  which build the bytes from the parsed fields): parsed again, both copies
  hold the same fields, so only the spelling of untouched lines differs.
"""

from __future__ import annotations

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from sipsock.apps.proxyrules.forwarding import route_values
from sipsock.apps.proxyrules.splice import received_lines, splice_request, splice_response
from sipsock.apps.proxyrules.wire import forward_bytes, response_bytes_without_top_via
from sipsock.sip import Request, Response, SipParseError, apply_received, parse
from sipsock.sip.grammar import canonical_name, split_values

VIA = "SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bKx.y;sipsock-in=s1"
_VIAS = [
    "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-1;rport",
    "SIP/2.0/UDP 192.0.2.2;branch=z9hG4bK-2 ,SIP/2.0/TCP h.example:5070;branch=z9hG4bK-3",
    'SIP/2.0/UDP 192.0.2.3;x="a,b";branch=z9hG4bK-4, SIP/2.0/UDP c;branch=z9hG4bK-5',
    "SIP/2.0/UDP 198.51.100.9:5060;branch=z9hG4bK-6",
    "SIP/2.0/UDP 192.0.2.4 ; branch = z9hG4bK-7",
    "SIP/2.0/UDP a,",
    "SIP/2.0/UDP a;branch=z9hG4bK-8,SIP/2.0/UDP b;branch=z9hG4bK-9 ,  SIP/2.0/UDP c",
]
_SEPARATORS = [":", ": ", " :  ", ":\t", "\t: "]
_FIELDS = st.one_of(
    st.tuples(st.sampled_from(["Via", "v", "VIA"]), st.sampled_from(_VIAS)),
    st.tuples(
        st.sampled_from(["Route", "route"]),
        st.sampled_from(["<sip:p1;lr>", "<sip:p1;lr>,<sip:p2;lr>", '"a,b" <sip:p3;lr>']),
    ),
    st.tuples(
        st.sampled_from(["Record-Route", "record-route"]),
        st.sampled_from(["<sip:r1;lr>", "<sip:r1;lr> ,  <sip:r2;lr>"]),
    ),
    st.tuples(st.sampled_from(["Max-Forwards", "max-forwards"]), st.sampled_from(["70", "01"])),
    st.tuples(
        st.sampled_from(["Content-Length", "l", "content-length"]),
        st.sampled_from(["0", "4", "04", "5"]),
    ),
    st.tuples(
        st.sampled_from(["From", "f", "To", "Call-ID", "i", "CSeq", "X-Ü", "Contact"]),
        st.sampled_from(["<sip:a@b>;tag=1", "1 INVITE", "v\udcff", "a ,b", "x  y"]),
    ),
)
_LINES = st.tuples(_FIELDS, st.sampled_from(_SEPARATORS), st.sampled_from(["", " ", "\t "]))
_BODIES = st.sampled_from([b"", b"abcd", b"v=0\r\n", b"\xff\x00 \r\n\r\n"])
_RECORD_ROUTES = st.lists(st.sampled_from(["<sip:me;lr;sipsock=s1>", "<sip:me2;lr>"]), max_size=2)


def _message(start: str, lines: list[tuple[tuple[str, str], str, str]], body: bytes) -> bytes:
    text = "".join(f"{name}{sep}{value}{tail}\r\n" for (name, value), sep, tail in lines)
    return f"{start}\r\n{text}\r\n".encode("utf-8", "surrogateescape") + body


def _key(line: bytes) -> str:
    return canonical_name(line.partition(b":")[0].decode("utf-8", "surrogateescape").strip())


def _value(line: bytes) -> str:
    return line.partition(b":")[2].decode("utf-8", "surrogateescape").strip(" \t")


def _encoded(name: str, value: str) -> bytes:
    return f"{name}: {value}".encode("utf-8", "surrogateescape")


def _name(line: bytes) -> str:
    return line.partition(b":")[0].decode("utf-8", "surrogateescape").rstrip(" \t")


def _with_length(lines: list[bytes], body: bytes) -> list[bytes]:
    """Content-Length as `Message.serialize` makes it, other lines untouched."""
    length = str(len(body))
    found = [line for line in lines if _key(line) == "content-length"]
    if len(found) == 1 and _value(found[0]) == length:
        return lines
    kept: list[bytes] = []
    for line in lines:
        if _key(line) != "content-length":
            kept.append(line)
        elif not any(_key(seen) == "content-length" for seen in kept):
            kept.append(_encoded(_name(line), length))
    if not found:
        kept.append(_encoded("Content-Length", length))
    return kept


def _model_request(
    data: bytes,
    stamped_via_field: str,
    body: bytes,
    *,
    via: str,
    record_route: list[str],
    max_forwards: int,
    drop_routes: int,
) -> bytes:
    """The forwarded request, one RFC 3261 16.6 step at a time on the received bytes."""
    head = data.partition(b"\r\n\r\n")[0]
    start, *lines = head.split(b"\r\n")
    vias = [i for i, line in enumerate(lines) if _key(line) == "via"]
    # 18.2.1: the transport stamped received/rport on the top Via (its field's new value).
    if vias and _value(lines[vias[0]]) != stamped_via_field:
        lines[vias[0]] = _encoded(_name(lines[vias[0]]), stamped_via_field)
    # Step 6 (loose routing): the first Route entries, this proxy's, are taken off.
    dropping = drop_routes
    kept: list[bytes] = []
    for line in lines:
        if _key(line) == "route" and dropping:
            entries = list(route_values(_value(line)))
            rest, dropping = entries[dropping:], max(0, dropping - len(entries))
            if rest:
                kept.append(_encoded(_name(line), ", ".join(rest)))
            continue
        kept.append(line)
    lines = kept
    # Step 3: Max-Forwards one less: the first field rewritten, others gone, else added.
    counts = [i for i, line in enumerate(lines) if _key(line) == "max-forwards"]
    if counts:
        lines[counts[0]] = _encoded(_name(lines[counts[0]]), str(max_forwards))
        lines = [line for i, line in enumerate(lines) if i not in counts[1:]]
    else:
        lines.append(_encoded("Max-Forwards", str(max_forwards)))
    # Step 8: the proxy's Via on top of the Via fields (or of all).
    vias = [i for i, line in enumerate(lines) if _key(line) == "via"]
    own_at = vias[0] if vias else 0
    lines.insert(own_at, _encoded("Via", via))
    # Step 4: Record-Route before the received ones, else right after the proxy's Via.
    if record_route:
        routes = [i for i, line in enumerate(lines) if _key(line) == "record-route"]
        at = routes[0] if routes else own_at + 1
        lines[at:at] = [_encoded("Record-Route", entry) for entry in record_route]
    lines = _with_length(lines, body)
    return b"\r\n".join([start, *lines, b"", b""]) + body


def _model_response(data: bytes, body: bytes) -> bytes:
    """The forwarded response (16.7 item 3): the top Via value off, the rest as received."""
    head = data.partition(b"\r\n\r\n")[0]
    start, *lines = head.split(b"\r\n")
    at = next(i for i, line in enumerate(lines) if _key(line) == "via")
    values = split_values(_value(lines[at]))
    if len(values) == 1:
        del lines[at]
    elif '"' in _value(lines[at]):
        lines[at] = _encoded(_name(lines[at]), ", ".join(values[1:]))
    else:
        rest = _value(lines[at]).partition(",")[2].strip()
        lines[at] = _encoded(_name(lines[at]), rest)
    lines = _with_length(lines, body)
    return b"\r\n".join([start, *lines, b"", b""]) + body


@settings(max_examples=800)
@example(
    lines=[(("v", _VIAS[3]), " :  ", " "), (("l", "0"), ":", "")],
    body=b"",
    record_route=["<sip:me;lr>"],
    drop=0,
    source=("192.0.2.1", 5060),
)
@example(
    lines=[
        (("Route", "<sip:p1;lr>,<sip:p2;lr>"), ":", ""),
        (("max-forwards", "70"), ":\t", ""),
        (("Max-Forwards", "01"), ":", ""),
        (("Via", _VIAS[1]), ": ", ""),
    ],
    body=b"abcd",
    record_route=["<sip:a;lr>", "<sip:b;lr>"],
    drop=1,
    source=("192.0.2.1", 5060),
)
@given(
    lines=st.lists(_LINES, max_size=9),
    body=_BODIES,
    record_route=_RECORD_ROUTES,
    drop=st.integers(0, 3),
    source=st.sampled_from([("192.0.2.1", 5060), ("198.51.100.9", 5060), ("192.0.2.2", 5999)]),
)
def test_a_forwarded_request_keeps_every_untouched_line_as_received(
    lines: list[tuple[tuple[str, str], str, str]],
    body: bytes,
    record_route: list[str],
    drop: int,
    source: tuple[str, int],
) -> None:
    data = _message("INVITE sip:b@example.com SIP/2.0", lines, body)
    try:
        request = parse(data)
        assert isinstance(request, Request)
        apply_received(request, *source)
    except SipParseError:
        assume(False)
    received = received_lines(request)
    assert received is not None
    keys = request._header_keys()
    arguments = {
        "via": VIA,
        "record_route": record_route,
        "max_forwards": 69,
        "drop_routes": drop,
        "keys": keys,
    }
    spliced = splice_request(request, received, **arguments)  # type: ignore[arg-type]
    stamped = request.get("via") or ""
    assert spliced == _model_request(
        data,
        stamped,
        request.body,
        via=VIA,
        record_route=record_route,
        max_forwards=69,
        drop_routes=drop,
    )
    # Parsed again, the same fields as the copy built from the parsed fields.
    assert parse(spliced) == parse(forward_bytes(request, **arguments))  # type: ignore[arg-type]


@settings(max_examples=800)
@example(lines=[(("v", _VIAS[1]), " : ", "\t "), (("l", "4"), ":", "")], body=b"abcd")
@example(lines=[(("Via", _VIAS[2]), ":", ""), (("Via", _VIAS[0]), ":", "")], body=b"")
@example(lines=[(("Via", _VIAS[5]), ":", ""), (("VIA", _VIAS[0]), ":", "")], body=b"")
@example(lines=[(("v", _VIAS[6]), ":", ""), (("l", "0"), ":", "")], body=b"")
@given(lines=st.lists(_LINES, max_size=9), body=_BODIES)
def test_a_forwarded_response_loses_only_its_top_via_value(
    lines: list[tuple[tuple[str, str], str, str]], body: bytes
) -> None:
    data = _message("SIP/2.0 200 OK", lines, body)
    try:
        response = parse(data)
    except SipParseError:
        assume(False)
    assert isinstance(response, Response)
    received = received_lines(response)
    assert received is not None
    cut = splice_response(response, received)
    old = response_bytes_without_top_via(response)
    if old is None:
        assert cut is None
        return
    assert cut is not None
    assert cut.data == _model_response(data, response.body)
    assert (cut.top, cut.next_via) == (old.top, old.next_via)
    again, before = parse(cut.data), parse(old.data)
    assert again.body == before.body
    assert [(name, split_values(value)) for name, value in again.headers] == [
        (name, split_values(value)) for name, value in before.headers
    ]


@given(
    lines=st.lists(_LINES, min_size=1, max_size=6),
    cut=st.sampled_from(["\n", "\r\n ", "\r\n\t", "\n\n", "\r\n"]),
    where=st.integers(0, 5),
)
def test_the_received_lines_are_kept_only_for_one_crlf_line_per_field(
    lines: list[tuple[tuple[str, str], str, str]], cut: str, where: int
) -> None:
    data = _message("OPTIONS sip:b@example.com SIP/2.0", lines, b"")
    parts = data.partition(b"\r\n\r\n")[0].split(b"\r\n")
    at = min(where, len(parts) - 2) + 1
    # A bare LF line end, a folded line, an empty line ending the section early, or none.
    data = b"\r\n".join(parts[:at]) + cut.encode() + b"\r\n".join(parts[at:]) + b"\r\n\r\n"
    try:
        message = parse(data)
    except SipParseError:
        return
    received = received_lines(message)
    if cut in ("\n", "\r\n ", "\r\n\t"):
        assert received is None
        return
    assert received is not None
    assert len(received) == len(message.headers) + 1
    text = "\r\n".join(received).encode("utf-8", "surrogateescape")
    assert data.startswith((text + b"\r\n", text + b"\n\n"))


def test_the_received_lines_are_the_parsers_one_per_field() -> None:
    data = b"\r\n\r\nOPTIONS sip:b SIP/2.0\r\nv : a\xff\r\nl:0\r\n\r\n"
    message = parse(data)
    lines = received_lines(message)
    assert lines == ["OPTIONS sip:b SIP/2.0", "v : a\udcff", "l:0"]
    assert "\r\n".join(lines).encode("utf-8", "surrogateescape") == data.strip(b"\r\n")
    # A field added or taken off since: the lines no longer match the fields.
    message.headers.append(("X", "y"))
    assert received_lines(message) is None
    assert received_lines(Request("OPTIONS", "sip:b", [("l", "0")])) is None
