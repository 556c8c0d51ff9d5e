"""`Supervisor`: the worker processes of one pool: spawn, handshake, ready, restart, exit.

Each seat of the pool runs one ``python -m sipsock.workers`` process at a
time, connected by a UNIX socketpair speaking AMP, and by a second one that
carries only relayed messages (`sipsock.workers.relaychannel`). A new process gets the
frozen `AppSpec` first (`Start`), then whatever its pool gives it
(`PoolSide.sync`); it is ready once all of that is answered, and killed when
it is not ready within ``ready_timeout``. A process that ends is reported
with its exit status and restarted, with a growing delay when it keeps dying
(`Backoff`); one that misses a command's deadline is killed and replaced.
What the workers write on stdout/stderr is re-logged under their name.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from sipsock.apps.spec import AppSpec
from sipsock.deferreds import settle
from sipsock.incidents import Incidents
from sipsock.logs import parse_worker_line
from sipsock.transport.base import Closing
from sipsock.workers.commands import (
    SendManyThroughSockets,
    SendThroughSocket,
    Shutdown,
    Start,
    encode_spec,
)
from sipsock.workers.deadline import WorkerTimeoutError, within
from sipsock.workers.descriptorwrite import send_descriptors_together
from sipsock.workers.directwrite import write_at_once
from sipsock.workers.relaybatch import send_relays
from sipsock.workers.relaychannel import RelayChannel
from sipsock.workers.supervision import Backoff, answer_deadline, describe_exit

#: Longest line of worker output kept before it is cut (a worker's log line is one
#: JSON object, its traceback included).
MAX_OUTPUT_LINE: Final = 65536

#: Seconds a worker whose AMP connection closed has to exit before SIGKILL.
CONNECTION_LOST_GRACE: Final = 2.0

#: Child descriptor number of the AMP socket in a worker.
WORKER_AMP_FD: Final = 3
#: Child descriptor number of the relay channel's socket in a worker.
WORKER_RELAY_FD: Final = 4

#: Fields the control process gives a re-logged worker line, and the names of
#: ``Logger.emit``'s own parameters (a worker field of one of these names is
#: renamed ``field_<name>``).
_WORKER_KEYS: Final = frozenset({"worker", "kind", "pid", "line", "self", "level", "format"})


class PoolSide(Protocol):
    """What the supervisor asks of its pool."""

    def sync(self, process: WorkerProcess) -> Deferred[None]:
        """Give a started worker everything current; fires when it holds it all."""

    def worker_ended(self, process: WorkerProcess) -> None:
        """A worker process ended (its counters are folded in)."""

    def send_for_worker(self, name: str, data: bytes, peer: tuple[str, int]) -> Deferred[Any]:
        """`SendThroughSocket` from a worker: send through the daemon's socket ``name``."""

    def socket_count(self) -> int:
        """How many sockets a new worker takes (for log lines)."""


class ControlProtocol(amp.AMP):
    """The control process's end of one worker's AMP connection."""

    def __init__(self, process: WorkerProcess) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.process = process

    @SendThroughSocket.responder
    def send_through_socket(self, socket: str, host: str, port: int, data: bytes) -> Deferred[Any]:
        return self.process.supervisor.side.send_for_worker(socket, data, (host, port))

    @SendManyThroughSockets.responder
    def send_many_through_sockets(self, messages: bytes) -> Deferred[dict[str, Any]]:
        sending = send_relays(self.process.supervisor.side.send_for_worker, messages)
        return sending.addCallback(lambda failed: {"failed": failed})

    def connectionMade(self) -> None:
        super().connectionMade()  # type: ignore[no-untyped-call]
        write_at_once(self.transport)
        send_descriptors_together(self.transport)  # a batch's descriptors: one message

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        super().connectionLost(reason)  # type: ignore[no-untyped-call]
        self.process.connection_lost()


