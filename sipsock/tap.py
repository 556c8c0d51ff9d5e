"""``twistd sipsock``: command-line options and the composition of the daemon.

`makeService` reads the configuration, opens the database store, loads the SIP
application, binds the static sockets and the admin listeners (a failure there
stops start-up with one line naming the socket), and returns the daemon
service, whose start loads the dynamic sockets from the table.
"""

from __future__ import annotations

import contextlib
import gc
import os
import resource
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python import usage

from sipsock import __version__
from sipsock.apps.spec import AppSpec, SpecError, build_dispatcher, freeze
from sipsock.autoreload import AutoReloader
from sipsock.config import ConfigError, Settings, load_config
from sipsock.db import ISocketStore, StoreError, open_store
from sipsock.incidents import Incidents
from sipsock.logs import use_sipsock_logs
from sipsock.manhole import ManholeError, listen_manhole, mi_caller
from sipsock.mi import CommandTable, build_command_table
from sipsock.mi.amp import listen_amp
from sipsock.mi.datagram import listen_udp
from sipsock.mi.fifo import FifoListener
from sipsock.mi.http import listen_http
from sipsock.readiness import DaemonState, Readiness
from sipsock.registry import SocketRegistry
from sipsock.sdnotify import Notifier
from sipsock.sockdef import SocketDef
from sipsock.statelock import StateDirLockedError, StateLock
from sipsock.stats import Statistics, metrics_text
from sipsock.transport import Listener, ListenError, open_listener
from sipsock.transport.sockopts import set_udp_receive_buffer
from sipsock.transport.tls import TLSDomains, TLSError
from sipsock.workers import SocketBook, UdpWorkerPool

DEFAULT_CONFIG = "etc/sipsock.toml"
_log = Logger()


class StartupError(Exception):
    """Something the daemon needs at start cannot be had; the message says what."""


class Options(usage.Options):
    """Options of ``twistd sipsock``."""

    synopsis = "[-c FILE]"
    longdesc = (
        "SIP transport whose listening sockets are provisioned in an SQL table "
        "(OpenSIPS sockets_mgm compatible) and changed at runtime with sockets_reload."
    )
    optParameters = [
        ["config", "c", DEFAULT_CONFIG, "Configuration file (TOML); see etc/sipsock.toml."],
    ]

    def postOptions(self) -> None:
        try:
            self["settings"] = load_config(self["config"])
        except ConfigError as error:
            _die(str(error))
        core = self["settings"].core
        # twistd's --logger: the configured format and level (an explicit --logger keeps
        # its output, filtered at the level).
        use_sipsock_logs(self.parent, log_format=core.log_format, log_level=core.log_level)


def _die(message: str) -> None:
    sys.stderr.write(f"sipsock: {message}\n")
    sys.stderr.flush()
    raise SystemExit(1)


def makeService(config: usage.Options, reactor: Any = None) -> IService:
    """The daemon service for parsed `Options` (twistd's entry point)."""
    settings: Settings = config["settings"]
    try:
        return build_daemon(settings, reactor=reactor)
    except StartupError as error:
        _die(str(error))
        raise  # not reached


def build_daemon(settings: Settings, *, reactor: Any = None) -> DaemonService:
    """Compose every part of the daemon; raises `StartupError` with the reason.

    The state directory is locked first: a second daemon on it stops here.
    systemd's notification variables leave the environment before any worker
    is spawned (only this process may notify).
    """
    notifier = Notifier.from_environ(os.environ)
    _prepare_state_dir(settings.core.state_dir)
    lock = _lock_state_dir(settings.core.state_dir)
    try:
        daemon = _compose_daemon(settings, reactor)
    except BaseException:
        lock.release()
        raise
    daemon.state_lock = lock
    daemon.readiness = Readiness(daemon.state, notifier, clock=daemon.reactor)
    return daemon


