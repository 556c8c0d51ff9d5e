"""The bytes the proxy sends, spliced into the received bytes (RFC 3261 16.6, 16.7).

Pure. A proxy copies the request and changes only what it must (16.6): its
own Via on top, Max-Forwards one less (added when absent), the Route
entries naming itself taken off, its Record-Route; a response loses its top
Via value and goes on as it is (16.7). So every header line the rule does
not touch goes out exactly as received (compact names, odd spacing and
all), the body byte for byte, as OpenSIPS and Kamailio splice into the
received buffer:

* a request's received top Via goes out as received unless the transport
  stamped ``received``/``rport`` on it (RFC 3261 18.2.1), then as
  ``name: value``, the name spelled as received;
* Max-Forwards becomes ``name: N`` (its first field; any other is left
  out), or ``Max-Forwards: N`` is added at the end of the header fields;
* a Route field losing some of its entries becomes ``name: rest``, one
  losing all of them goes; the Record-Route values go before the first
  Record-Route field, else right after the proxy's own Via;
* a response's Via field of one value goes whole, with its line end; a
  field of several loses only its first value (``name: rest``, the rest
  as received);
* the Content-Length stays as received when it is one field equal to the
  body's length; else the first is ``name: N`` and the others go, or
  ``Content-Length: N`` is added at the end, as ``Message.serialize``
  does. A copy sent on a stream (RFC 3261 18.3) always carries the right
  length, as a datagram does.

The received lines are the ones the parser kept (`received_lines`); for a
header section that is not one line per field with CRLF line ends (folded
lines, bare LF line ends) it kept none, and the caller builds the bytes
from the fields (`sipsock.apps.proxyrules.wire`). The lines are text as
the parser decoded them (UTF-8, undecodable bytes as surrogates), so
encoding the copy gives the received bytes back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from sipsock.apps.proxyrules.forwarding import route_values
from sipsock.sip import Request, Response
from sipsock.sip.grammar import split_values


@dataclass(slots=True, init=False)
class ResponseCut:
    """A response without its top Via value: that value, the next one, the bytes to send.

    ``next_via`` is the Via value on top of what is sent (None: no Via left).
    """

    top: str
    next_via: str | None
    data: bytes

    def __init__(self, top: str, next_via: str | None, data: bytes) -> None:
        # Written out, not generated: see `sipsock.apps.proxyrules.forwarding.HeaderScan`.
        self.top = top
        self.next_via = next_via
        self.data = data


def received_lines(message: Request | Response) -> list[str] | None:
    """The start line and one header line per field of ``message``, as received.

    None when the parser kept none (see the module), or when the message no
    longer has as many fields as it had lines.
    """
    lines = message._received_lines
    if lines is None or len(lines) != len(message.headers) + 1:
        return None
    return lines


def _same_value(line: str, value: str) -> bool:
    """Whether the received ``line`` holds ``value`` (as the parser reads a line)."""
    return line.partition(":")[2].strip(" \t") == value


#: The fields a rule may change or add before: every other line goes as received.
_RULED: Final = frozenset({"via", "record-route", "max-forwards", "route", "content-length"})


def splice_request(
    request: Request,
    lines: Sequence[str],
    *,
    via: str,
    record_route: Sequence[str] = (),
    max_forwards: int,
    drop_routes: int = 0,
    keys: Sequence[str],
) -> bytes:
    """The forwarded copy of ``request``, its untouched lines as received (see the module).

    ``lines`` are its `received_lines`, ``keys`` the canonical names of its
    fields; ``via``, ``record_route``, ``max_forwards`` and ``drop_routes``
    as for `sipsock.apps.proxyrules.forward_copy`.
    """
    fields = request.headers
    body = request.body
    length = str(len(body))
    fix_length = keys.count("content-length") != 1 or (
        fields[keys.index("content-length")][1] != length
    )
    out = [f"{request.method} {request.uri} {request.version}"]
    via_line = "Via: " + via
    via_done = not via
    top_via_done = False
    record_done = not record_route
    max_forwards_done = False
    length_done = False
    after_via = -1
    dropping = drop_routes
    for index, key in enumerate(keys, 1):
        if key not in _RULED:
            out.append(lines[index])
            continue
        if key == "via":
            if not via_done:
                out.append(via_line)
                via_done = True
                after_via = len(out)
            if not top_via_done:
                # The transport may have stamped received/rport on it.
                top_via_done = True
                name, value = fields[index - 1]
                line = lines[index]
                out.append(line if _same_value(line, value) else f"{name}: {value}")
                continue
        elif key == "record-route" and not record_done:
            out += ["Record-Route: " + entry for entry in record_route]
            record_done = True
        elif key == "max-forwards":
            if not max_forwards_done:
                out.append(f"{fields[index - 1][0]}: {max_forwards}")
                max_forwards_done = True
            continue
        elif key == "route" and dropping:
            name, value = fields[index - 1]
            values = route_values(value)
            kept = values[dropping:]
            dropping = max(0, dropping - len(values))
            if kept:
                out.append(f"{name}: {', '.join(kept)}")
            continue
        elif key == "content-length" and fix_length:
            if not length_done:
                out.append(f"{fields[index - 1][0]}: {length}")
                length_done = True
            continue
        out.append(lines[index])
    if not via_done:
        out.insert(1, via_line)
        after_via = 2
    if not record_done:
        out[after_via:after_via] = ["Record-Route: " + entry for entry in record_route]
    if not max_forwards_done:
        out.append(f"Max-Forwards: {max_forwards}")
    if fix_length and not length_done:
        out.append("Content-Length: " + length)
    out += ("", "")
    return "\r\n".join(out).encode("utf-8", "surrogateescape") + body


def splice_response(response: Response, lines: Sequence[str]) -> ResponseCut | None:
    """``response`` without its top Via value, its other lines as received (see the module).

    ``lines`` are its `received_lines`. The same top Via text and next Via
    as `sipsock.apps.proxyrules.wire.response_bytes_without_top_via`; None
    when there is no Via.
    """
    fields = response.headers
    keys = response._header_keys()
    if "via" not in keys:
        return None
    at = keys.index("via")
    name, value = fields[at]
    values = split_values(value) if "," in value else [value]
    top = values[0]
    body = response.body
    length = str(len(body))
    right_length = (
        keys.count("content-length") == 1 and fields[keys.index("content-length")][1] == length
    )
    if right_length and len(values) == 1:
        # The usual response: its top Via line goes whole, nothing else changes.
        out = [*lines[: at + 1], *lines[at + 2 :], "", ""]
        next_via: str | None = None
        if keys.count("via") > 1:
            following = fields[keys.index("via", at + 1)][1]
            next_via = split_values(following)[0] if "," in following else following
        text = "\r\n".join(out)
        return ResponseCut(top, next_via, text.encode("utf-8", "surrogateescape") + body)
    out = list(lines)
    if len(values) > 1:
        if '"' in value or "<" in value:
            rest = ", ".join(values[1:])
        else:
            rest = value[value.index(",") + 1 :].strip()
        next_via = split_values(rest)[0] if "," in rest else rest
        out[at + 1] = f"{name}: {rest}"
    else:
        out[at + 1] = _GONE
        next_via = None
        if keys.count("via") > 1:
            following = fields[keys.index("via", at + 1)][1]
            next_via = split_values(following)[0] if "," in following else following
    if not right_length:
        found = False
        for index, key in enumerate(keys, 1):
            if key == "content-length":
                out[index] = _GONE if found else f"{fields[index - 1][0]}: {length}"
                found = True
        if not found:
            out.append("Content-Length: " + length)
    if _GONE in out:
        out = [line for line in out if line]
    out += ("", "")
    text = "\r\n".join(out)
    return ResponseCut(top, next_via, text.encode("utf-8", "surrogateescape") + body)


#: A received line left out (no header line is empty).
_GONE: Final = ""
