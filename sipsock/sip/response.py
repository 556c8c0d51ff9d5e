"""``make_response``: a response to a request (RFC 3261 8.2.6)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence

from sipsock.sip.grammar import canonical_name
from sipsock.sip.message import Request, Response

_COPIED = frozenset({"via", "from", "to", "call-id", "cseq"})
_has_tag = re.compile(r"[;\s]tag\s*=", re.I).search


def new_tag() -> str:
    """A fresh random To/From tag."""
    return secrets.token_hex(6)


def make_response(
    request: Request,
    code: int,
    reason: str,
    *,
    to_tag: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """Build the response ``code reason`` to ``request``.

    Copies every Via, From, To, Call-ID and CSeq field in order (Via values
    keep the ``received``/``rport`` that :func:`apply_received` put there).
    A response other than 100 gets a To tag when the To has none: ``to_tag``,
    or a fresh random one.  ``headers`` are appended, then Content-Length
    (the length of ``body``, 0 when there is none).
    """
    request_keys = request._header_keys()
    picked = [index for index, key in enumerate(request_keys) if key in _COPIED]
    copied = [request.headers[index] for index in picked]
    keys = [request_keys[index] for index in picked]
    if code != 100 and "to" in keys:
        index = keys.index("to")
        field, value = copied[index]
        if not _has_tag(value):
            copied[index] = (field, f"{value};tag={to_tag or new_tag()}")
    if headers:
        copied.extend(headers)
        keys.extend(canonical_name(field) for field, _ in headers)
    copied.append(("Content-Length", str(len(body))))
    keys.append("content-length")
    response = Response(code, reason, copied, body)
    response._remember_keys(keys)
    return response
