"""The one exception type of the SIP domain, and its framing subclass."""

from __future__ import annotations

import enum


class FramingKind(enum.Enum):
    """Why a byte stream could not be cut into messages (`SipFramingError.kind`)."""

    #: A header section longer than the framer's ``max_header_size``.
    OVERSIZE_HEADER = "oversize header"
    #: A message (header section plus Content-Length) above ``max_message_size``.
    OVERSIZE_MESSAGE = "oversize message"
    #: The stream does not start with a SIP start line.
    NOT_SIP = "not SIP"
    #: A message without Content-Length (required on a stream transport).
    NO_CONTENT_LENGTH = "no Content-Length"
    #: Content-Length headers with different values.
    CONFLICTING_CONTENT_LENGTH = "conflicting Content-Length"
    #: A Content-Length that is not a number.
    BAD_CONTENT_LENGTH = "bad Content-Length"

    @property
    def is_size_limit(self) -> bool:
        """Whether this is a size limit hit (the rest is broken framing)."""
        return self in (FramingKind.OVERSIZE_HEADER, FramingKind.OVERSIZE_MESSAGE)


class SipParseError(Exception):
    """Bytes or a header value that are not valid SIP.

    ``reason`` says what is wrong, for a human; ``str(error) == reason``.
    ``status`` is the response code RFC 3261 / RFC 4475 ask for when the
    offending message is a request that can still be answered (400, 416,
    501, 505), else ``None`` (drop it silently).
    """

    def __init__(self, reason: str, *, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status

    def __str__(self) -> str:
        return self.reason


class SipFramingError(SipParseError):
    """A byte stream that cannot be split into messages any more.

    Raised by :class:`~sipsock.sip.framer.StreamFramer` when a header section
    or a message exceeds its limit, when Content-Length is missing, negative,
    not a number or given twice with different values, or when the stream does
    not start with a SIP start line.  Framing is lost: close the connection.

    ``header`` is the header section of the message that could not be framed
    (through its empty line) when it was read whole: a Content-Length that is
    missing, broken or too large. With ``status`` (400, or 513 for a message
    above the size limit) a request can still be answered before closing.

    ``kind`` (a `FramingKind`) says which of these it is, for code; ``reason``
    says it for a human.

    ``messages`` are the whole messages the framer cut before the failing
    one from the same read (set by the framer): they are valid and must be
    delivered before the close.
    """

    def __init__(
        self,
        reason: str,
        *,
        kind: FramingKind,
        status: int | None = None,
        header: bytes | None = None,
    ) -> None:
        super().__init__(reason, status=status)
        self.kind = kind
        self.header = header
        self.messages: list[bytes] = []
