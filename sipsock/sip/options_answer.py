"""`answer_options`: the 200 OK to a plain OPTIONS keep-alive, straight from its bytes (pure).

Most SIP peers send OPTIONS every few seconds to see whether a socket is
alive. The general path parses the datagram into a `Request`, runs every
check of ``Request.validate``, stamps the top Via (`apply_received`), hands
the request to the application and serializes the `Response` it builds. For
an application whose answer to a well-formed OPTIONS is fixed apart from
the copied headers (the built-in `Responder`), `answer_options` does the
same in one pass over the header lines and returns the **same bytes** the
general path would send, or ``None`` ("not sure: take the general path").

It declines everything out of the ordinary: another method or version,
bare LF or CR line ends, folded lines, a Via field holding several values,
a Require header (the application decides about extensions),
a duplicated single-value header, anything a check rejects (the general
path then answers 400 or drops it, as before), and so on. Where it does
answer, the rules are the general path's own functions (`check_request_uri`,
`check_address`, `parse_cseq`, `parse_via`, `stamp_via_value`,
`stable_tag`), with three sound shortcuts: header-name spellings already
seen to be tokens are remembered; so are Request-URIs and addresses already
accepted (bounded memos: a peer's keep-alives repeat them); and an address
in the common ``name <sip:...>;param=value`` shape is accepted by one
pattern that only matches values `check_address` accepts.

Reading the lines is the reference. A message answered that way leaves
its layout behind (`sipsock.sip.options_layout`): a later keep-alive equal
but for its Via, From, Call-ID, CSeq and Contact values (the next one of
the same peer, or the first one of another peer of the same client
software) is answered from it by checking those values alone.

Everything remembered is kept in the `OptionsMemo` the caller passes (each
`Dispatcher` owns one): this module holds no state.

A rule added to the general path for requests (a new check, a new limit)
must be added here too, or make this function decline:
``tests/unit/sip/test_options_answer.py`` runs both paths over the RFC 4475
torture messages and generated variants and compares the bytes, and
``test_options_layout.py`` does the same for variants of a message
answered before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from sipsock.addresses import unbracket
from sipsock.sip.checks import check_address, check_request_uri, parse_cseq
from sipsock.sip.errors import SipParseError
from sipsock.sip.grammar import TOKEN_CHARS, canonical_name, is_token, split_values
from sipsock.sip.memo import MAX_ITEM
from sipsock.sip.options_layout import (
    MARKER,
    answer_by_layout,
    cut,
    cut_tag,
    is_plain_cseq,
    match_plain_address,
    match_plain_line,
    match_sent_by,
)
from sipsock.sip.options_memo import Checked, Layout, Line, OptionsMemo, Varying, layout_size
from sipsock.sip.parser import DEFAULT_MAX_SIZE
from sipsock.sip.response import has_tag, stable_tag
from sipsock.sip.via import parse_via, stamp_via_value

STATUS_LINE: Final = "SIP/2.0 200 OK\r\n"

# The headers the answer looks at, by canonical name. Which single-field
# headers are copied into the answer (From, To, Call-ID, CSeq) and how each
# is checked is `_read_line`'s business.
_VIA: Final = 1  # copied, one or more fields, each value checked
_SINGLE: Final = 2  # at most one field
_ADDRESSES: Final = 3  # not copied, comma list of addresses (Contact, Route, Record-Route)
_DECLINE: Final = 4  # the general path decides (Require: 420 for an unsupported extension)
_KINDS: Final[dict[str, int]] = {
    "via": _VIA,
    "from": _SINGLE,
    "to": _SINGLE,
    "call-id": _SINGLE,
    "cseq": _SINGLE,
    "content-length": _SINGLE,
    "content-type": _SINGLE,
    "max-forwards": _SINGLE,
    "contact": _ADDRESSES,
    "route": _ADDRESSES,
    "record-route": _ADDRESSES,
    "require": _DECLINE,
}

_T = f"[{TOKEN_CHARS}]+"
#: ``name <scheme:no-blanks>;param=value``: a strict subset of what
#: `check_address` accepts (a display name of tokens or none, a bracketed URI
#: with a scheme and no whitespace or brackets, plain parameters).
_match_plain_address: Final = re.compile(
    rf"(?:{_T} )*<[A-Za-z][A-Za-z0-9+\-.]*:[^\s<>]*>(?:;{_T}(?:=[{TOKEN_CHARS}:\[\]]+)?)*"
).fullmatch


@dataclass(frozen=True, slots=True)
class OptionsReply:
    """The fixed part of an application's 200 OK to OPTIONS on one socket.

    ``tail`` is every header line after the copied Via/From/To/Call-ID/CSeq,
    through the empty line (Contact, Allow, ..., ``Content-Length: 0``), as
    the application's general path writes them; ``salt`` is the secret of
    its To tag (`stable_tag`).
    """

    tail: str
    salt: str
    #: ``tail`` and ``salt`` as bytes, for `answer_by_layout`.
    encoded_tail: bytes = field(init=False, repr=False, compare=False)
    encoded_salt: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoded_tail", self.tail.encode("utf-8", "surrogateescape"))
        object.__setattr__(self, "encoded_salt", self.salt.encode("utf-8", "surrogateescape"))


def tail_of(headers: list[tuple[str, str]]) -> str:
    """The ``tail`` of an `OptionsReply` for these extra headers, with an empty body."""
    return "".join(f"{name}: {value}\r\n" for name, value in headers) + "Content-Length: 0\r\n\r\n"


def _token_name(name: str, memo: OptionsMemo) -> str | None:
    """The canonical name of a header-name spelling, or None when it is not a token.

    Spellings seen to be tokens are remembered (``memo.token_names``).
    """
    key = memo.token_names.get(name)
    if key is None:
        if not is_token(name):
            return None
        key = memo.token_names.remember(name, canonical_name(name), 2 * len(name))
    return key


def _check_address(value: str, memo: OptionsMemo) -> None:
    """`check_address`, remembered, with the common shape accepted by one pattern first.

    A peer's keep-alives repeat their To and Contact (``memo.good_addresses``).
    """
    if value in memo.good_addresses:
        return
    if _match_plain_address(value) is None:
        check_address(value)
    memo.good_addresses.remember(value, True, len(value))


def _check_request_uri(uri: str, memo: OptionsMemo) -> None:
    """`check_request_uri`, remembered (``memo.good_uris``)."""
    if uri not in memo.good_uris:
        check_request_uri(uri)
        memo.good_uris.remember(uri, True, len(uri))


#: What the loop does with one header line (the first item of a `Line`).
_IGNORED: Final = 0  # a header the answer neither copies nor checks
_LISTED: Final = 1  # addresses, already checked; may repeat
_VIA_LINE: Final = 2
_ONCE: Final = 3  # a single-value header, not copied (``number``: Content-Length's value)
_COPY: Final = 4  # a single-value header, copied (``number``: 1 for a To with a tag)

#: A header line the answer neither copies nor checks, as read by `_read_line`.
_IGNORED_LINE: Final[Line] = (_IGNORED, "", "", "", "", 0)
#: The copied single-value headers a layout leaves a gap for (see `sipsock.sip.options_layout`).
_VARYING: Final = frozenset(("from", "call-id", "cseq"))


def _read_line(line: str, memo: OptionsMemo) -> Line | None:
    """How the loop treats one header line (a `Line`); None: decline the message.

    The checks that depend on the line alone are made here, and such lines
    are remembered in ``memo.lines`` (an entry holds the line about three
    times: line, value, text). Only lines that hold no per-request value are
    remembered: a peer's keep-alives repeat their To, CSeq (or not),
    Contact, Max-Forwards, Accept, Content-Length lines byte for byte. Via,
    From and Call-ID lines are read anew each time. Everything remembered
    was checked without regard to the rest of the message, so a remembered
    line is read exactly as a new one.
    """
    name, colon, value = line.partition(":")
    if not colon:
        return None  # (a folded line has no colon, or a name starting with a blank)
    if name[-1:] in (" ", "\t"):
        name = name.rstrip(" \t")
    key = memo.token_names.get(name) or _token_name(name, memo)
    if key is None:
        return None
    kind = _KINDS.get(key)
    if kind is None:
        entry = _IGNORED_LINE
    elif kind == _DECLINE:
        return None
    else:
        value = value.strip(" \t")
        text = f"{name}: {value}"
        if kind == _VIA:
            return None if "," in value else (_VIA_LINE, key, name, value, text, 0)
        if key in ("from", "call-id"):
            if key == "call-id" and not value.strip():
                return None
            return (_COPY, key, name, value, text, 0)
        try:
            checked = _checked_line(kind, key, name, value, text, memo)
        except (SipParseError, ValueError):
            return None
        if checked is None:
            return None
        entry = checked
    return memo.lines.remember(line, entry, 3 * len(line))


def _checked_line(
    kind: int, key: str, name: str, value: str, text: str, memo: OptionsMemo
) -> Line | None:
    """The `Line` of a To, CSeq, Contact, Route, ... line whose value passes its checks."""
    if kind == _ADDRESSES:
        for item in split_values(value):
            if item != "*":
                _check_address(item, memo)
        return (_LISTED, key, name, value, text, 0)
    if key == "to":
        _check_address(value, memo)
        return (_COPY, key, name, value, text, 1 if has_tag(value) else 0)
    if key == "cseq":
        if parse_cseq(value)[1] != "OPTIONS":
            return None
        return (_COPY, key, name, value, text, 0)
    if key == "max-forwards" and not (value.isascii() and value.isdigit()):
        return None
    if key == "content-length":
        if not (value.isascii() and value.isdigit() and len(value) < 10):
            return None
        return (_ONCE, key, name, value, text, int(value))
    return (_ONCE, key, name, value, text, 0)


def answer_options(
    data: bytes,
    host: str,
    port: int,
    reply: OptionsReply,
    memo: OptionsMemo,
    max_size: int = DEFAULT_MAX_SIZE,
) -> bytes | None:
    """The 200 OK to the OPTIONS ``data`` received over UDP from ``host``:``port``, or None.

    The bytes are those the general path sends (parse, validate,
    ``apply_received``, an application answering with ``reply``,
    serialize); None means "take the general path", which then does exactly
    what it did before. A message shaped like one answered before (its
    layout is in ``memo``) is answered by its layout
    (`sipsock.sip.options_layout`); any other is read line by line, and its
    layout recorded in ``memo``.
    """
    if not data.startswith(b"OPTIONS ") or len(data) > max_size:
        return None
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = data[:end]
    lines = head.split(b"\r\n")
    body_size = len(data) - end - 4
    answer = answer_by_layout(
        lines, body_size, host, port, reply.encoded_salt, reply.encoded_tail, memo
    )
    if answer is None:
        breaks = len(lines) - 1
        if head.count(b"\n") != breaks or head.count(b"\r") != breaks:
            return None  # bare LF or CR: the general path knows those
        answer = _answer_by_lines(lines, body_size, host, port, reply, memo)
    return answer


def _answer_by_lines(
    raw_lines: list[bytes],
    body_size: int,
    host: str,
    port: int,
    reply: OptionsReply,
    memo: OptionsMemo,
) -> bytes | None:
    """`answer_options` for the header lines ``raw_lines``, read one by one."""
    lines = [line.decode("utf-8", "surrogateescape") for line in raw_lines]
    start = lines[0].split(" ")
    if len(start) != 3 or start[2] != "SIP/2.0" or not start[1]:
        return None
    copied: list[str] = []
    vias: list[str] = []
    seen: dict[str, str] = {}
    entries: list[Line] = []
    top_via = to_index = -1
    to_has_tag = 0
    via_name = ""
    known = memo.lines
    for index in range(1, len(lines)):
        entry = known.get(lines[index]) or _read_line(lines[index], memo)
        if entry is None:
            return None
        entries.append(entry)
        action, key, name, value, line, number = entry
        if action <= _LISTED:
            continue
        if action == _VIA_LINE:
            if top_via < 0:
                top_via = len(copied)
                via_name = name
            vias.append(value)
            copied.append(line)
            continue
        if key in seen:
            return None
        seen[key] = value
        if action == _COPY:
            if key == "to":
                to_index = len(copied)
                to_has_tag = number
            copied.append(line)
        elif key == "content-length" and number > body_size:
            return None
    if top_via < 0 or to_index < 0 or "cseq" not in seen:
        return None
    from_value = seen.get("from")
    call_id = seen.get("call-id")
    if from_value is None or call_id is None:
        return None
    try:
        _check_request_uri(start[1], memo)
        for index, value in enumerate(vias):
            stripped = value.strip()  # every Via as it is checked
            if index or stripped != value:
                parse_via(stripped)
        stamped = stamp_via_value(vias[0], host, port)  # checks the top Via as it is
        _check_address(from_value, memo)
    except (SipParseError, ValueError):
        return None
    if stamped is not None:
        copied[top_via] = f"{via_name}: {stamped}"
    if not to_has_tag:
        copied[to_index] += f";tag={stable_tag(reply.salt, call_id, from_value)}"
    _record_layout(raw_lines, entries, host, port, memo)
    return (STATUS_LINE + "\r\n".join(copied) + "\r\n" + reply.tail).encode(
        "utf-8", "surrogateescape"
    )


def _record_layout(
    raw_lines: list[bytes], entries: list[Line], host: str, port: int, memo: OptionsMemo
) -> None:
    """Record in ``memo`` the layout of an OPTIONS just answered by `_answer_by_lines`.

    ``entries`` are its header lines as read. Nothing is recorded when its
    From is neither plain nor has a template, or its CSeq is not plain (see
    `sipsock.sip.options_layout`); the top Via gets a template for this
    peer, and an rport template for any, when it can have them.
    """
    if max(map(len, raw_lines)) > MAX_ITEM:
        return  # a line too long to remember: its layout could never be found
    line_id = memo.line_id
    varying = [_is_varying(entry, raw) for entry, raw in zip(entries, raw_lines[1:], strict=True)]
    # A layout is recorded once every fixed line of it has been seen before
    # (numbered on first sight): a line that changes with each request (a
    # header of the peer's own numbering, say) would make a layout no later
    # message can find, and building it costs more than reading the message
    # line by line.
    first_sight = raw_lines[0] not in memo.line_ids
    line_id(raw_lines[0])
    for index, vary in enumerate(varying, 1):
        if not vary and raw_lines[index] not in memo.line_ids:
            first_sight = True
            line_id(raw_lines[index])
    if first_sight:
        return
    key: list[int | None] = [line_id(raw_lines[0])]
    vias: list[Varying] = []
    others: dict[str, Varying] = {}
    addresses: list[Checked] = []
    pieces: list[bytes | None] = [STATUS_LINE.encode()]

    def add(piece: bytes | None) -> int:
        if piece is not None and pieces[-1] is not None:
            pieces[-1] += piece
        else:
            pieces.append(piece)
        return len(pieces) - 1

    tag_gap = -1
    content_length = 0
    for index, (action, name_key, name, _, text, number) in enumerate(entries, 1):
        raw = raw_lines[index]
        if varying[index - 1]:
            prefix = raw[: raw.index(b":") + 1]
            key.append(None)
            if action == _LISTED:  # a plain Contact: checked, not copied
                addresses.append((index, prefix, raw))
                continue
            value = raw[len(prefix) :].strip(b" \t")
            if action == _VIA_LINE and not vias:
                _rport_template(value, host, port, memo)  # for other peers
                _via_template(value, host, port, memo)  # for this peer's next keep-alives
            if name_key == "from" and not (
                match_plain_address(value) or _from_template(value, memo)
            ):
                return
            if name_key == "cseq" and not is_plain_cseq(value):
                return
            add(name.encode("utf-8", "surrogateescape") + b": ")
            gap = (index, prefix, add(None))
            if action == _VIA_LINE:
                vias.append(gap)
            else:
                others[name_key] = gap
            add(b"\r\n")
            continue
        key.append(line_id(raw))
        if action == _COPY:  # To
            add(text.encode("utf-8", "surrogateescape"))
            if name_key == "to" and not number:
                add(b";tag=")
                tag_gap = add(None)
            add(b"\r\n")
        elif name_key == "content-length":
            content_length = number
    layout = Layout(
        vias[0],
        others["from"],
        others["call-id"],
        others["cseq"],
        tuple(vias[1:]),
        tuple(addresses),
        tuple(pieces),
        tag_gap,
        content_length,
    )
    memo.layouts.remember(tuple(key), layout, layout_size(layout))


def _is_varying(entry: Line, raw: bytes) -> bool:
    """Whether a header line read as ``entry`` is a varying line of a layout.

    Via, From, Call-ID and CSeq lines, and a Contact of one plain address
    (`match_plain_address`): what differs from one keep-alive to the next
    and from one peer to another of the same client software, so that one
    layout answers them all.
    """
    action, name_key = entry[0], entry[1]
    if action == _VIA_LINE or (action == _COPY and name_key in _VARYING):
        return True
    if action != _LISTED or name_key != "contact":
        return False
    return match_plain_line(raw, raw.index(b":") + 1) is not None


#: A sent-by and a peer that stand in for any other while an rport template is checked.
_MARKER_SENT_BY: Final = b"sipsock-marker.invalid:7"
_MARKER_PEER: Final = ("198.51.100.7", 7)


def _rport_template(value: bytes, host: str, port: int, memo: OptionsMemo) -> bool:
    """Whether the top Via ``value`` has an rport template (made now if need be).

    A Via in the plain shape with an empty ``rport`` and no ``received``
    (``SIP/2.0/UDP host:port;branch=...;rport``, what RFC 3581 clients send)
    is stamped by filling in the peer's port and appending its address,
    whatever its sent-by and branch: `stamp_via_value` is asked for this
    Via and peer, and for a copy with a marker sent-by and branch from
    another peer, and the template is recorded only when both answers have
    that shape, at the same place.
    """
    parts = cut(value, b";branch=")
    if parts is None or not value.isascii():
        return False
    before, branch, after = parts
    space = value.find(b" ") + 1
    params = value.find(b";", space)
    if not 0 < space < params <= len(before) - 8 or not match_sent_by(value, space, params):
        return False
    key = (value[:space], value[params : len(before)], after)
    if key in memo.rport_templates:
        return True
    marked = key[0] + _MARKER_SENT_BY + key[1] + MARKER + after
    branch_end = len(before) + len(branch)
    at = _rport_end(value, host, port)
    if at is None or len(before) <= at < branch_end:
        return False
    template = (True, at - branch_end) if at >= branch_end else (False, at - params)
    marked_params = space + len(_MARKER_SENT_BY)
    marked_at = (len(marked) - len(after) if template[0] else marked_params) + template[1]
    if _rport_end(marked, *_MARKER_PEER) != marked_at:
        return False
    memo.rport_templates.remember(key, template, sum(map(len, key)))
    return True


def _rport_end(value: bytes, host: str, port: int) -> int | None:
    """Where `stamp_via_value` fills in the rport of ``value`` for this peer.

    None unless its stamp is ``value`` with ``=PORT`` put in one place and
    ``;received=HOST`` appended.
    """
    try:
        stamped = stamp_via_value(value.decode(), host, port)
    except (SipParseError, ValueError):
        return None
    if stamped is None:
        return None
    fill = b"=%d" % port
    end = b";received=" + unbracket(host).encode()
    at = _common_prefix(value, stamped.encode())
    expected = value[:at] + fill + value[at:] + end
    return at if stamped.encode() == expected else None


def _common_prefix(first: bytes, second: bytes) -> int:
    """The length of the longest common start of two byte strings."""
    for index, (one, two) in enumerate(zip(first, second, strict=False)):
        if one != two:
            return index
    return min(len(first), len(second))


def _via_template(value: bytes, host: str, port: int, memo: OptionsMemo) -> bool:
    """Whether the top Via ``value`` has a Via template for this peer (made now if need be)."""
    parts = cut(value, b";branch=")
    if parts is None or not value.isascii():
        return False
    before, branch, after = parts
    if (before, after, host, port) in memo.via_templates:
        return True
    text = value.decode()
    if text.strip() != text:
        return False
    try:
        stamped = stamp_via_value(text, host, port)
        marked = stamp_via_value((before + MARKER + after).decode(), host, port)
    except (SipParseError, ValueError):
        return False
    if marked is None or stamped is None:
        if marked is not stamped:
            return False
        template = (before, after)
    else:
        around = marked.encode().split(MARKER)
        if len(around) != 2 or around[0] + branch + around[1] != stamped.encode():
            return False
        template = (around[0], around[1])
    size = len(before) + len(after) + len(host) + len(template[0]) + len(template[1])
    memo.via_templates.remember((before, after, host, port), template, size)
    return True


def _from_template(value: bytes, memo: OptionsMemo) -> bool:
    """Whether the From ``value`` has a From template (made now if need be)."""
    parts = cut_tag(value)
    if parts is None or not value.isascii():
        return False
    before, _, after = parts
    if (before, after) in memo.from_templates:
        return True
    try:
        check_address(value.decode())
        check_address((before + MARKER + after).decode())
    except (SipParseError, ValueError):
        return False
    memo.from_templates.remember((before, after), True, len(before) + len(after))
    return True
