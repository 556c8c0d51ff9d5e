"""`SeatResizer`: a supervised pool grows by one worker, or one leaves after draining.

Growing adds a seat to the `Supervisor`: its worker gets the control
process's frozen `AppSpec` and everything its pool gives a restarted worker
(`PoolSide.sync`) before it counts as ready. Shrinking picks the newest
ready worker, takes it out of every later socket change, has the pool
``drain`` it (a UDP worker stops reading its sockets and lets them go; the
others keep reading the same descriptors, so nothing queued is lost), then
asks it to exit; its seat goes with it, never restarted. Any pool built on a
`Supervisor` (UDP or stream workers) resizes through this class, given its
own ``drain`` and, where shrinking would lose traffic, why it refuses.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from sipsock.workers.commands import Busy, ReleaseSockets, batches
from sipsock.workers.fanout import RELEASE_BATCH
from sipsock.workers.supervisor import Supervisor, WorkerProcess, WorkerSeat

#: States of a seat in which the pool is not changing size nor recovering.
SETTLED: str = "ready"


class SeatResizer:
    """Grow or shrink the pool of ``supervisor`` by one worker (see the module).

    ``drain`` makes a worker let go of what it serves (fires when it has);
    ``shrink_refusal`` says why this pool must not shrink (None: it may).
    """

    log = Logger(namespace="sipsock.workers.pool.UdpWorkerPool")

    def __init__(
        self,
        supervisor: Supervisor,
        *,
        drain: Callable[[WorkerProcess], Deferred[None]],
        shrink_refusal: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.supervisor = supervisor
        self.drain = drain
        self.shrink_refusal = shrink_refusal

    @property
    def name(self) -> str:
        return self.supervisor.name

    @property
    def size(self) -> int:
        """Seats of the pool, the one leaving included."""
        return len(self.supervisor.seats)

    def pids(self) -> list[int]:
        """The pids of the ready workers (whose load is measured)."""
        return [p.pid for p in self.supervisor.ready() if p.pid is not None]

    def ask_busy(self, pid: int) -> Deferred[tuple[float, float]]:
        """`Busy` to the ready worker ``pid``: (idle seconds so far, its clock).

        Without the command deadline (`WorkerProcess.call`): a worker too busy
        to answer soon is loaded, not faulty, and the auto-scaler counts it so;
        killing it would lose what it holds.
        """
        for process in self.supervisor.ready():
            if process.pid == pid and process.amp is not None:
                asking: Deferred[dict[str, float]] = process.amp.callRemote(Busy)  # type: ignore[no-untyped-call]
                return asking.addCallback(lambda a: (a["idle"], a["clock"]))
        return Deferred.fromCoroutine(self._gone(pid))

    async def _gone(self, pid: int) -> tuple[float, float]:
        raise ConnectionError(f"no ready worker with pid {pid}")

    def blocked(self) -> str | None:
        """Why the pool must not change size now (a worker not ready), or None."""
        if not self.supervisor.active:
            return "the pool is stopping"
        for seat in self.supervisor.seats:
            state = "leaving" if seat.retiring else seat.state
            if state != SETTLED:
                return f"worker {self.supervisor.name}/{seat.index} {state}"
        return None

    def grow(self) -> WorkerSeat | None:
        """Start one more worker; None when the pool is stopping."""
        return self.supervisor.add_seat()

    def shrink(self) -> Deferred[None]:
        """The newest ready worker drains and exits; fires once it ended."""
        ready = [
            seat
            for seat in self.supervisor.seats
            if not seat.retiring and seat.process is not None and seat.process.state == SETTLED
        ]
        if len(ready) < 2:
            return Deferred.fromCoroutine(self._nothing())
        return Deferred.fromCoroutine(self._retire(ready[-1]))

    async def _nothing(self) -> None:
        return None

    async def _retire(self, seat: WorkerSeat) -> None:
        process = seat.process
        assert process is not None
        seat.retiring = True
        process.state = "retiring"  # out of `Supervisor.processes`: no later change reaches it
        self.log.info(
            "{kind} {worker} (pid {pid}) leaves the pool: draining",
            worker=process.label,
            kind=process.kind,
            pid=process.pid,
        )
        try:
            await self.drain(process)
        except Exception:
            self.log.failure(
                "{kind} {worker} (pid {pid}): drain failed; stopping it all the same",
                worker=process.label,
                kind=process.kind,
                pid=process.pid,
            )
        await process.shutdown(self.supervisor.settings.stop_timeout)


def release_all_sockets(
    process: WorkerProcess, fetch_counters: Callable[[WorkerProcess], Deferred[None]]
) -> Deferred[None]:
    """A UDP worker's drain: its counters read, then every socket it holds let go.

    In ``shared`` mode the other workers read the same descriptors, so what
    is queued there is read by them. The worker has handled what it read
    before it answers (one thread: the command waits for the datagram batch).
    """

    async def drain() -> None:
        await fetch_counters(process)
        keys = sorted(process.given)
        process.given.clear()
        for batch in batches(keys, RELEASE_BATCH):
            await process.call(ReleaseSockets, keys=batch)

    return Deferred.fromCoroutine(drain())
