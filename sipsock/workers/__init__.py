"""UDP worker processes: `UdpWorkerPool` (control side) and ``python -m sipsock.workers``.

DESIGN "Process model": the control process binds every UDP socket and
passes its descriptor over AMP to worker processes that run the SIP
application; `SocketBook` tells the workers about the daemon's other sockets
so that their application can send through any of them (`SendThroughSocket`).
"""

from sipsock.workers.commands import WorkerError
from sipsock.workers.directory import SocketBook, TrackedListener
from sipsock.workers.listener import PooledListener
from sipsock.workers.pool import BALANCE_MODES, UdpWorkerPool

__all__ = [
    "BALANCE_MODES",
    "PooledListener",
    "SocketBook",
    "TrackedListener",
    "UdpWorkerPool",
    "WorkerError",
]
