"""SIP over UDP: one datagram is one message.

The socket is created and bound by `sipsock.transport.sockopts.bind_socket`
and handed to the reactor with ``adoptDatagramPort`` (which duplicates the
descriptor). `adopt_udp_listener` takes any bound descriptor, so a UDP worker
process can serve a descriptor passed to it by the control process exactly as
the control process serves its own.
"""

from __future__ import annotations

import array
import errno
import fcntl
import socket
import termios
from collections.abc import Callable
from typing import Any, Final

from twisted.internet import base, defer, udp
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort
from twisted.internet.posixbase import PosixReactorBase
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger, LogLevel

from sipsock.limits import DEFAULT_LOG_INTERVAL
from sipsock.seams import ListenError, MessageSink, Origin, SocketCounters
from sipsock.sip.memo import Memo
from sipsock.sockdef import SocketDef
from sipsock.transport.base import MAX_DATAGRAM_SIZE, Closing, LimitReporter, stop_port
from sipsock.transport.sockopts import (
    apply_update_fd,
    bind_socket,
    check_same_endpoint,
    describe_os_error,
    family_of,
)

#: Datagrams made only of these bytes are keep-alives (RFC 5626 CRLF, NAT pings).
_BLANK = b"\r\n\t "

#: At most this many datagrams are read per wake-up, so that one busy socket
#: does not starve the others of its process (nor the AMP channel of a worker).
READS_PER_WAKE: Final = 256

#: ``recvfrom`` errors that only mean "nothing more to read now". ECONNREFUSED
#: is an ICMP error for an earlier datagram we sent: nothing to read either.
_READ_DONE: Final = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR, errno.ECONNREFUSED})


#: Where ``ioctl(FIONREAD)`` writes the length of the next queued datagram.
#:
#: `SipUdpPort.doRead` asks it after the first datagram of a wake-up (most
#: wake-ups bring one): it costs less than the ``recvfrom`` that fails with
#: EAGAIN (an exception built and caught). An empty datagram also answers 0;
#: it is read on the next wake-up (the reactor's epoll is level-triggered).
#: When the kernel cannot say (a closed socket), the loop reads on, and the
#: next ``recvfrom`` raises as before.
_QUEUED: Final = array.array("i", [0])
_ioctl: Final = fcntl.ioctl
_FIONREAD: Final = termios.FIONREAD


