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

from collections.abc import Callable
from typing import Any


def send_now(descriptor: Any, data: bytes) -> None:
    """Write ``data`` on a TCP transport: to its socket now when nothing is queued.

    What the kernel does not take at once (or everything, on a connection
    with output queued, closing, aborted or lost) goes through the transport's
    ``write``, which sends it when the socket is writable; a lost connection
    is found out there, as Twisted does.
    """
    write_through(descriptor, data, descriptor.write)


def write_through(descriptor: Any, data: bytes, queue: Callable[[bytes], None]) -> None:
    """Hand ``data`` to ``descriptor``'s socket now when nothing is queued; the rest to ``queue``.

    ``queue`` is the descriptor's own queued write (`send_now`), or the one a
    replaced ``write`` wraps (`sipsock.workers.directwrite`). Nothing is
    queued when no bytes wait in the buffer or this reactor turn's writes,
    and no file descriptor waits for its byte (UNIX connections).
    """
    if (
        descriptor.connected
        and not descriptor.disconnecting
        and not getattr(descriptor, "_aborting", False)
        and not descriptor._writeDisconnected
        and not descriptor._tempDataLen
        and descriptor.offset == len(descriptor.dataBuffer)
        and not getattr(descriptor, "_sendmsgQueue", None)
    ):
        sent = descriptor.writeSomeData(data)
        if isinstance(sent, int):
            if sent == len(data):
                return
            data = data[sent:]
    queue(data)
