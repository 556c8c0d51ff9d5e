"""``parse``: bytes to :class:`Request` or :class:`Response`, lazily."""

from __future__ import annotations

import re
from typing import Final

from sipsock.sip.checks import KNOWN_METHODS
from sipsock.sip.errors import SipParseError
from sipsock.sip.grammar import KNOWN_NAMES, canonical_name, is_token, parse_number
from sipsock.sip.memo import Memo
from sipsock.sip.message import Message, Request, Response, new_response

DEFAULT_MAX_SIZE: Final = 65535

#: A fold: blanks, a line end, blanks (repeated for blank lines in between).
_folds: Final = re.compile(r"(?<![ \t])(?:[ \t]*+\n[ \t]++)++")
#: Blank lines at the start of the header section.
_leading_blank_lines: Final = re.compile(r"(?:[ \t]*+\n)*+").match


def find_header_end(data: bytes | bytearray, start: int = 0) -> tuple[int, int]:
    """Locate the empty line ending a header section.

    Return ``(end, body_start)`` where ``end`` is the index of the line end of
    the last header line, or ``(-1, -1)`` when there is no empty line yet.
    CRLF and bare LF line ends are both accepted.
    """
    # The first LF, optional CR, LF (so CRLF CRLF and bare LF LF): two
    # byte searches, several times faster than the pattern ``\n\r?\n``.
    crlf = data.find(b"\n\r\n", start)
    lf = data.find(b"\n\n", start, crlf + 1 if crlf >= 0 else len(data))
    if lf >= 0:
        return lf, lf + 2
    if crlf >= 0:
        return crlf, crlf + 3
    return -1, -1


def parse(
    data: bytes, *, datagram: bool = True, max_size: int = DEFAULT_MAX_SIZE
) -> Request | Response:
    """Parse one SIP message.

    ``datagram=True`` (UDP): a missing Content-Length means the rest of the
    datagram is the body, bytes after the declared body are discarded.
    ``datagram=False`` (a message cut by :class:`StreamFramer`): Content-Length
    is mandatory.  Raise :class:`SipParseError` when the bytes are not a SIP
    message; ``error.status`` is 400 when the header section was readable
    enough that a request could be answered.
    """
    if len(data) > max_size:
        raise SipParseError(f"message of {len(data)} bytes above the limit of {max_size}")
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")
    # The usual message ends its header section with CRLF CRLF: one search.
    # It is the first empty line unless a bare LF comes before it: then
    # `find_header_end` looks again.
    end = data.find(b"\r\n\r\n")
    body_start = end + 4
    text, lines, rest = _crlf_lines(data, end) if end >= 0 else ("", [], "")
    if end < 0 or "\n" in rest:
        end, body_start = find_header_end(data)
        if end < 0:
            raise SipParseError("header section does not end with an empty line")
        if data[end - 1] == 0x0D:  # the CR of the last line's CRLF
            end -= 1
        text, lines, rest = _crlf_lines(data, end)
    received: list[str] | None = lines
    if "\n" in rest:
        lines = [line[:-1] if line.endswith("\r") else line for line in text.split("\n")]
        received = None
        if "\r" in "".join(lines):
            raise SipParseError(_BARE_CR)
    elif "\r" in rest:
        raise SipParseError(_BARE_CR)
    message = _parse_start_line(lines[0])
    if _has_continuation(lines):
        lines = _unfold(lines)
        received = None
    headers, keys = _split_fields(lines[1:])
    if keys.count("content-length") == 1 and headers[keys.index("content-length")][1] == "0":
        body = b""  # the usual body of a request without one (as `_body` gives it)
    else:
        body = _body(data, body_start, _content_lengths(headers, keys), datagram)
    # `message._set_fields(headers, keys, body)`, without the call; through a
    # name typed `Message` (not ``Request | Response``): compiled, these are
    # native stores, not ``setattr`` by name.
    fields: Message = message
    fields.headers = headers
    fields.body = body
    fields._keys = keys
    fields._keys_of = headers.copy()
    fields._received_lines = received  # (one line per field: the splice of a proxy)
    return message


#: A CR that does not end a line: peers that take it for a line end would read
#: the rest as another header (RFC 3261 25.1 allows CR only in CRLF), so the
#: message is dropped rather than answered or forwarded with it.
_BARE_CR: Final = "CR without LF in the header section"


def _crlf_lines(data: bytes, end: int) -> tuple[str, list[str], str]:
    """The header section ``data[:end]`` as text, its lines cut at CRLF, and those joined.

    What is left once every CRLF is cut out (the third) holds no LF and no
    CR, unless a line ends in a bare LF or a CR stands alone. (Two ``in``
    searches of it are memchr; counting each character is not.)
    """
    text = data[:end].decode("utf-8", "surrogateescape")
    lines = text.split("\r\n")
    return text, lines, "".join(lines)


def _has_continuation(lines: list[str]) -> bool:
    """Whether a header line starts with SP or HT (header folding, RFC 3261 7.3.1)."""
    for index in range(1, len(lines)):
        first = lines[index][:1]
        if first in {" ", "\t"}:
            return True
    return False


