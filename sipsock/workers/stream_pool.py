"""`StreamWorkerPool`: the control process's side of the stream worker processes.

``[core] tcp_workers`` processes serve every TCP, TLS, WS and WSS socket of
the daemon, static and dynamic. The pool is a `UdpWorkerPool` (the same
`Supervisor`, change queue, fan-out and counters) whose sockets are
listening stream sockets: the control process binds and listens (so a bind
error is reported by the reload), passes the descriptor to every worker,
which accepts on it (`sipsock.workers.stream_worker`), and keeps its copy
only to close it when the socket goes; it never accepts, reads or writes a
stream itself.

Sending: workers report each connection that becomes ready or closes
(`ConnectionsChanged`) into a `ConnectionDirectory`. A send through a stream
socket from the control process, from a UDP worker (``SendThroughSocket``)
or from a stream worker without a connection to the peer goes to the worker
holding the peer's connection; with none, to the worker the peer's address
hashes to (`opener_index`), which opens it.

``tls_reload`` (`PooledTLS`) is two-phase: every worker and the control
process load the new certificates (`PrepareTLS`); only when all succeeded
do they switch (`CommitTLS`), else every one forgets them (`AbortTLS`) and
the answer names the worker and the domain that failed.
"""

from __future__ import annotations

import json
import socket
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from sipsock.deferreds import settle
from sipsock.limits import address_key, connection_refusal
from sipsock.scaling import ScalingRule
from sipsock.seams import ListenError
from sipsock.sockdef import SocketDef
from sipsock.transport.connections import peer_key
from sipsock.transport.sockopts import bind_socket
from sipsock.transport.tls import TLSDomains
from sipsock.workers.autoscaler import AutoScaler
from sipsock.workers.connection_directory import ConnectionChange, ConnectionDirectory
from sipsock.workers.listener import PooledListener
from sipsock.workers.pool import UdpWorkerPool
from sipsock.workers.resize import SeatResizer
from sipsock.workers.stream_commands import (
    AbortTLS,
    CloseConnection,
    CommitTLS,
    ConnectionsChanged,
    PrepareTLS,
    decode_changes,
)
from sipsock.workers.stream_drain import drain_stream_worker, drain_time
from sipsock.workers.supervisor import ControlProtocol, WorkerProcess

#: Checks that a stream socket can be served (a TLS socket has a domain); raises `ListenError`.
SocketCheck = Callable[[SocketDef], None]


class StreamControlProtocol(ControlProtocol):
    """The control end of a stream worker's AMP connection: also takes its connection reports."""

    @ConnectionsChanged.responder
    def connections_changed(self, changes: bytes) -> dict[str, Any]:
        side = self.process.supervisor.side
        assert isinstance(side, StreamWorkerPool)
        side.connections_changed(self.process, decode_changes(changes))
        return {}


