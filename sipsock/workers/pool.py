"""`UdpWorkerPool`: the control process's side of a pool of UDP worker processes.

The pool starts ``size`` workers (``python -m sipsock.workers``, fresh
interpreters started with ``reactor.spawnProcess``), each connected by a
UNIX socketpair speaking AMP, and serves UDP sockets through them:

* ``udp_balance = "shared"``: the control process binds the socket (so bind
  errors are reported by the reload), passes the descriptor to every worker
  (``amp.Descriptor``) and keeps its own copy for sending only. Every worker
  reads it, registered with EPOLLEXCLUSIVE: the next idle worker takes the
  next datagram, even when one peer sends everything.
* ``udp_balance = "reuseport"``: the control process binds one SO_REUSEPORT
  member per worker and passes each to its worker, keeping none (a bound
  member that nobody reads would swallow its share of peers). The kernel
  hashes each peer to one member; the control process sends through a
  worker (`SendDatagram`).

`open` fires once every live worker acknowledged the new socket; `stop`
once every worker released it and the control copy is closed; a listener's
`update` once every worker applied the new definition. Changes made in one
reactor turn (a reload's) travel together: each worker gets one batch command
per kind (`AdoptSockets`, `UpdateSockets`, `ReleaseSockets`, `AnnounceMany`,
`WithdrawMany`, in slices of `commands.BATCH_ITEMS`), not a round trip per
socket, and each socket of a batch succeeds or fails on its own. A worker that
exits or is killed is logged with its exit status and restarted (with a
growing delay when it keeps dying), and is given every current socket before
it counts as ready. `process_rows` describes the workers for the MI ``ps``.
"""

from __future__ import annotations

import contextlib
import itertools
import operator
import os
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from sipsock.config import UDP_BALANCE_MODES
from sipsock.incidents import Incidents
from sipsock.logs import parse_worker_line
from sipsock.sockdef import SocketDef
from sipsock.transport.base import Closing, ListenError, SocketCounters
from sipsock.transport.sockopts import (
    apply_update,
    bind_socket,
    check_same_endpoint,
    configure_socket,
    describe_os_error,
    family_of,
    sockaddr_of,
)
from sipsock.workers.commands import (
    COUNTER_NAMES,
    Adoption,
    AdoptSockets,
    AnnounceMany,
    ReleaseSockets,
    SendDatagram,
    SendStream,
    Shutdown,
    Stats,
    UpdateSockets,
    WithdrawMany,
    WorkerError,
    batches,
    decode_failures,
    decode_stats_page,
    encode_adoptions,
    encode_entries,
    encode_updates,
)
from sipsock.workers.deadline import WorkerTimeoutError, within
from sipsock.workers.directory import BookEntry, SocketBook
from sipsock.workers.supervision import Backoff, answer_deadline, describe_exit

BALANCE_MODES: Final = UDP_BALANCE_MODES

#: Longest line of worker output kept before it is cut (a worker's log line is one
#: JSON object, its traceback included).
MAX_OUTPUT_LINE: Final = 65536

#: Seconds a worker whose AMP connection closed has to exit before SIGKILL.
CONNECTION_LOST_GRACE: Final = 2.0

#: Child descriptor number of the AMP socket in a worker.
WORKER_AMP_FD: Final = 3

T = TypeVar("T")


@dataclass
class WorkerStats:
    """What a worker said in its last `Stats` answer."""

    pid: int
    handled: int
    sockets: dict[int, SocketCounters] = field(default_factory=dict)


#: Kinds of queued socket changes (see `UdpWorkerPool._enqueue`).
_ADOPT: Final = "adopt"
_UPDATE: Final = "update"
_RELEASE: Final = "release"
_ANNOUNCE: Final = "announce"
_WITHDRAW: Final = "withdraw"

#: Fields the control process gives a re-logged worker line, and the names of
#: ``Logger.emit``'s own parameters (a worker field of one of these names is
#: renamed ``field_<name>``).
_WORKER_KEYS: Final = frozenset({"worker", "pid", "line", "self", "level", "format"})
#: Up to this many sockets released in one batch get a log line each (else one line).
LOG_EACH: Final = 10

#: Keys or names in one `ReleaseSockets` / `WithdrawMany` batch (a ListOf value: < 64 KiB).
RELEASE_BATCH: Final = 2000

#: Sockets in one `AnnounceMany` / `UpdateSockets` batch (no descriptors: larger slices).
ANNOUNCE_BATCH: Final = 1000

#: Seconds between the last socket change of a burst and the statistics refresh.
REFRESH_DELAY = 0.2


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


class ControlProtocol(amp.AMP):
    """The control process's end of one worker's AMP connection."""

    def __init__(self, process: WorkerProcess) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.process = process

    @SendStream.responder
    def send_stream(self, socket: str, host: str, port: int, data: bytes) -> Deferred[Any]:
        return self.process.pool.send_for_worker(socket, data, (host, port))

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        super().connectionLost(reason)  # type: ignore[no-untyped-call]
        self.process.connection_lost()


