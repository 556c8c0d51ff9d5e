"""`send_descriptors_together`: a UNIX connection sends its queued descriptors in one message.

Twisted's UNIX transport sends each queued file descriptor in a ``sendmsg``
of its own, carrying one byte of the stream with it. An `AdoptSockets`
batch passes 128 descriptors: 128 system calls in the control process,
and in the worker 128 reads (the kernel ends a read at each message that
carries descriptors), each a wake-up and a reactor turn, while the two
processes take the CPU from each other at every byte. With
`send_descriptors_together`, up to `MAX_DESCRIPTORS` queued descriptors go
in one ``SCM_RIGHTS`` message with one byte of the stream, then the rest of
the bytes in one write. The receiving side is Twisted's own: it hands each
descriptor of a message to the protocol in order, before the bytes of the
same read, so AMP numbers them as before.
"""

from __future__ import annotations

import socket
import struct
from errno import ENOBUFS, EWOULDBLOCK
from typing import Any, Final

from twisted.internet import error, main
from twisted.python import sendmsg
from twisted.python.compat import lazyByteSlice
from twisted.python.util import untilConcludes

#: Descriptors in one message (Linux's SCM_MAX_FD).
MAX_DESCRIPTORS: Final = 253


def send_descriptors_together(transport: Any) -> None:
    """Make ``transport`` (a Twisted UNIX connection) send queued descriptors together."""
    base = transport._writeSomeDataBase

    def write_some_data(data: bytes) -> Any:
        queue: list[int] = transport._sendmsgQueue
        if not queue:
            return base.writeSomeData(transport, data)
        if len(queue) > len(data):
            return error.FileDescriptorOverrun()
        index = sent = 0
        try:
            while sent < len(queue):
                chunk = queue[sent : sent + MAX_DESCRIPTORS]
                rights = struct.pack(f"{len(chunk)}i", *chunk)
                try:
                    untilConcludes(
                        sendmsg.sendmsg,
                        transport.socket,
                        data[index : index + 1],
                        [(socket.SOL_SOCKET, sendmsg.SCM_RIGHTS, rights)],
                    )
                except OSError as exc:
                    if exc.args[0] in (EWOULDBLOCK, ENOBUFS):
                        return index
                    return main.CONNECTION_LOST
                sent += len(chunk)
                index += 1
        finally:
            del queue[:sent]
        result = base.writeSomeData(transport, lazyByteSlice(data, index))  # type: ignore[no-untyped-call]
        try:
            return index + result
        except TypeError:  # an error: the transport's to report
            return result

    transport.writeSomeData = write_some_data