class StreamWorkerPool(UdpWorkerPool):
    """``size`` stream worker processes serving every stream socket (see the module).

    ``check`` refuses a socket before it is bound (a TLS socket no domain
    serves); the other arguments are `UdpWorkerPool`'s.
    """

    log = Logger()

    def __init__(
        self,
        size: int,
        name: str,
        spec: Any,
        *,
        check: SocketCheck | None = None,
        **options: Any,
    ) -> None:
        super().__init__(size, name, spec, balance="shared", **options)
        self.supervisor.control = StreamControlProtocol
        self.supervisor.kind = "stream worker"
        self.counters.kind = "stream"
        self.check = check
        self.directory: ConnectionDirectory[WorkerProcess] = ConnectionDirectory()

    def auto_scale(self, rule: ScalingRule) -> AutoScaler:
        """Resize this pool by ``rule``: a new worker adopts every stream socket
        before it counts as ready (`sync`, as a restarted one); a leaving one
        stops accepting and drains its connections (`sipsock.workers.stream_drain`)."""
        seconds = drain_time(self.supervisor.spec.settings.core.stream_idle_timeout)
        resizer = SeatResizer(
            self.supervisor,
            drain=lambda process: drain_stream_worker(
                process, seconds, lambda p: Deferred.fromCoroutine(self.counters.fetch(p))
            ),
        )
        self.scaler = AutoScaler(rule, resizer, reactor=self.reactor)
        return self.scaler

    def bind_descriptor(self, sdef: SocketDef) -> socket.socket | None:
        """Bind and listen ``sdef`` here (the workers accept); raises `ListenError`."""
        if not sdef.is_stream:
            raise ListenError(sdef, "a stream worker pool serves TCP, TLS, WS and WSS only")
        if self.check is not None:
            self.check(sdef)
        return bind_socket(sdef)

    # --- connections -------------------------------------------------------------------

    def connections_changed(self, process: WorkerProcess, changes: list[ConnectionChange]) -> None:
        """A worker's report of connections that became ready or closed.

        An accepted connection that puts its socket or its remote IP over a
        cap, counted across every worker, is closed by its worker (each
        worker also applies the caps to its own connections at accept, before
        any TLS work).
        """
        if process.ended.done:
            return
        self.directory.apply(process, changes)
        limits = self.supervisor.spec.settings.limits
        for change in changes:
            if not (change.up and change.inbound):
                continue
            on_socket = self.directory.inbound(change.key)
            from_ip = self.directory.inbound(change.key, change.peer[0])
            ip = address_key(peer_key(change.peer)[0])
            reason = connection_refusal(
                socket_count=on_socket - 1,
                ip_count=from_ip - 1,
                per_socket=limits.max_connections_per_socket,
                per_ip=limits.max_connections_per_ip,
                ip=ip,
            )
            if reason is not None:
                self._close_over_cap(process, change.key, change.peer, reason)

    def _close_over_cap(
        self, process: WorkerProcess, key: int, peer: tuple[str, int], reason: str
    ) -> None:
        """Have ``process`` close the accepted connection that went over a daemon-wide cap."""
        closing = process.call(
            CloseConnection, key=key, host=peer[0], port=peer[1], reason=f"{reason}, all workers"
        )
        closing.addErrback(
            lambda failure: self.log.warn(
                "socket {socket}: stream worker {worker} did not close {peer} over the cap: "
                "{reason}",
                socket=self.counters.socket_name(key),
                worker=process.label,
                peer=peer,
                reason=failure.getErrorMessage(),
            )
        )

    def worker_ended(self, process: WorkerProcess) -> None:
        gone = self.directory.forget_worker(process)
        if gone:
            self.log.info(
                "stream worker {worker} ended: its {count} connection(s) are gone",
                worker=process.label,
                count=gone,
            )
        super().worker_ended(process)

    def process_rows(self) -> list[dict[str, Any]]:
        """`UdpWorkerPool.process_rows`, with the ready connections each worker holds."""
        rows = super().process_rows()
        for seat, row in zip(self.supervisor.seats, rows, strict=True):
            process = seat.process
            running = process is not None and not process.ended.done
            row["Connections"] = self.held_by(process) if running and process else 0
        return rows

    def held_by(self, process: WorkerProcess) -> int:
        """Ready connections the worker holds, as it reported them."""
        return self.directory.held_by(process)

    def _release(self, listener: PooledListener) -> Deferred[None]:
        return (
            super()
            ._release(listener)
            .addCallback(lambda _: self.directory.forget_socket(listener.key))
        )

    def _release_many(self, listeners: list[PooledListener]) -> Deferred[list[PooledListener]]:
        def forget(gone: list[PooledListener]) -> list[PooledListener]:
            for listener in gone:
                self.directory.forget_socket(listener.key)
            return gone

        return super()._release_many(listeners).addCallback(forget)

    def send(self, listener: PooledListener, data: bytes, peer: tuple[str, int]) -> Deferred[None]:
        """Send through the worker holding ``peer``'s connection, else the next one in turn."""
        counters = listener.own
        ready = self.supervisor.ready()
        if not ready or listener.closing is not None:
            counters.drops += 1
            return defer.fail(
                ConnectionError(f"{listener.sdef.socket_text}: no stream worker is running")
            )
        process = self.directory.owner(listener.key, peer)
        # A leaving worker (draining) still serves the connections it holds.
        if process is None or not (
            process in ready or (process.state == "retiring" and process.live)
        ):
            process = ready[opener_index(peer, len(ready))]
        sending = self.sends.send(process, listener.key, data, peer)

        def failed(failure: Failure) -> Failure:
            counters.drops += 1
            return failure

        return sending.addCallbacks(lambda _: None, failed)

    # --- tls_reload -------------------------------------------------------------------

    async def prepare_tls(self) -> list[tuple[str, str, str]]:
        """Every live worker loads the TLS domains again; (worker, domain, reason) failures."""
        processes = self.supervisor.processes()
        answers = await settle([p.call(PrepareTLS) for p in processes])
        failed: list[tuple[str, str, str]] = []
        for process, answer in zip(processes, answers, strict=True):
            label = f"stream worker {process.label}"
            if isinstance(answer, Failure):
                failed.append((label, "-", answer.getErrorMessage()))
                continue
            for domain, reason in json.loads(answer["failed"]):
                failed.append((label, str(domain), str(reason)))
        return failed

    async def finish_tls(self, *, commit: bool) -> list[tuple[str, str]]:
        """Every live worker commits (or forgets) what it prepared; (worker, reason) failures."""
        processes = self.supervisor.processes()
        command = CommitTLS if commit else AbortTLS
        answers = await settle([p.call(command) for p in processes])
        return [
            (f"stream worker {p.label}", a.getErrorMessage())
            for p, a in zip(processes, answers, strict=True)
            if isinstance(a, Failure)
        ]


