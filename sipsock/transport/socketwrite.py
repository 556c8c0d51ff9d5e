"""Writing to a TCP connection's socket at once, when nothing is queued before the bytes.

Twisted's `FileDescriptor.write` queues every write and sends it on the
reactor's next turn: the socket is registered for writing (a system call),
the reactor wakes up for it, sends, and unregisters it (another call). A
stream connection that answers what it read can instead hand the answer to
the kernel at once when nothing is waiting in the descriptor's buffer (the
order of the bytes stays the same); only what the kernel refuses is queued.
Every stream layer writes through `send_now`: the plain TCP connection
(`sipsock.transport.stream_connection`), the TLS layer
(`sipsock.transport.tlswrite`) and the WebSocket frames
(`sipsock.transport.ws`).
"""

from __future__ import annotations

from typing import Any


def send_now(descriptor: Any, data: bytes) -> None:
    """Write ``data`` on a TCP transport: to its socket now when nothing is queued.

    What the kernel does not take at once (or everything, on a connection
    with output queued, closing, aborted or lost) goes through the transport's
    ``write``, which sends it when the socket is writable; a lost connection
    is found out there, as Twisted does.
    """
    if (
        descriptor.connected
        and not descriptor.disconnecting
        and not getattr(descriptor, "_aborting", False)
        and not descriptor._writeDisconnected
        and not descriptor._tempDataLen
        and descriptor.offset == len(descriptor.dataBuffer)
    ):
        sent = descriptor.writeSomeData(data)
        if isinstance(sent, int):
            if sent == len(data):
                return
            data = data[sent:]
    descriptor.write(data)
