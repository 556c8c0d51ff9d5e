"""`Dispatcher`: from raw bytes on a socket to a call of the SIP application.

The protocol-independent core shared by every transport (as Twisted Names'
``DNSServerFactory.messageReceived`` is for DNS over UDP and TCP): parse,
answer what cannot be read when an answer can still be built, stamp
``received``/``rport`` on requests, build the `MessageContext` and call the
application, which can never take the socket down.
"""

from __future__ import annotations

import contextlib
from typing import Final

from twisted.logger import Logger

from sipsock.apps.interface import ISipApplication, MessageContext, NoSockets, SocketDirectory
from sipsock.sip import Request, Response, SipParseError, apply_received, make_response, parse
from sipsock.sip.grammar import REASON_PHRASES
from sipsock.sip.parser import find_header_end
from sipsock.transport.base import Origin

#: Longest parse reason put into a reason phrase.
MAX_REASON_TEXT: Final = 100


def error_phrase(code: int, reason: str, standard: str | None = None) -> str:
    """The reason phrase of an error response: standard phrase, then the reason.

    ``standard`` defaults to the phrase of ``code`` in `REASON_PHRASES`.
    Control characters are replaced and the reason is cut to a bounded length
    so the phrase stays one valid line.
    """
    text = "".join(ch if ch.isprintable() else " " for ch in reason).strip()
    if len(text) > MAX_REASON_TEXT:
        text = text[: MAX_REASON_TEXT - 3] + "..."
    standard = standard or REASON_PHRASES.get(code, "Bad Request")
    return f"{standard} ({text})" if text else standard


def salvage_request(data: bytes) -> Request | None:
    """The start line and headers of a request whose body framing is broken.

    `parse` gives up on a bad Content-Length although the headers are fine;
    this reads the header section alone (Content-Length lines left out) so
    that a 400 can still be built. None when that does not give a request.
    """
    data = data.lstrip(b"\r\n")
    end, _ = find_header_end(data)
    if end < 0:
        return None
    kept = []
    for line in data[:end].split(b"\n"):
        name = line.partition(b":")[0].strip(b" \t").lower()
        if name not in (b"content-length", b"l"):
            kept.append(line.rstrip(b"\r"))
    try:
        message = parse(b"\r\n".join(kept) + b"\r\n\r\n", datagram=True)
    except SipParseError:
        return None
    return message if isinstance(message, Request) else None


def is_answerable(request: Request) -> bool:
    """Whether a response can be built: not an ACK, and Via/From/To/Call-ID/CSeq readable."""
    if request.method == "ACK":
        return False
    try:
        request.top_via  # noqa: B018 (parses the header)
        request.call_id  # noqa: B018
        request.cseq  # noqa: B018
    except SipParseError:
        return False
    return request.get("from") is not None and request.get("to") is not None


#: Transports that carry one whole message per datagram or WebSocket message:
#: Content-Length is optional there (RFC 3261 18.3, RFC 7118 5.1).
WHOLE_MESSAGE_PROTOS = frozenset({"udp", "ws", "wss"})


class Dispatcher:
    """The `MessageSink` of every listener: parses and hands messages to the application.

    A request that cannot be read gets an error response (400, or the status
    the parser asks for, with the reason in the phrase) when its start line
    and Via/From/To/Call-ID/CSeq are readable; otherwise it is dropped and
    counted. Errors raised by the application are logged and counted.
    """

    log = Logger()

    def __init__(
        self,
        app: ISipApplication,
        directory: SocketDirectory | None = None,
        *,
        max_message_size: int = 65535,
    ) -> None:
        self.app = app
        self.directory: SocketDirectory = directory if directory is not None else NoSockets()
        self.max_message_size = max_message_size
        self.parse_errors = 0
        self.app_errors = 0

    def message_received(self, data: bytes, origin: Origin) -> None:
        """Parse ``data`` received as described by ``origin`` and call the application."""
        try:
            message = parse(
                data,
                datagram=origin.sdef.proto in WHOLE_MESSAGE_PROTOS,
                max_size=self.max_message_size,
            )
        except SipParseError as exc:
            request = salvage_request(data) if exc.status is not None else None
            self._reject(origin, request, exc)
            return
        if isinstance(message, Request):
            try:
                message.validate()
            except SipParseError as exc:
                self._reject(origin, message, exc)
                return
            apply_received(message, origin.peer[0], origin.peer[1])
        else:
            try:
                message.validate()
            except SipParseError as exc:
                self._reject(origin, None, exc)
                return
        self._deliver(message, origin)

    def _deliver(self, message: Request | Response, origin: Origin) -> None:
        try:
            self.app.message_received(message, MessageContext(origin, self.directory))
        except Exception:
            self.app_errors += 1
            if origin.listener is not None:
                origin.listener.counters.drops += 1
            self.log.failure(
                "socket {socket} (slot {slot}): the application failed on a message "
                "from {peer}: {what}",
                socket=origin.sdef.socket_text,
                slot=origin.slot,
                peer=origin.peer,
                what=_describe(message),
            )

    def _reject(self, origin: Origin, request: Request | None, exc: SipParseError) -> None:
        self.parse_errors += 1
        if origin.listener is not None:
            origin.listener.counters.parse_errors += 1
        if request is None or not is_answerable(request):
            self.log.info(
                "socket {socket} (slot {slot}): message from {peer} dropped: {reason}",
                socket=origin.sdef.socket_text,
                slot=origin.slot,
                peer=origin.peer,
                reason=exc.reason,
            )
            return
        code = exc.status or 400
        with contextlib.suppress(SipParseError):
            apply_received(request, origin.peer[0], origin.peer[1])
        response = make_response(request, code, error_phrase(code, exc.reason))
        self.log.info(
            "socket {socket} (slot {slot}): {method} from {peer} answered {code}: {reason}",
            socket=origin.sdef.socket_text,
            slot=origin.slot,
            peer=origin.peer,
            method=request.method,
            code=code,
            reason=exc.reason,
        )
        origin.reply(bytes(response))


def _describe(message: Request | Response) -> str:
    if isinstance(message, Request):
        return f"{message.method} {message.uri}"
    return f"response {message.code} {message.reason}"
