"""The stream side of a worker process: adopted TCP, TLS, WS and WSS listening descriptors.

A stream worker is a ``python -m sipsock.workers`` process of the ``stream``
pool (`sipsock.workers.stream_pool`). The control process binds and listens;
every worker adopts the listening descriptor (`StreamSockets.adopt`),
registered with EPOLLEXCLUSIVE so that a new connection wakes one waiting
worker, which accepts it (`ACCEPTS_PER_WAKE` at a time, nginx's
``multi_accept off``: a busy worker does not take a burst of connections
from the idle ones). TLS and WebSocket handshakes, framing, limits and the
application all run here, with the settings of the control process's
frozen `AppSpec` (TLS domains loaded from the same files).

Connections that become ready or close are reported to the control process
once per reactor turn (`ConnectionReporter`, `ConnectionsChanged`), which so
knows which worker holds a peer's connection. The application sees each
stream socket held here as a `RoutedStream`: a send to a peer with a
connection here goes out on it, any other goes through the control process,
which hands it to the worker holding the peer's connection, or to one that
opens it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Final

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger

from sipsock.apps.spec import AppSpec
from sipsock.seams import MessageSink, SocketCounters
from sipsock.sockdef import SocketDef
from sipsock.transport.connections import peer_key
from sipsock.transport.stream import StreamListener
from sipsock.transport.tls import LoadedDomain, TLSDomains, TLSError
from sipsock.workers.commands import WorkerError
from sipsock.workers.connection_directory import ConnectionChange
from sipsock.workers.directory import Relay
from sipsock.workers.epoll import make_exclusive

#: Connections a worker accepts per wake-up of a listening socket. One
#: spreads a burst of connects over the waiting workers (measured in
#: bench/stream.py: the split of 100 connections between two workers).
ACCEPTS_PER_WAKE: Final = 1

#: Where a worker sends its connection reports.
Report = Callable[[list[ConnectionChange]], None]
#: Whether relayed messages to a peer through a socket (name, peer) still wait for
#: their answer (`sipsock.workers.direct.DirectRoutes.waiting`).
Waiting = Callable[[str, tuple[str, int]], bool]


class ConnectionReporter:
    """Collects the connection changes of one reactor turn and reports them together."""

    def __init__(self, reactor: Any, report: Report) -> None:
        self.reactor = reactor
        self.report = report
        self._keys: dict[StreamListener, int] = {}
        self._pending: list[ConnectionChange] = []
        self._call: IDelayedCall | None = None

    def watch(self, listener: StreamListener, key: int) -> None:
        """Report the connections of ``listener`` under the pool's socket ``key``."""
        self._keys[listener] = key
        listener.watcher = self

    def unwatch(self, listener: StreamListener) -> None:
        """No more reports for ``listener`` (released: the control process forgets it)."""
        self._keys.pop(listener, None)
        listener.watcher = None

    def connection_up(self, listener: StreamListener, peer: tuple[str, int], inbound: bool) -> None:
        self._add(listener, ConnectionChange(0, peer, True, inbound))

    def connection_down(
        self, listener: StreamListener, peer: tuple[str, int], inbound: bool
    ) -> None:
        self._add(listener, ConnectionChange(0, peer, False, inbound))

    def _add(self, listener: StreamListener, change: ConnectionChange) -> None:
        key = self._keys.get(listener)
        if key is None:
            return
        self._pending.append(replace(change, key=key))
        if self._call is None:
            self._call = self.reactor.callLater(0, self.flush)

    def flush(self) -> None:
        """Report what is pending now."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        pending, self._pending = self._pending, []
        if pending:
            self.report(pending)


class RoutedStream:
    """A stream socket held by this worker, as its application sees it (a `Listener`).

    ``send`` uses this worker's connection to the peer when it has one;
    otherwise (unless this is the only stream worker) the control process
    routes it to the worker holding the peer's connection, or to one that
    opens it. While earlier messages to the peer through this socket went
    that way and wait for their answer (``waiting``), later ones follow them,
    so none overtakes another.
    """

    def __init__(
        self,
        listener: StreamListener,
        relay: Relay,
        *,
        alone: bool,
        waiting: Waiting | None = None,
    ) -> None:
        self.listener = listener
        self._relay = relay
        self._alone = alone
        self._waiting = waiting

    @property
    def sdef(self) -> SocketDef:
        return self.listener.sdef

    @sdef.setter
    def sdef(self, sdef: SocketDef) -> None:
        self.listener.sdef = sdef

    @property
    def slot(self) -> int | None:
        return self.listener.slot

    @slot.setter
    def slot(self, slot: int | None) -> None:
        self.listener.slot = slot

    @property
    def counters(self) -> SocketCounters:
        return self.listener.counters

    @counters.setter
    def counters(self, counters: SocketCounters) -> None:
        self.listener.counters = counters

    def update(self, sdef: SocketDef) -> None:
        self.listener.update(sdef)

    def stop(self) -> Deferred[None]:
        return self.listener.stop()

    def holds(self, peer: tuple[str, int]) -> bool:
        """Whether `send` would use this worker's own connection to ``peer`` (or open one)."""
        listener = self.listener
        if self._alone or listener.closing:
            return True
        connection = listener.connections_by_peer.get(peer_key(peer))
        return connection is not None

    def send(self, data: bytes, peer: tuple[str, int]) -> Deferred[None]:
        """Send on this worker's connection to ``peer``, else through the control process."""
        listener = self.listener
        if self._alone or listener.closing:
            return listener.send(data, peer)
        name = listener.sdef.socket_text
        waiting = self._waiting
        if waiting is not None and waiting(name, peer):
            return self._relay(name, data, peer)
        connection = listener.connections_by_peer.get(peer_key(peer))
        if connection is not None and connection.open:
            return listener.send(data, peer)
        return self._relay(name, data, peer)

    def fileno(self) -> int:
        return self.listener.fileno()


