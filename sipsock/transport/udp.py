"""SIP over UDP: one datagram is one message.

The socket is created and bound by `sipsock.transport.sockopts.bind_socket`
and handed to the reactor with ``adoptDatagramPort`` (which duplicates the
descriptor). `adopt_udp_listener` takes any bound descriptor, so a UDP worker
process can serve a descriptor passed to it by the control process exactly as
the control process serves its own.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from twisted.internet import base, defer, udp
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort
from twisted.internet.posixbase import PosixReactorBase
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger, LogLevel

from sipsock.limits import DEFAULT_LOG_INTERVAL
from sipsock.seams import ListenError, MessageSink, SocketCounters
from sipsock.sockdef import SocketDef
from sipsock.transport.base import MAX_DATAGRAM_SIZE, Closing, LimitReporter, stop_port
from sipsock.transport.datagrams import (
    READS_PER_WAKE,
    Address,
    DatagramPath,
    address_family,
    describe_send_error,
    read_burst,
)
from sipsock.transport.sockopts import (
    apply_update_fd,
    bind_socket,
    check_same_endpoint,
    describe_os_error,
    family_of,
)

__all__ = [
    "READS_PER_WAKE",
    "SipDatagramProtocol",
    "SipUdpPort",
    "UdpListener",
    "address_family",
    "adopt_udp_listener",
    "describe_send_error",
    "open_udp_listener",
]


class SipUdpPort(udp.Port):
    """Twisted's UDP port with a read loop for a busy SIP socket.

    Twisted's ``doRead`` looks up the socket, the protocol and the address
    family again and sums the bytes read for every datagram; this loop binds
    them once per wake-up and reads at most `READS_PER_WAKE` datagrams,
    asking the kernel whether a second one is queued rather than failing a
    ``recvfrom`` with EAGAIN on every wake-up (`_QUEUED`). A
    datagram whose handling raises is logged with the socket and dropped;
    the loop goes on. The epoll reactor of the UDP workers
    (`sipsock.workers.epoll`) calls it without Twisted's legacy log context
    (``sipsockPlainCall``).
    """

    sipsockPlainCall = True
    log = Logger()
    #: The socket in log messages (its `SocketDef` text).
    label = "UDP socket"

    #: The port number of an adopted socket, read with its address (see `adopting`).
    _adoptedPort: int | None = None

    @classmethod
    def adopting(
        cls,
        reactor: Any,
        sock: socket.socket,
        protocol: DatagramProtocol,
        max_packet_size: int,
        family: socket.AddressFamily | None = None,
    ) -> SipUdpPort:
        """A port over the bound non-blocking ``sock``, which it owns from now on.

        What Twisted's ``_fromListeningDescriptor`` builds, with one
        ``getsockname`` for the address and the port (it asks twice) and the
        family taken from the socket, not found again by parsing the address
        text (``isIPv6Address``/``isIPAddress`` in ``udp.Port.__init__``):
        a reload adopts hundreds of sockets in every worker.
        """
        address = sock.getsockname()
        self = cls.__new__(cls)
        base.BasePort.__init__(self, reactor)
        self.port = None
        self.protocol = protocol
        self.maxPacketSize = max_packet_size
        self.interface = address[0]
        self._connectedAddr = None
        # ``family``: what the socket was made with (``sock.family`` builds an enum each time).
        self.addressFamily = family if family is not None else sock.family
        self.setLogStr()  # type: ignore[no-untyped-call]
        self._preexistingSocket = sock  # type: ignore[assignment]  # Twisted: None
        self._adoptedPort = address[1]
        self.fileno = sock.fileno  # type: ignore[method-assign]  # the reactor may ask now
        return self

    def _bindSocket(self) -> None:
        """Take the adopted socket, without Twisted's "starting on" legacy log line.

        `UdpListener` logs the socket it opens; the legacy line, built and
        filtered for each of the N sockets of a reload in every worker, was
        a fifth of a worker's adoption time.
        """
        sock: socket.socket | None = getattr(self, "_preexistingSocket", None)
        if sock is None:
            raise ValueError(f"{self.label}: a SIP UDP port serves an adopted socket only")
        self._preexistingSocket = None
        adopted, self._adoptedPort = self._adoptedPort, None
        self._realPortNumber = adopted if adopted is not None else sock.getsockname()[1]
        self.connected = 1
        self.socket = sock
        self.fileno = sock.fileno  # type: ignore[method-assign]  # as Twisted does

    def connectionLost(self, reason: Any = None) -> None:
        """Twisted's, without its legacy "(UDP Port N Closed)" line.

        `UdpListener` logs the socket it closes; that line (debug chatter by
        `sipsock.logevents`) was built and filtered for each of the N sockets
        a reload closes in every worker.
        """
        self._realPortNumber = None
        self.maxThroughput = -1
        base.BasePort.connectionLost(self, reason)  # type: ignore[no-untyped-call]
        self.protocol.doStop()
        self.socket.close()
        del self.socket
        del self.fileno
        if hasattr(self, "d"):
            self.d.callback(None)
            del self.d

    def doRead(self) -> None:
        protocol = self.protocol
        deliver = (
            protocol.deliver
            if isinstance(protocol, SipDatagramProtocol)
            else protocol.datagramReceived
        )
        read_burst(
            self.socket,
            self.maxPacketSize,
            deliver,
            self.addressFamily == socket.AF_INET6,
            self._handling_failed,
        )

    def _handling_failed(self, addr: Any) -> None:
        """A datagram whose handling raised: logged with its traceback, repeats folded."""
        listener = getattr(self.protocol, "listener", None)
        reporter = getattr(listener, "limit_reporter", None)
        if reporter is not None:
            reporter.problem(
                "datagrams whose handling raised",
                "socket {socket} (slot {slot}): datagram from {peer} dropped: its handling raised",
                level=LogLevel.critical,
                traceback=True,
                peer=addr,
            )
            return
        self.log.failure(
            "socket {socket}: datagram from {peer} dropped: its handling raised",
            socket=self.label,
            peer=addr,
        )


class SipDatagramProtocol(DatagramProtocol):
    """Feeds each datagram of one UDP socket to its listener's `DatagramPath`.

    The path offers each datagram to the sink's ``answer_datagram`` first
    (the `Dispatcher` answers a plain OPTIONS there, straight from its
    bytes), then to ``message_received``; `SipUdpPort` calls the path's
    ``deliver`` directly.
    """

    #: No legacy "Starting protocol" line per socket (`UdpListener` logs it).
    noisy = False

    def __init__(self, listener: UdpListener) -> None:
        self.listener = listener
        #: What to do with each datagram (`DatagramPath.deliver`, compiled).
        self.deliver: Callable[[bytes, Address], None] = listener.path.deliver

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        self.deliver(datagram, addr)


class UdpListener:
    """A UDP SIP socket served by this process's reactor (implements `Listener`)."""

    log = Logger()
    #: Whether a "listening" and a "closed" info line are logged per socket
    #: (a UDP worker turns them off: `sipsock.workers.worker.quiet_socket_lines`).
    socket_lines = True

    # Every datagram in and out goes through the listener's `DatagramPath`
    # (compiled); these are its methods, bound once.
    #: Send one datagram to ``peer``: a Deferred that fails with the socket error, if any.
    send: Callable[[bytes, tuple[str, int]], Deferred[None]]
    #: Send a datagram; errors are logged and counted, never raised.
    write: Callable[[bytes, tuple[str, int]], None]
    #: `write` an answer to a datagram just received from ``peer``, straight to the socket.
    send_reply: Callable[[bytes, Address], None]

    def __init__(
        self,
        sdef: SocketDef,
        slot: int | None,
        sink: MessageSink,
        *,
        reactor: Any,
        max_message_size: int = MAX_DATAGRAM_SIZE,
        log_interval: float = DEFAULT_LOG_INTERVAL,
    ) -> None:
        self.sdef = sdef
        self.slot = slot
        self.sink = sink
        self.counters = SocketCounters()
        #: Larger datagrams are dropped and counted (``limit_oversize``).
        self.max_message_size = max_message_size
        self.limit_reporter = LimitReporter(self, reactor, log_interval)
        self.path = DatagramPath(self, max_message_size)
        self.send = self.path.send
        self.write = self.path.write
        self.send_reply = self.path.send_reply
        self.protocol = SipDatagramProtocol(self)
        self.path.protocol = self.protocol
        self._reactor = reactor
        self._port: IListeningPort | None = None
        self._closing: Closing | None = None

    def adopt(self, fd: int, *, prepare: Callable[[Any], object] | None = None) -> None:
        """Start reading a bound non-blocking UDP descriptor (the caller keeps ``fd``).

        ``prepare`` is called with the port before it starts reading (a UDP
        worker registers it with EPOLLEXCLUSIVE then: once, not a plain
        registration first and the exclusive one after).
        """
        family = family_of(self.sdef)
        if isinstance(self._reactor, PosixReactorBase):
            # What adoptDatagramPort does, with our port class.
            own = socket.fromfd(fd, family, socket.SOCK_DGRAM)
            port = SipUdpPort.adopting(self._reactor, own, self.protocol, MAX_DATAGRAM_SIZE, family)
            port.label = self.sdef.socket_text
            if prepare is not None:
                prepare(port)
            port.startListening()  # type: ignore[no-untyped-call]
            self._port = port
        else:
            self._port = self._reactor.adoptDatagramPort(
                fd, family, self.protocol, maxPacketSize=MAX_DATAGRAM_SIZE
            )
            if prepare is not None:
                prepare(self._port)
        sock = getattr(self._port, "socket", None)
        if isinstance(sock, socket.socket):
            # The socket was made for ``family`` (a reload adopts hundreds: no enum built per ask).
            self.path.open(sock.sendto, family)
        else:
            self.path.open(None, 0)
        if self.socket_lines:
            self.log.info(
                "socket {socket} (slot {slot}) listening",
                socket=self.sdef.socket_text,
                slot=self.slot,
            )

    def update(self, sdef: SocketDef) -> None:
        """Apply a new tag/advertised/tos/frag on the same descriptor."""
        old = self.sdef
        check_same_endpoint(old, sdef)
        if self._port is not None and (old.tos != sdef.tos or old.flags != sdef.flags):
            try:
                apply_update_fd(self.fileno(), old, sdef)
            except OSError as exc:
                raise ListenError(sdef, describe_os_error(exc)) from exc
        self.sdef = sdef
        self.log.info(
            "socket {socket} (slot {slot}) updated in place",
            socket=sdef.socket_text,
            slot=self.slot,
        )

    def stop(self) -> Deferred[None]:
        """Stop reading and close the descriptor; fires when it is closed."""
        if self._closing is None:
            self._closing = closing = Closing()
            self.path.close()
            self.limit_reporter.stop()
            port = self._port
            stopping: Deferred[None] = stop_port(port) if port is not None else defer.succeed(None)
            stopping.addErrback(
                lambda failure: self.log.failure(
                    "socket {socket} (slot {slot}): error while closing",
                    failure,
                    socket=self.sdef.socket_text,
                    slot=self.slot,
                )
            )
            stopping.addCallback(lambda _: self._closed(closing))
        return self._closing.wait()

    def _closed(self, closing: Closing) -> None:
        if self.socket_lines:
            self.log.info(
                "socket {socket} (slot {slot}) closed",
                socket=self.sdef.socket_text,
                slot=self.slot,
            )
        closing.fire()

    def fileno(self) -> int:
        """The reactor's descriptor of this socket."""
        if self._port is None:
            raise ValueError(f"{self.sdef.socket_text}: not adopted")
        fileno: int = self._port.fileno()  # type: ignore[attr-defined]
        return fileno


def adopt_udp_listener(
    fd: int,
    sdef: SocketDef,
    slot: int | None,
    sink: MessageSink,
    *,
    reactor: Any,
    prepare: Callable[[Any], object] | None = None,
    **limits: Any,
) -> UdpListener:
    """Serve an already bound UDP descriptor; the caller still owns (and closes) ``fd``.

    ``prepare``: see `UdpListener.adopt`. ``limits``: ``max_message_size``
    and ``log_interval`` of `UdpListener`.
    """
    listener = UdpListener(sdef, slot, sink, reactor=reactor, **limits)
    listener.adopt(fd, prepare=prepare)
    return listener


def open_udp_listener(
    sdef: SocketDef, slot: int | None, sink: MessageSink, *, reactor: Any, **limits: Any
) -> UdpListener:
    """Bind a new UDP socket for ``sdef`` and serve it (raises `ListenError`)."""
    sock: socket.socket = bind_socket(sdef)
    try:
        return adopt_udp_listener(sock.fileno(), sdef, slot, sink, reactor=reactor, **limits)
    finally:
        sock.close()
