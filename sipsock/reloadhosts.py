"""The host names of a reload: resolved now, in a pool of the registry's own.

A socket row may name its host (``udp:sip.example.com:5060``). At each reload
every name is resolved again (nothing cached: the reload sees the names as
they resolve now), through `sipsock.resolver.ThreadResolver` in a thread pool
nothing else queues in (not the password checks', not the proxy's). A name
with several addresses uses the first one (a warning names it, again only
when the addresses change). A name that does not resolve this time keeps its
running socket on the address it has, as a database failure keeps every
socket; a name that never resolved is a rejected row, naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure as TwistedFailure

from sipsock.deferreds import settle
from sipsock.reloadplan import Rejection
from sipsock.repeats import ChangedOnly
from sipsock.resolver import ResolveError, ThreadResolver
from sipsock.sockdef import SocketDef

HostResolver = Callable[[str], "Deferred[list[str]]"]

# The registry's namespace: these lines are part of what a reload says.
_log = Logger(namespace="sipsock.registry")

#: Seconds a look-up of one name may take before the reload gives up on it.
RESOLVE_TIMEOUT: Final = 5.0
#: Look-ups waiting or running at once (those given up on still count while they run).
RESOLVE_PENDING: Final = 256


def make_thread_resolver(reactor: Any, timeout: float = RESOLVE_TIMEOUT) -> HostResolver:
    """The registry's resolver: getaddrinfo in a thread pool of its own, bounded in time.

    Nothing is cached (a reload sees the names as they resolve now), and the
    pool is not the one password checks or the proxy's look-ups queue in.
    """
    resolver = ThreadResolver(
        reactor,
        timeout=timeout,
        max_pending=RESOLVE_PENDING,
        cache_seconds=0.0,
        failure_seconds=0.0,
        name="sipsock-registry-resolver",
    )
    return resolver.resolve


class ReloadHosts:
    """Resolves the host names of one registry's reloads, and says what it could not."""

    def __init__(self, resolve: HostResolver) -> None:
        self._resolve = resolve
        # Said again only when it changed: several addresses, a name that failed.
        self._logged: ChangedOnly[str] = ChangedOnly()

    def end_round(self) -> None:
        """One reload is over: what it did not say again may be said at the next."""
        self._logged.end_round()

    async def resolve(
        self, defs: list[SocketDef], names: list[str], running: Iterable[SocketDef]
    ) -> tuple[list[SocketDef], list[Rejection]]:
        """Resolve the host ``names`` of ``defs``; a socket on a name that fails is rejected."""
        if not names:
            return defs, []
        results = await settle([self._resolve(name) for name in names])
        resolved: dict[str, str] = {}
        errors: dict[str, str] = {}
        for name, value in zip(names, results, strict=True):
            if isinstance(value, TwistedFailure):
                errors[name] = _resolve_reason(value)
            elif not value:
                errors[name] = "no address"
            else:
                resolved[name] = value[0]
                if len(value) > 1 and self._logged.seen(name, " ".join(value)):
                    _log.warn(
                        "host name {host} has {count} addresses; using {address}",
                        host=name,
                        count=len(value),
                        address=value[0],
                    )
        kept: list[SocketDef] = []
        rejections: list[Rejection] = []
        for sdef in defs:
            kept_as = self._running_from(sdef, running) if sdef.host in errors else None
            if kept_as is not None:
                # As for a database failure: what cannot be read now keeps running.
                kept.append(kept_as)
                key = f"row {sdef.row_id} unresolved {sdef.host}"
                if not self._logged.seen(key, errors[sdef.host]):
                    continue  # said at the last reload already
                _log.warn(
                    "row {row}: cannot resolve host name {host} this time ({reason}): "
                    "socket {socket} keeps address {address}",
                    row=sdef.row_id,
                    host=sdef.host,
                    reason=errors[sdef.host],
                    socket=kept_as.socket_text,
                    address=kept_as.host,
                )
            elif sdef.host in errors:
                rejections.append(
                    Rejection(
                        sdef.row_id,
                        sdef.text,
                        f"row {sdef.row_id}: socket {sdef.text!r}: cannot resolve host name "
                        f"{sdef.host!r}: {errors[sdef.host]}",
                    )
                )
            elif sdef.host in resolved:
                kept.append(sdef.with_host(resolved[sdef.host]))
            else:
                kept.append(sdef)
        return kept, rejections

    @staticmethod
    def _running_from(sdef: SocketDef, running: Iterable[SocketDef]) -> SocketDef | None:
        """``sdef`` on the address its row's socket runs on (same row, same socket
        column), if one runs: the last answer for the name stands."""
        for other in running:
            if other.row_id == sdef.row_id and other.text == sdef.text:
                return sdef.with_host(other.host)
        return None


def _resolve_reason(failure: TwistedFailure) -> str:
    error = failure.value
    if isinstance(error, ResolveError):
        return error.reason
    return str(error) or type(error).__name__
