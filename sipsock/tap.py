"""``twistd sipsock``: command-line options and the composition of the daemon.

`makeService` reads the configuration, opens the database store, loads the SIP
application, binds the static sockets and the admin listeners (a failure there
stops start-up with one line naming the socket), and returns the daemon
service, whose start loads the dynamic sockets from the table.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python import usage

from sipsock import __version__
from sipsock.apps import ApplicationError, Dispatcher, load_application
from sipsock.config import ConfigError, Settings, load_config
from sipsock.db import ISocketStore, open_store
from sipsock.mi import CommandTable, build_command_table
from sipsock.mi.amp import listen_amp
from sipsock.mi.datagram import listen_udp
from sipsock.mi.fifo import FifoListener
from sipsock.mi.http import listen_http
from sipsock.registry import SocketRegistry
from sipsock.sockdef import SocketDef
from sipsock.transport import Listener, ListenError, open_listener

DEFAULT_CONFIG = "etc/sipsock.toml"


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
    """Compose every part of the daemon; raises `StartupError` with the reason."""
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor
    _prepare_state_dir(settings.core.state_dir)
    if settings.sockets_mgm.db_url.scheme == "sqlite":
        _create_sqlite_database(settings)
    try:
        app = load_application(settings.core.application, settings.application)
    except ApplicationError as error:
        raise StartupError(f"{settings.source}: [core] application: {error}") from None
    dispatcher = Dispatcher(app, max_message_size=settings.core.max_message_size)

    def open_socket(sdef: SocketDef, slot: int | None) -> Listener:
        return open_listener(
            sdef,
            slot,
            dispatcher,
            reactor=reactor,
            idle_timeout=settings.core.stream_idle_timeout,
            max_message_size=settings.core.max_message_size,
        )

    def open_dynamic(sdef: SocketDef, slot: int | None) -> Deferred[Listener]:
        return maybeDeferred(open_socket, sdef, slot)

    static = _open_static(settings, open_socket)
    store = open_store(settings.sockets_mgm, reactor)
    registry = SocketRegistry(
        store,
        open_dynamic,
        max_sockets=settings.sockets_mgm.max_sockets,
        reactor=reactor,
        static=static,
    )
    dispatcher.directory = registry
    daemon = DaemonService(settings, store, registry, reactor)
    try:
        daemon.open_admin()
    except StartupError:
        for listener in static:
            listener.stop()
        raise
    return daemon


def _prepare_state_dir(state_dir: Path) -> None:
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as error:
        raise StartupError(f"state directory {state_dir}: {error.strerror}") from None


def _create_sqlite_database(settings: Settings) -> None:
    """Create the embedded database (table and version row) on first start."""
    path = settings.sockets_mgm.db_url.path
    if path is None or os.path.exists(path):
        return
    from sipsock.db.cli import Database

    try:
        with Database.open(settings.sockets_mgm) as database:
            database.init()
    except Exception as error:
        raise StartupError(f"cannot create the SQLite database {path}: {error}") from None


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


class DaemonService(MultiService):
    """The running daemon: registry, admin listeners, and the store they share.

    Stops in order: admin listeners, then every socket (awaited), then the
    database store.
    """

    log = Logger()

    def __init__(
        self, settings: Settings, store: ISocketStore, registry: SocketRegistry, reactor: Any
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.settings = settings
        self.store = store
        self.registry = registry
        self.reactor = reactor
        self.started_at = reactor.seconds()
        self.commands: CommandTable = build_command_table(
            registry,
            clock=reactor,
            started_at=self.started_at,
            process_list=self.process_list,
            version=__version__,
        )
        self._ports: list[IListeningPort] = []
        self._fifo: FifoListener | None = None
        registry.setServiceParent(self)  # type: ignore[no-untyped-call]

    def process_list(self) -> list[dict[str, Any]]:
        return [{"ID": 0, "PID": os.getpid(), "Type": "control: sockets, database, MI"}]

    def open_admin(self) -> None:
        """Bind the MI listeners now; raises `StartupError` naming the one that failed."""
        mi = self.settings.mi
        try:
            self._ports.append(
                listen_amp(self.commands, str(self.settings.mi_socket), reactor=self.reactor)
            )
        except (CannotListenError, OSError) as error:
            self._fail(f"MI socket {self.settings.mi_socket}", error)
        if mi.http:
            try:
                self._ports.append(
                    listen_http(
                        self.commands,
                        interface=mi.http_address,
                        port=mi.http_port,
                        reactor=self.reactor,
                    )
                )
            except CannotListenError as error:
                self._fail(f"[mi] http {mi.http_address}:{mi.http_port}", error)
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
        for wait in self._close_admin():
            await wait
        await super().stopService()  # type: ignore[no-untyped-call]
        await self.store.close()
        self.log.info("sipsock stopped")
        # twistd re-raises the stop signal on exit (status -15). A stop that
        # closed every socket cleanly is a success: exit 0, as operators and
        # service managers expect.
        if getattr(self.reactor, "_exitSignal", None) in (signal.SIGTERM, signal.SIGINT):
            self.reactor._exitSignal = None
