"""The admin front ends as services: MI over AMP, HTTP, datagrams and a FIFO, the manhole.

Each front end binds in `privilegedStartService` (a failure is a
`StartupError` naming the front end, its address and the reason) and closes
at `stopService`, awaited. `admin_front_ends` lists the ones the
configuration asks for, in the order they bind.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.logger import Logger

from sipsock.config import Settings
from sipsock.daemon.startup import StartupError
from sipsock.manhole import ManholeError, listen_manhole
from sipsock.mi import CommandTable
from sipsock.mi.amp import listen_amp
from sipsock.mi.datagram import listen_udp
from sipsock.mi.fifo import FifoListener
from sipsock.mi.http import listen_http
from sipsock.mi.metrics import MetricsProducer


class _Port(Protocol):
    def stopListening(self) -> Deferred[None] | None: ...


class AdminFrontEnd(Service):
    """One admin front end: bound at privileged start, closed (awaited) at stop."""

    log = Logger()

    def __init__(self, name: str, endpoints: Sequence[str]) -> None:
        self.name = name
        #: How the ready line and STATUS= name this front end ("http 127.0.0.1:8888").
        self.endpoints = tuple(endpoints)
        self._ports: list[_Port] = []

    def privilegedStartService(self) -> None:
        """Bind now; raises `StartupError` naming the front end."""
        self._ports = list(self.listen())

    def listen(self) -> Sequence[_Port]:
        raise NotImplementedError

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        return Deferred.fromCoroutine(self._close())

    async def _close(self) -> None:
        ports, self._ports = self._ports, []
        for port in ports:
            stopping = port.stopListening()
            if stopping is not None:
                await stopping

    @property
    def listening(self) -> bool:
        return bool(self._ports)


class AmpFrontEnd(AdminFrontEnd):
    """``sipsock-mi`` and the CLI: AMP on the MI UNIX socket."""

    def __init__(self, commands: CommandTable, path: Path, *, reactor: Any) -> None:
        super().__init__("mi-amp", [f"sipsock-mi {path}"])
        self._commands, self._path, self._reactor = commands, path, reactor
        self._bind_path = path.absolute()  # twistd -d changes directory before the bind

    def listen(self) -> Sequence[_Port]:
        try:
            return [listen_amp(self._commands, str(self._bind_path), reactor=self._reactor)]
        except (CannotListenError, OSError) as error:
            owner = _mi_socket_owner(self._bind_path, error)
            if owner is not None:
                raise StartupError(
                    f"MI socket {self._path} is in use: sipsock is already "
                    f"running ({owner}); give each daemon its own [mi] socket"
                ) from None
            raise _bind_error(f"MI socket {self._path}", error) from None


class HttpFrontEnd(AdminFrontEnd):
    """``POST /mi`` and ``GET /metrics``."""

    def __init__(
        self,
        commands: CommandTable,
        address: str,
        port: int,
        *,
        metrics: MetricsProducer,
        reactor: Any,
    ) -> None:
        super().__init__("mi-http", [f"http {address}:{port}"])
        self._commands, self._address, self._port = commands, address, port
        self._metrics, self._reactor = metrics, reactor

    def listen(self) -> Sequence[_Port]:
        try:
            port = listen_http(
                self._commands,
                interface=self._address,
                port=self._port,
                reactor=self._reactor,
                metrics=self._metrics,
            )
        except (CannotListenError, OSError) as error:
            raise _bind_error(f"[mi] http {self._address}:{self._port}", error) from None
        return [port]


class DatagramFrontEnd(AdminFrontEnd):
    """JSON-RPC in UDP datagrams (OpenSIPS's mi_datagram)."""

    def __init__(self, commands: CommandTable, address: str, port: int, *, reactor: Any) -> None:
        super().__init__("mi-datagram", [f"datagram {address}:{port}"])
        self._commands, self._address, self._port = commands, address, port
        self._reactor = reactor

    def listen(self) -> Sequence[_Port]:
        try:
            port = listen_udp(
                self._commands, interface=self._address, port=self._port, reactor=self._reactor
            )
        except (CannotListenError, OSError) as error:
            raise _bind_error(f"[mi] datagram {self._address}:{self._port}", error) from None
        return [port]


class FifoFrontEnd(AdminFrontEnd):
    """JSON-RPC written to a FIFO (OpenSIPS's mi_fifo)."""

    def __init__(self, commands: CommandTable, path: Path, *, reactor: Any) -> None:
        super().__init__("mi-fifo", [f"fifo {path}"])
        self._commands, self._path, self._reactor = commands, path, reactor
        self._bind_path = path.absolute()  # twistd -d changes directory before the bind

    def listen(self) -> Sequence[_Port]:
        fifo = FifoListener(self._commands, str(self._bind_path), reactor=self._reactor)
        try:
            fifo.startListening()
        except OSError as error:
            raise _bind_error(f"[mi] fifo {self._path}", error) from None
        return [fifo]


class ManholeFrontEnd(AdminFrontEnd):
    """A Python shell over SSH and/or telnet, with ``namespace`` in scope."""

    def __init__(self, settings: Settings, namespace: dict[str, Any], *, reactor: Any) -> None:
        manhole = settings.manhole
        endpoints = [
            f"manhole {kind} {manhole.address}:{port}"
            for kind, port in (("ssh", manhole.ssh_port), ("telnet", manhole.telnet_port))
            if port is not None
        ]
        super().__init__("manhole", endpoints)
        self._settings, self._namespace, self._reactor = settings, namespace, reactor
        self._state_dir = settings.core.state_dir.absolute()

    def listen(self) -> Sequence[_Port]:
        try:
            return listen_manhole(
                self._settings.manhole, self._state_dir, self._namespace, reactor=self._reactor
            )
        except ManholeError as error:
            raise StartupError(f"{self._settings.source}: {error}") from None


def admin_front_ends(
    settings: Settings,
    commands: CommandTable,
    *,
    metrics: MetricsProducer,
    manhole_namespace: dict[str, Any],
    reactor: Any,
) -> list[AdminFrontEnd]:
    """The front ends the configuration asks for, in the order they bind.

    Paths are kept as configured in messages and bound as absolute paths
    taken now (``twistd -d`` changes directory before they bind).
    """
    mi = settings.mi
    ends: list[AdminFrontEnd] = [AmpFrontEnd(commands, settings.mi_socket, reactor=reactor)]
    if mi.http:
        ends.append(
            HttpFrontEnd(commands, mi.http_address, mi.http_port, metrics=metrics, reactor=reactor)
        )
    if settings.manhole.enabled:
        ends.append(ManholeFrontEnd(settings, manhole_namespace, reactor=reactor))
    if mi.datagram_port is not None:
        ends.append(
            DatagramFrontEnd(commands, mi.datagram_address, mi.datagram_port, reactor=reactor)
        )
    if mi.fifo is not None:
        ends.append(FifoFrontEnd(commands, mi.fifo, reactor=reactor))
    return ends


def _bind_error(what: str, error: Exception) -> StartupError:
    reason = error.socketError if isinstance(error, CannotListenError) else error
    detail = getattr(reason, "strerror", None) or str(reason)
    return StartupError(f"cannot listen on {what}: {detail}")


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
