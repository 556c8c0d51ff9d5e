"""Types shared by every transport, and `open_listener`.

A *listener* is one open SIP socket: a UDP port, or a stream (TCP, later TLS
and WS) listening port with its connections. Whatever the transport, every
received message goes to one `MessageSink` as raw bytes with an `Origin` that
says which socket it came in on, from which peer, and how to answer it. The
sink (the application dispatcher) never sees a Twisted transport.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, Protocol

from twisted.logger import Logger, LogLevel

from sipsock.limits import DEFAULT_LOG_INTERVAL, LimitLog, Summary
from sipsock.sockdef import SocketDef

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from sipsock.config import LimitSettings, WebSocketSettings
    from sipsock.transport.tls import TLSDomains

#: Largest datagram the reactor reads; SIP over UDP may use all of it.
MAX_DATAGRAM_SIZE = 65535


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a received message came from.

    ``sdef`` and ``slot`` name the receiving socket as it was when the message
    arrived; ``peer`` is the sender's (host, port); ``reply(data)`` sends bytes
    back the way the message came (same UDP socket to the same address, or the
    same stream connection). ``connection_id`` is set for stream transports and
    unique in the process. ``listener`` is the receiving listener, for sending
    new messages from the same socket.
    """

    sdef: SocketDef
    slot: int | None
    peer: tuple[str, int]
    reply: Callable[[bytes], None]
    connection_id: int | None = None
    listener: Listener | None = None


class MessageSink(Protocol):
    """Whatever consumes the messages of a listener (the application dispatcher).

    A sink may also have ``message_unframeable(header, error, origin)``: a
    stream connection calls it with the header section of a message it
    cannot frame (``error``: the `SipFramingError`, with the status to
    answer) before closing, so a request can still get its 400 or 513.
    """

    def message_received(self, data: bytes, origin: Origin) -> None:
        """One whole SIP message (not yet parsed) arrived on a socket."""


class ListenError(Exception):
    """A socket that cannot be opened, with a reason a person can act on.

    ``str(error)`` is ``"<proto:host:port>: <reason>"``.
    """

    def __init__(self, sdef: SocketDef, reason: str) -> None:
        self.sdef = sdef
        self.reason = reason
        super().__init__(f"{sdef.socket_text}: {reason}")


@dataclass
class SocketCounters:
    """Traffic counters of one socket (all its connections for a stream socket).

    ``received``/``sent`` count SIP messages, ``replies_in``/``replies_out``
    the responses among them (the rest are requests), ``bytes_in``/``bytes_out`` raw
    bytes, ``parse_errors`` messages or streams that could not be read,
    ``drops`` messages thrown away for any other reason (a failed send, a reply
    to a closed connection, an application error), ``connections`` the stream
    connections open right now, ``handshake_failures`` connections closed
    because their TLS or WebSocket opening handshake failed. The ``limit_*``
    counters are the hits of each limit of `sipsock.limits.LIMITS`: messages
    above the size limit (``limit_oversize``), connections refused over the
    per-socket or per-IP cap (``limit_connections``), connections cut by the
    header timeout (``limit_header_timeout``) or for not reading their
    output (``limit_send_buffer``), outbound connects refused because the
    pool was full (``limit_outbound``).
    """

    received: int = 0
    sent: int = 0
    replies_in: int = 0
    replies_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    parse_errors: int = 0
    drops: int = 0
    connections: int = 0
    handshake_failures: int = 0
    limit_oversize: int = 0
    limit_connections: int = 0
    limit_header_timeout: int = 0
    limit_send_buffer: int = 0
    limit_outbound: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters by name, for the MI."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def count_in(self, data: bytes) -> None:
        """One SIP message received (a response when it starts with the SIP version)."""
        self.received += 1
        if data.startswith(b"SIP/"):
            self.replies_in += 1

    def count_out(self, data: bytes) -> None:
        """One SIP message sent: ``sent``, ``replies_out`` and ``bytes_out``."""
        self.sent += 1
        self.bytes_out += len(data)
        if data.startswith(b"SIP/"):
            self.replies_out += 1


class LimitedSocket(Protocol):
    """What a `LimitReporter` reads from its socket (any listener)."""

    sdef: SocketDef
    slot: int | None
    counters: SocketCounters


