"""`Dispatcher`: from raw bytes on a socket to a call of the SIP application.

The protocol-independent core shared by every transport (as Twisted Names'
``DNSServerFactory.messageReceived`` is for DNS over UDP and TCP): parse,
answer what cannot be read when an answer can still be built, stamp
``received``/``rport`` on requests, build the `MessageContext` and call the
application, which can never take the socket down.
"""

from __future__ import annotations

import contextlib
from typing import Final, cast

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from sipsock.addresses import join_host_port
from sipsock.apps.interface import (
    IAnswersOptions,
    ISipApplication,
    MessageContext,
    NoSockets,
    SocketDirectory,
)
from sipsock.limits import DEFAULT_LOG_INTERVAL, Summary
from sipsock.logevents import logger_of
from sipsock.seams import Origin
from sipsock.sip import Request, Response, SipParseError, apply_received, make_response, parse
from sipsock.sip.grammar import reason_phrase
from sipsock.sip.memo import Memo
from sipsock.sip.options_answer import OptionsReply, answer_options
from sipsock.sip.options_memo import OptionsMemo
from sipsock.sip.parser import find_header_end
from sipsock.sockdef import SocketDef
from sipsock.transport.base import PeriodicLog

_new: Final = object.__new__

#: Longest parse reason put into a reason phrase.
MAX_REASON_TEXT: Final = 100
#: Largest `OptionsReply` remembered per socket (a larger one is asked for each time).
MAX_REPLY_SIZE: Final = 64 * 1024


def error_phrase(code: int, reason: str, standard: str | None = None) -> str:
    """The reason phrase of an error response: standard phrase, then the reason.

    ``standard`` defaults to the standard phrase of ``code`` (`reason_phrase`).
    Control characters are replaced and the reason is cut to a bounded length
    so the phrase stays one valid line.
    """
    text = "".join(ch if ch.isprintable() else " " for ch in reason).strip()
    if len(text) > MAX_REASON_TEXT:
        text = text[: MAX_REASON_TEXT - 3] + "..."
    standard = standard or reason_phrase(code)
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


#: Longest parse reason written into a log line (a reason may quote the bad value).
MAX_LOGGED_REASON: Final = 200


def loggable_reason(reason: str) -> str:
    """``reason`` cut to `MAX_LOGGED_REASON` characters for a log line."""
    if len(reason) <= MAX_LOGGED_REASON:
        return reason
    return f"{reason[:MAX_LOGGED_REASON]}... ({len(reason)} characters)"


#: Transports that carry one whole message per datagram or WebSocket message:
#: Content-Length is optional there (RFC 3261 18.3, RFC 7118 5.1).
WHOLE_MESSAGE_PROTOS: Final = frozenset({"udp", "ws", "wss"})


