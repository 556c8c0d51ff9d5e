"""``StreamFramer``: cut a TCP/TLS byte stream into SIP messages."""

from __future__ import annotations

import re
from typing import Final

from sipsock.sip.errors import FramingKind, SipFramingError
from sipsock.sip.grammar import parse_number
from sipsock.sip.parser import find_header_end

#: RFC 5626 keep-alive ping; the caller answers it with a single CRLF (pong).
KEEPALIVE_PING: Final = b"\r\n\r\n"

_content_lengths: Final = re.compile(
    rb"^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.I | re.M
).findall
#: The same values in a header section not starting with one: the pattern
#: without ``^`` (which re tries at every position) finds them much sooner.
_content_lengths_after_line_end: Final = re.compile(
    rb"\n(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.I
).findall


class StreamFramer:
    """Split a byte stream into complete messages by Content-Length.

    Feed it every read; it returns the complete messages (``bytes``, ready for
    ``parse(..., datagram=False)``) and keeps the rest for the next read.  A
    CRLFCRLF keep-alive ping between messages comes out as
    :data:`KEEPALIVE_PING`; a lone CRLF (a pong) is dropped.  Limits and
    unframeable input raise :class:`SipFramingError`: close the connection.
    """

    def __init__(self, max_message_size: int = 65535, max_header_size: int = 16384) -> None:
        self.max_message_size = max_message_size
        self.max_header_size = max_header_size
        self._buffer = bytearray()
        # Where the search for the end of the pending header section resumes,
        # and the length of the pending message once its header is read: a
        # peer that sends one byte per segment must not make every read scan
        # (and copy) the whole header section again.
        self._scan_from = 0
        self._total: int | None = None

    @property
    def pending(self) -> int:
        """Bytes received but not yet returned as a message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data`` and return every message it completes, in order.

        A message that cannot be framed raises :class:`SipFramingError`
        whose ``messages`` are the messages cut before it (from this read):
        deliver them, then answer the bad one and close. The framer is
        empty afterwards.
        """
        pending = self._buffer
        # With nothing pending (the usual read: whole messages), the read is
        # cut as it is: no copy into the buffer, a read holding exactly one
        # message comes back as the same object.
        buffer: bytes | bytearray
        if pending:
            pending += data
            buffer = pending
        else:
            buffer = data
        messages: list[bytes] = []
        position = 0
        size = len(buffer)
        try:
            while position < size:
                total = self._total
                if total is None:
                    if buffer[position] in b"\r\n":
                        if buffer.startswith(KEEPALIVE_PING, position):
                            messages.append(KEEPALIVE_PING)
                            position += 4
                            continue
                        if buffer.startswith(b"\r\n", position):
                            if size - position < 4 and KEEPALIVE_PING.startswith(buffer[position:]):
                                break
                            position += 2
                            continue
                        if buffer[position] == 0x0D and size - position == 1:
                            break
                        position += 1
                        continue
                    end, body_start = find_header_end(buffer, max(position, self._scan_from))
                    if end < 0:
                        if size - position > self.max_header_size:
                            raise SipFramingError(
                                f"header section above {self.max_header_size} bytes",
                                kind=FramingKind.OVERSIZE_HEADER,
                            )
                        # An empty line is at most 3 bytes: one ending later starts
                        # in the last 2 bytes at the earliest.
                        self._scan_from = max(position, size - 2)
                        break
                    self._scan_from = 0
                    total = self._message_size(buffer, position, end, body_start)
                if size - position < total:
                    self._total = total
                    break
                self._total = None
                message = buffer[position : position + total]
                messages.append(message if type(message) is bytes else bytes(message))
                position += total
        except SipFramingError as exc:
            exc.messages = messages
            pending.clear()
            self._scan_from = 0
            self._total = None
            raise
        if buffer is pending:
            del pending[:position]
        elif position < size:
            pending += memoryview(data)[position:]
        if self._scan_from:
            self._scan_from -= position
        return messages

    def _message_size(
        self, buffer: bytes | bytearray, position: int, end: int, body_start: int
    ) -> int:
        """The size of the message whose header section is ``buffer[position:body_start]``."""
        if body_start - position > self.max_header_size:
            raise SipFramingError(
                f"header section above {self.max_header_size} bytes",
                kind=FramingKind.OVERSIZE_HEADER,
            )
        header = bytes(buffer[position:end])
        first_line_end = header.find(b"\n")
        if header.find(b"SIP/", 0, len(header) if first_line_end < 0 else first_line_end) < 0:
            raise SipFramingError(
                "stream does not start with a SIP start line", kind=FramingKind.NOT_SIP
            )
        try:
            total = body_start - position + self._content_length(header)
        except SipFramingError as exc:
            exc.header = bytes(buffer[position:body_start])
            raise
        if total > self.max_message_size:
            raise SipFramingError(
                f"message of {total} bytes above {self.max_message_size}",
                kind=FramingKind.OVERSIZE_MESSAGE,
                status=513,
                header=bytes(buffer[position:body_start]),
            )
        return total

    @staticmethod
    def _content_length(header: bytes) -> int:
        # A Content-Length line follows a line end (the start line comes
        # first); only a start line that itself looks like one needs the
        # pattern anchored at the start too.
        if header[:1] in b"cClL":
            values = set(_content_lengths(header))
        else:
            found = _content_lengths_after_line_end(header)
            if len(found) == 1:
                value = found[0].strip()
                if value.isdigit() and len(value) < 10:
                    return int(value)
            values = set(found)
        if not values:
            raise SipFramingError(
                "no Content-Length on a stream transport",
                kind=FramingKind.NO_CONTENT_LENGTH,
                status=400,
            )
        if len(values) > 1:
            raise SipFramingError(
                "conflicting Content-Length headers",
                kind=FramingKind.CONFLICTING_CONTENT_LENGTH,
                status=400,
            )
        value = values.pop().strip()
        length = parse_number(value.decode("latin-1"))
        if length is None:
            raise SipFramingError(
                f"malformed Content-Length {value[:20]!r}",
                kind=FramingKind.BAD_CONTENT_LENGTH,
                status=400,
            )
        return length
