"""``make_response``: a response to a request (RFC 3261 8.2.6)."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Sequence
from typing import Final

from sipsock.sip.grammar import canonical_name
from sipsock.sip.memo import Memo
from sipsock.sip.message import Request, Response, new_response

_COPIED: Final = frozenset({"via", "from", "to", "call-id", "cseq"})
_has_tag: Final = re.compile(r"[;\s]tag\s*=", re.I).search


def new_tag() -> str:
    """A fresh random To/From tag."""
    return secrets.token_hex(6)


def stable_tag(salt: str, call_id: str, from_value: str | None) -> str:
    """A To tag that is the same for every retransmission of one request.

    A hash of a per-application secret ``salt``, the Call-ID and the From
    value (16 hex digits), so a stateless UAS answers a retransmission with
    the tag it gave the first copy.
    """
    key = f"{salt}|{call_id}|{from_value}".encode("utf-8", "surrogateescape")
    return hashlib.sha1(key, usedforsecurity=False).hexdigest()[:16]


def salted_hash(salt: str) -> hashlib._Hash:
    """The SHA-1 of ``salt|``, to continue with `stable_tag_from` (made once per salt)."""
    return hashlib.sha1(f"{salt}|".encode("utf-8", "surrogateescape"), usedforsecurity=False)


def stable_tag_from(salted: hashlib._Hash, call_id: str, from_value: str | None) -> str:
    """`stable_tag` of the salt that ``salted`` (`salted_hash`) was made of.

    The same tag, without hashing the salt again for every request.
    """
    digest = salted.copy()
    digest.update(f"{call_id}|{from_value}".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()[:16]


def has_tag(value: str) -> bool:
    """Whether a From or To value carries a ``tag`` parameter."""
    return _has_tag(value) is not None


def make_response(
    request: Request,
    code: int,
    reason: str,
    *,
    to_tag: str | Callable[[], str] | None = None,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """Build the response ``code reason`` to ``request``.

    Copies every Via, From, To, Call-ID and CSeq field in order (Via values
    keep the ``received``/``rport`` that :func:`apply_received` put there).
    A response other than 100 gets a To tag when the To has none: ``to_tag``
    (or what it gives when it is a function: called only then), or a fresh
    random one.  ``headers`` are appended, then Content-Length (the length
    of ``body``, 0 when there is none).
    """
    copied, copied_keys = _copied_fields(request, code, to_tag)
    keys = list(copied_keys)
    if headers:
        copied += headers
        keys += [canonical_name(field) for field, _ in headers]
    copied.append(("Content-Length", str(len(body))))
    keys.append("content-length")
    response = new_response(code, reason)
    response._set_fields(copied, keys, body)
    return response


def response_bytes(
    request: Request,
    code: int,
    reason: str,
    *,
    to_tag: str | Callable[[], str] | None = None,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
) -> bytes:
    """``bytes(make_response(...))`` with the same arguments, without the `Response`.

    For an answer that is sent as it is made (the Responder's).
    """
    for field, _ in headers:
        if field[:1] in "cClL" and canonical_name(field) == "content-length":
            made = make_response(request, code, reason, to_tag=to_tag, headers=headers, body=body)
            return made.serialize()
    copied, _ = _copied_fields(request, code, to_tag)
    # One loop per list, not ``*map(": ".join, ...)``: compiled, that is a
    # string concatenation per field, not a Python call through `map`.
    lines = [f"SIP/2.0 {code} {reason}"]
    for field, value in copied:
        lines.append(field + ": " + value)
    for field, value in headers:
        lines.append(field + ": " + value)
    lines.append(f"Content-Length: {len(body)}\r\n\r\n")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape") + body


def _copied_fields(
    request: Request, code: int, to_tag: str | Callable[[], str] | None
) -> tuple[list[tuple[str, str]], tuple[str, ...]]:
    """The fields a response to ``request`` copies (see `make_response`), and their keys."""
    headers = request.headers
    # `_header_keys`, without the call when the keys are fresh (the usual case).
    request_keys = request._keys if request._keys_of == headers else request._header_keys()
    names = tuple(request_keys)
    plan = _COPY_PLANS.get(names)
    if plan is None:
        plan = _copy_plan(request_keys)
        _COPY_PLANS.remember(names, plan, sum(map(len, names)) + 8 * len(names))
    indexes, keys, to_at = plan
    copied = [headers[index] for index in indexes]
    if code != 100 and to_at >= 0:
        field, value = copied[to_at]
        if "=" not in value or _has_tag(value) is None:  # (no tag without an "=")
            tag = to_tag() if callable(to_tag) else to_tag
            copied[to_at] = (field, f"{value};tag={tag or new_tag()}")
    return copied, keys


#: Where the copied fields are, their keys, and where the first To is among them (or -1).
_CopyPlan = tuple[tuple[int, ...], tuple[str, ...], int]
#: Copy plans per sequence of header keys (a peer repeats its layout); bounded.
_COPY_PLANS: Final[Memo[tuple[str, ...], _CopyPlan]] = Memo(
    max_entries=4 * 1024, max_bytes=1024 * 1024
)


def _copy_plan(request_keys: list[str]) -> _CopyPlan:
    indexes = tuple(index for index, key in enumerate(request_keys) if key in _COPIED)
    keys = tuple(request_keys[index] for index in indexes)
    return indexes, keys, keys.index("to") if "to" in keys else -1
