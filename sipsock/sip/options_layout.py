"""Layouts: answering an OPTIONS shaped like one answered before, without reading it again (pure).

A peer's keep-alives differ from one another only in a few values: the
branch of the top Via, the From tag, the Call-ID and the CSeq number (which
rises with each request). The keep-alives of many peers running the same
client software differ in a few more: the peer's own address in its Via,
From and Contact. Every other header line comes back byte for byte. Once
`sipsock.sip.options_answer.answer_options` has answered an OPTIONS by reading
its lines, it records the message's *layout* in the `OptionsMemo` it was
given:

* the lines that hold no per-request value (the request line, To,
  Accept, ...), by identity: each distinct line gets a number
  (`OptionsMemo.line_id`), and a message's key is the tuple of its lines'
  numbers, with None for the lines that vary;
* for each varying line (Via, From, Call-ID, CSeq, and a Contact of one
  plain address), its position, the exact spelling of its name up to the
  colon, and what to check in it;
* the answer as fixed byte pieces with a gap for each varying part.

So one layout answers every peer of a client software, the first keep-alive
of a peer as cheaply as its next ones: at thousands of keep-alives a second
from peers sending one every 15-30 s, a peer's next OPTIONS comes long
after anything remembered about that one peer has been forgotten.

`answer_by_layout` answers a message whose key has a layout by checking and
copying only the varying lines. The top Via is stamped through a *Via
template* for a peer whose message was recorded: for one Via with its
branch cut out, and one peer address, the stamped text before and after the
branch (stamping never looks at the branch). For any other peer, a Via of
the plain shape with an empty ``rport`` and no ``received`` (what RFC 3581
clients send) is stamped through an *rport template*: the Via with its
sent-by and branch cut out, and where its ``rport`` ends (stamping fills in
the peer's port there and appends its address, whatever the sent-by, as
long as it is plain: `match_sent_by`). Any other Via is stamped by
`stamp_via_value` itself (`stamp_plain_via`).

A From value, and a Contact, is accepted when it has the plain shape
``name <scheme:...>;param=value`` in visible ASCII (`match_plain_address`,
a subset of what `check_address` accepts), and a From otherwise through a
*From template*: the value with its tag cut out, checked once. The
templates accept only a branch or a tag made of token characters, so that
any other token put in its place is checked alike: the templates are built
from the message itself and from a copy with a marker token in that place
(and, for an rport template, a marker sent-by and another peer), and are
recorded only when both agree. A CSeq is accepted in the one plain shape
``NUMBER OPTIONS`` (one blank, at most ten digits, the number at most
``2**32-1``), which `parse_cseq` accepts alike, and echoed as it is.

Whenever anything differs from what was recorded (another name spelling, a
Via that does not stamp, a Call-ID with blanks, a CSeq of another shape, a
Contact of another shape, a body shorter than its Content-Length),
`answer_by_layout` gives None and the caller reads the message line by
line as before, which is the reference. Every memo used here is one of the
`OptionsMemo` (each a `Memo`: bounded in entries and bytes, emptied when
full, never holding a line longer than `sipsock.sip.memo.MAX_ITEM`); a
message answered by a layout adds nothing to them.

The caller need not look for a bare CR or LF first: every byte of a header
section answered here lies in a line, a name or a template recorded from a
message that had none, in a branch, tag or Call-ID of visible ASCII
characters, or in a Via, From or Contact value of visible ASCII characters
and blanks.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

from sipsock.addresses import unbracket
from sipsock.sip.checks import MAX_CSEQ
from sipsock.sip.errors import SipParseError
from sipsock.sip.grammar import TOKEN_CHARS, is_token
from sipsock.sip.options_memo import OptionsMemo
from sipsock.sip.via import parse_via, stamp_via_value

_T = f"[{TOKEN_CHARS}]+"

#: The bytes of a token; ``value.translate(None, TOKEN_BYTES)`` is empty for a token.
TOKEN_BYTES: Final = bytes(c for c in range(128) if is_token(chr(c)))
#: A Call-ID the line reader keeps as it is and finds not blank (visible ASCII).
_is_plain_call_id: Final = re.compile(rb"[!-~]+").fullmatch
#: Any byte of a header value that is not a visible ASCII character or a blank.
_has_control: Final = re.compile(rb"[^ -~\t]").search
#: ``name <scheme:visible>;param=value`` in visible ASCII: the bytes that
#: `sipsock.sip.options_answer`'s plain address pattern matches, less the
#: characters outside visible ASCII (so a subset of what `check_address` accepts).
_PLAIN_ADDRESS: Final = (
    rf"(?:{_T} )*<[A-Za-z][A-Za-z0-9+\-.]*:[!-;=?-~]*>(?:;{_T}(?:=[{TOKEN_CHARS}:\[\]]+)?)*"
).encode()
match_plain_address: Final = re.compile(_PLAIN_ADDRESS).fullmatch
#: A header value that is one plain address, with the blanks around it:
#: ``match_plain_line(line, len(prefix))`` checks a Contact without cutting it out.
match_plain_line: Final = re.compile(rb"[ \t]*" + _PLAIN_ADDRESS + rb"[ \t]*").fullmatch
#: A plain sent-by (``host`` or ``host:port``, the port 1-65535 without a
#: leading zero): one that `stamp_via_value` takes as plain and, in a Via with
#: an empty rport and no received, copies without looking at it.
match_sent_by: Final = re.compile(
    rb"[A-Za-z0-9.\-]+(?::(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}"
    rb"|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?"
).fullmatch
#: `MAX_CSEQ` in digits, to compare with a number of as many digits.
_MAX_CSEQ_DIGITS: Final = b"%d" % MAX_CSEQ


def is_plain_cseq(value: bytes) -> bool:
    """Whether a CSeq value is ``NUMBER OPTIONS``: one blank, 1-10 ASCII digits, at most `MAX_CSEQ`.

    `parse_cseq` accepts every such value (and the answer echoes it as it is).
    """
    number = value[:-8]
    return (
        value.endswith(b" OPTIONS")
        and number.isdigit()  # ASCII digits only, for bytes
        and (len(number) < 10 or (len(number) == 10 and number <= _MAX_CSEQ_DIGITS))
    )


#: A token that stands in for a branch or a tag while a template is checked.
MARKER: Final = b"z9hG4bKsipsockMarker7f3a"


def cut(value: bytes, name: bytes, after: int = 0) -> tuple[bytes, bytes, bytes] | None:
    """``value`` split around the token value of its first ``name`` parameter past ``after``.

    ``name`` is the parameter with its ``;`` and ``=`` (``b";branch="``);
    None when there is none or its value is not a token.
    """
    start = value.find(name, after)
    if start < 0:
        return None
    start += len(name)
    end = value.find(b";", start)
    if end < 0:
        end = len(value)
    token = value[start:end]
    if not token or token.translate(None, TOKEN_BYTES):
        return None
    return value[:start], token, value[end:]


def cut_tag(value: bytes) -> tuple[bytes, bytes, bytes] | None:
    """A From value split around its tag, when the tag follows the ``<URI>``."""
    close = value.rfind(b">")
    if close < 0:
        return None
    return cut(value, b";tag=", close)


def _has_from_template(value: bytes, memo: OptionsMemo) -> bool:
    """Whether the From ``value`` is accepted by a From template (its tag cut out)."""
    start = value.find(b";tag=", value.rfind(b">") + 1) + 5
    if start < 5:
        return False
    end = value.find(b";", start)
    if end < 0:
        end = len(value)
    tag = value[start:end]
    if not tag or tag.translate(None, TOKEN_BYTES):
        return False
    return (value[:start], value[end:]) in memo.from_templates


def stamp_plain_via(value: bytes, host: str, port: int) -> bytes | None:
    """The top Via ``value`` (one value, stripped) as the line reader stamps it, or None.

    `stamp_via_value` itself, for a value of visible ASCII characters and
    blanks (which `str.strip` leaves as `bytes.strip` does); None for any
    other value or where it raises (the line reader then decides).
    """
    if _has_control(value):
        return None
    text = value.decode()
    try:
        stamped = stamp_via_value(text, host, port)
    except (SipParseError, ValueError):
        return None
    return value if stamped is None else stamped.encode()


def answer_by_layout(
    lines: list[bytes],
    body_size: int,
    host: str,
    port: int,
    salt: bytes,
    tail: bytes,
    memo: OptionsMemo,
) -> bytes | None:
    """The answer to the OPTIONS whose header lines are ``lines``, or None (read it instead).

    ``body_size`` is the number of bytes after the empty line; ``salt`` and
    ``tail`` are the reply's, encoded; ``memo`` holds the layouts and
    templates recorded before.
    """
    layout = memo.layouts.get(tuple(map(memo.line_ids.get, lines)))
    if layout is None or layout.content_length > body_size:
        return None
    answer = list(layout.pieces)
    # The top Via: its branch cut out (as `cut` does), stamped by its Via
    # template (this peer) or its rport template (any peer), else stamped anew.
    index, prefix, gap = layout.top_via
    line = lines[index]
    if not line.startswith(prefix):
        return None
    value = line[len(prefix) :].strip(b" \t")
    if b"," in value:
        return None
    start = value.find(b";branch=") + 8
    if start >= 8:
        end = value.find(b";", start)
        if end < 0:
            end = len(value)
        branch = value[start:end]
        if branch and not branch.translate(None, TOKEN_BYTES):
            stamped = memo.via_templates.get((value[:start], value[end:], host, port))
            if stamped is not None:
                answer[gap] = stamped[0] + branch + stamped[1]
            else:
                space = value.find(b" ") + 1
                params = value.find(b";", space)
                key = (value[:space], value[params:start], value[end:])
                rport = memo.rport_templates.get(key)
                if rport is not None and match_sent_by(value, space, params):
                    at = (end if rport[0] else params) + rport[1]
                    received = unbracket(host).encode()
                    answer[gap] = b"%s=%d%s;received=%s" % (value[:at], port, value[at:], received)
    if answer[gap] is None:
        via = stamp_plain_via(value, host, port)
        if via is None:
            return None
        answer[gap] = via
    # From: checked by its shape, or by its template (its tag cut out, as `cut_tag` does).
    index, prefix, gap = layout.from_
    line = lines[index]
    if not line.startswith(prefix):
        return None
    from_value = line[len(prefix) :].strip(b" \t")
    if match_plain_address(from_value) is None and not _has_from_template(from_value, memo):
        return None
    answer[gap] = from_value
    # Call-ID: kept as it is when it is plain.
    index, prefix, gap = layout.call_id
    line = lines[index]
    if not line.startswith(prefix):
        return None
    call_id = line[len(prefix) :].strip(b" \t")
    if _is_plain_call_id(call_id) is None:
        return None
    answer[gap] = call_id
    # CSeq: echoed as it is when it is plain.
    index, prefix, gap = layout.cseq
    line = lines[index]
    if not line.startswith(prefix):
        return None
    cseq = line[len(prefix) :].strip(b" \t")
    number = cseq[:-8]  # `is_plain_cseq`, inline
    if not (cseq.endswith(b" OPTIONS") and number.isdigit()):
        return None
    if len(number) >= 10 and (len(number) > 10 or number > _MAX_CSEQ_DIGITS):
        return None
    answer[gap] = cseq
    for index, prefix, gap in layout.other_vias:
        line = lines[index]
        if not line.startswith(prefix):
            return None
        value = line[len(prefix) :].strip(b" \t")
        if b"," in value or b"\r" in value or b"\n" in value:
            return None
        try:
            parse_via(value.decode("utf-8", "surrogateescape").strip())
        except (SipParseError, ValueError):
            return None
        answer[gap] = value
    for index, prefix, known in layout.addresses:
        line = lines[index]
        if line != known and (
            not line.startswith(prefix) or match_plain_line(line, len(prefix)) is None
        ):
            return None
    if layout.tag_gap >= 0:
        digest = hashlib.sha1(salt + b"|" + call_id + b"|" + from_value, usedforsecurity=False)
        answer[layout.tag_gap] = digest.digest()[:8].hex().encode()  # `stable_tag`
    answer.append(tail)
    return b"".join(answer)  # type: ignore[arg-type]  # every gap is filled