class PeriodicLog:
    """Which hits to log in full, and one summary per period for the others.

    ``hit(key)`` is True for a hit to log in full: the first of ``key`` since
    it was last quiet for a whole period (`sipsock.limits.LimitLog`'s rule).
    The other hits are only counted; a timer on ``clock`` hands each key's
    `Summary` to ``summarize`` once its period ends. `stop` hands over what
    is left and cancels the timer.
    """

    def __init__(self, clock: Any, interval: float, summarize: Callable[[Summary], None]) -> None:
        self.clock = clock
        self.rules = LimitLog(interval)
        self._summarize = summarize
        self._call: Any = None

    @property
    def interval(self) -> float:
        """Seconds between two log lines about the same key."""
        return self.rules.interval

    def hit(self, key: Hashable) -> bool:
        """Note one hit of ``key``; True when it should be logged in full."""
        if not self.rules.hit(key, self.clock.seconds()):
            return False
        self._schedule()
        return True

    def _schedule(self) -> None:
        due = self.rules.next_due()
        if self._call is not None or due is None:
            return
        self._call = self.clock.callLater(max(0.0, due - self.clock.seconds()), self._flush)

    def _flush(self, *, final: bool = False) -> None:
        self._call = None
        for summary in self.rules.flush(self.clock.seconds(), closing=final):
            self._summarize(summary)
        if not final:
            self._schedule()

    def stop(self) -> None:
        """Summarize the hits not logged yet, cancel the timer."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if len(self.rules):
            self._flush(final=True)


class LimitReporter:
    """Counts every limit hit of one socket and logs them, rate-limited; folds other
    repeated problems the same way.

    The first hit of a limit is logged with its reason; later hits of the
    same limit within ``interval`` seconds are only counted, and summed up in
    one line per period ("N more in the last 60 s") by a `PeriodicLog` on
    ``reactor``. `problem` does the same for anything else a peer can cause
    once per packet or connection (a reply the kernel refuses, a broken
    stream, a failed handshake): the first of each kind is logged in full,
    the rest are folded into the same periodic summaries. `stop` logs what is
    left and cancels the timer. Memory: one entry per limit or kind seen in
    the current period.
    """

    log = Logger()

    def __init__(
        self, owner: LimitedSocket, reactor: Any, interval: float = DEFAULT_LOG_INTERVAL
    ) -> None:
        self.owner = owner
        self.periods = PeriodicLog(reactor, interval, self._summarize)
        #: The level each problem kind was first logged at (its summaries use it too).
        self._levels: dict[str, LogLevel] = {}

    def hit(self, limit: str, reason: str, peer: tuple[str, int] | None = None) -> None:
        """One hit of ``limit`` (a name of `LIMITS`): count it, log it unless it is a repeat."""
        owner = self.owner
        name = f"limit_{limit}"
        setattr(owner.counters, name, getattr(owner.counters, name) + 1)
        if not self.periods.hit(limit):
            return
        self.log.warn(
            "socket {socket} (slot {slot}): limit {limit} hit{source}: {reason} "
            "(repeats are summed up every {interval:g} s)",
            socket=owner.sdef.socket_text,
            slot=owner.slot,
            limit=limit,
            source=f" by {peer[0]}:{peer[1]}" if peer is not None else "",
            reason=reason,
            interval=self.periods.interval,
        )

    def problem(
        self,
        kind: str,
        format: str,
        *,
        level: LogLevel = LogLevel.warn,
        traceback: bool = False,
        **fields: Any,
    ) -> bool:
        """One problem of ``kind`` (a plural noun, "send failures"): log ``format`` (with
        ``socket`` and ``slot`` given) unless it is a repeat; whether it was logged.

        ``kind`` must come from a fixed set (never a peer or a reason): it keys
        the folding, and each key costs memory until a quiet period ends it.
        ``traceback``: called in an ``except`` block, the line carries the
        exception being handled.
        """
        owner = self.owner
        if not self.periods.hit(_Problem(kind)):
            return False
        self._levels[kind] = level
        format += " (more {kind} are summed up every {interval:g} s)"
        fields.update(
            socket=owner.sdef.socket_text,
            slot=owner.slot,
            kind=kind,
            interval=self.periods.interval,
        )
        if traceback:
            self.log.failure(format, None, level, **fields)
        else:
            self.log.emit(level, format, **fields)
        return True

    def _summarize(self, summary: Summary) -> None:
        if isinstance(summary.key, _Problem):
            kind = summary.key.kind
            self.log.emit(
                self._levels.get(kind, LogLevel.warn),
                "socket {socket} (slot {slot}): {count} more {kind} in the last {seconds:.3g} s",
                socket=self.owner.sdef.socket_text,
                slot=self.owner.slot,
                kind=kind,
                count=summary.suppressed,
                seconds=summary.seconds,
            )
            return
        self.log.warn(
            "socket {socket} (slot {slot}): limit {limit} hit {count} more times "
            "in the last {seconds:.3g} s",
            socket=self.owner.sdef.socket_text,
            slot=self.owner.slot,
            limit=summary.key,
            count=summary.suppressed,
            seconds=summary.seconds,
        )

    def stop(self) -> None:
        """The socket is closing: log the hits not logged yet, cancel the timer."""
        self.periods.stop()


@dataclass(frozen=True)
class _Problem:
    """The folding key of a problem kind (apart from the limits' names)."""

    kind: str


class Closing:
    """Deferreds that all fire once, when something has finished closing."""

    def __init__(self) -> None:
        self.done = False
        self._waiters: list[Deferred[None]] = []

    def wait(self) -> Deferred[None]:
        """A new Deferred that fires when `fire` is (or was) called."""
        from twisted.internet.defer import Deferred, succeed

        if self.done:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def fire(self) -> None:
        """Fire every waiter, now and later."""
        self.done = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)