def _compose_daemon(settings: Settings, reactor: Any) -> DaemonService:
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    raise_open_files_limit()
    set_udp_receive_buffer(settings.core.udp_receive_buffer)
    try:
        tls = TLSDomains(settings.tls.domains)
    except TLSError as error:
        raise StartupError(f"{settings.source}: [tls] {error}") from None
    if settings.sockets_mgm.db_url.scheme == "sqlite":
        _create_sqlite_database(settings)
    # The workers build the same application from the same frozen spec.
    spec = freeze(settings)
    try:
        dispatcher = build_dispatcher(spec, clock=reactor)
    except SpecError as error:
        raise StartupError(str(error)) from None

    def open_socket(sdef: SocketDef, slot: int | None) -> Listener:
        return open_listener(
            sdef,
            slot,
            dispatcher,
            reactor=reactor,
            idle_timeout=settings.core.stream_idle_timeout,
            max_message_size=settings.core.max_message_size,
            tls=tls,
            websocket=settings.websocket,
            limits=settings.limits,
        )

    # UDP sockets are served by worker pools (DESIGN "Process model"); the
    # book tells the workers about every other socket, for SendThroughSocket.
    book = SocketBook()
    incidents = Incidents()
    dynamic_pool, static_pool = _worker_pools(spec, book, incidents, reactor)

    def open_dynamic(sdef: SocketDef, slot: int | None) -> Deferred[Listener]:
        if sdef.proto == "udp":
            return dynamic_pool.open(sdef, slot)  # type: ignore[return-value]
        return maybeDeferred(open_socket, sdef, slot).addCallback(book.track)

    def open_static(sdef: SocketDef, slot: int | None) -> Listener:
        if sdef.proto == "udp" and static_pool is not None:
            return static_pool.open_static(sdef)
        listener = open_socket(sdef, slot)
        book.put(listener, static=True)
        return listener

    try:
        store = open_store(settings.sockets_mgm, reactor)
    except StoreError as error:
        raise StartupError(f"{settings.source}: [sockets_mgm] db_url: {error}") from None
    static = _open_static(settings, open_static)
    registry = SocketRegistry(
        store,
        open_dynamic,
        max_sockets=settings.sockets_mgm.max_sockets,
        reactor=reactor,
        static=static,
        incidents=incidents,
    )
    dispatcher.directory = registry
    pools = [pool for pool in (dynamic_pool, static_pool) if pool is not None]
    daemon = DaemonService(settings, store, registry, reactor, tls=tls, pools=pools)
    try:
        daemon.open_admin()
    except StartupError:
        for listener in static:
            listener.stop()
        raise
    return daemon


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit (every connection is a descriptor).

    Returns (old, new) soft limits; logs when it changed.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if resource.RLIM_INFINITY in (hard, soft) or soft >= hard:
        return soft, soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as error:
        _log.warn(
            "cannot raise the open-files limit from {soft} to {hard}: {reason}",
            soft=soft,
            hard=hard,
            reason=error,
        )
        return soft, soft
    _log.info("open-files limit raised from {soft} to {hard}", soft=soft, hard=hard)
    return soft, hard


def _worker_pools(
    spec: AppSpec, book: SocketBook, incidents: Incidents, reactor: Any
) -> tuple[UdpWorkerPool, UdpWorkerPool | None]:
    """The pool of the dynamic UDP sockets, and one for static UDP sockets if any.

    Workers build their application from ``spec`` (what this process loaded).
    """
    settings = spec.settings
    balance = settings.sockets_mgm.udp_balance
    dynamic = UdpWorkerPool(
        settings.sockets_mgm.processes,
        "dynamic",
        spec,
        balance=balance,
        book=book,
        reactor=reactor,
        command_timeout=settings.core.worker_timeout,
        incidents=incidents,
    )
    static = None
    if any(sdef.proto == "udp" for sdef in settings.core.listen):
        static = UdpWorkerPool(
            settings.core.udp_workers,
            "static",
            spec,
            balance=balance,
            book=book,
            reactor=reactor,
            command_timeout=settings.core.worker_timeout,
            incidents=incidents,
        )
    return dynamic, static


def _prepare_state_dir(state_dir: Path) -> None:
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise StartupError(f"state directory {state_dir}: {error.strerror}") from None


def _lock_state_dir(state_dir: Path) -> StateLock:
    try:
        return StateLock.acquire(state_dir)
    except StateDirLockedError as error:
        raise StartupError(str(error)) from None
    except OSError as error:
        raise StartupError(
            f"state directory {state_dir}: cannot lock {error.filename}: {error.strerror}"
        ) from None


def _create_sqlite_database(settings: Settings) -> None:
    """Create the embedded database (table and version row) on first start.

    An empty file (a first start that failed, disk full) counts as missing; a
    file this start created and could not fill is removed again.
    """
    path = settings.sockets_mgm.db_url.path
    if path is None or (os.path.exists(path) and os.path.getsize(path) > 0):
        return
    from sipsock.db.cli import Database

    existed = os.path.exists(path)
    try:
        with Database.open(settings.sockets_mgm) as database:
            database.init()
    except Exception as error:
        with contextlib.suppress(OSError):
            if not existed and os.path.getsize(path) == 0:
                os.remove(path)
        raise StartupError(f"cannot create the SQLite database {path}: {error}") from None


