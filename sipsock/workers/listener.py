"""`PooledListener`: a UDP socket served by the workers of a pool (a `Listener`)."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred

from sipsock.seams import SocketCounters
from sipsock.sockdef import SocketDef
from sipsock.transport.base import Closing

if TYPE_CHECKING:
    from sipsock.workers.pool import UdpWorkerPool


class PooledListener:
    """A UDP socket served by the workers of a pool (implements `Listener`).

    ``counters`` add up the workers' counters (refreshed with their
    statistics) and what the control process sent itself. ``fileno`` is the
    control process's copy of the descriptor (shared mode) or -1 (reuseport
    mode: the control process holds none).
    """

    def __init__(
        self,
        pool: UdpWorkerPool,
        key: int,
        sdef: SocketDef,
        slot: int | None,
        sock: socket.socket | None,
        *,
        static: bool = False,
    ) -> None:
        self.pool = pool
        self.key = key
        self.sdef = sdef
        self.slot = slot
        self.static = static
        self.counters = SocketCounters()
        #: Sent by the control process itself.
        self.own = SocketCounters()
        #: Counted by workers that have ended since.
        self.retired = SocketCounters()
        self.sock = sock
        self.closing: Closing | None = None

    def update(self, sdef: SocketDef) -> Deferred[None]:
        """New tag / advertised / tos / frag, applied in place; raises `ListenError`.

        Fires once every worker serves the new definition.
        """
        return self.pool.update_socket(self, sdef)

    def stop(self) -> Deferred[None]:
        """Release the socket in every worker, then close the control copy."""
        return self.pool.release(self)

    def send(self, data: bytes, peer: tuple[str, int]) -> Deferred[None]:
        """Send one datagram from this socket."""
        return self.pool.send(self, data, peer)

    def fileno(self) -> int:
        """The control process's descriptor, or -1 when it holds none."""
        return self.sock.fileno() if self.sock is not None else -1

    def close_copy(self) -> None:
        """Close the control process's descriptor (once)."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
