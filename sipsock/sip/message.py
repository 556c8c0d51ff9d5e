"""SIP message model: :class:`Request`, :class:`Response` and their shared headers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from sipsock.sip import checks
from sipsock.sip.errors import SipParseError
from sipsock.sip.grammar import (
    KNOWN_NAMES,
    UNSPLIT_HEADERS,
    canonical_name,
    parse_number,
    reason_phrase,
    split_values,
)
from sipsock.sip.via import Via, parse_via

#: `canonical_name` of a spelling already seen (None for a new one).
_known_name: Final = KNOWN_NAMES.get


class Message:
    """Headers and body shared by requests and responses.

    ``headers`` is the ordered list of ``(name, value)`` pairs with the names
    spelled as received; lookups are case-insensitive and know the compact
    forms.  Values are kept as text and parsed only when asked for.

    Lookups use the canonical names of the fields, computed once (the parser
    hands them over) and recomputed only when ``headers`` no longer equals
    the list they were computed for, so editing ``headers`` in place or
    assigning a new list is always safe.
    """

    __slots__ = ("_defect", "_keys", "_keys_of", "_received_lines", "body", "headers")

    def __init__(self, headers: Iterable[tuple[str, str]] = (), body: bytes = b"") -> None:
        self.headers: list[tuple[str, str]] = list(headers)
        self.body = body
        self._defect: SipParseError | None = None
        self._keys: list[str] = []
        self._keys_of: list[tuple[str, str]] | None = None
        #: The start line and the header lines as received, one per field of
        #: ``headers`` as parsed, when the header section was just that (CRLF
        #: line ends, no folding); else None. Set by ``parse`` only, never
        #: kept up to date: a field changed since differs from its line.
        self._received_lines: list[str] | None = None

    def _remember_keys(self, keys: list[str]) -> None:
        """Record ``keys``, the canonical names of the current ``headers``, in order.

        For the code that builds messages in this package (``parse``,
        ``make_response``), which knows the names already.
        """
        self._keys = keys
        self._keys_of = list(self.headers)

    def _set_fields(self, headers: list[tuple[str, str]], keys: list[str], body: bytes) -> None:
        """Set ``headers`` (taken, not copied), their canonical names ``keys`` and ``body``.

        For the code that builds messages in this package, which knows the names.
        """
        self.headers = headers
        self.body = body
        self._keys = keys
        self._keys_of = headers.copy()

    def _header_keys(self) -> list[str]:
        """The canonical name of every field of ``headers``, in order."""
        headers = self.headers
        if self._keys_of != headers:
            self._remember_keys([canonical_name(field) for field, _ in headers])
        return self._keys

    # -- header access -------------------------------------------------

    def get(self, name: str) -> str | None:
        """Value of the first header field called ``name``, or ``None``."""
        headers = self.headers
        # `_header_keys`, without the call when the keys are fresh (the usual case).
        keys = self._keys if self._keys_of == headers else self._header_keys()
        key = _known_name(name) or canonical_name(name)
        if key in keys:
            return headers[keys.index(key)][1]
        return None

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, multi-value fields split on commas."""
        key = canonical_name(name)
        keys = self._header_keys()
        values = [value for (_, value), k in zip(self.headers, keys, strict=True) if k == key]
        if key in UNSPLIT_HEADERS:
            return values
        return [item for value in values for item in split_values(value)]

    def set(self, name: str, value: str) -> None:
        """Give ``name`` the single value ``value`` (in place of the first field, else appended)."""
        key = canonical_name(name)
        kept: list[tuple[str, str]] = []
        done = False
        for field, old in self.headers:
            if canonical_name(field) != key:
                kept.append((field, old))
            elif not done:
                kept.append((field, value))
                done = True
        if not done:
            kept.append((name, value))
        self.headers = kept

    def add(self, name: str, value: str, first: bool = False) -> None:
        """Add a field: before the first field of that name (or at the top) when ``first``,
        else after the last one (or at the end)."""
        key = canonical_name(name)
        indexes = [i for i, (field, _) in enumerate(self.headers) if canonical_name(field) == key]
        if first:
            self.headers.insert(indexes[0] if indexes else 0, (name, value))
        else:
            self.headers.insert(indexes[-1] + 1 if indexes else len(self.headers), (name, value))

    def remove(self, name: str) -> int:
        """Remove every field called ``name``; return how many were removed."""
        key = canonical_name(name)
        before = len(self.headers)
        self.headers = [(f, v) for f, v in self.headers if canonical_name(f) != key]
        return before - len(self.headers)

    def remove_first(self, name: str) -> str | None:
        """Remove and return the first value of ``name`` (one item of a comma list)."""
        key = canonical_name(name)
        for index, (field, value) in enumerate(self.headers):
            if canonical_name(field) == key:
                values = [value] if key in UNSPLIT_HEADERS else split_values(value)
                if len(values) > 1:
                    self.headers[index] = (field, ", ".join(values[1:]))
                else:
                    del self.headers[index]
                return values[0]
        return None

    def replace_top_via(self, value: str) -> None:
        """Replace the first Via value (keeping any other values of that field)."""
        keys = self._header_keys()
        if "via" not in keys:
            raise SipParseError("no Via header", status=400)
        self._replace_via_at(keys.index("via"), value)

    def _replace_via_at(self, index: int, value: str) -> None:
        """`replace_top_via` when the first Via field is ``headers[index]`` (the keys are fresh)."""
        field, old = self.headers[index]
        if "," in old:
            values = split_values(old)
            values[0] = value
            value = ", ".join(values)
        self.headers[index] = (field, value)
        if self._keys_of is not None:
            # Same name, so the same key: the remembered keys stay true.
            self._keys_of[index] = (field, value)

    # -- the fields the transport needs --------------------------------

    @property
    def top_via(self) -> Via:
        """The first Via value, parsed; :class:`SipParseError` when absent or malformed."""
        value = self.get("Via")
        if value is None:
            raise SipParseError("no Via header", status=400)
        if "," in value:
            value = split_values(value)[0]
        return parse_via(value)

    @property
    def call_id(self) -> str:
        """The Call-ID; :class:`SipParseError` when absent or empty."""
        value = self.get("Call-ID")
        if not value:
            raise SipParseError("no Call-ID header", status=400)
        return value

    @property
    def cseq(self) -> tuple[int, str]:
        """CSeq as ``(number, method)``; :class:`SipParseError` when absent or malformed."""
        return checks.parse_cseq(self.get("CSeq"))

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards as a number, ``None`` when absent; malformed raises."""
        value = self.get("Max-Forwards")
        if value is None:
            return None
        number = parse_number(value)
        if number is None:
            raise SipParseError(f"malformed Max-Forwards {value!r}", status=400)
        return number

    @property
    def content_length(self) -> int | None:
        """The Content-Length header as a number (``None`` when absent)."""
        value = self.get("content-length")
        if value is None:
            return None
        number = parse_number(value)
        if number is None:
            raise SipParseError(f"malformed Content-Length {value!r}", status=400)
        return number

    # -- wire form -------------------------------------------------------

    def start_line(self) -> str:
        """The request or status line, without line end."""
        raise NotImplementedError

    def serialize(self) -> bytes:
        """Wire form, CRLF line ends, with a Content-Length equal to the body length."""
        length = str(len(self.body))
        keys = self._header_keys()
        if keys.count("content-length") == 1:
            _, value = self.headers[keys.index("content-length")]
            if value == length:
                # The usual case: one Content-Length, already right.
                text = "\r\n".join((self.start_line(), *map(": ".join, self.headers), "", ""))
                return text.encode("utf-8", "surrogateescape") + self.body
        lines = [self.start_line()]
        seen = False
        for field, value in self.headers:
            if field[:1] in "cClL" and canonical_name(field) == "content-length":
                if seen:
                    continue
                seen = True
                lines.append(f"{field}: {length}")
            else:
                lines.append(f"{field}: {value}")
        if not seen:
            lines.append(f"Content-Length: {length}")
        lines.append("\r\n")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body

    def __bytes__(self) -> bytes:
        return self.serialize()

    def validate(self) -> None:
        """Run the RFC 3261 well-formedness checks; raise :class:`SipParseError` on a fault.

        For a request the error's ``status`` is the response to send; for a
        response it is ``None`` (drop the response).
        """
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Message)
        return (
            self.start_line() == other.start_line()
            and self.headers == other.headers
            and self.body == other.body
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.start_line()!r} {len(self.headers)} headers>"


class Request(Message):
    """A SIP request: ``method``, Request-URI ``uri`` and ``version``."""

    __slots__ = ("method", "uri", "version")

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        super().__init__(headers, body)
        self.method = method
        self.uri = uri
        self.version = version

    def start_line(self) -> str:
        """``METHOD uri SIP/2.0``."""
        return f"{self.method} {self.uri} {self.version}"

    def validate(self) -> None:
        """Check the request line and headers (see :meth:`Message.validate`)."""
        if self._defect is not None:
            raise self._defect
        checks.check_request(self, self.method, self.uri, self.version)

    @property
    def error_response(self) -> tuple[int, str] | None:
        """``(code, reason)`` of the error response RFC 3261 / RFC 4475 ask for, or ``None``.

        ``None`` means the request is well-formed: hand it to the application.
        Runs every check each time it is read; read it once per request.
        """
        try:
            self.validate()
        except SipParseError as error:
            code = error.status or 400
            return code, reason_phrase(code)
        return None


def new_response(code: int, reason: str, version: str = "SIP/2.0") -> Response:
    """A `Response` without headers yet, for the code that builds one.

    The caller sets ``headers``, ``body`` and the keys with `Message._set_fields`.
    (Built by its constructor: mypyc's classes refuse ``object.__new__``.)
    """
    return Response(code, reason, (), b"", version)


class Response(Message):
    """A SIP response: status ``code``, ``reason`` phrase and ``version``."""

    __slots__ = ("code", "reason", "version")

    def __init__(
        self,
        code: int,
        reason: str,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        super().__init__(headers, body)
        self.code = code
        self.reason = reason
        self.version = version

    def start_line(self) -> str:
        """``SIP/2.0 code reason``."""
        return f"{self.version} {self.code} {self.reason}"

    def validate(self) -> None:
        """Check the headers (see :meth:`Message.validate`); errors have no status."""
        try:
            checks._check_headers(self)  # (`check_headers`, without the call in between)
        except SipParseError as error:
            raise SipParseError(error.reason) from None
