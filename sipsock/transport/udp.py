"""SIP over UDP: one datagram is one message.

The socket is created and bound by `sipsock.transport.sockopts.bind_socket`
and handed to the reactor with ``adoptDatagramPort`` (which duplicates the
descriptor). `adopt_udp_listener` takes any bound descriptor, so a UDP worker
process can serve a descriptor passed to it by the control process exactly as
the control process serves its own.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from sipsock.sockdef import SocketDef
from sipsock.transport.base import (
    MAX_DATAGRAM_SIZE,
    Closing,
    ListenError,
    MessageSink,
    Origin,
    SocketCounters,
    stop_port,
)
from sipsock.transport.sockopts import (
    apply_update_fd,
    bind_socket,
    check_same_endpoint,
    describe_os_error,
    family_of,
)

#: Datagrams made only of these bytes are keep-alives (RFC 5626 CRLF, NAT pings).
_BLANK = b"\r\n\t "


class SipDatagramProtocol(DatagramProtocol):
    """Feeds each datagram of one UDP socket to a `MessageSink`."""

    log = Logger()

    def __init__(self, listener: UdpListener) -> None:
        self.listener = listener

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        listener = self.listener
        counters = listener.counters
        counters.bytes_in += len(datagram)
        if not datagram.strip(_BLANK):
            return
        counters.count_in(datagram)
        peer = (addr[0], addr[1])
        origin = Origin(
            sdef=listener.sdef,
            slot=listener.slot,
            peer=peer,
            reply=lambda data: listener.write(data, peer),
            listener=listener,
        )
        try:
            listener.sink.message_received(datagram, origin)
        except Exception:
            counters.drops += 1
            self.log.failure(
                "socket {socket} (slot {slot}): message from {peer} dropped: "
                "the message sink raised",
                socket=listener.sdef.socket_text,
                slot=listener.slot,
                peer=peer,
            )


class UdpListener:
    """A UDP SIP socket served by this process's reactor (implements `Listener`)."""

    log = Logger()

    def __init__(
        self,
        sdef: SocketDef,
        slot: int | None,
        sink: MessageSink,
        *,
        reactor: Any,
    ) -> None:
        self.sdef = sdef
        self.slot = slot
        self.sink = sink
        self.counters = SocketCounters()
        self.protocol = SipDatagramProtocol(self)
        self._reactor = reactor
        self._port: IListeningPort | None = None
        self._closing: Closing | None = None

    def adopt(self, fd: int) -> None:
        """Start reading a bound non-blocking UDP descriptor (the caller keeps ``fd``)."""
        self._port = self._reactor.adoptDatagramPort(
            fd, family_of(self.sdef), self.protocol, maxPacketSize=MAX_DATAGRAM_SIZE
        )
        self.log.info(
            "socket {socket} (slot {slot}) listening", socket=self.sdef.socket_text, slot=self.slot
        )

    def write(self, data: bytes, peer: tuple[str, int]) -> None:
        """Send a datagram; errors are logged and counted, never raised."""
        try:
            self._write(data, peer)
        except Exception as exc:
            self.log.warn(
                "socket {socket} (slot {slot}): cannot send to {peer}: {reason}",
                socket=self.sdef.socket_text,
                slot=self.slot,
                peer=peer,
                reason=exc,
            )

    def _write(self, data: bytes, peer: tuple[str, int]) -> None:
        transport = self.protocol.transport
        if transport is None or self._closing is not None:
            self.counters.drops += 1
            raise ConnectionError("socket is closed")
        try:
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
        self.log.info(
            "socket {socket} (slot {slot}) closed", socket=self.sdef.socket_text, slot=self.slot
        )
        closing.fire()

    def fileno(self) -> int:
        """The reactor's descriptor of this socket."""
        if self._port is None:
            raise ValueError(f"{self.sdef.socket_text}: not adopted")
        fileno: int = self._port.fileno()  # type: ignore[attr-defined]
        return fileno


def adopt_udp_listener(
    fd: int, sdef: SocketDef, slot: int | None, sink: MessageSink, *, reactor: Any
) -> UdpListener:
    """Serve an already bound UDP descriptor; the caller still owns (and closes) ``fd``."""
    listener = UdpListener(sdef, slot, sink, reactor=reactor)
    listener.adopt(fd)
    return listener


def open_udp_listener(
    sdef: SocketDef, slot: int | None, sink: MessageSink, *, reactor: Any
) -> UdpListener:
    """Bind a new UDP socket for ``sdef`` and serve it (raises `ListenError`)."""
    sock: socket.socket = bind_socket(sdef)
    try:
        return adopt_udp_listener(sock.fileno(), sdef, slot, sink, reactor=reactor)
    finally:
        sock.close()
