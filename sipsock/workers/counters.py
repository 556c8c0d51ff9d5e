"""`PoolCounters`: a pool's statistics: each worker's `Stats` (paged), socket totals, ``ps`` rows.

Every ``interval`` seconds (and once after a burst of socket changes) each
ready worker is asked for its counters, page by page: all of them the first
time (and after a failed read), then only what changed since its previous
answer (`sipsock.workers.reported`); each socket's totals
are then what the control process sent itself, plus what ended workers
counted, plus what the live workers count now. `rows` describes the workers
for the MI ``ps``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Protocol

from twisted.internet.defer import Deferred, DeferredLock
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from sipsock.deferreds import settle
from sipsock.seams import SocketCounters
from sipsock.sockdef import SocketDef
from sipsock.workers.commands import COUNTER_NAMES, Stats, decode_stats_page
from sipsock.workers.supervisor import Supervisor, WorkerProcess

#: Seconds between the last socket change of a burst and the statistics refresh.
REFRESH_DELAY: Final = 0.2


class Counted(Protocol):
    """A pooled socket's counters: totals, the control process's own, ended workers'."""

    sdef: SocketDef
    counters: SocketCounters
    own: SocketCounters
    retired: SocketCounters


@dataclass
class WorkerStats:
    """What a worker said in its last `Stats` answer."""

    pid: int
    handled: int
    sockets: dict[int, SocketCounters] = field(default_factory=dict)
    #: The keys this answer changed or removed; None: it listed every socket.
    changed: set[int] | None = None


async def fetch_stats(process: WorkerProcess, known: WorkerStats | None = None) -> WorkerStats:
    """``process``'s `Stats`, every page; raises what the command raised.

    With ``known`` (its last complete answer), only what changed since is
    asked for (``changes``) and applied to a copy of it; without, every socket.
    """
    sockets: dict[int, SocketCounters] = {} if known is None else dict(known.sockets)
    changes = known is not None
    changed: set[int] = set()
    start = 0
    while True:
        answer = await process.call(Stats, start=start, changes=changes)
        page = decode_stats_page(answer["sockets"])
        gone = answer.get("gone") or []
        sockets.update((s.key, s.counters) for s in page)
        for key in gone:
            sockets.pop(key, None)
        changed.update(s.key for s in page)
        changed.update(gone)
        if not answer["more"] or not (page or gone):  # an empty page would never end
            return WorkerStats(
                answer["pid"], answer["handled"], sockets, changed if changes else None
            )
        start += len(page)