class Dispatcher:
    """The `MessageSink` of every listener: parses and hands messages to the application.

    A request that cannot be read gets an error response (400, or the status
    the parser asks for, with the reason in the phrase) when its start line
    and Via/From/To/Call-ID/CSeq are readable; otherwise it is dropped and
    counted. Errors raised by the application are logged and counted.

    On every transport, a well-formed OPTIONS is answered at once from its bytes
    (`answer_datagram`, `sipsock.sip.options_answer.answer_options`) when
    the application provides `IAnswersOptions` and gives its fixed reply for
    the socket (`options_reply`); what that shortcut remembers is kept in
    ``options_memo``, one bounded `OptionsMemo` per dispatcher.
    """

    log: Logger

    def __init__(
        self,
        app: ISipApplication,
        directory: SocketDirectory | None = None,
        *,
        max_message_size: int = 65535,
        clock: IReactorTime | None = None,
        log_interval: float = DEFAULT_LOG_INTERVAL,
    ) -> None:
        self.log = logger_of(self)  # (a compiled class holds no ``log = Logger()``)
        if clock is None:
            from twisted.internet import reactor

            clock = cast(IReactorTime, reactor)
        # A scanner or a garbage flood must not become a flood of log lines:
        # the first unreadable message of a socket in a period is logged, the
        # others only counted (parse_errors) and summed up once per period.
        self.rejects = PeriodicLog(clock, log_interval, self._summarize_rejects)
        # Likewise a message that makes the application raise, sent again and again.
        self.failures = PeriodicLog(clock, log_interval, self._summarize_failures)
        self.app = app
        self.directory: SocketDirectory = directory if directory is not None else NoSockets()
        self.max_message_size = max_message_size
        self.parse_errors = 0
        self.app_errors = 0
        #: What the OPTIONS shortcut remembers (lines, layouts, templates), bounded.
        self.options_memo = OptionsMemo()
        #: The application's `OptionsReply` (or None) per socket definition asked for.
        self._replies: Memo[SocketDef, OptionsReply | None] = Memo(max_item=MAX_REPLY_SIZE)
        #: The socket definition of the last datagram offered, and its reply.
        self._last_sdef: SocketDef | None = None
        self._last_reply: OptionsReply | None = None
        #: The replies asked for, by the identity of the socket definition:
        #: ``id(sdef)`` to ``(sdef, reply)``, for datagrams that alternate
        #: between sockets (a proxy's requests on one, responses on another):
        #: an ``int`` key hashes in C, a `SocketDef` through its Python
        #: ``__hash__``. Bounded with ``_replies`` (emptied with it).
        self._reply_of_id: dict[int, tuple[SocketDef, OptionsReply | None]] = {}

    def options_reply(self, sdef: SocketDef) -> OptionsReply | None:
        """The application's fixed 200 to OPTIONS on the socket ``sdef``, or None.

        None unless the application provides `IAnswersOptions` and gives one
        for this socket; then every well-formed OPTIONS on the socket may be
        answered with it, and everything else still comes through
        `message_received`.
        """
        if not IAnswersOptions.providedBy(self.app):
            return None
        reply: OptionsReply | None = self.app.options_reply(sdef)
        return reply

    def answer_datagram(self, data: bytes, peer: tuple[str, int], sdef: SocketDef) -> bytes | None:
        """The 200 to a well-formed OPTIONS received on the socket ``sdef``, or None.

        ``data`` is a datagram or a whole message cut from a stream.

        The bytes `message_received` would send (`answer_options`), without
        parsing the datagram or calling the application; None for anything
        else (another method, anything unusual, an application without the
        shortcut), which then goes to `message_received`.
        """
        if sdef is self._last_sdef:
            reply = self._last_reply
        else:
            known = self._reply_of_id.get(id(sdef))
            reply = known[1] if known is not None and known[0] is sdef else self._reply_for(sdef)
            self._last_sdef = sdef
            self._last_reply = reply
        if reply is None:
            return None
        # (`answer_options` declines anything but an OPTIONS first.)
        return answer_options(
            data, peer[0], peer[1], reply, self.options_memo, self.max_message_size
        )

    def _reply_for(self, sdef: SocketDef) -> OptionsReply | None:
        """`options_reply`, asked once per socket definition (a failure logged, then None)."""
        if sdef in self._replies:
            reply = self._replies[sdef]
        else:
            try:
                reply = self.options_reply(sdef)
            except Exception:
                reply = None
                self.log.failure(
                    "socket {socket}: no OPTIONS shortcut, the application failed to give "
                    "its reply; every OPTIONS on it goes to the application",
                    socket=sdef.socket_text,
                )
            size = len(reply.tail) + len(reply.salt) if reply is not None else 0
            self._replies.remember(sdef, reply, size + len(sdef.socket_text))
        if len(self._reply_of_id) >= len(self._replies):
            self._reply_of_id.clear()  # (definitions replaced by reloads, or a full memo)
        self._reply_of_id[id(sdef)] = (sdef, reply)
        return reply

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
        # `MessageContext(origin, self.directory)`, without its ``__init__`` frame.
        context = _new(MessageContext)
        context.origin = origin
        context.directory = self.directory
        try:
            self.app.message_received(message, context)
        except Exception:
            self._app_failed(message, origin)

    def _app_failed(self, message: Request | Response, origin: Origin) -> None:
        """Count and log (bounded) that the application raised on ``message``."""
        self.app_errors += 1
        if origin.listener is not None:
            origin.listener.counters.drops += 1
        if not self.failures.hit((origin.sdef.socket_text, origin.slot)):
            return
        self.log.failure(
            "socket {socket} (slot {slot}): the application failed on a message "
            "from {peer}: {what} (more are summed up every {interval:g} s)",
            socket=origin.sdef.socket_text,
            slot=origin.slot,
            peer=origin.peer,
            what=_describe(message),
            interval=self.failures.interval,
        )

    def _reject(self, origin: Origin, request: Request | None, exc: SipParseError) -> None:
        self.parse_errors += 1
        if origin.listener is not None:
            origin.listener.counters.parse_errors += 1
        logged = self.rejects.hit((origin.sdef.socket_text, origin.slot))
        if request is None or not is_answerable(request):
            if logged:
                self._log_reject(origin, f"message from {_peer(origin)} dropped", exc)
            return
        code = exc.status or 400
        if logged:
            outcome = f"{request.method} from {_peer(origin)} answered {code}"
            self._log_reject(origin, outcome, exc)
        origin.reply(_error_response(request, origin, code, exc.reason))

    def message_unframeable(self, header: bytes, error: SipParseError, origin: Origin) -> bool:
        """Answer a stream message that cannot be framed; whether an answer was sent.

        ``header`` is its header section and ``error`` the framer's (with the
        status to answer: 400 for a broken Content-Length, 513 for a message
        above the size limit). A request whose Via/From/To/Call-ID/CSeq are
        readable gets that status with the reason in the phrase; anything
        else gets nothing. The transport counts, logs and closes the
        connection either way.
        """
        if error.status is None:
            return False
        request = salvage_request(header)
        if request is None or not is_answerable(request):
            return False
        origin.reply(_error_response(request, origin, error.status, error.reason))
        return True

    def _log_reject(self, origin: Origin, outcome: str, exc: SipParseError) -> None:
        self.log.info(
            "socket {socket} (slot {slot}): {outcome}: {reason} "
            "(more are summed up every {interval:g} s)",
            socket=origin.sdef.socket_text,
            slot=origin.slot,
            peer=origin.peer,
            outcome=outcome,
            reason=loggable_reason(exc.reason),
            interval=self.rejects.interval,
        )

    def _summarize_rejects(self, summary: Summary) -> None:
        socket, slot = cast(tuple[str, int | None], summary.key)
        self.log.info(
            "socket {socket} (slot {slot}): {count} more unreadable messages "
            "in the last {seconds:.3g} s",
            socket=socket,
            slot=slot,
            count=summary.suppressed,
            seconds=summary.seconds,
        )

    def _summarize_failures(self, summary: Summary) -> None:
        socket, slot = cast(tuple[str, int | None], summary.key)
        self.log.critical(
            "socket {socket} (slot {slot}): the application failed on {count} more messages "
            "in the last {seconds:.3g} s",
            socket=socket,
            slot=slot,
            count=summary.suppressed,
            seconds=summary.seconds,
        )


def _error_response(request: Request, origin: Origin, code: int, reason: str) -> bytes:
    """The bytes of the error response ``code`` to ``request`` received from ``origin``."""
    with contextlib.suppress(SipParseError):
        apply_received(request, origin.peer[0], origin.peer[1])
    return bytes(make_response(request, code, error_phrase(code, reason)))


def _peer(origin: Origin) -> str:
    return join_host_port(origin.peer[0], origin.peer[1])


def _describe(message: Request | Response) -> str:
    if isinstance(message, Request):
        return f"{message.method} {message.uri}"
    return f"response {message.code} {message.reason}"
