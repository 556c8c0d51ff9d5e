"""`ChannelBroker`: the control process gives each UDP worker a channel to each stream worker.

So that a message a UDP worker sends over a stream socket (or a stream
worker over a UDP socket) crosses one hop instead of two
(`sipsock.workers.direct`), the control process makes a UNIX socket pair
for every (UDP worker, stream worker) pair and hands one end to each
(`OpenChannel`, the descriptor passed like ``amp.Descriptor``). It does so
whenever a worker becomes ready: a restarted or added worker gets channels
to every ready worker of the other side. A worker that ends closes its ends
with it; the other side sees its channel close, fails what waited on it and
relays through the control process until the replacement's channel comes.
The control process keeps no end: its copies are closed once both workers
answered (or failed to).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from twisted.logger import Logger
from twisted.python.failure import Failure

from sipsock.deferreds import settle
from sipsock.workers.commands import OpenChannel
from sipsock.workers.supervisor import Supervisor, WorkerProcess


class ChannelBroker:
    """Channels between the workers of ``udp`` pools and of the ``stream`` pool (see the module)."""

    log = Logger(namespace="sipsock.workers.pool.UdpWorkerPool")

    def __init__(self, udp: Sequence[Supervisor], stream: Supervisor) -> None:
        self.udp = list(udp)
        self.stream = stream
        #: Channels handed out (pairs), for tests and measurements.
        self.opened = 0
        for supervisor in self.udp:
            supervisor.on_ready.append(self._udp_ready)
        stream.on_ready.append(self._stream_ready)

    def _udp_ready(self, process: WorkerProcess) -> None:
        for other in self.stream.ready():
            self.connect(process, other)

    def _stream_ready(self, process: WorkerProcess) -> None:
        for supervisor in self.udp:
            for other in supervisor.ready():
                self.connect(other, process)

    def connect(self, udp: WorkerProcess, stream: WorkerProcess) -> None:
        """Hand a new socket pair's ends to ``udp`` and ``stream``."""
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        except OSError as exc:
            self._failed(udp, stream, str(exc))
            return
        self.opened += 1
        giving = [
            udp.call(
                OpenChannel,
                fds=[ours.fileno()],
                peer=stream.label,
                pool=stream.supervisor.name,
                index=stream.seat.index,
            ),
            stream.call(
                OpenChannel,
                fds=[theirs.fileno()],
                peer=udp.label,
                pool=udp.supervisor.name,
                index=udp.seat.index,
            ),
        ]

        def given(results: list[object]) -> None:
            ours.close()
            theirs.close()
            for result in results:
                if isinstance(result, Failure):
                    self._failed(udp, stream, result.getErrorMessage())
                    return

        settle(giving).addCallback(given)

    def _failed(self, udp: WorkerProcess, stream: WorkerProcess, reason: str) -> None:
        if not (_running(udp) and _running(stream)):
            return  # ended or stopping meanwhile: its replacement gets a channel
        self.log.warn(
            "no direct channel between {udp} and {stream}: {reason}; "
            "their relays go through the control process",
            udp=f"{udp.kind} {udp.label}",
            stream=f"{stream.kind} {stream.label}",
            reason=reason,
        )


def _running(process: WorkerProcess) -> bool:
    return process.live and process.state == "ready"