class WorkerProcess(ProcessProtocol):
    """One run of one worker: the process, its AMP connection, its state."""

    def __init__(self, supervisor: Supervisor, seat: WorkerSeat) -> None:
        self.supervisor = supervisor
        self.seat = seat
        self.amp: ControlProtocol | None = None
        #: The relay channel (`RelayChannel`): relayed messages both ways.
        self.relays: RelayChannel | None = None
        self.connected = False
        self.pid: int | None = None
        self.state = "starting"
        self.started = supervisor.reactor.seconds()
        self.ended = Closing()
        self.exit_status: str | None = None
        self.ready_timer: IDelayedCall | None = None
        self.kill_timer: IDelayedCall | None = None
        #: Keys of the sockets sent to this process (so none is sent twice).
        self.given: set[int] = set()
        self._partial: dict[int, bytes] = {}

    @property
    def label(self) -> str:
        return f"{self.supervisor.name}/{self.seat.index}"

    @property
    def kind(self) -> str:
        """What its pool's workers are called in log lines ("UDP worker", "stream worker")."""
        return self.supervisor.kind

    @property
    def live(self) -> bool:
        """Running and connected: commands can reach it."""
        return bool(self.connected and not self.ended.done and self.amp is not None)

    def call(self, command: type[amp.Command], **arguments: Any) -> Deferred[Any]:
        """Send a command; fails at once when the worker is gone, or late (`within`)."""
        if self.amp is None or not self.live:
            return defer.fail(ConnectionError(f"worker {self.label} is gone"))
        calling: Deferred[Any] = self.amp.callRemote(command, **arguments)  # type: ignore[no-untyped-call]
        supervisor = self.supervisor
        seconds = supervisor.deadline(self)
        return within(
            calling,
            seconds,
            supervisor.reactor,
            lambda: supervisor.worker_late(self, command.__name__, seconds),
        )

    def relay(self, messages: bytes) -> Deferred[bytes]:
        """Send one `encode_relays` batch on the relay channel; fires with its ``failed``
        answer (`encode_failures`), or fails at once when the worker is gone, or late."""
        channel = self.relays
        if channel is None or not self.live:
            return defer.fail(ConnectionError(f"worker {self.label} is gone"))
        supervisor = self.supervisor
        seconds = supervisor.deadline(self)
        return within(
            channel.call(messages),
            seconds,
            supervisor.reactor,
            lambda: supervisor.worker_late(self, "a relay batch", seconds),
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
            self.supervisor.worker_said(self, line.decode("utf-8", "replace"))

    def processEnded(self, reason: Failure) -> None:
        for _fd, rest in self._partial.items():
            if rest:
                self.supervisor.worker_said(self, rest.decode("utf-8", "replace"))
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
        if self.relays is not None and self.relays.transport is not None:
            self.relays.transport.loseConnection()
        self.supervisor.worker_ended(self)

    def connection_lost(self) -> None:
        """The AMP connection or the relay channel closed: a worker that has not exited
        soon after is killed (once, whichever closed first)."""
        self.connected = False
        if self.kill_timer is not None and self.kill_timer.active():
            return
        if not self.ended.done and self.state != "stopping":
            self.kill_timer = self.supervisor.reactor.callLater(CONNECTION_LOST_GRACE, self.kill)

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
        reactor = self.supervisor.reactor
        log = self.supervisor.log
        try:
            await self.ended.wait().addTimeout(timeout, reactor)
            return
        except defer.TimeoutError:
            log.warn(
                "{kind} {worker} (pid {pid}) did not exit within {timeout:g} s: killing it",
                worker=self.label,
                kind=self.kind,
                pid=self.pid,
                timeout=timeout,
            )
        self.kill()
        try:
            await self.ended.wait().addTimeout(timeout, reactor)
        except defer.TimeoutError:
            log.error(
                "{kind} {worker} (pid {pid}) survived SIGKILL for {timeout:g} s",
                worker=self.label,
                kind=self.kind,
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
    last_exit: str | None = None
    restart_call: IDelayedCall | None = None
    #: Leaving the pool (it shrinks): not restarted when its process ends.
    retiring: bool = False

    @property
    def state(self) -> str:
        """The process's state, else ``restarting`` (a restart is due) or ``stopped``."""
        process = self.process
        if process is not None and not process.ended.done:
            return process.state
        if self.restart_call is not None and self.restart_call.active():
            return "restarting"
        return "stopped"


@dataclass
class SupervisorSettings:
    """How a pool's workers are started and held to account (see `UdpWorkerPool`)."""

    python: str
    env: dict[str, str]
    backoff: Backoff
    ready_timeout: float = 30.0
    stop_timeout: float = 5.0
    command_timeout: float = 10.0


class Supervisor:
    """The ``size`` worker processes of the pool ``name`` (see the module)."""

    log = Logger(namespace="sipsock.workers.pool.UdpWorkerPool")

    def __init__(
        self,
        name: str,
        size: int,
        spec: AppSpec,
        settings: SupervisorSettings,
        side: PoolSide,
        *,
        reactor: Any,
        incidents: Incidents,
        control: Callable[[WorkerProcess], ControlProtocol] | None = None,
    ) -> None:
        self.name = name
        #: What the workers are called in log lines (a stream pool says "stream worker").
        self.kind = "UDP worker"
        #: Builds the control end of each worker's AMP connection (a pool may add commands).
        self.control = control if control is not None else ControlProtocol
        self.spec = spec
        self._spec_wire = encode_spec(spec)
        self.settings = settings
        self.side = side
        self.reactor = reactor
        self.incidents = incidents
        self.seats = [WorkerSeat(index) for index in range(1, size + 1)]
        #: Started and not stopping: a worker that ends is restarted.
        self.active = False
        #: Told to stop (a late worker is then not replaced).
        self.stopping = False
        self._shutdown_trigger: Any = None
        #: Called with each worker that becomes ready (`sipsock.workers.channels`).
        self.on_ready: list[Callable[[WorkerProcess], None]] = []

    # --- start and stop ---------------------------------------------------------------

    def start(self) -> None:
        """Start every worker; none is restarted once the reactor shuts down."""
        self.active = True
        self.stopping = False
        # Once the reactor shuts down, a worker that ends is not started again
        # (the pool itself stops after the sockets are closed, later).
        self._shutdown_trigger = self.reactor.addSystemEventTrigger(
            "before", "shutdown", self.no_more_restarts
        )
        for seat in self.seats:
            self._spawn(seat)

    def no_more_restarts(self) -> None:
        """Workers that end from now on stay ended."""
        self.active = False
        self.stopping = True
        if self._shutdown_trigger is not None:
            with contextlib.suppress(ValueError, KeyError):
                self.reactor.removeSystemEventTrigger(self._shutdown_trigger)
            self._shutdown_trigger = None
        for seat in self.seats:
            if seat.restart_call is not None and seat.restart_call.active():
                seat.restart_call.cancel()
            seat.restart_call = None

    async def stop(self) -> None:
        """Stop every worker (`Shutdown`, then SIGKILL after ``stop_timeout``)."""
        self.no_more_restarts()
        processes = [s.process for s in self.seats if s.process is not None]
        await settle([p.shutdown(self.settings.stop_timeout) for p in processes])

    def processes(self) -> list[WorkerProcess]:
        """The current worker processes that are running and connected (and not late)."""
        return [
            s.process
            for s in self.seats
            if s.process is not None
            and s.process.live
            and s.process.state not in ("late", "retiring")
        ]

    def ready(self) -> list[WorkerProcess]:
        """The current worker processes that are ready."""
        return [p for p in self.processes() if p.state == "ready"]

    def add_seat(self) -> WorkerSeat | None:
        """One more worker (the pool grows); None once stopping. It is ready, like a
        restarted one, only once it holds everything its pool gives it."""
        if not self.active:
            return None
        seat = WorkerSeat(max((s.index for s in self.seats), default=0) + 1)
        self.seats.append(seat)
        self._spawn(seat)
        return seat

    # --- one worker ---------------------------------------------------------------------

    def _spawn(self, seat: WorkerSeat) -> None:
        seat.restart_call = None
        if not self.active:
            return
        process = WorkerProcess(self, seat)
        seat.process = process
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        relay_parent, relay_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        python = self.settings.python
        args = [python, "-m", "sipsock.workers", "--pool", self.name, "--index", str(seat.index)]
        args += ["--log-level", self.spec.settings.core.log_level]
        args += ["--fd", str(WORKER_AMP_FD), "--relay-fd", str(WORKER_RELAY_FD)]
        args += ["--parent", str(os.getpid())]
        fds = {WORKER_AMP_FD: child.fileno(), WORKER_RELAY_FD: relay_child.fileno()}
        try:
            try:
                self.reactor.spawnProcess(
                    process,
                    python,
                    args,
                    env=self.settings.env,
                    path=os.getcwd(),
                    childFDs={0: "w", 1: "r", 2: "r", **fds},
                )
            finally:
                child.close()
                relay_child.close()
            process.transport.closeStdin()  # type: ignore[union-attr]
            protocol = self.control(process)
            parent.setblocking(False)
            self.reactor.adoptStreamConnection(
                parent.fileno(), socket.AF_UNIX, Factory.forProtocol(lambda: protocol)
            )
            channel = self._relay_channel(process)
            relay_parent.setblocking(False)
            self.reactor.adoptStreamConnection(
                relay_parent.fileno(), socket.AF_UNIX, Factory.forProtocol(lambda: channel)
            )
        except Exception as exc:
            parent.close()
            relay_parent.close()
            self.log.error(
                "{kind} {worker}: cannot start: {reason}",
                worker=process.label,
                kind=process.kind,
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
        relay_parent.close()
        process.amp = protocol
        process.relays = channel
        process.connected = True
        self.log.info(
            "{kind} {worker} started (pid {pid})",
            worker=process.label,
            kind=process.kind,
            pid=process.pid,
        )
        process.ready_timer = self.reactor.callLater(
            self.settings.ready_timeout, self._not_ready, process
        )
        self._handshake(process)

    def _relay_channel(self, process: WorkerProcess) -> RelayChannel:
        """The control end of ``process``'s relay channel: it sends what the worker relays."""
        side = self.side

        def serve(messages: bytes) -> Deferred[bytes]:
            return send_relays(side.send_for_worker, messages)

        channel = RelayChannel(serve, f"relay channel to {process.kind} {process.label}")
        channel.on_lost = process.connection_lost
        return channel

    def _handshake(self, process: WorkerProcess) -> None:
        """`Start` with the frozen spec, then the pool's sync: ready when both answered.

        The pool's commands follow `Start` on the same connection, so the
        worker reads them once its application is built.
        """
        starting = process.call(Start, spec=self._spec_wire)
        syncing = self.side.sync(process)

        def synced(results: list[Any]) -> None:
            start_failure, sync_failure = (r if isinstance(r, Failure) else None for r in results)
            if process.ended.done or process.state != "starting":
                return
            if start_failure is not None:
                # The worker says why and exits by itself (its ready timer is the backstop).
                self.log.error(
                    "{kind} {worker} (pid {pid}) cannot start: {reason}",
                    worker=process.label,
                    kind=process.kind,
                    pid=process.pid,
                    reason=start_failure.getErrorMessage(),
                )
                return
            if sync_failure is not None:
                self.log.error(
                    "{kind} {worker} (pid {pid}) could not take the current sockets: "
                    "{reason}; restarting it",
                    worker=process.label,
                    kind=process.kind,
                    pid=process.pid,
                    reason=sync_failure.getErrorMessage(),
                )
                process.kill()
                return
            process.state = "ready"
            if process.ready_timer is not None and process.ready_timer.active():
                process.ready_timer.cancel()
            self.log.info(
                "{kind} {worker} (pid {pid}) ready with {count} socket(s)",
                worker=process.label,
                kind=process.kind,
                pid=process.pid,
                count=self.side.socket_count(),
            )
            for ready in self.on_ready:
                ready(process)

        settle([starting, syncing]).addCallback(synced)

    def _not_ready(self, process: WorkerProcess) -> None:
        process.ready_timer = None
        if process.state == "starting" and not process.ended.done:
            self.log.error(
                "{kind} {worker} (pid {pid}) not ready within {timeout:g} s: killing it",
                worker=process.label,
                kind=process.kind,
                pid=process.pid,
                timeout=self.settings.ready_timeout,
            )
            process.kill()

    def worker_ended(self, process: WorkerProcess) -> None:
        """A worker process ended: tell the pool, report it, restart it unless stopping."""
        seat = process.seat
        self.side.worker_ended(process)
        if seat.retiring:
            if seat in self.seats:
                self.seats.remove(seat)
            self.log.info(
                "{kind} {worker} (pid {pid}) left the pool: {status}",
                worker=process.label,
                kind=process.kind,
                pid=process.pid,
                status=process.exit_status,
            )
            return
        if not self.active:
            self.log.info(
                "{kind} {worker} (pid {pid}) {status}",
                worker=process.label,
                kind=process.kind,
                pid=process.pid,
                status=process.exit_status,
            )
            return
        backoff = self.settings.backoff
        lifetime = self.reactor.seconds() - process.started
        seat.quick_deaths = backoff.quick_deaths(seat.quick_deaths, lifetime)
        delay = backoff.delay(seat.quick_deaths)
        seat.restarts += 1
        seat.last_exit = process.exit_status
        self.log.warn(
            "{kind} {worker} (pid {pid}) {status} after {lifetime:.1f} s; "
            "restarting it in {delay:g} s with {count} socket(s)",
            worker=process.label,
            kind=process.kind,
            pid=process.pid,
            status=process.exit_status,
            lifetime=lifetime,
            delay=delay,
            count=self.side.socket_count(),
        )
        seat.restart_call = self.reactor.callLater(delay, self._spawn, seat)

    def deadline(self, process: WorkerProcess) -> float:
        """Seconds ``process`` has to answer a command sent now (`answer_deadline`)."""
        return answer_deadline(
            process.state == "starting",
            process.started,
            self.reactor.seconds(),
            self.settings.command_timeout,
            self.settings.ready_timeout,
        )

    def worker_late(
        self, process: WorkerProcess, command: str, seconds: float
    ) -> WorkerTimeoutError:
        """``process`` missed a deadline: report it, kill it (it is replaced); the error."""
        late = WorkerTimeoutError(process.label, process.pid, command, seconds, kind=process.kind)
        if process.ended.done or process.state in ("late", "stopping"):
            return late  # reported already, or being stopped (with its own deadline)
        process.state = "late"
        count = self.side.socket_count()
        then = "" if self.stopping else f"; a new worker takes its {count} socket(s)"
        self.log.error(
            "{kind} {worker} (pid {pid}) did not answer {command} within {timeout:g} s: "
            "killing it{then}",
            worker=process.label,
            kind=process.kind,
            pid=process.pid,
            command=command,
            timeout=seconds,
            then=then,
        )
        self.incidents.record(f"{late}: killed" + ("" if self.stopping else " and replaced"))
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
            "{kind} {worker} (pid {pid}): {line}",
            **event,
            worker=process.label,
            kind=process.kind,
            pid=process.pid,
            line=text,
        )
