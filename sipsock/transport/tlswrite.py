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
"""

from __future__ import annotations

from typing import Any

from OpenSSL.SSL import WantReadError
from twisted.internet.abstract import FileDescriptor
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol

from sipsock.transport.socketwrite import send_now


class ReadBatchingTLSProtocol(TLSMemoryBIOProtocol):
    """A `TLSMemoryBIOProtocol` whose output leaves at the end of each read, at once.

    ``_held_plaintext`` is the plaintext written during the read being delivered
    (None outside a read); `sipsock.transport.backpressure.pending_output`
    counts it.
    """

    _held_plaintext: list[bytes] | None = None
    _descriptor: Any = None

    def makeConnection(self, transport: Any) -> None:
        # The TCP transport (a FileDescriptor) takes ciphertext directly; any
        # other (a test's string transport) through its own write.
        if isinstance(transport, FileDescriptor):
            self._descriptor = transport
        super().makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        if self._held_plaintext is not None:
            super().dataReceived(data)
            return
        held: list[bytes] = []
        self._held_plaintext = held
        try:
            super().dataReceived(data)
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

    def _flushSendBIO(self) -> None:
        """Hand the ciphertext OpenSSL produced to the socket (at once when nothing is queued)."""
        try:
            data = self._tlsConnection.bio_read(2**15)
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
