"""`UdpWorkerPool`: the control process's side of a pool of UDP worker processes.

The pool runs ``size`` workers (`Supervisor`) and serves UDP sockets through
them:

* ``udp_balance = "shared"``: the control process binds the socket (so bind
  errors are reported by the reload), passes the descriptor to every worker
  (``amp.Descriptor``) and keeps its own copy for sending only. Every worker
  reads it, registered with EPOLLEXCLUSIVE: the next idle worker takes the
  next datagram, even when one peer sends everything.
* ``udp_balance = "reuseport"``: the control process binds one SO_REUSEPORT
  member per worker (`bind_member`) and passes each to its worker, keeping
  none (a bound member that nobody reads would swallow its share of peers).
  The kernel hashes each peer to one member; the control process sends
  through a worker (`SendDatagram`).

`open` fires once every live worker acknowledged the new socket; `stop`
once every worker released it and the control copy is closed; a listener's
`update` once every worker applied the new definition. Changes made in one
reactor turn (a reload's) travel together (`ChangeQueue`): each worker gets
one batch command per kind, in slices of `commands.BATCH_ITEMS`, and each
socket of a batch succeeds or fails on its own. The daemon's other sockets
(`SocketBook`) are announced to the workers, never a worker's own (it knows
them from their adoption). A new worker is given every current socket before
it counts as ready. `PoolCounters` keeps the statistics and the ``ps`` rows.
"""

from __future__ import annotations

import itertools
import os
import socket
import sys
from collections.abc import Sequence
from typing import Any, Final

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from sipsock.apps.spec import AppSpec, freeze
from sipsock.config import UDP_BALANCE_MODES, default_settings
from sipsock.deferreds import all_or_first_failure, wait_all
from sipsock.gcpause import collection_paused
from sipsock.incidents import Incidents
from sipsock.scaling import ScalingRule
from sipsock.seams import ListenError
from sipsock.sockdef import SocketDef
from sipsock.transport.base import Closing
from sipsock.transport.sockopts import (
    apply_update,
    bind_member,
    bind_socket,
    check_same_endpoint,
    configure_socket,
    describe_os_error,
    family_of,
)
from sipsock.workers.autoscaler import AutoScaler
from sipsock.workers.changes import ChangeQueue
from sipsock.workers.commands import (
    WorkerError,
)
from sipsock.workers.counters import PoolCounters
from sipsock.workers.directory import BookEntry, SocketBook
from sipsock.workers.fanout import SocketFanOut
from sipsock.workers.listener import PooledListener
from sipsock.workers.relaybatch import BatchesByProcess
from sipsock.workers.resize import SeatResizer, release_all_sockets
from sipsock.workers.supervision import Backoff
from sipsock.workers.supervisor import Supervisor, SupervisorSettings, WorkerProcess, WorkerSeat

BALANCE_MODES: Final = UDP_BALANCE_MODES
#: Why a ``reuseport`` pool does not shrink (README "Auto-scaling").
REUSEPORT_NO_SHRINK: Final = (
    'udp_balance = "reuseport" does not shrink: the datagrams queued in the leaving '
    "worker's member socket would be lost"
)


