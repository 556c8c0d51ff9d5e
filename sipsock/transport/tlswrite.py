# mypy: disable-error-code="no-untyped-call"
"""The TLS layer of TLS and WSS connections: one encrypted write per read, sent at once.

Twisted's default TLS transport (`BufferingTLSTransport`) holds every small
write until the reactor's next turn (a timer per connection and turn), then
encrypts it and queues the result on the TCP transport, which the reactor
sends a turn later still (registering the socket for writing and
unregistering it: two system calls). A SIP connection mostly writes the
answers to what it just read. `ReadBatchingTLSProtocol` collects the
plaintext written while one read is delivered, encrypts it in one piece at
the end of that read, and hands the result to the socket at once when
nothing is queued before it (`sipsock.transport.socketwrite.send_now`).
Writes outside a read (a send to the peer, a ping) are encrypted and sent at
once. Closing first sends what is held; an abort drops it, as before.

Once connected, the OpenSSL calls of a read (feed the received bytes, read
the plaintext until OpenSSL needs more, encrypt, take the ciphertext) go
through `sipsock.transport.tlsbio`: the same calls on the same pyOpenSSL
connection, with "nothing more" as a value instead of a `WantReadError`
per read and per flush. The control flow is Twisted's own
(`TLSMemoryBIOProtocol.dataReceived`, ``_flushReceiveBIO``, ``_write``),
with the same outcomes for alerts, close_notify and callback errors. The
handshake, the SNI switch and client verification stay pyOpenSSL's.
"""

from __future__ import annotations

from typing import Any

from OpenSSL.SSL import Error, WantReadError, ZeroReturnError
from twisted.internet.abstract import FileDescriptor
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure

from sipsock.transport import tlsbio
from sipsock.transport.socketwrite import send_now

#: Largest plaintext handed to OpenSSL at once (one TLS record, as Twisted does).
RECORD_SIZE = 2**14


class ReadBatchingTLSProtocol(TLSMemoryBIOProtocol):
    """A `TLSMemoryBIOProtocol` whose output leaves at the end of each read, at once.

    ``_held_plaintext`` is the plaintext written during the read being delivered
    (None outside a read); `sipsock.transport.backpressure.pending_output`
    counts it.
    """

    _held_plaintext: list[bytes] | None = None
    _descriptor: Any = None
    #: Whether the OpenSSL calls go through `tlsbio` (set once connected).
    _direct = False

    def makeConnection(self, transport: Any) -> None:
        # The TCP transport (a FileDescriptor) takes ciphertext directly; any
        # other (a test's string transport) through its own write.
        if isinstance(transport, FileDescriptor):
            self._descriptor = transport
        super().makeConnection(transport)
        # The first flight (a client's hello) went out through pyOpenSSL.
        self._direct = tlsbio.direct_calls(self._tlsConnection)

    def dataReceived(self, data: bytes) -> None:
        if self._held_plaintext is not None:
            self._receive(data)
            return
        held: list[bytes] = []
        self._held_plaintext = held
        try:
            self._receive(data)
        finally:
            self._held_plaintext = None
            if held:
                self._write_held(held)

    def write(self, data: bytes) -> None:
        held = self._held_plaintext
        if held is not None:
            held.append(data)
        else:
            TLSMemoryBIOProtocol.write(self, data)

    def _write_held(self, held: list[bytes]) -> None:
        TLSMemoryBIOProtocol.write(self, held[0] if len(held) == 1 else b"".join(held))

    def loseConnection(self) -> None:
        """Send what this read wrote so far, then close (TLS close_notify first)."""
        held = self._held_plaintext
        if held:
            self._held_plaintext = []
            self._write_held(held)
        super().loseConnection()

    def _receive(self, data: bytes) -> None:
        """`TLSMemoryBIOProtocol.dataReceived`, feeding OpenSSL through `tlsbio`."""
        if not self._direct:
            TLSMemoryBIOProtocol.dataReceived(self, data)
            return
        tlsbio.feed(self._tlsConnection, data)
        if not self._handshakeDone:
            self._checkHandshakeStatus()
            if not self._handshakeDone:
                return
        if self._appSendBuffer:
            self._unbufferPendingWrites()
        self._flushReceiveBIO()

    def _flushReceiveBIO(self) -> None:
        """Deliver the plaintext OpenSSL has until it needs more (Twisted's loop, same outcomes)."""
        if not self._direct:
            TLSMemoryBIOProtocol._flushReceiveBIO(self)
            return
        while not self._lostTLSConnection:
            try:
                data = tlsbio.read(self._tlsConnection)
            except WantReadError:
                break
            except ZeroReturnError:
                # The peer's close_notify: answer it, then close.
                self._shutdownTLS()
                self._tlsShutdownFinished(None)
            except Error:
                self._tlsShutdownFinished(Failure())
            else:
                if data is None:
                    break
                if not self._aborted:
                    self.wrappedProtocol.dataReceived(data)
        # What the read made OpenSSL send (handshake messages, alerts). When
        # answers are held (and will be written: not closing), their write at
        # the end of the read takes it along, in the same order, in one flush.
        if not self._held_plaintext or self.disconnecting:
            self._flushSendBIO()

    def _write(self, data: bytes) -> None:
        """Twisted's ``_write`` (a record at a time, flushed after each), through `tlsbio`."""
        if not self._direct:
            TLSMemoryBIOProtocol._write(self, data)
            return
        if self._lostTLSConnection:
            return
        done = 0
        while done < len(data):
            piece = data[done : done + RECORD_SIZE]
            try:
                sent = tlsbio.write(self._tlsConnection, piece)
            except WantReadError:
                self._bufferedWrite(data[done:])
                # What OpenSSL has to send meanwhile (the read's output, too).
                self._flushSendBIO()
                break
            except Error:
                self._tlsShutdownFinished(Failure())
                break
            done += sent
            self._flushSendBIO()

    def _flushSendBIO(self) -> None:
        """Hand the ciphertext OpenSSL produced to the socket (at once when nothing is queued)."""
        if self._direct:
            data = tlsbio.drain(self._tlsConnection)
            if data is None:
                return
        else:
            try:
                data = self._tlsConnection.bio_read(tlsbio.READ_SIZE)
            except WantReadError:
                # Nothing to send right now.
                return
        descriptor = self._descriptor
        if descriptor is not None and not self._aborted:
            send_now(descriptor, data)
        else:
            transport: Any = self.transport
            transport.write(data)


class ReadBatchingTLSFactory(TLSMemoryBIOFactory):
    """`TLSMemoryBIOFactory` building `ReadBatchingTLSProtocol` connections."""

    protocol = ReadBatchingTLSProtocol