def opener_index(peer: tuple[str, int], workers: int) -> int:
    """Which of ``workers`` ready workers opens a connection to ``peer`` (none holds one).

    The same worker for a peer, every time: the sends that come before its
    connection is reported (the messages of one call, say) all wait for the
    one connect under way there, in order, instead of each worker opening a
    connection of its own.
    """
    host, port = peer_key(peer)
    return zlib.crc32(f"{host}:{port}".encode()) % workers


@dataclass
class PooledTLSReport:
    """What a ``tls_reload`` across the stream workers did (a `TLSReloadReportLike`)."""

    reloaded: list[str] = field(default_factory=list)
    #: (process, domain, reason) of each failure.
    failed: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        return {
            "reloaded": list(self.reloaded),
            "failed": [
                {"process": process, "domain": domain, "reason": reason}
                for process, domain, reason in self.failed
            ],
        }

    def summary(self) -> str:
        failed = "; ".join(
            f"{process}: domain {domain!r}: {reason}" for process, domain, reason in self.failed
        )
        kept = "old certificate kept" if len(self.failed) == 1 else "old certificates kept"
        return f"TLS reload failed in {failed} ({kept}; no process switched)"


class PooledTLS:
    """``tls_reload`` / ``tls_list`` for a daemon whose TLS sockets live in stream workers.

    ``reload`` loads every domain in the control process and in every live
    worker first; all switch only when every one succeeded (a Deferred
    firing with a `PooledTLSReport`). A worker started later loads the files
    as they are then.
    """

    log = Logger()

    def __init__(self, domains: TLSDomains, pool: StreamWorkerPool) -> None:
        self.domains = domains
        self.pool = pool

    def list_domains(self) -> list[dict[str, Any]]:
        return self.domains.list_domains()

    def reload(self) -> Deferred[PooledTLSReport]:
        return Deferred.fromCoroutine(self._reload())

    async def _reload(self) -> PooledTLSReport:
        report = PooledTLSReport()
        loaded, local_failed = self.domains.prepare()
        report.failed += [("control process", name, reason) for name, reason in local_failed]
        if not report.failed:  # the workers read the same files: asked only when they may work
            report.failed += await self.pool.prepare_tls()
        if report.failed:
            await self.pool.finish_tls(commit=False)
            self.log.error("{summary}", summary=report.summary())
            return report
        late = await self.pool.finish_tls(commit=True)
        for process, reason in late:
            # Prepared, then did not answer the commit: it is killed and replaced
            # (a deadline), and its replacement loads the files as they are now.
            self.log.error(
                "TLS reload: {process} did not switch: {reason}", process=process, reason=reason
            )
        report.reloaded = self.domains.commit(loaded)
        return report