def _split_fields(lines: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """Split unfolded header lines into ``(name, value)`` fields, in one pass.

    Return the fields and their canonical names (which the message keeps for
    its lookups).  This loop runs once per header line of every message:
    keep it to a few string methods.  A line a peer repeats (Max-Forwards,
    Content-Length, CSeq, To, Contact, User-Agent...) is split once and then
    found in `_LINES`; the fields unique to each request or dialog (Via,
    Call-ID: `_UNIQUE_KEYS`, and any line with a ``tag=``: From, the To of a
    dialog) are split every time, not remembered.
    """
    headers: list[tuple[str, str]] = []
    keys: list[str] = []
    # The memos as locals (compiled: no module lookup per line), and their
    # ``get`` called on them (a direct dict lookup, not a bound method's call).
    seen = _LINES
    known = KNOWN_NAMES
    for line in lines:
        hit = seen.get(line)
        if hit is not None:
            headers.append(hit[0])
            keys.append(hit[1])
            continue
        name, colon, value = line.partition(":")
        if not (colon and name):
            raise SipParseError("header line without a colon or without a name")
        name = name.rstrip(" \t")
        field = (name, value.strip(" \t"))
        key = known.get(name) or canonical_name(name)
        headers.append(field)
        keys.append(key)
        if key not in _UNIQUE_KEYS and "tag=" not in line:
            _LINES.remember(line, (field, key), 2 * len(line) + len(key))
    return headers, keys


#: Fields new in (almost) every request or call (RFC 3261 8.1.1: a new branch
#: and Call-ID), not worth remembering line by line; nor are lines with a tag
#: (From, and the To of a dialog: new with each call).
_UNIQUE_KEYS: Final = frozenset({"via", "call-id"})
#: Header lines already split: the line to its ``(name, value)`` field and key.
_LINES: Final[Memo[str, tuple[tuple[str, str], str]]] = Memo(max_entries=4 * 1024)


def _content_lengths(headers: list[tuple[str, str]], keys: list[str]) -> list[str]:
    """The value of every Content-Length field (all spellings), in order."""
    count = keys.count("content-length")
    if count == 1:
        return [headers[keys.index("content-length")][1]]
    if count == 0:
        return []
    return [value for (_, value), key in zip(headers, keys, strict=True) if key == "content-length"]


def _unfold(lines: list[str]) -> list[str]:
    """Join continuation lines (starting with SP or HT) to the line before.

    A fold (the blanks around a line end followed by blanks, and any blank
    lines among them) becomes one space. Linear in the size of the header
    section: one regular expression, whose lookbehind and possessive
    quantifiers never rescan a run of blanks (re-joining the growing line
    at every fold made 16,000 folds cost 100 times a plain datagram).
    """
    rest = "\n".join(lines[1:])
    if rest[:1] in (" ", "\t"):
        rest = rest[_leading_blank_lines(rest).end() :]  # type: ignore[union-attr]
        if rest[:1] in (" ", "\t"):
            if rest.strip(" \t"):
                raise SipParseError("continuation line before the first header")
            return lines[:1]
    return [lines[0], *_folds.sub(" ", rest).split("\n")]


def _parse_start_line(line: str) -> Request | Response:
    parts = line.split(" ")
    if line.startswith("SIP/"):
        if len(parts) < 3 or parts[0] != "SIP/2.0":
            raise SipParseError(f"malformed status line {line[:60]!r}")
        code = parts[1]
        if len(code) != 3 or not (code.isascii() and code.isdigit()) or code[0] not in "123456":
            raise SipParseError(f"malformed status code {code[:20]!r}")
        return new_response(int(code), line[len(parts[0]) + len(code) + 2 :])
    if len(parts) == 3 and parts[0] and parts[1] and parts[2]:
        method, uri, version = parts
        defect = None
    else:
        words = line.split()
        if len(words) < 3:
            raise SipParseError(f"malformed request line {line[:60]!r}")
        method, uri, version = words[0], " ".join(words[1:-1]), words[-1]
        defect = SipParseError(f"extra whitespace in request line {line[:60]!r}", status=400)
    if not (method in KNOWN_METHODS or is_token(method)) or not (
        version == "SIP/2.0" or version.upper().startswith("SIP/")
    ):
        raise SipParseError(f"malformed request line {line[:60]!r}")
    # The caller sets the fields with `Message._set_fields`.  Built by its
    # constructor: mypyc's classes refuse ``object.__new__``.
    request = Request(method, uri, (), b"", version)
    request._defect = defect
    return request


def _body(data: bytes, start: int, lengths: list[str], datagram: bool) -> bytes:
    """The body: ``lengths`` are the Content-Length values (all spellings)."""
    if not lengths:
        if datagram:
            return data[start:]
        raise SipParseError("no Content-Length on a stream transport", status=400)
    value = lengths[0]
    if value == "0" and len(lengths) == 1:
        return b""  # the usual body of a request without one
    if len(lengths) > 1 and len(set(lengths)) != 1:
        raise SipParseError("conflicting Content-Length headers", status=400)
    length = parse_number(value)
    if length is None:
        raise SipParseError(f"malformed Content-Length {value[:20]!r}", status=400)
    available = len(data) - start
    if length > available:
        raise SipParseError(
            f"Content-Length {value[:20]} larger than the {available} bytes received", status=400
        )
    return data[start : start + length]
