"""The static sockets (``[core] listen``) as a service.

They are bound at privileged start, all or none: the first that cannot be
bound closes the ones before it and stops start-up with a `StartupError`
naming the socket. The registry is told about them (it looks them up and
keeps table rows off their addresses) but does not own them: this service
closes them at stop, after the registry closed the dynamic ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger

from sipsock.daemon.startup import StartupError
from sipsock.registry import SocketRegistry
from sipsock.sockdef import SocketDef
from sipsock.transport import Listener, ListenError

StaticOpener = Callable[[SocketDef], Listener]


class StaticSockets(Service):
    """Binds ``definitions`` at privileged start; closes them (awaited) at stop."""

    log = Logger()
    name = "static-sockets"

    def __init__(
        self,
        definitions: Sequence[SocketDef],
        opener: StaticOpener,
        registry: SocketRegistry,
        *,
        source: str,
    ) -> None:
        self._definitions = list(definitions)
        self._open = opener
        self._registry = registry
        self._source = source
        self.listeners: list[Listener] = []

    def privilegedStartService(self) -> None:
        opened: list[Listener] = []
        for sdef in self._definitions:
            try:
                opened.append(self._open(sdef))
            except ListenError as error:
                for listener in opened:
                    listener.stop()
                raise StartupError(
                    f"{self._source}: [core] listen: cannot open static socket "
                    f"{sdef.socket_text}: {error.reason}"
                ) from None
        self.listeners = opened
        self._registry.use_static(opened)

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        return Deferred.fromCoroutine(self._close())

    async def _close(self) -> None:
        listeners, self.listeners = self.listeners, []
        stops = [maybeDeferred(listener.stop) for listener in listeners]
        for listener, stopping in zip(listeners, stops, strict=True):
            try:
                await stopping
            except Exception:
                self.log.failure(
                    "static socket {socket} did not close cleanly", socket=listener.sdef.socket_text
                )