class UdpWorkerPool(Service):
    """``size`` UDP worker processes that serve this pool's UDP sockets (see the module).

    ``name`` names the pool in logs and ``ps``; workers build their SIP
    application from ``spec``, the control process's frozen settings (None:
    the built-in defaults). ``balance`` is ``"shared"`` or ``"reuseport"``.
    ``book`` is the daemon's `SocketBook`, shared by every pool. ``env`` is
    the workers' environment (this process's by default), ``backoff`` their
    restart rule; a worker not ready within ``ready_timeout`` seconds is
    killed and restarted; ``stop_timeout`` bounds each step of stopping;
    statistics are read every ``stats_interval`` seconds. A ready worker
    that does not answer a command within ``command_timeout`` seconds is
    killed and replaced (the replacement takes every socket), and the fault
    is recorded in ``incidents`` for the report of the reload it delayed.
    """

    log = Logger()

    def __init__(
        self,
        size: int,
        name: str,
        spec: AppSpec | None,
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
        self.name = name
        self.balance = balance
        self.book = book if book is not None else SocketBook()
        self.book.subscribe(self)
        self.reactor = reactor
        self.incidents = incidents if incidents is not None else Incidents()
        settings = SupervisorSettings(
            python=python or sys.executable,
            env=dict(os.environ if env is None else env),
            backoff=backoff or Backoff(),
            ready_timeout=ready_timeout,
            stop_timeout=stop_timeout,
            command_timeout=command_timeout,
        )
        self.supervisor = Supervisor(
            name,
            size,
            spec if spec is not None else freeze(default_settings()),
            settings,
            self,
            reactor=reactor,
            incidents=self.incidents,
        )
        self.sockets: dict[int, PooledListener] = {}
        #: The pool's sockets by name, until released (never announced to its workers).
        self._names: dict[str, PooledListener] = {}
        self.counters = PoolCounters(
            self.supervisor, self.sockets, reactor=reactor, interval=stats_interval
        )
        self.fanout = SocketFanOut(
            self.supervisor, release=self.release, refreshed=self.counters.refresh_soon
        )
        self.changes = ChangeQueue(
            self.fanout, reactor=reactor, live=lambda: bool(self.processes())
        )
        self._keys = itertools.count(1)
        self._turn = itertools.count()
        #: Sends through the workers' sockets, one relay batch per worker and reactor turn.
        self.sends: BatchesByProcess[WorkerProcess] = BatchesByProcess(_send_datagrams, reactor)
        #: Resizes the pool by its auto-scaling profile (`auto_scale`); None: fixed size.
        self.scaler: AutoScaler | None = None

    def auto_scale(self, rule: ScalingRule) -> AutoScaler:
        """Resize this pool by ``rule`` from its start on (`AutoScaler`, `SeatResizer`).

        In ``reuseport`` mode the pool grows but never shrinks: closing a
        member would lose the datagrams queued in it.
        """
        resizer = SeatResizer(
            self.supervisor,
            drain=lambda process: release_all_sockets(
                process, lambda p: Deferred.fromCoroutine(self.counters.fetch(p))
            ),
            shrink_refusal=lambda: None if self.shared else REUSEPORT_NO_SHRINK,
        )
        self.scaler = AutoScaler(rule, resizer, reactor=self.reactor)
        return self.scaler

    @property
    def shared(self) -> bool:
        """Whether every worker reads one shared descriptor (else one member each)."""
        return self.balance == "shared"

    @property
    def seats(self) -> list[WorkerSeat]:
        return self.supervisor.seats

    @property
    def backoff(self) -> Backoff:
        return self.supervisor.settings.backoff

    @property
    def command_timeout(self) -> float:
        return self.supervisor.settings.command_timeout

    def processes(self) -> list[WorkerProcess]:
        """The current worker processes that are running and connected (and not late)."""
        return self.supervisor.processes()

    # --- service ----------------------------------------------------------------------

    def startService(self) -> None:
        """Start every worker and the statistics poll."""
        super().startService()  # type: ignore[no-untyped-call]
        self.supervisor.start()
        self.counters.start()
        if self.scaler is not None:
            self.scaler.startService()

    def stopService(self) -> Deferred[None]:
        """Stop every worker (Shutdown, then SIGKILL after ``stop_timeout``) and close copies."""
        super().stopService()  # type: ignore[no-untyped-call]
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self.scaler is not None and self.scaler.running:
            self.scaler.stopService()
        self.supervisor.no_more_restarts()
        if self.changes.pending:
            self.changes.flush()
        self.counters.stop()
        await self.supervisor.stop()
        for listener in list(self.sockets.values()):
            listener.close_copy()
        self.sockets.clear()
        self._names.clear()
        self.log.info("UDP worker pool {pool} stopped", pool=self.name)

    # --- the supervisor's questions (`PoolSide`) ------------------------------------------

    def sync(self, process: WorkerProcess) -> Deferred[None]:
        """Give a new worker every socket of the daemon, in the book's order.

        The daemon's other sockets are announced, the pool's own adopted: runs
        of each, in turn, so that the worker records them in the order the
        control process looks them up.
        """
        waits: list[Deferred[Any]] = []
        own: list[PooledListener] = []
        others: list[BookEntry] = []

        def send_run() -> None:
            if others:
                waits.append(self.fanout.announce_many(process, others[:]))
                others.clear()
            if own:
                waits.append(self.fanout.adopt_many(process, own[:]).addCallback(adopted))
                own.clear()

        def adopted(refused: dict[int, str]) -> None:
            if refused:
                key, reason = next(iter(refused.items()))
                raise WorkerError(f"{self.counters.socket_name(key)}: {reason}")

        unsent = dict(self.sockets)
        for entry in self.book.entries():
            listener = self._names.get(entry.name)
            if (listener is None and own) or (listener is not None and others):
                send_run()
            if listener is None:
                others.append(entry)
            else:
                own.append(listener)
                unsent.pop(listener.key, None)
        send_run()
        own.extend(unsent.values())
        send_run()
        # A first answer in any case: ready means running, not merely spawned.
        waits.append(Deferred.fromCoroutine(self.counters.fetch(process, strict=True)))
        return all_or_first_failure(waits)

    def worker_ended(self, process: WorkerProcess) -> None:
        self.sends.forget(process)
        self.counters.worker_ended(process)

    def socket_count(self) -> int:
        return len(self.sockets)

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

    def open_many(
        self, sockets: Sequence[tuple[SocketDef, int | None]]
    ) -> Deferred[list[PooledListener | Failure]]:
        """`open` for each (definition, slot), with one Deferred for them all.

        Fires with each socket's listener, or its `Failure` (`ListenError`),
        in the order given. The sockets travel to the workers in the same
        `AdoptSockets` batches as they would one by one; only the waiting is
        counted once for the batch, not once per socket.
        """
        results: list[PooledListener | Failure] = []
        bound: list[PooledListener] = []
        bind = self.bind
        with collection_paused():  # hundreds of sockets: one collection after them
            for sdef, slot in sockets:
                try:
                    listener = bind(sdef, slot)
                except ListenError:
                    results.append(Failure())  # type: ignore[no-untyped-call]
                    continue
                results.append(listener)
                bound.append(listener)
            if not bound:
                return defer.succeed(results)
            adopting = self.changes.adopt_many(bound)
            announcing = self.book.put_many(bound)  # type: ignore[arg-type]

        def adopted(outcomes: list[PooledListener | Failure]) -> Any:
            each = iter(outcomes)
            final = [r if r.__class__ is Failure else next(each) for r in results]
            if announcing.called:
                return final  # announced first (the usual order)
            return announcing.addCallback(lambda _: final)

        return adopting.addCallback(adopted)

    def _adopt_and_announce(self, listener: PooledListener) -> Deferred[PooledListener]:
        """Adoption, and announcement to the other pools, in the same turn; fires when done.

        A socket a worker refuses is released (and so withdrawn again).
        """
        adopting = self.changes.adopt(listener)
        announcing = self.book.put(listener, static=listener.static)

        def announced(result: Any) -> Any:
            if announcing.called:
                return result  # announced first (the usual order): nothing to chain
            return announcing.addCallback(lambda _: result)

        done: Deferred[PooledListener] = adopting.addBoth(announced)
        return done

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
        sock = self.bind_descriptor(sdef)
        listener = PooledListener(self, next(self._keys), sdef, slot, sock, static=static)
        self.sockets[listener.key] = listener
        self._names[sdef.socket_text] = listener
        return listener

    def bind_descriptor(self, sdef: SocketDef) -> socket.socket | None:
        """The control copy of ``sdef``'s descriptor (None: reuseport members only).

        Raises `ListenError`.
        """
        if sdef.proto != "udp":
            raise ListenError(sdef, "a UDP worker pool serves UDP sockets only")
        if not self.shared:
            bind_member(sdef).close()
            return None
        return bind_socket(sdef)

    def release(self, listener: PooledListener) -> Deferred[None]:
        """Take ``listener`` away from every worker, then close the control copy."""
        if listener.closing is None:
            listener.closing = closing = Closing()
            self._release(listener).addBoth(lambda _: closing.fire())
        return listener.closing.wait()

    def _release(self, listener: PooledListener) -> Deferred[None]:
        """Withdraw ``listener``, then have the workers close it, then close the copy.

        A chain of callbacks, not a coroutine: a reload releases hundreds.
        """
        try:
            self.sockets.pop(listener.key, None)
            withdrawn = self.book.drop(listener)
        except Exception:
            return defer.fail()
        released: Deferred[None] = withdrawn.addCallback(lambda _: self.changes.release(listener))
        return released.addCallback(lambda _: self._let_go(listener))

    def release_many(self, listeners: Sequence[PooledListener]) -> Deferred[None]:
        """`release` for each of ``listeners``, with one wait for them all.

        The sockets are withdrawn, released by the workers and let go as one
        batch, with a Deferred for the batch rather than a chain of them per
        socket (a reload removes hundreds). A listener already closing is
        waited for.
        """
        fresh: list[PooledListener] = []
        waits: list[Deferred[None]] = []
        for listener in listeners:
            if listener.closing is None:
                listener.closing = Closing()
                fresh.append(listener)
            else:
                waits.append(listener.closing.wait())

        def fire(_: object) -> None:
            for listener in fresh:
                listener.closing.fire()  # type: ignore[union-attr]

        if fresh:
            with collection_paused():  # hundreds of sockets: one collection after them
                releasing = self._release_many(fresh)
            waits.append(releasing.addBoth(fire))
        return wait_all(waits)

    def _release_many(self, listeners: list[PooledListener]) -> Deferred[list[PooledListener]]:
        """`_release` for each of ``listeners``: withdrawn, released, let go, as one batch.

        Fires with the listeners let go: not one whose release failed (as `_release`).
        """
        try:
            for listener in listeners:
                self.sockets.pop(listener.key, None)
            withdrawn = self.book.drop_many(listeners)
        except Exception:
            return defer.fail()

        def let_go(results: list[Failure | None]) -> list[PooledListener]:
            gone = [lst for lst, result in zip(listeners, results, strict=True) if result is None]
            for listener in gone:
                self._let_go(listener)
            return gone

        released = withdrawn.addCallback(lambda _: self.changes.release_many(listeners))
        return released.addCallback(let_go)

    def _let_go(self, listener: PooledListener) -> None:
        """The workers closed ``listener``: forget its name, close the control copy."""
        if self._names.get(listener.sdef.socket_text) is listener:
            del self._names[listener.sdef.socket_text]
        listener.close_copy()
        self.counters.refresh_soon()

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
        updating = self.changes.update(listener)
        announcing = self.book.put(listener, static=listener.static)
        return all_or_first_failure([updating, announcing])

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
        ready = self.supervisor.ready()
        if not ready or listener.closing is not None:
            counters.drops += 1
            return defer.fail(
                ConnectionError(f"{listener.sdef.socket_text}: no UDP worker is running")
            )
        process = ready[next(self._turn) % len(ready)]
        sending = self.sends.send(process, listener.key, data, peer)

        def sent(_: Any) -> None:
            counters.count_out(data)

        def failed(failure: Failure) -> Failure:
            counters.drops += 1
            return failure

        return sending.addCallbacks(sent, failed)

    def send_for_worker(self, name: str, data: bytes, peer: tuple[str, int]) -> Deferred[Any]:
        """`SendThroughSocket`: send through the daemon's socket ``name`` (`WorkerError`)."""

        def failed(failure: Failure) -> None:
            raise WorkerError(
                f"cannot send to {peer[0]}:{peer[1]} through {name}: "
                f"{failure.getErrorMessage() or type(failure.value).__name__}"
            )

        return self.book.send(name, data, peer).addCallbacks(lambda _: {}, failed)

    # --- SocketBook subscriber: the daemon's other sockets ---------------------------------

    def announce(self, entry: BookEntry) -> Deferred[None]:
        """Tell every worker about another socket of the daemon (batched with the turn's)."""
        if entry.name in self._names:
            return defer.succeed(None)
        return self.changes.announce(entry)

    def announce_many(self, entries: list[BookEntry]) -> Deferred[Any]:
        """`announce` for each of ``entries`` (batched with the turn's), with one Deferred."""
        names = self._names
        others = [entry for entry in entries if entry.name not in names]
        if not others:
            return defer.succeed(None)
        return self.changes.announce_many(others)

    def withdraw(self, name: str) -> Deferred[None]:
        """Tell every worker another socket of the daemon is gone (batched with the turn's).

        The pool's own sockets are let go by their release.
        """
        if name in self._names:
            return defer.succeed(None)
        return self.changes.withdraw(name)

    def withdraw_many(self, names: list[str]) -> Deferred[Any]:
        """`withdraw` for each of ``names`` (batched with the turn's), with one Deferred."""
        own = self._names
        others = [name for name in names if name not in own]
        if not others:
            return defer.succeed(None)
        return self.changes.withdraw_many(others)

    # --- statistics -------------------------------------------------------------------

    def refresh(self) -> Deferred[None]:
        """Ask every ready worker for its statistics; fires when all answered."""
        return self.counters.refresh()

    def process_rows(self) -> list[dict[str, Any]]:
        """One row per worker for the MI ``ps``: pid, pool, sockets held, messages, restarts
        (and, with a profile, the pool's size, load and last scaling decisions)."""
        rows = self.counters.rows()
        if self.scaler is not None:
            scaling = self.scaler.summary()
            for row in rows:
                row["Scaling"] = scaling
        return rows


def _send_datagrams(process: WorkerProcess, messages: bytes) -> Deferred[bytes]:
    """One batch (`SendDatagrams`'s form) to ``process`` on its relay channel; fires with
    its ``failed`` answer."""
    return process.relay(messages)
