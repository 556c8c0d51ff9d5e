"""`write_at_once`: an AMP connection's writes go to the socket at once when nothing is queued.

Twisted's stream transport never writes in ``write``: it queues the bytes,
asks the reactor to watch the socket for writing (an ``epoll_ctl``), writes
on the next reactor turn, then stops watching (another ``epoll_ctl``). On a
worker's AMP connection, which carries a relayed SIP message in every box
under a stateless proxy's UDP → TCP load, that is two system calls and a
reactor turn per box in each process (about a fifth of the control
process's samples). With nothing queued (no bytes, no file descriptor
waiting for its byte), the bytes are handed to the transport's own
``writeSomeData`` now; whatever the kernel does not take, or an error, goes
the usual way (queued: order kept, the error reported by the transport).
"""

from __future__ import annotations

from typing import Any

from sipsock.transport.socketwrite import write_through


def write_at_once(transport: Any) -> None:
    """Make ``transport.write`` send at once when nothing is queued (see the module)."""
    queued_write = transport.write

    def write(data: bytes) -> None:
        write_through(transport, data, queued_write)

    transport.write = write