class WorkerProcess(ProcessProtocol):
    """One run of one worker: the process, its AMP connection, its last statistics."""

    def __init__(self, pool: UdpWorkerPool, seat: WorkerSeat) -> None:
        self.pool = pool
        self.seat = seat
        self.amp: ControlProtocol | None = None
        self.connected = False
        self.pid: int | None = None
        self.state = "starting"
        self.started = pool.reactor.seconds()
        self.stats: WorkerStats | None = None
        self.ended = Closing()
        self.exit_status: str | None = None
        self.ready_timer: IDelayedCall | None = None
        self.kill_timer: IDelayedCall | None = None
        #: Keys of the sockets sent to this process (so none is sent twice).
        self.given: set[int] = set()
        self._partial: dict[int, bytes] = {}

    @property
    def label(self) -> str:
        return f"{self.pool.name}/{self.seat.index}"

    @property
    def live(self) -> bool:
        """Running and connected: commands can reach it."""
        return bool(self.connected and not self.ended.done and self.amp is not None)

    def call(self, command: type[amp.Command], **arguments: Any) -> Deferred[Any]:
        """Send a command; fails at once when the worker is gone."""
        if self.amp is None or not self.live:
            return defer.fail(ConnectionError(f"worker {self.label} is gone"))
        calling: Deferred[Any] = self.amp.callRemote(command, **arguments)  # type: ignore[no-untyped-call]
        seconds = self.pool.deadline(self)
        return within(
            calling,
            seconds,
            self.pool.reactor,
            lambda: self.pool.worker_late(self, command.__name__, seconds),
        )

    def connectionMade(self) -> None:
        self.pid = self.transport.pid  # type: ignore[union-attr]

    def outReceived(self, data: bytes) -> None:
        self._output(1, data)

    def errReceived(self, data: bytes) -> None:
        self._output(2, data)

    def _output(self, fd: int, data: bytes) -> None:
        buffered = self._partial.get(fd, b"") + data
        *lines, rest = buffered.split(b"\n")
        while len(rest) > MAX_OUTPUT_LINE:
            lines.append(rest[:MAX_OUTPUT_LINE])
            rest = rest[MAX_OUTPUT_LINE:]
        self._partial[fd] = rest
        for line in lines:
            self.pool.worker_said(self, line.decode("utf-8", "replace"))

    def processEnded(self, reason: Failure) -> None:
        for _fd, rest in self._partial.items():
            if rest:
                self.pool.worker_said(self, rest.decode("utf-8", "replace"))
        self._partial.clear()
        value = reason.value
        self.exit_status = describe_exit(
            getattr(value, "exitCode", None), getattr(value, "signal", None)
        )
        self.state = "ended"
        for timer in (self.ready_timer, self.kill_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self.ended.fire()
        if self.amp is not None and self.amp.transport is not None:
            self.amp.transport.loseConnection()
        self.pool.worker_ended(self)

    def connection_lost(self) -> None:
        """The AMP connection closed: a worker that has not exited soon after is killed."""
        self.connected = False
        if not self.ended.done and self.state != "stopping":
            self.kill_timer = self.pool.reactor.callLater(CONNECTION_LOST_GRACE, self.kill)

    def kill(self) -> None:
        """SIGKILL, unless it has exited already."""
        if self.ended.done or self.transport is None:
            return
        with contextlib.suppress(ProcessExitedAlready, OSError):
            self.transport.signalProcess("KILL")

    def shutdown(self, timeout: float) -> Deferred[None]:
        """Ask the worker to exit; SIGKILL after ``timeout`` seconds. Fires when it ended."""
        return Deferred.fromCoroutine(self._shutdown(timeout))

    async def _shutdown(self, timeout: float) -> None:
        self.state = "stopping"
        if self.ended.done:
            return
        if self.live:
            asking = self.call(Shutdown)
            asking.addErrback(lambda _: None)
        reactor = self.pool.reactor
        try:
            await self.ended.wait().addTimeout(timeout, reactor)
            return
        except defer.TimeoutError:
            self.pool.log.warn(
                "UDP worker {worker} (pid {pid}) did not exit within {timeout:g} s: killing it",
                worker=self.label,
                pid=self.pid,
                timeout=timeout,
            )
        self.kill()
        try:
            await self.ended.wait().addTimeout(timeout, reactor)
        except defer.TimeoutError:
            self.pool.log.error(
                "UDP worker {worker} (pid {pid}) survived SIGKILL for {timeout:g} s",
                worker=self.label,
                pid=self.pid,
                timeout=timeout,
            )


@dataclass
class WorkerSeat:
    """A place in the pool: its number, its current process and its history."""

    index: int
    process: WorkerProcess | None = None
    restarts: int = 0
    quick_deaths: int = 0
    handled_before: int = 0
    last_exit: str | None = None
    restart_call: IDelayedCall | None = None


class UdpWorkerPool(Service):
    """``size`` UDP worker processes that serve this pool's UDP sockets (see the module).

    ``name`` names the pool in logs and ``ps``; workers build their SIP
    application from ``config_path`` (the daemon's configuration file; None
    for the built-in defaults). ``balance`` is ``"shared"`` or
    ``"reuseport"``. ``book`` is the daemon's `SocketBook`, shared by every
    pool. ``env`` is the workers' environment (this process's by default),
    ``backoff`` their restart rule; a worker not ready within
    ``ready_timeout`` seconds is killed and restarted; ``stop_timeout``
    bounds each step of stopping; statistics are read every
    ``stats_interval`` seconds. A ready worker that does not answer a
    command within ``command_timeout`` seconds is killed and replaced (the
    replacement takes every socket), and the fault is recorded in
    ``incidents`` for the report of the reload it delayed.
    """

    log = Logger()

    def __init__(
        self,
        size: int,
        name: str,
        config_path: str | None,
        *,
        balance: str = "shared",
        book: SocketBook | None = None,
        reactor: Any = None,
        python: str | None = None,
        env: dict[str, str] | None = None,
        backoff: Backoff | None = None,
        ready_timeout: float = 30.0,
        stop_timeout: float = 5.0,
        stats_interval: float = 1.0,
        command_timeout: float = 10.0,
        incidents: Incidents | None = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"UDP worker pool {name}: size must be at least 1, not {size}")
        if balance not in BALANCE_MODES:
            raise ValueError(
                f"UDP worker pool {name}: balance must be one of {', '.join(BALANCE_MODES)}, "
                f"not {balance!r}"
            )
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self.size = size
        self.name = name
        self.config_path = os.path.abspath(config_path) if config_path else None
        self.balance = balance
        self.book = book if book is not None else SocketBook()
        self.book.subscribe(self)
        self.reactor = reactor
        self.python = python or sys.executable
        self.env = dict(os.environ if env is None else env)
        self.backoff = backoff or Backoff()
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.stats_interval = stats_interval
        self.command_timeout = command_timeout
        self.incidents = incidents if incidents is not None else Incidents()
        self.seats = [WorkerSeat(index) for index in range(1, size + 1)]
        self.sockets: dict[int, PooledListener] = {}
        self._keys = itertools.count(1)
        self._turn = itertools.count()
        self._stopping = False
        self._stats_loop: LoopingCall | None = None
        self._refresh_call: IDelayedCall | None = None
        self._queue: list[tuple[str, Any, Deferred[Any]]] = []
        self._flush_call: IDelayedCall | None = None
        self._shutdown_trigger: Any = None

    @property
    def shared(self) -> bool:
        """Whether every worker reads one shared descriptor (else one member each)."""
        return self.balance == "shared"

    # --- service ----------------------------------------------------------------------

    def startService(self) -> None:
        """Start every worker and the statistics poll."""
        super().startService()  # type: ignore[no-untyped-call]
        self._stopping = False
        # Once the reactor shuts down, a worker that ends is not started again
        # (the pool itself stops after the sockets are closed, later).
        self._shutdown_trigger = self.reactor.addSystemEventTrigger(
            "before", "shutdown", self._no_more_restarts
        )
        for seat in self.seats:
            self._spawn(seat)
        loop = LoopingCall(self.refresh)
        loop.clock = self.reactor
        loop.start(self.stats_interval, now=False).addErrback(
            lambda failure: self.log.failure(
                "UDP worker pool {pool}: statistics", failure, pool=self.name
            )
        )
        self._stats_loop = loop

    def stopService(self) -> Deferred[None]:
        """Stop every worker (Shutdown, then SIGKILL after ``stop_timeout``) and close copies."""
        super().stopService()  # type: ignore[no-untyped-call]
        return Deferred.fromCoroutine(self._stop())

    def _no_more_restarts(self) -> None:
        self._stopping = True
        self._shutdown_trigger = None
        for seat in self.seats:
            if seat.restart_call is not None and seat.restart_call.active():
                seat.restart_call.cancel()
            seat.restart_call = None

    async def _stop(self) -> None:
        if self._shutdown_trigger is not None:
            self.reactor.removeSystemEventTrigger(self._shutdown_trigger)
        self._no_more_restarts()
        if self._queue:
            self._flush()
        if self._refresh_call is not None and self._refresh_call.active():
            self._refresh_call.cancel()
        if self._stats_loop is not None and self._stats_loop.running:
            self._stats_loop.stop()
        self._stats_loop = None
        processes = [s.process for s in self.seats if s.process is not None]
        await settle([p.shutdown(self.stop_timeout) for p in processes])
        for listener in list(self.sockets.values()):
            listener.close_copy()
        self.sockets.clear()
        self.log.info("UDP worker pool {pool} stopped", pool=self.name)

    # --- workers ----------------------------------------------------------------------

    def _spawn(self, seat: WorkerSeat) -> None:
        seat.restart_call = None
        if self._stopping or not self.running:
            return
        process = WorkerProcess(self, seat)
        seat.process = process
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        args = [
            self.python,
            "-m",
            "sipsock.workers",
            *(["--config", self.config_path] if self.config_path else []),
            "--pool",
            self.name,
            "--index",
            str(seat.index),
            "--fd",
            str(WORKER_AMP_FD),
            "--parent",
            str(os.getpid()),
        ]
        try:
            try:
                self.reactor.spawnProcess(
                    process,
                    self.python,
                    args,
                    env=self.env,
                    path=os.getcwd(),
                    childFDs={0: "w", 1: "r", 2: "r", WORKER_AMP_FD: child.fileno()},
                )
            finally:
                child.close()
            process.transport.closeStdin()  # type: ignore[union-attr]
            protocol = ControlProtocol(process)
            parent.setblocking(False)
            self.reactor.adoptStreamConnection(
                parent.fileno(), socket.AF_UNIX, Factory.forProtocol(lambda: protocol)
            )
        except Exception as exc:
            parent.close()
            self.log.error(
                "UDP worker {worker}: cannot start: {reason}",
                worker=process.label,
                reason=exc,
            )
            if process.transport is not None:
                process.kill()  # started, but unreachable: processEnded restarts it
                return
            if not process.ended.done:
                process.exit_status = f"not started: {exc}"
                process.state = "ended"
                process.ended.fire()
                self.worker_ended(process)
            return
        parent.close()
        process.amp = protocol
        process.connected = True
        self.log.info(
            "UDP worker {worker} started (pid {pid})", worker=process.label, pid=process.pid
        )
        process.ready_timer = self.reactor.callLater(self.ready_timeout, self._not_ready, process)
        self._sync(process)

    def _sync(self, process: WorkerProcess) -> None:
        """Give a new worker every book entry and every current socket (in batches)."""

        def adopted(refused: dict[int, str]) -> None:
            if refused:
                key, reason = next(iter(refused.items()))
                raise WorkerError(f"{self._socket_name(key)}: {reason}")

        waits: list[Deferred[Any]] = [
            self._announce_many(process, self.book.entries()),
            self._adopt_many(process, list(self.sockets.values())).addCallback(adopted),
        ]
        # A first answer in any case: ready means running, not merely spawned.
        waits.append(Deferred.fromCoroutine(self._fetch_stats(process, strict=True)))

        def synced(results: list[Any]) -> None:
            failures = [r for r in results if isinstance(r, Failure)]
            if process.ended.done or process.state != "starting":
                return
            if failures:
                self.log.error(
                    "UDP worker {worker} (pid {pid}) could not take the current sockets: "
                    "{reason}; restarting it",
                    worker=process.label,
                    pid=process.pid,
                    reason=failures[0].getErrorMessage(),
                )
                process.kill()
                return
            process.state = "ready"
            if process.ready_timer is not None and process.ready_timer.active():
                process.ready_timer.cancel()
            self.log.info(
                "UDP worker {worker} (pid {pid}) ready with {count} socket(s)",
                worker=process.label,
                pid=process.pid,
                count=len(self.sockets),
            )

        Deferred.fromCoroutine(settle(waits)).addCallback(synced)

    def _not_ready(self, process: WorkerProcess) -> None:
        process.ready_timer = None
        if process.state == "starting" and not process.ended.done:
            self.log.error(
                "UDP worker {worker} (pid {pid}) not ready within {timeout:g} s: killing it",
                worker=process.label,
                pid=process.pid,
                timeout=self.ready_timeout,
            )
            process.kill()

    def worker_ended(self, process: WorkerProcess) -> None:
        """A worker process ended: fold its counters, and restart it unless stopping."""
        seat = process.seat
        if process.stats is not None:
            seat.handled_before += process.stats.handled
            for key, counters in process.stats.sockets.items():
                listener = self.sockets.get(key)
                if listener is not None:
                    _add(listener.retired, counters)
            process.stats = None
        self._recount()
        if self._stopping or not self.running:
            self.log.info(
                "UDP worker {worker} (pid {pid}) {status}",
                worker=process.label,
                pid=process.pid,
                status=process.exit_status,
            )
            return
        lifetime = self.reactor.seconds() - process.started
        seat.quick_deaths = self.backoff.quick_deaths(seat.quick_deaths, lifetime)
        delay = self.backoff.delay(seat.quick_deaths)
        seat.restarts += 1
        seat.last_exit = process.exit_status
        self.log.warn(
            "UDP worker {worker} (pid {pid}) {status} after {lifetime:.1f} s; "
            "restarting it in {delay:g} s with {count} socket(s)",
            worker=process.label,
            pid=process.pid,
            status=process.exit_status,
            lifetime=lifetime,
            delay=delay,
            count=len(self.sockets),
        )
        seat.restart_call = self.reactor.callLater(delay, self._spawn, seat)

    def deadline(self, process: WorkerProcess) -> float:
        """Seconds ``process`` has to answer a command sent now (`answer_deadline`)."""
        return answer_deadline(
            process.state == "starting",
            process.started,
            self.reactor.seconds(),
            self.command_timeout,
            self.ready_timeout,
        )

    def worker_late(
        self, process: WorkerProcess, command: str, seconds: float
    ) -> WorkerTimeoutError:
        """``process`` missed a deadline: report it, kill it (it is replaced); the error."""
        late = WorkerTimeoutError(process.label, process.pid, command, seconds)
        if process.ended.done or process.state in ("late", "stopping"):
            return late  # reported already, or being stopped (with its own deadline)
        process.state = "late"
        then = "" if self._stopping else f"; a new worker takes its {len(self.sockets)} socket(s)"
        self.log.error(
            "UDP worker {worker} (pid {pid}) did not answer {command} within {timeout:g} s: "
            "killing it{then}",
            worker=process.label,
            pid=process.pid,
            command=command,
            timeout=seconds,
            then=then,
        )
        self.incidents.record(f"{late}: killed" + ("" if self._stopping else " and replaced"))
        process.kill()
        return late

    def worker_said(self, process: WorkerProcess, line: str) -> None:
        """Re-log a line a worker wrote under the worker's name, with its fields
        (`sipsock.logs.parse_worker_line`)."""
        level, text, fields = parse_worker_line(line)
        namespace = str(fields.pop("logger", "") or self.log.namespace)
        event = {
            (f"field_{key}" if key in _WORKER_KEYS else key): value for key, value in fields.items()
        }
        Logger(namespace=namespace, source=self, observer=self.log.observer).emit(
            level,
            "UDP worker {worker} (pid {pid}): {line}",
            **event,
            worker=process.label,
            pid=process.pid,
            line=text,
        )

    def processes(self) -> list[WorkerProcess]:
        """The current worker processes that are running and connected (and not late)."""
        return [
            s.process
            for s in self.seats
            if s.process is not None and s.process.live and s.process.state != "late"
        ]

    # --- sockets ----------------------------------------------------------------------

    def open(self, sdef: SocketDef, slot: int | None) -> Deferred[PooledListener]:
        """Bind ``sdef`` and have every live worker adopt it (a registry opener).

        Fails with `ListenError` when it cannot be bound or a worker refuses it.
        Sockets opened in the same reactor turn (a reload's) reach each worker
        in one `AdoptSockets` batch.
        """
        try:
            listener = self.bind(sdef, slot)
        except ListenError:
            return defer.fail()
        return self._adopt_and_announce(listener)

    def _adopt_and_announce(self, listener: PooledListener) -> Deferred[PooledListener]:
        """Adoption and announcement, sent in the same turn; fires when both are done.

        A socket a worker refuses is released (and so withdrawn again).
        """
        adopting: Deferred[PooledListener] = self._enqueue(_ADOPT, listener)
        announcing = self.book.put(listener, static=listener.static)

        def announced(result: PooledListener | Failure) -> Deferred[PooledListener]:
            return announcing.addCallback(lambda _: result)

        return adopting.addBoth(announced)

    def open_static(self, sdef: SocketDef) -> PooledListener:
        """Bind a static socket now (raises `ListenError`); workers take it as they start."""
        listener = self.bind(sdef, None, static=True)
        self._adopt_and_announce(listener).addErrback(
            lambda failure: self.log.error(
                "static socket {socket}: {reason}",
                socket=sdef.socket_text,
                reason=failure.getErrorMessage(),
            )
        )
        return listener

    def bind(self, sdef: SocketDef, slot: int | None, *, static: bool = False) -> PooledListener:
        """Bind ``sdef`` in the control process (raises `ListenError`) and add it to the pool.

        Shared mode keeps the bound socket as the control copy. Reuseport
        mode binds a member only to check that the address can be had, and
        closes it at once: members are bound for each worker.
        """
        if sdef.proto != "udp":
            raise ListenError(sdef, "a UDP worker pool serves UDP sockets only")
        sock: socket.socket | None
        if self.shared:
            sock = bind_socket(sdef)
        else:
            bind_member(sdef).close()
            sock = None
        listener = PooledListener(self, next(self._keys), sdef, slot, sock, static=static)
        self.sockets[listener.key] = listener
        return listener

    # --- batches ------------------------------------------------------------------------

    def _enqueue(self, kind: str, item: Any) -> Deferred[Any]:
        """Queue one socket change for the next batch; fires with its own result.

        Changes queued in one reactor turn are sent together, in order, one
        batch command per kind and worker. With no live worker there is
        nothing to batch: the change is carried out at once.
        """
        done: Deferred[Any] = Deferred()
        self._queue.append((kind, item, done))
        if self._flush_call is not None and self._flush_call.active():
            return done
        if self.processes():
            self._flush_call = self.reactor.callLater(0, self._flush)
        else:
            self._flush()
        return done

    def _flush(self) -> None:
        """Send every queued change: the changes of one kind form one batch.

        Batches go out in the order their kinds first appear, each in queue
        order. Changes of different kinds queued in one turn concern different
        sockets (a socket is adopted and announced together; it is withdrawn
        a turn before it is released), so regrouping them changes nothing.
        """
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        queue, self._queue = self._queue, []
        groups: dict[str, list[tuple[Any, Deferred[Any]]]] = {}
        for kind, item, done in queue:
            groups.setdefault(kind, []).append((item, done))
        for kind, queued in groups.items():
            items = [item for item, _ in queued]
            waiters = [done for _, done in queued]
            running = Deferred.fromCoroutine(self._run_batch(kind, items))
            running.addCallbacks(_fire_each(waiters), _fail_each(waiters))

    async def _run_batch(self, kind: str, items: list[Any]) -> list[Any]:
        """One result (a value or a `Failure`) per item of a batch of ``kind``."""
        if kind == _ADOPT:
            return await self._distribute(items)
        if kind == _UPDATE:
            await self._update_all(items)
        elif kind == _RELEASE:
            await self._release_all(items)
        elif kind == _ANNOUNCE:
            await self._announce_all(items)
        else:
            await self._withdraw_all(items)
        return [None] * len(items)

    async def _distribute(self, listeners: list[PooledListener]) -> list[Any]:
        """Every live worker adopts ``listeners``; a listener refused by one is released."""
        processes = self.processes()
        answers = await settle(
            [
                self._adopt_many(process, _rotated(listeners, index, len(processes)))
                for index, process in enumerate(processes)
            ]
        )
        refused: dict[int, str] = {}
        for process, answer in zip(processes, answers, strict=True):
            if isinstance(answer, Failure):
                # A worker that went away is restarted with every socket: not a refusal.
                if isinstance(answer.value, WorkerError | ListenError):
                    for listener in listeners:
                        refused.setdefault(
                            listener.key,
                            f"UDP worker {process.label} refused it: {answer.getErrorMessage()}",
                        )
                continue
            for key, reason in answer.items():
                refused.setdefault(key, f"UDP worker {process.label} refused it: {reason}")
        results: list[Any] = []
        accepted: list[PooledListener] = []
        for listener in listeners:
            refusal = refused.get(listener.key)
            if refusal is None:
                accepted.append(listener)
                results.append(listener)
                continue
            self.log.error(
                "socket {socket}: {reason}", socket=listener.sdef.socket_text, reason=refusal
            )
            results.append(Failure(ListenError(listener.sdef, refusal)))  # type: ignore[no-untyped-call]
        await settle([self.release(lst) for lst in listeners if lst.key in refused])
        self._refresh_soon()
        return results

    def _adopt_many(
        self, process: WorkerProcess, listeners: Sequence[PooledListener]
    ) -> Deferred[dict[int, str]]:
        """Pass the descriptors (or new members) of ``listeners`` to one worker, batched.

        Fires with the keys the worker (or binding its member) refused, and
        why. A listener this worker was already given is skipped.
        """
        refused: dict[int, str] = {}
        members: list[socket.socket] = []
        items: list[tuple[Adoption, int]] = []
        for listener in listeners:
            if listener.key in process.given:
                continue
            if listener.sock is not None:
                fd = listener.sock.fileno()
            else:
                try:
                    member = bind_member(listener.sdef)
                except ListenError as error:
                    refused[listener.key] = error.reason
                    continue
                members.append(member)
                fd = member.fileno()
            process.given.add(listener.key)
            adoption = Adoption(
                listener.key, listener.slot, listener.sock is not None, listener.sdef
            )
            items.append((adoption, fd))
        sending = [
            process.call(
                AdoptSockets,
                sockets=encode_adoptions([adoption for adoption, _ in batch]),
                fds=[fd for _, fd in batch],
            )
            for batch in batches(items)
        ]

        async def answered() -> dict[int, str]:
            try:
                for sent in sending:
                    answer = await sent
                    refused.update(decode_failures(answer["failed"]))
            finally:
                # The worker has its own copy once it answered (or it is gone).
                await settle(sending)
                for member in members:
                    member.close()
            return refused

        return Deferred.fromCoroutine(answered())

    def _announce_many(
        self, process: WorkerProcess, entries: Sequence[BookEntry]
    ) -> Deferred[None]:
        """Tell one worker about ``entries`` (batched); fails when a batch fails."""
        items = [(entry.name, entry.slot, entry.static, entry.sdef) for entry in entries]
        return _all_or_first_failure(
            [
                process.call(AnnounceMany, entries=encode_entries(batch))
                for batch in batches(items, ANNOUNCE_BATCH)
            ]
        )

    def release(self, listener: PooledListener) -> Deferred[None]:
        """Take ``listener`` away from every worker, then close the control copy."""
        if listener.closing is None:
            listener.closing = closing = Closing()
            Deferred.fromCoroutine(self._release(listener)).addBoth(lambda _: closing.fire())
        return listener.closing.wait()

    async def _release(self, listener: PooledListener) -> None:
        self.sockets.pop(listener.key, None)
        await self.book.drop(listener)
        await self._enqueue(_RELEASE, listener)
        listener.close_copy()
        self._refresh_soon()

    async def _release_all(self, listeners: list[PooledListener]) -> None:
        """Every live worker closes ``listeners`` (batched); a worker that cannot is restarted."""
        keys = [listener.key for listener in listeners]
        processes = self.processes()
        sending = []
        for process in processes:
            process.given.difference_update(keys)
            sending.append(
                _all_or_first_failure(
                    [
                        process.call(ReleaseSockets, keys=batch)
                        for batch in batches(keys, RELEASE_BATCH)
                    ]
                )
            )
        results = await settle(sending)
        for process, result in zip(processes, results, strict=True):
            if isinstance(result, Failure) and isinstance(result.value, WorkerError):
                self.log.error(
                    "sockets {sockets}: UDP worker {worker} could not release them ({reason}); "
                    "restarting the worker so that it lets go",
                    sockets=_names(listeners),
                    worker=process.label,
                    reason=result.getErrorMessage(),
                )
                process.kill()
        if len(listeners) <= LOG_EACH:
            for listener in listeners:
                self.log.info(
                    "socket {socket} (slot {slot}) released by the {pool} UDP workers",
                    socket=listener.sdef.socket_text,
                    slot=listener.slot,
                    pool=self.name,
                )
            return
        self.log.info(
            "{count} sockets released by the {pool} UDP workers: {listing}",
            count=len(listeners),
            pool=self.name,
            listing=", ".join(f"{lst.sdef.socket_text} slot {lst.slot}" for lst in listeners),
            sockets=[listener.sdef.socket_text for listener in listeners],
        )

    def update_socket(self, listener: PooledListener, sdef: SocketDef) -> Deferred[None]:
        """Apply a definition of the same endpoint in place (raises `ListenError`).

        The control copy changes now; the returned Deferred fires once every
        live worker applied the new definition too (updates of one reactor
        turn travel in one `UpdateSockets` batch). A worker that refuses is
        restarted, and takes the new definition as it starts.
        """
        old = listener.sdef
        check_same_endpoint(old, sdef)
        try:
            if listener.sock is not None:
                apply_update(listener.sock, old, sdef)
            else:
                # Members live in the workers: check that the kernel takes the options.
                with socket.socket(family_of(sdef), socket.SOCK_DGRAM) as scratch:
                    configure_socket(scratch, sdef)
        except OSError as exc:
            raise ListenError(sdef, describe_os_error(exc)) from exc
        listener.sdef = sdef
        updating: Deferred[None] = self._enqueue(_UPDATE, listener)
        announcing = self.book.put(listener, static=listener.static)
        return _all_or_first_failure([updating, announcing])

    async def _update_all(self, listeners: list[PooledListener]) -> None:
        unique = list({listener.key: listener for listener in listeners}.values())
        items = [(listener.key, listener.sdef) for listener in unique]
        encoded = [encode_updates(batch) for batch in batches(items, ANNOUNCE_BATCH)]
        processes = self.processes()
        sending = [
            [process.call(UpdateSockets, sockets=batch) for batch in encoded]
            for process in processes
        ]
        by_key = {listener.key: listener for listener in unique}
        for process, calls in zip(processes, sending, strict=True):
            for result in await settle(calls):
                if isinstance(result, Failure):
                    if isinstance(result.value, WorkerError):
                        self._update_failed(process, _names(unique), result.getErrorMessage())
                    continue
                for key, reason in decode_failures(result["failed"]).items():
                    listener = by_key.get(key)
                    name = listener.sdef.socket_text if listener else f"key {key}"
                    self._update_failed(process, name, reason)

    def _update_failed(self, process: WorkerProcess, name: str, reason: str) -> None:
        self.log.error(
            "socket {socket}: UDP worker {worker} could not update it ({reason}); "
            "restarting the worker",
            socket=name,
            worker=process.label,
            reason=reason,
        )
        process.kill()

    def send(self, listener: PooledListener, data: bytes, peer: tuple[str, int]) -> Deferred[None]:
        """Send from the control copy (shared mode) or through a worker (reuseport mode)."""
        counters = listener.own
        if listener.sock is not None:
            try:
                listener.sock.sendto(data, peer)
            except OSError as exc:
                counters.drops += 1
                return defer.fail(exc)
            counters.count_out(data)
            listener.counters.count_out(data)
            return defer.succeed(None)
        ready = [p for p in self.processes() if p.state == "ready"]
        if not ready or listener.closing is not None:
            counters.drops += 1
            return defer.fail(
                ConnectionError(f"{listener.sdef.socket_text}: no UDP worker is running")
            )
        process = ready[next(self._turn) % len(ready)]
        sending = process.call(
            SendDatagram, key=listener.key, host=peer[0], port=peer[1], data=data
        )

        def sent(_: Any) -> None:
            counters.count_out(data)

        def failed(failure: Failure) -> Failure:
            counters.drops += 1
            return failure

        return sending.addCallbacks(sent, failed)

    def send_for_worker(self, name: str, data: bytes, peer: tuple[str, int]) -> Deferred[Any]:
        """`SendStream`: send through the daemon's socket ``name``; fails with `WorkerError`."""

        def failed(failure: Failure) -> None:
            raise WorkerError(
                f"cannot send to {peer[0]}:{peer[1]} through {name}: "
                f"{failure.getErrorMessage() or type(failure.value).__name__}"
            )

        return self.book.send(name, data, peer).addCallbacks(lambda _: {}, failed)

    # --- SocketBook subscriber ----------------------------------------------------------

    def announce(self, entry: BookEntry) -> Deferred[None]:
        """Tell every worker about a socket of the daemon (batched with the turn's others)."""
        announcing: Deferred[None] = self._enqueue(_ANNOUNCE, entry)
        return announcing

    def withdraw(self, name: str) -> Deferred[None]:
        """Tell every worker a socket of the daemon is gone (batched with the turn's others)."""
        withdrawing: Deferred[None] = self._enqueue(_WITHDRAW, name)
        return withdrawing

    async def _announce_all(self, entries: list[BookEntry]) -> None:
        await settle([self._announce_many(p, entries) for p in self.processes()])

    async def _withdraw_all(self, names: list[str]) -> None:
        waits = [
            process.call(WithdrawMany, sockets=batch)
            for process in self.processes()
            for batch in batches(names, RELEASE_BATCH)
        ]
        await settle(waits)

    # --- statistics -------------------------------------------------------------------

    def refresh(self) -> Deferred[None]:
        """Ask every ready worker for its statistics; fires when all answered."""
        waits = [self._refresh_one(p) for p in self.processes() if p.state == "ready"]

        def recount(_: object) -> None:
            if waits:
                self._recount()

        return Deferred.fromCoroutine(settle(waits)).addCallback(recount)

    def _refresh_soon(self) -> None:
        """One refresh after a burst of socket changes, not one per socket.

        Each refresh pages every socket's counters from every worker, so a
        refresh per adopted or released socket made a reload of N sockets cost
        N^2 (seen in bench/reload.py: 8 s of work after adding 500 sockets).
        """
        if self._refresh_call is None or not self._refresh_call.active():
            self._refresh_call = self.reactor.callLater(REFRESH_DELAY, self.refresh)

    def _refresh_one(self, process: WorkerProcess) -> Deferred[None]:
        return Deferred.fromCoroutine(self._fetch_stats(process, recount=False))

    async def _fetch_stats(
        self, process: WorkerProcess, *, strict: bool = False, recount: bool = True
    ) -> None:
        """Read a worker's statistics (errors ignored unless ``strict``).

        The sockets' totals are recounted unless ``recount`` is false (`refresh`
        recounts once when every worker answered).
        """
        sockets: dict[int, SocketCounters] = {}
        start = 0
        try:
            while True:
                answer = await process.call(Stats, start=start)
                page = decode_stats_page(answer["sockets"])
                sockets.update((s.key, s.counters) for s in page)
                if not answer["more"] or not page:  # an empty page would never end
                    break
                start += len(page)
        except Exception:
            if strict:
                raise
            return
        if process.ended.done:
            return
        process.stats = WorkerStats(answer["pid"], answer["handled"], sockets)
        if recount:
            self._recount()

    def _recount(self) -> None:
        """Each socket's counters: its own sends, retired workers' and live workers' counts."""
        live = [s.process.stats for s in self.seats if s.process is not None and s.process.stats]
        for key, listener in self.sockets.items():
            parts = [_values(listener.own), _values(listener.retired)]
            for stats in live:
                held = stats.sockets.get(key)
                if held is not None:
                    parts.append(_values(held))
            totals = map(sum, zip(*parts, strict=True))
            counters = listener.counters
            for name, value in zip(COUNTER_NAMES, totals, strict=True):
                setattr(counters, name, value)

    def process_rows(self) -> list[dict[str, Any]]:
        """One row per worker for the MI ``ps``: pid, pool, sockets held, messages, restarts."""
        rows: list[dict[str, Any]] = []
        for seat in self.seats:
            process = seat.process
            running = process is not None and not process.ended.done
            stats = process.stats if process is not None and running else None
            held = sorted(stats.sockets) if stats is not None else []
            row: dict[str, Any] = {
                "PID": process.pid if running and process is not None else None,
                "Type": f"UDP worker {self.name}/{seat.index}",
                "Pool": self.name,
                "Worker": seat.index,
                "State": self._state_of(seat),
                "Sockets": [self._socket_name(key) for key in held],
                "Handled": seat.handled_before + (stats.handled if stats is not None else 0),
                "Restarts": seat.restarts,
            }
            if seat.last_exit is not None:
                row["Last exit"] = seat.last_exit
            rows.append(row)
        return rows

    @staticmethod
    def _state_of(seat: WorkerSeat) -> str:
        process = seat.process
        if process is not None and not process.ended.done:
            return process.state
        if seat.restart_call is not None and seat.restart_call.active():
            return "restarting"
        return "stopped"

    def _socket_name(self, key: int) -> str:
        listener = self.sockets.get(key)
        return listener.sdef.socket_text if listener is not None else f"released socket {key}"


def _rotated(items: Sequence[T], index: int, count: int) -> list[T]:
    """``items`` starting ``index / count`` of the way in (and wrapping round).

    Worker ``index`` of ``count`` adopts a batch in this order. A shared socket
    answers as soon as any one worker holds it, so with every worker starting
    elsewhere the whole batch answers after about 1/count of the work, not all.
    """
    if not items or count < 2:
        return list(items)
    start = index * len(items) // count
    return [*items[start:], *items[:start]]


def _fire_each(waiters: Sequence[Deferred[Any]]) -> Callable[[list[Any]], None]:
    """Fire each waiter with its own result (a `Failure` fails it)."""

    def fire(results: list[Any]) -> None:
        for waiter, result in zip(waiters, results, strict=True):
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)

    return fire