def describe_send_error(error: BaseException) -> str:
    """A send error for the log: the OS's text without the errno ("Message too long")."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


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
        sock = self.socket
        recvfrom = sock.recvfrom
        size = self.maxPacketSize
        received = self.protocol.datagramReceived
        trim = self.addressFamily == socket.AF_INET6
        for count in range(READS_PER_WAKE):
            try:
                data, addr = recvfrom(size)
            except BlockingIOError:
                return
            except OSError as error:
                if error.errno in _READ_DONE:
                    return
                raise
            if trim:
                addr = addr[:2]  # no flow information or scope id
            try:
                received(data, addr)
            except Exception:
                self._handling_failed(addr)
            if not count:
                # A second datagram queued? (`_QUEUED`)
                try:
                    _ioctl(sock.fileno(), _FIONREAD, _QUEUED, True)
                except OSError:
                    continue
                if not _QUEUED[0]:
                    return

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
    """Feeds each datagram of one UDP socket to a `MessageSink`.

    Each datagram is first offered to the sink's ``answer_datagram`` (the
    `Dispatcher` answers a plain OPTIONS there, straight from its bytes):
    an answer is sent back at once and the datagram goes no further; a
    decline (None) sends it on to ``message_received``, unless it is a blank
    keep-alive.
    """

    log = Logger()
    #: No legacy "Starting protocol" line per socket (`UdpListener` logs it).
    noisy = False

    def __init__(self, listener: UdpListener) -> None:
        self.listener = listener
        #: The sink's fast entry point (the sink of a listener never changes).
        self._answer_datagram = listener.sink.answer_datagram

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        listener = self.listener
        counters = listener.counters
        size = len(datagram)
        counters.bytes_in += size
        if size > listener.max_message_size:
            listener.limit_reporter.hit(
                "oversize",
                f"datagram of {size} bytes dropped "
                f"(max_udp_message_size {listener.max_message_size})",
                (addr[0], addr[1]),
            )
            return
        try:
            answer = self._answer_datagram(datagram, addr, listener.sdef)
        except Exception:
            answer = None
            listener.limit_reporter.answer_failed(peer=addr)
        if answer is not None:
            counters.received += 1  # a request (`MessageSink.answer_datagram`)
            listener.send_reply(answer, addr)
            return
        if datagram[:1] in _BLANK and not datagram.strip(_BLANK):
            return
        counters.count_in(datagram)
        # The general path (inline: one Python call less per message).
        peer = (addr[0], addr[1])
        reply = listener.send_reply
        origin = Origin(
            listener.sdef, listener.slot, peer, lambda data: reply(data, peer), None, listener
        )
        try:
            listener.sink.message_received(datagram, origin)
        except Exception:
            listener.counters.drops += 1
            listener.limit_reporter.problem(
                "messages the sink raised on",
                "socket {socket} (slot {slot}): message from {peer} dropped: "
                "the message sink raised",
                level=LogLevel.critical,
                traceback=True,
                peer=peer,
            )


class UdpListener:
    """A UDP SIP socket served by this process's reactor (implements `Listener`)."""

    log = Logger()
    #: Whether a "listening" and a "closed" info line are logged per socket
    #: (a UDP worker turns them off: `sipsock.workers.worker.quiet_socket_lines`).
    socket_lines = True

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
        self.protocol = SipDatagramProtocol(self)
        self._reactor = reactor
        self._port: IListeningPort | None = None
        self._closing: Closing | None = None
        #: ``sendto`` of the port's socket, for answers to received datagrams.
        self._sendto: Callable[[bytes, Any], int] | None = None
        #: The socket's address family (0 until it listens).
        self._family = 0

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
        self._sendto = sock.sendto if isinstance(sock, socket.socket) else None
        # The socket was made for ``family`` (a reload adopts hundreds: no enum built per ask).
        self._family = family if isinstance(sock, socket.socket) else 0
        if self.socket_lines:
            self.log.info(
                "socket {socket} (slot {slot}) listening",
                socket=self.sdef.socket_text,
                slot=self.slot,
            )

    def write(self, data: bytes, peer: tuple[str, int]) -> None:
        """Send a datagram; errors are logged and counted, never raised."""
        try:
            self._write(data, peer)
        except Exception as exc:
            self.limit_reporter.problem(
                "send failures",
                "socket {socket} (slot {slot}): cannot send to {peer}: {reason}",
                peer=peer,
                reason=describe_send_error(exc),
            )

    def send_reply(self, data: bytes, peer: tuple[str, int]) -> None:
        """`write` an answer to a datagram just received from ``peer``.

        ``peer`` came from the kernel, so it is an address of the socket's
        family: the datagram goes straight to the socket, without the
        address checks of the reactor's ``write``. When the kernel refuses
        it, `write` tries again, and logs and counts a failure.
        """
        sendto = self._sendto
        if sendto is None or self._closing is not None:
            self.write(data, peer)
            return
        try:
            sendto(data, peer)
        except OSError:
            self.write(data, peer)
            return
        self.counters.count_out(data)

    def _write(self, data: bytes, peer: tuple[str, int]) -> None:
        transport = self.protocol.transport
        if transport is None or self._closing is not None:
            self.counters.drops += 1
            raise ConnectionError("socket is closed")
        sendto = self._sendto
        try:
            if sendto is not None and address_family(peer[0]) == self._family:
                # An address the reactor's write would take (its checks, remembered):
                # straight to the socket; a refusal gets the write's own handling.
                try:
                    sendto(data, peer)
                except OSError:
                    transport.write(data, peer)
            else:
                transport.write(data, peer)
        except Exception:
            self.counters.drops += 1
            raise
        self.counters.count_out(data)

    def send(self, data: bytes, peer: tuple[str, int]) -> Deferred[None]:
        """Send one datagram to ``peer``; fails with the socket error, if any."""
        try:
            self._write(data, peer)
        except Exception as exc:
            return defer.fail(exc)
        return defer.succeed(None)

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


#: Hosts to the family of the address they are (0: neither), by the reactor's own tests.
_FAMILIES: Memo[str, int] = Memo(max_bytes=256 * 1024, max_item=128)


def address_family(host: str) -> int:
    """``AF_INET`` or ``AF_INET6`` when the reactor's UDP ``write`` takes ``host`` as
    such an address (`twisted.internet.abstract.isIPAddress` / ``isIPv6Address``),
    else 0. Remembered (bounded): those tests parse the text in Python on every
    send, and a proxy sends to the same few hosts again and again.
    """
    family = _FAMILIES.get(host)
    if family is None:
        if isIPAddress(host):
            family = socket.AF_INET
        elif isIPv6Address(host):
            family = socket.AF_INET6
        else:
            family = 0
        _FAMILIES.remember(host, family, len(host))
    return family