def stop_port(port: Any) -> Deferred[None]:
    """``port.stopListening()`` as a Deferred that fires with None (or the error)."""
    from twisted.internet.defer import Deferred, fail, succeed

    try:
        result = port.stopListening()
    except Exception:
        return fail()
    if isinstance(result, Deferred):
        return result.addCallback(lambda _: None)
    return succeed(None)


class Listener(Protocol):
    """One open SIP socket, whatever its transport.

    ``update`` takes a definition with the same ``endpoint`` and applies the
    new tag, advertised address, tos and frag flag to the next message, on the
    same descriptor. ``stop`` stops reading (or accepting), flushes and closes
    every stream connection and fires once the port is closed. ``send`` sends
    bytes to a peer from this socket (a stream socket reuses a connection to
    that peer, or connects from this socket's address).
    """

    sdef: SocketDef
    slot: int | None
    counters: SocketCounters

    def update(self, sdef: SocketDef) -> Deferred[None] | None:
        """Apply a new definition of the same endpoint in place.

        Raises ValueError for another endpoint, `ListenError` when the kernel
        refuses the new options. A listener served by other processes returns
        a Deferred that fires once every one of them applied it.
        """

    def stop(self) -> Deferred[None]:
        """Close the socket (and its connections); fires when it is closed."""

    def send(self, data: bytes, peer: tuple[str, int]) -> Deferred[None]:
        """Send one message to ``peer`` from this socket."""

    def fileno(self) -> int:
        """The descriptor of the port (UDP socket or listening stream socket)."""


def open_listener(
    sdef: SocketDef,
    slot: int | None,
    sink: MessageSink,
    *,
    reactor: Any = None,
    idle_timeout: float = 180.0,
    max_message_size: int = 65535,
    tls: TLSDomains | None = None,
    websocket: WebSocketSettings | None = None,
    limits: LimitSettings | None = None,
) -> Listener:
    """Bind ``sdef`` and start serving it; returns the running listener.

    Binding is synchronous: a socket that cannot be opened raises
    `ListenError` before anything reaches the reactor. UDP sockets are created
    here and adopted by the reactor; stream sockets are created, bound and put
    to listen here, then adopted. TLS and WSS sockets take their certificates
    from ``tls`` (no domain serving the socket is a `ListenError` saying so);
    WS and WSS sockets follow ``websocket`` (origins, keep-alive). ``limits``
    (`sipsock.config.LimitSettings`: message sizes per transport, connection
    caps, header timeout, pending-send buffer, outbound pool) default to
    `LimitSettings()` with sizes capped by ``max_message_size``.
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    if sdef.proto == "udp":
        from sipsock.transport.udp import open_udp_listener

        udp_size = max_message_size if limits is None else limits.max_udp_message_size
        return open_udp_listener(
            sdef,
            slot,
            sink,
            reactor=reactor,
            max_message_size=min(udp_size, max_message_size),
            log_interval=DEFAULT_LOG_INTERVAL if limits is None else limits.log_interval,
        )
    binding = _tls_binding(sdef, tls) if sdef.proto in ("tls", "wss") else None
    if sdef.proto in ("tcp", "tls"):
        from sipsock.transport.stream import open_tcp_listener

        return open_tcp_listener(
            sdef,
            slot,
            sink,
            reactor=reactor,
            idle_timeout=idle_timeout,
            max_message_size=max_message_size,
            tls=binding,
            limits=limits,
        )
    if sdef.proto in ("ws", "wss"):
        from sipsock.transport.ws import open_ws_listener

        return open_ws_listener(
            sdef,
            slot,
            sink,
            reactor=reactor,
            idle_timeout=idle_timeout,
            max_message_size=max_message_size,
            websocket=websocket,
            tls=binding,
            limits=limits,
        )
    raise ListenError(sdef, f"protocol {sdef.proto} is not supported")


def _tls_binding(sdef: SocketDef, tls: TLSDomains | None) -> Any:
    """The TLS side of a TLS/WSS socket; `ListenError` when no domain serves it."""
    from sipsock.transport.tls import TLSError

    if tls is None:
        raise ListenError(sdef, "no TLS domain is configured ([[tls.domain]] in [tls])")
    try:
        return tls.context_for(sdef)
    except TLSError as error:
        raise ListenError(sdef, error.reason) from None