def _fail_each(waiters: Sequence[Deferred[Any]]) -> Callable[[Failure], None]:
    """Fail every waiter with the failure of their whole batch."""

    def fail(failure: Failure) -> None:
        for waiter in waiters:
            waiter.errback(failure)

    return fail


def _all_or_first_failure(waits: Sequence[Deferred[Any]]) -> Deferred[None]:
    """Fires with None once all of ``waits`` fired; fails with the first failure, if any."""

    async def gather() -> None:
        failures = [r for r in await settle(waits) if isinstance(r, Failure)]
        if failures:
            failures[0].raiseException()

    return Deferred.fromCoroutine(gather())


def _names(listeners: Sequence[PooledListener], most: int = 3) -> str:
    """``a, b, c and 7 more``: sockets named in one log line."""
    names = [listener.sdef.socket_text for listener in listeners[:most]]
    more = len(listeners) - len(names)
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


def bind_member(sdef: SocketDef) -> socket.socket:
    """A new SO_REUSEPORT member of ``sdef``'s group, bound (raises `ListenError`)."""
    try:
        sock = socket.socket(family_of(sdef), socket.SOCK_DGRAM)
    except OSError as exc:
        raise ListenError(sdef, describe_os_error(exc)) from exc
    try:
        configure_socket(sock, sdef)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr_of(sdef))
    except OSError as exc:
        sock.close()
        raise ListenError(sdef, describe_os_error(exc)) from exc
    return sock


#: A `SocketCounters`' values in `COUNTER_NAMES` order, in one call.
_values: Callable[[SocketCounters], tuple[int, ...]] = operator.attrgetter(*COUNTER_NAMES)


def _add(total: SocketCounters, more: SocketCounters) -> None:
    for name, value in zip(COUNTER_NAMES, _values(more), strict=True):
        setattr(total, name, getattr(total, name) + value)


async def settle(waits: Sequence[Deferred[T]]) -> list[T | Failure]:
    """Wait for every Deferred; each result is its value or its Failure."""
    results: list[T | Failure] = []
    for wait in waits:
        try:
            results.append(await wait)
        except Exception:
            results.append(Failure())  # type: ignore[no-untyped-call]
    return results