class StreamSockets:
    """Builds this worker's stream listeners from the spec, and holds its TLS domains.

    Raises `WorkerError` when the spec's TLS domains cannot be loaded.
    """

    log = Logger()

    def __init__(
        self,
        spec: AppSpec,
        sink: MessageSink,
        *,
        reactor: Any,
        relay: Relay,
        report: Report,
        exclusive: bool = True,
        waiting: Waiting | None = None,
    ) -> None:
        settings = spec.settings
        self.settings = settings
        self.sink = sink
        self.reactor = reactor
        self.relay = relay
        self.waiting = waiting
        self.exclusive = exclusive
        self.reporter = ConnectionReporter(reactor, report)
        rule = settings.core.tcp_auto_scaling_profile
        self.alone = (settings.core.tcp_workers if rule is None else rule.max_processes) <= 1
        self.tls: TLSDomains | None = None
        if settings.tls.domains:
            try:
                self.tls = TLSDomains(settings.tls.domains)
            except TLSError as error:
                raise WorkerError(f"[tls] {error}") from None
        self._prepared: dict[str, LoadedDomain] | None = None

    def adopt(
        self, key: int, slot: int | None, fd: int, sdef: SocketDef
    ) -> tuple[StreamListener, RoutedStream]:
        """Accept connections on the listening descriptor ``fd`` (the caller closes it)."""
        settings = self.settings
        tls: Any = None
        if sdef.proto in ("tls", "wss"):
            if self.tls is None:
                raise WorkerError(
                    f"socket {sdef.socket_text}: no TLS domain is configured "
                    "([[tls.domain]] in [tls])"
                )
            try:
                tls = self.tls.context_for(sdef)
            except TLSError as error:
                raise WorkerError(f"socket {sdef.socket_text}: {error.reason}") from None
        options: dict[str, Any] = {
            "reactor": self.reactor,
            "idle_timeout": settings.core.stream_idle_timeout,
            "max_message_size": settings.core.max_message_size,
            "tls": tls,
            "limits": settings.limits,
        }
        listener: StreamListener
        if sdef.proto in ("ws", "wss"):
            from sipsock.transport.ws import WebSocketListener

            listener = WebSocketListener(
                sdef, slot, self.sink, websocket=settings.websocket, **options
            )
        elif sdef.proto in ("tcp", "tls"):
            listener = StreamListener(sdef, slot, self.sink, **options)
        else:
            raise WorkerError(f"socket {sdef.socket_text}: not a stream socket")
        try:
            listener.adopt(fd)
        except OSError as exc:
            raise WorkerError(f"socket {sdef.socket_text}: cannot adopt: {exc}") from exc
        port = listener.port
        if port is not None:
            limit_accepts(port, ACCEPTS_PER_WAKE)
            if self.exclusive:
                make_exclusive(self.reactor, port)
        self.reporter.watch(listener, key)
        routed = RoutedStream(listener, self.relay, alone=self.alone, waiting=self.waiting)
        return listener, routed

    def release(self, listener: StreamListener) -> None:
        """``listener`` is being released: its connections are no longer reported."""
        self.reporter.unwatch(listener)

    # --- tls_reload in two phases ---------------------------------------------------------

    def prepare_tls(self) -> list[tuple[str, str]]:
        """Load every domain again (not served yet); the domains that failed, and why."""
        self._prepared = None
        if self.tls is None:
            return []
        loaded, failed = self.tls.prepare()
        if not failed:
            self._prepared = loaded
        return failed

    def commit_tls(self) -> list[str]:
        """Serve what `prepare_tls` loaded; the names switched (`WorkerError`: nothing prepared)."""
        if self.tls is None:
            return []
        prepared, self._prepared = self._prepared, None
        if prepared is None:
            raise WorkerError("CommitTLS: no prepared TLS domains (PrepareTLS first)")
        return self.tls.commit(prepared)

    def abort_tls(self) -> None:
        """Forget what `prepare_tls` loaded."""
        self._prepared = None


def close_over_cap(listener: StreamListener, peer: tuple[str, int], reason: str) -> bool:
    """Close the accepted connection from ``peer`` that a daemon-wide cap refuses.

    Counted and logged as a hit of the ``connections`` limit; False when no
    such connection is open (closed meanwhile).
    """
    connection = listener.connections_by_peer.get(peer_key(peer))
    if connection is None or not connection.inbound or not connection.open:
        return False
    listener.limit_reporter.hit("connections", f"refused: {reason}", peer)
    connection.open = False
    abort = getattr(connection.transport, "abortConnection", None)
    if abort is not None:
        abort()
    else:
        connection.transport.loseConnection()
    return True


def limit_accepts(port: Any, most: int) -> None:
    """Make a Twisted TCP port accept at most ``most`` connections per wake-up, in turn.

    Twisted raises its per-wake accept count while every accept succeeds
    (``numberAccepts``); it is reset before each read here. After each
    wake-up the port is registered again: the kernel appends an
    EPOLLEXCLUSIVE registration at the end of the socket's wait queue and
    wakes the first idle one, so idle workers take new connections in turn
    (else the first registered worker takes every connection while it is
    idle, and long-lived connections pile up there).
    """
    if not hasattr(port, "numberAccepts"):
        return
    read = port.doRead

    def do_read() -> Any:
        port.numberAccepts = most
        result = read()
        if port.connected:  # still listening: to the end of the queue
            port.stopReading()
            port.startReading()
        return result

    port.numberAccepts = most
    port.doRead = do_read
