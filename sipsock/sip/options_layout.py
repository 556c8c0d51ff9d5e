"""Layouts: answering an OPTIONS shaped like one answered before, without reading it again (pure).

A peer's keep-alives differ from one another only in a few values: the
branch of the top Via, the From tag, the Call-ID and the CSeq number (which
rises with each request). Every other header line comes back byte for byte. Once
`sipsock.sip.options_answer.answer_options` has answered an OPTIONS by reading
its lines, it records the message's *layout* in the `OptionsMemo` it was
given:

* the lines that hold no per-request value (the request line, To,
  Contact, Accept, ...), by identity: each distinct line gets a number
  (`OptionsMemo.line_id`), and a message's key is the tuple of its lines'
  numbers, with None for the lines that vary;
* for each varying line (Via, From, Call-ID, CSeq), its position, the exact
  spelling of its name up to the colon, and what to check in it;
* the answer as fixed byte pieces with a gap for each varying part.

`answer_by_layout` answers a message whose key has a layout by checking and
copying only the varying lines. The top Via is stamped through a *Via
template*: for one Via with its branch cut out, and one peer address, the
stamped text before and after the branch (stamping never looks at the
branch). A From value is accepted through a *From template*: the value
with its tag cut out, checked once. Both accept only a branch or a tag
made of token characters, so that any other token put in its place is
checked alike: the templates are built from the message itself and from a
copy with a marker token in that place, and are recorded only when both
agree. A CSeq is accepted in the one plain shape ``NUMBER OPTIONS`` (one
blank, at most ten digits, the number at most ``2**32-1``), which
`parse_cseq` accepts alike, and echoed as it is.

Whenever anything differs from what was recorded (another name spelling, a
Via without a branch, a Call-ID with blanks, a CSeq of another shape, a
body shorter than its Content-Length, no template yet), `answer_by_layout` gives None and the
caller reads the message line by line as before, which is the reference.
Every memo used here is one of the `OptionsMemo` (each a `Memo`: bounded
in entries and bytes, emptied when full, never holding a line longer than
`sipsock.sip.memo.MAX_ITEM`).

The caller need not look for a bare CR or LF first: every byte of a header
section answered here lies in a line, a name or a template recorded from a
message that had none, or in a branch, tag or Call-ID of visible ASCII
characters.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

from sipsock.sip.checks import MAX_CSEQ
from sipsock.sip.errors import SipParseError
from sipsock.sip.grammar import is_token
from sipsock.sip.options_memo import OptionsMemo
from sipsock.sip.via import parse_via

#: The bytes of a token; ``value.translate(None, TOKEN_BYTES)`` is empty for a token.
TOKEN_BYTES: Final = bytes(c for c in range(128) if is_token(chr(c)))
#: A Call-ID the line reader keeps as it is and finds not blank (visible ASCII).
_is_plain_call_id = re.compile(rb"[!-~]+").fullmatch
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
    # The top Via: its branch cut out (as `cut` does), the rest stamped by its template.
    index, prefix, head, gap = layout.top_via
    line = lines[index]
    if not line.startswith(prefix):
        return None
    value = line[len(prefix) :].strip(b" \t")
    start = value.find(b";branch=") + 8
    if start < 8 or b"," in value:
        return None
    end = value.find(b";", start)
    if end < 0:
        end = len(value)
    branch = value[start:end]
    if not branch or branch.translate(None, TOKEN_BYTES):
        return None
    stamped = memo.via_templates.get((value[:start], value[end:], host, port))
    if stamped is None:
        return None
    answer[gap] = head + stamped[0] + branch + stamped[1]
    # From: its tag cut out (as `cut_tag` does), the rest checked once.
    index, prefix, head, gap = layout.from_
    line = lines[index]
    if not line.startswith(prefix):
        return None
    from_value = line[len(prefix) :].strip(b" \t")
    start = from_value.find(b";tag=", from_value.rfind(b">") + 1) + 5
    if start < 5:
        return None
    end = from_value.find(b";", start)
    if end < 0:
        end = len(from_value)
    tag = from_value[start:end]
    if not tag or tag.translate(None, TOKEN_BYTES):
        return None
    if (from_value[:start], from_value[end:]) not in memo.from_templates:
        return None
    answer[gap] = head + from_value
    # Call-ID: kept as it is when it is plain.
    index, prefix, head, gap = layout.call_id
    line = lines[index]
    if not line.startswith(prefix):
        return None
    call_id = line[len(prefix) :].strip(b" \t")
    if _is_plain_call_id(call_id) is None:
        return None
    answer[gap] = head + call_id
    # CSeq: echoed as it is when it is plain.
    index, prefix, head, gap = layout.cseq
    line = lines[index]
    if not line.startswith(prefix):
        return None
    cseq = line[len(prefix) :].strip(b" \t")
    number = cseq[:-8]  # `is_plain_cseq`, inline
    if not (cseq.endswith(b" OPTIONS") and number.isdigit()):
        return None
    if len(number) >= 10 and (len(number) > 10 or number > _MAX_CSEQ_DIGITS):
        return None
    answer[gap] = head + cseq
    for index, prefix, head, gap in layout.other_vias:
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
        answer[gap] = head + value
    if layout.tag_gap >= 0:
        digest = hashlib.sha1(salt + b"|" + call_id + b"|" + from_value, usedforsecurity=False)
        answer[layout.tag_gap] = b";tag=" + digest.hexdigest()[:16].encode()
    answer.append(tail)
    return b"".join(answer)  # type: ignore[arg-type]  # every gap is filled