class PoolCounters:
    """The statistics of one pool's workers and sockets (see the module)."""

    log = Logger(namespace="sipsock.workers.pool.UdpWorkerPool")

    def __init__(
        self,
        supervisor: Supervisor,
        sockets: Mapping[int, Counted],
        *,
        reactor: Any,
        interval: float,
        kind: str = "UDP",
    ) -> None:
        self.supervisor = supervisor
        #: What the pool's workers serve, for ``ps`` (``UDP``, ``stream``).
        self.kind = kind
        self.sockets = sockets
        self.reactor = reactor
        self.interval = interval
        #: The last answer of each current process.
        self.stats: dict[WorkerProcess, WorkerStats] = {}
        #: Messages handled by the ended processes of each seat (by seat index).
        self.handled_before: dict[int, int] = {}
        self._loop: LoopingCall | None = None
        self._refresh_call: IDelayedCall | None = None
        #: Processes whose next answer must list every socket (a fetch failed).
        self._resync: set[WorkerProcess] = set()
        self._locks: dict[WorkerProcess, DeferredLock] = {}
        #: Keys some worker's answer changed since the last recount (None: all of them).
        self._dirty: set[int] | None = None
        #: The processes counted at the last recount.
        self._counted_processes: tuple[WorkerProcess, ...] = ()
        #: Per key: the socket and its own + retired values when last recounted.
        self._bases: dict[int, tuple[Counted, tuple[int, ...]]] = {}

    def start(self) -> None:
        """Refresh every ``interval`` seconds."""
        loop = LoopingCall(self.refresh)
        loop.clock = self.reactor
        loop.start(self.interval, now=False).addErrback(
            lambda failure: self.log.failure(
                "UDP worker pool {pool}: statistics", failure, pool=self.supervisor.name
            )
        )
        self._loop = loop

    def stop(self) -> None:
        """No more refreshes."""
        if self._refresh_call is not None and self._refresh_call.active():
            self._refresh_call.cancel()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def refresh(self) -> Deferred[None]:
        """Ask every ready worker for its statistics; fires when all answered."""
        waits = [
            Deferred.fromCoroutine(self.fetch(p, recount=False)) for p in self.supervisor.ready()
        ]

        def recount(_: object) -> None:
            if waits:
                self.recount()

        return settle(waits).addCallback(recount)

    def refresh_soon(self) -> None:
        """One refresh after a burst of socket changes, not one per socket.

        Each refresh asks every worker (it used to page every socket), so a
        refresh per adopted or released socket made a reload of N sockets cost
        N^2 (seen in bench/reload.py: 8 s of work after adding 500 sockets).
        """
        if self._refresh_call is None or not self._refresh_call.active():
            self._refresh_call = self.reactor.callLater(REFRESH_DELAY, self.refresh)

    async def fetch(
        self, process: WorkerProcess, *, strict: bool = False, recount: bool = True
    ) -> None:
        """Read a worker's statistics (errors ignored unless ``strict``).

        The sockets' totals are recounted unless ``recount`` is false (`refresh`
        recounts once when every worker answered).
        """
        ended = process.ended
        if ended.done:  # a late call: keep no lock for it
            return
        # One fetch at a time per worker: an answer of changes is relative to
        # the one before, and a worker records what it reported as it answers.
        lock = self._locks.setdefault(process, DeferredLock())
        await lock.acquire()
        try:
            known = None if process in self._resync else self.stats.get(process)
            self._resync.add(process)  # until this answer is complete and kept
            try:
                stats = await fetch_stats(process, known)
            except Exception:
                if strict:
                    raise
                return
            if process.ended.done:
                return
            self._resync.discard(process)
            self.stats[process] = stats
            if stats.changed is None:
                self._dirty = None
            elif self._dirty is not None:
                self._dirty |= stats.changed
        finally:
            lock.release()
        if recount:
            self.recount()

    def worker_ended(self, process: WorkerProcess) -> None:
        """Keep what an ended worker counted (per seat, and per socket still open)."""
        stats = self.stats.pop(process, None)
        self._resync.discard(process)
        self._locks.pop(process, None)
        if stats is not None:
            index = process.seat.index
            self.handled_before[index] = self.handled_before.get(index, 0) + stats.handled
            for key, counters in stats.sockets.items():
                listener = self.sockets.get(key)
                if listener is not None:
                    # Its connections ended with it: the gauge is not kept.
                    _add(listener.retired, replace(counters, connections=0))
        self.recount()

    def recount(self) -> None:
        """Each socket's counters: its own sends, retired workers' and live workers' counts.

        Only the sockets whose parts may have moved are added up again: those a
        worker's answer named, those whose own or retired counts changed, new
        ones, and all of them when the set of workers changed.
        """
        counted = [
            (seat.process, stats)
            for seat in self.supervisor.seats
            if seat.process is not None and (stats := self.stats.get(seat.process)) is not None
        ]
        live = [stats for _, stats in counted]
        processes = tuple(process for process, _ in counted)
        dirty = self._dirty if processes == self._counted_processes else None
        self._counted_processes = processes
        self._dirty = set()
        bases = self._bases
        for key, listener in self.sockets.items():
            base = _values(listener.own) + _values(listener.retired)
            last = bases.get(key)
            if (
                dirty is not None
                and key not in dirty
                and last is not None
                and last[0] is listener
                and last[1] == base
            ):
                continue
            bases[key] = (listener, base)
            parts = [_values(listener.own), _values(listener.retired)]
            for stats in live:
                held = stats.sockets.get(key)
                if held is not None:
                    parts.append(_values(held))
            totals = map(sum, zip(*parts, strict=True))
            counters = listener.counters
            for name, value in zip(COUNTER_NAMES, totals, strict=True):
                setattr(counters, name, value)
        if len(bases) > len(self.sockets):
            for key in [key for key in bases if key not in self.sockets]:
                del bases[key]

    def rows(self) -> list[dict[str, Any]]:
        """One row per worker for the MI ``ps``: pid, pool, sockets held, messages, restarts."""
        name = self.supervisor.name
        rows: list[dict[str, Any]] = []
        for seat in self.supervisor.seats:
            process = seat.process
            running = process is not None and not process.ended.done
            stats = self.stats.get(process) if process is not None and running else None
            held = sorted(stats.sockets) if stats is not None else []
            handled = self.handled_before.get(seat.index, 0)
            row: dict[str, Any] = {
                "PID": process.pid if running and process is not None else None,
                "Type": f"{self.kind} worker {name}/{seat.index}",
                "Pool": name,
                "Worker": seat.index,
                "State": seat.state,
                "Sockets": [self.socket_name(key) for key in held],
                "Handled": handled + (stats.handled if stats is not None else 0),
                "Restarts": seat.restarts,
            }
            if seat.last_exit is not None:
                row["Last exit"] = seat.last_exit
            rows.append(row)
        return rows

    def socket_name(self, key: int) -> str:
        """The socket's ``proto:host:port``, or ``released socket KEY``."""
        listener = self.sockets.get(key)
        return listener.sdef.socket_text if listener is not None else f"released socket {key}"


#: A `SocketCounters`' values in `COUNTER_NAMES` order, in one call.
_values: Callable[[SocketCounters], tuple[int, ...]] = operator.attrgetter(*COUNTER_NAMES)


def _add(total: SocketCounters, more: SocketCounters) -> None:
    for name, value in zip(COUNTER_NAMES, _values(more), strict=True):
        setattr(total, name, getattr(total, name) + value)