#: The spellings of ``[core] application`` that name the built-in proxy.
def _open_static(settings: Settings, opener: Any) -> list[Listener]:
    opened: list[Listener] = []
    for sdef in settings.core.listen:
        try:
            opened.append(opener(sdef, None))
        except ListenError as error:
            for listener in opened:
                listener.stop()
            raise StartupError(
                f"{settings.source}: [core] listen: cannot open static socket "
                f"{sdef.socket_text}: {error.reason}"
            ) from None
    return opened


def _mi_socket_owner(path: Path, error: Exception) -> str | None:
    """Who holds the MI socket's lock ("pid N") when that was the error, else None.

    Twisted's UNIX listener locks ``path.lock``, a symbolic link to the pid.
    """
    if not (isinstance(error, CannotListenError) and error.socketError == "Cannot acquire lock"):
        return None
    try:
        pid = os.readlink(f"{path}.lock")
    except OSError:
        return "pid unknown"
    return f"pid {pid}" if pid.isdigit() else "pid unknown"


class DaemonService(MultiService):
    """The running daemon: registry, admin listeners, and the store they share.

    Stops in order: admin listeners, then every socket (awaited), then the
    database store.
    """

    log = Logger()

    def __init__(
        self,
        settings: Settings,
        store: ISocketStore,
        registry: SocketRegistry,
        reactor: Any,
        *,
        tls: TLSDomains | None = None,
        pools: Sequence[UdpWorkerPool] = (),
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.settings = settings
        #: The UDP worker pools: started before the registry, stopped after it.
        self.pools = list(pools)
        self.store = store
        self.registry = registry
        self.reactor = reactor
        self.started_at = reactor.seconds()
        self.statistics = Statistics(
            registry, pools=self.pools, clock=reactor, started_at=self.started_at
        )
        self.commands: CommandTable = build_command_table(
            registry,
            clock=reactor,
            started_at=self.started_at,
            process_list=self.process_list,
            version=__version__,
            tls=tls,
            statistics=self.statistics,
        )
        self._ports: list[IListeningPort] = []
        self._fifo: FifoListener | None = None
        #: Set by `build_daemon`: this daemon's hold on its state directory,
        #: and what tells the log and systemd that it is ready.
        self.state_lock: StateLock | None = None
        self.readiness: Readiness | None = None
        registry.setServiceParent(self)  # type: ignore[no-untyped-call]
        if settings.sockets_mgm.auto_reload:  # a child after the registry: stopped before it
            reloader = AutoReloader(registry, settings.sockets_mgm, reactor)
            reloader.setServiceParent(self)  # type: ignore[no-untyped-call]
            self.statistics.auto_reload = reloader

    def process_list(self) -> list[dict[str, Any]]:
        rows = [{"ID": 0, "PID": os.getpid(), "Type": "control: sockets, database, MI"}]
        for pool in self.pools:
            rows += [{"ID": len(rows) + i, **row} for i, row in enumerate(pool.process_rows())]
        return rows

    def startService(self) -> None:
        # Everything built so far lives as long as the daemon: keep it out of the
        # collector's full passes, which cost tens of milliseconds in a reload of
        # hundreds of sockets (bench/reload.py).
        gc.freeze()
        if self.state_lock is not None:
            self.state_lock.record_pid(os.getpid())  # twistd may have forked since
        for pool in self.pools:
            pool.startService()
        super().startService()  # type: ignore[no-untyped-call]
        if self.readiness is not None:
            self.readiness.start()

    def state(self) -> DaemonState:
        """Sockets, workers, MI endpoints and database, for the ready line and STATUS=."""
        entries = self.registry.entries
        workers = [row for pool in self.pools for row in pool.process_rows()]
        if self.registry.loaded:
            table = "loaded"
        elif self.registry.failed_reloads:
            table = "failed"
        else:
            table = "loading"
        return DaemonState(
            static_open=len(self.registry.static_listeners),
            dynamic_open=sum(1 for entry in entries if entry.is_open),
            dynamic_failed=sum(1 for entry in entries if not entry.is_open),
            workers_ready=sum(1 for row in workers if row.get("State") == "ready"),
            workers_total=len(workers),
            mi=self._mi_endpoints(),
            database=self.settings.sockets_mgm.db_url.display(),
            table=table,
        )

    def _mi_endpoints(self) -> tuple[str, ...]:
        mi, manhole = self.settings.mi, self.settings.manhole
        endpoints = [f"sipsock-mi {self.settings.mi_socket}"]
        if mi.http:
            endpoints.append(f"http {mi.http_address}:{mi.http_port}")
        if mi.datagram_port is not None:
            endpoints.append(f"datagram {mi.datagram_address}:{mi.datagram_port}")
        if mi.fifo is not None:
            endpoints.append(f"fifo {mi.fifo}")
        if manhole.enabled:
            for kind, port in (("ssh", manhole.ssh_port), ("telnet", manhole.telnet_port)):
                if port is not None:
                    endpoints.append(f"manhole {kind} {manhole.address}:{port}")
        return tuple(endpoints)

    def open_admin(self) -> None:
        """Bind the MI listeners now; raises `StartupError` naming the one that failed."""
        mi = self.settings.mi
        try:
            self._ports.append(
                listen_amp(self.commands, str(self.settings.mi_socket), reactor=self.reactor)
            )
        except (CannotListenError, OSError) as error:
            owner = _mi_socket_owner(self.settings.mi_socket, error)
            if owner is not None:
                self._close_admin()
                raise StartupError(
                    f"MI socket {self.settings.mi_socket} is in use: sipsock is already "
                    f"running ({owner}); give each daemon its own [mi] socket"
                ) from None
            self._fail(f"MI socket {self.settings.mi_socket}", error)
        if mi.http:
            try:
                self._ports.append(
                    listen_http(
                        self.commands,
                        interface=mi.http_address,
                        port=mi.http_port,
                        reactor=self.reactor,
                        metrics=metrics_text(self.statistics),
                    )
                )
            except CannotListenError as error:
                self._fail(f"[mi] http {mi.http_address}:{mi.http_port}", error)
        if self.settings.manhole.enabled:
            self._open_manhole()
        if mi.datagram_port is not None:
            try:
                self._ports.append(
                    listen_udp(
                        self.commands,
                        interface=mi.datagram_address,
                        port=mi.datagram_port,
                        reactor=self.reactor,
                    )
                )
            except CannotListenError as error:
                self._fail(f"[mi] datagram {mi.datagram_address}:{mi.datagram_port}", error)
        if mi.fifo is not None:
            fifo = FifoListener(self.commands, str(mi.fifo), reactor=self.reactor)
            try:
                fifo.startListening()
            except OSError as error:
                self._fail(f"[mi] fifo {mi.fifo}", error)
            self._fifo = fifo

    def _open_manhole(self) -> None:
        namespace = {
            "registry": self.registry,
            "pools": self.pools,
            "settings": self.settings,
            "stats": self.statistics,
            "mi": mi_caller(self.commands.call),
        }
        try:
            self._ports += listen_manhole(
                self.settings.manhole,
                self.settings.core.state_dir,
                namespace,
                reactor=self.reactor,
            )
        except ManholeError as error:
            self._close_admin()
            raise StartupError(f"{self.settings.source}: {error}") from None

    def _fail(self, what: str, error: Exception) -> None:
        self._close_admin()
        reason = error.socketError if isinstance(error, CannotListenError) else error
        detail = getattr(reason, "strerror", None) or str(reason)
        raise StartupError(f"cannot listen on {what}: {detail}")

    def _close_admin(self) -> list[Deferred[Any]]:
        waits: list[Deferred[Any]] = []
        for port in self._ports:
            result = port.stopListening()
            if isinstance(result, Deferred):
                waits.append(result)
        self._ports = []
        if self._fifo is not None:
            waits.append(self._fifo.stopListening())
            self._fifo = None
        return waits

    def stopService(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self.readiness is not None:
            self.readiness.stop()
        for wait in self._close_admin():
            await wait
        await super().stopService()  # type: ignore[no-untyped-call]
        # Every socket is released: now the workers can go (none is left behind).
        for stopping in [pool.stopService() for pool in self.pools]:
            await stopping
        await self.store.close()
        if self.state_lock is not None:
            self.state_lock.release()
        self.log.info("sipsock stopped")
        # twistd re-raises the stop signal on exit (status -15). A stop that
        # closed every socket cleanly is a success: exit 0, as operators and
        # service managers expect.
        if getattr(self.reactor, "_exitSignal", None) in (signal.SIGTERM, signal.SIGINT):
            self.reactor._exitSignal = None
