"""The built-in MI commands, answering like OpenSIPS's core and sockets_mgm."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime

from sipsock.mi.commands import CommandTable, MICommand, MIError, invalid_params
from sipsock.mi.statistics import register_statistics
from sipsock.stats import Statistics


class ReloadReportLike(Protocol):
    """What a reload answers: a report that can be written as JSON."""

    def as_dict(self) -> dict[str, Any]: ...


class MIRegistry(Protocol):
    """What the MI needs from the socket registry."""

    def reload(self) -> Deferred[Any]:
        """Re-read the table; fails with an exception whose text is the reason.

        Fires with a `ReloadReportLike` (typed ``Any`` because `Deferred` is
        invariant: a ``Deferred[ReloadReport]`` would not match).
        """
        ...

    def list_sockets(self, details: bool = False) -> list[dict[str, Any]]:
        """The dynamic sockets, as `sockets_list` prints them."""
        ...


class TLSReloadReportLike(Protocol):
    """What a TLS reload answers (`sipsock.transport.tls.TLSReloadReport`)."""

    @property
    def ok(self) -> bool:
        """True when every domain was reloaded."""
        ...

    def as_dict(self) -> dict[str, Any]: ...

    def summary(self) -> str:
        """One line naming each domain that failed and why."""
        ...


class MITLSDomains(Protocol):
    """What the MI needs from the TLS domains (`sipsock.transport.tls.TLSDomains`)."""

    def reload(self) -> TLSReloadReportLike | Deferred[Any]:
        """Rebuild every domain from its files; failed ones keep their old certificate.

        (A Deferred firing with the report when the domains live in worker processes.)
        """
        ...

    def list_domains(self) -> list[dict[str, Any]]:
        """The domains in use, with their certificates."""
        ...


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


def parse_flag(params: dict[str, Any], name: str, default: bool = False) -> bool:
    """A boolean parameter given as JSON true/false, 0/1, or a word like "yes".

    The stock clients send positional parameters as strings, so "1", "true",
    "yes" and "on" (any case) are true, "0", "false", "no" and "off" false.
    """
    if name not in params:
        return default
    value = params[name]
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise invalid_params(f"parameter '{name}' must be a boolean, got {value!r}")


def format_uptime(now: float, started_at: float) -> dict[str, str]:
    """OpenSIPS's `uptime` answer: Now, Up since (ctime, local) and Up time."""
    return {
        "Now": time.ctime(now),
        "Up since": time.ctime(started_at),
        "Up time": f"{max(0, int(now - started_at))} [sec]",
    }


def build_command_table(
    registry: MIRegistry,
    *,
    clock: IReactorTime,
    started_at: float,
    process_list: Callable[[], list[dict[str, Any]]],
    version: str,
    tls: MITLSDomains | None = None,
    statistics: Statistics | None = None,
    sip_core: str = "",
) -> CommandTable:
    """The command table with every built-in command.

    ``process_list`` returns the processes as OpenSIPS's `ps` prints them
    (dicts with ``ID``, ``PID`` and ``Type``); ``started_at`` is the start time
    in the clock's seconds (``clock.seconds()`` at start). With ``tls``, the
    ``tls_reload`` and ``tls_list`` commands are added. ``sip_core`` (how
    the SIP core runs, `sipsock.buildinfo.sip_core`) is shown by ``version``.
    """
    table = CommandTable()

    def sockets_reload(params: dict[str, Any]) -> Deferred[Any]:
        report = parse_flag(params, "report")

        def answer(result: ReloadReportLike) -> Any:
            return result.as_dict() if report else "OK"

        return registry.reload().addCallback(answer)

    def sockets_list(params: dict[str, Any]) -> Any:
        details = parse_flag(params, "details")
        if not details or statistics is None:
            return registry.list_sockets(details=details)
        # The counters of sockets served by workers: fresh from every worker first.
        return statistics.collect().addCallback(lambda _: registry.list_sockets(details=True))

    def which(params: dict[str, Any]) -> list[str]:
        return table.names()

    def show_version(params: dict[str, Any]) -> dict[str, str]:
        if not sip_core:
            return {"Server": f"sipsock {version}"}
        return {"Server": f"sipsock {version}", "SIP core": sip_core}

    def uptime(params: dict[str, Any]) -> dict[str, str]:
        return format_uptime(clock.seconds(), started_at)

    def ps(params: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
        return {"Processes": process_list()}

    def show_help(params: dict[str, Any]) -> Any:
        if "mi_cmd" not in params:
            return "Usage: help mi_cmd - returns information about 'mi_cmd'"
        command = table.get(str(params["mi_cmd"]))
        if command is None:
            raise MIError(404, "unknown MI command")
        return {"Help": command.help or "not available for this command", "Exported by": "sipsock"}

    reload_help = (
        "Re-read the sockets table and apply the changes; answers OK, "
        "or the full report with report=true"
    )
    list_help = "List the dynamic sockets in use (details=true adds run-time facts)"
    for name in ("sockets_reload", "sockets_mgm:reload"):
        table.register(MICommand(name, sockets_reload, ((), ("report",)), reload_help))
    for name in ("sockets_list", "sockets_mgm:list"):
        table.register(MICommand(name, sockets_list, ((), ("details",)), list_help))
    table.register(MICommand("which", which, help="List the MI commands"))
    table.register(MICommand("version", show_version, help="Show the server version"))
    table.register(MICommand("uptime", uptime, help="Show the time since start"))
    table.register(MICommand("ps", ps, help="List the processes"))
    table.register(MICommand("help", show_help, ((), ("mi_cmd",)), "Describe an MI command"))
    if tls is not None:
        _register_tls(table, tls)
    if statistics is not None:  # get_statistics, list_statistics, reset_statistics
        register_statistics(table, statistics)
    return table


def _register_tls(table: CommandTable, tls: MITLSDomains) -> None:
    def tls_reload(params: dict[str, Any]) -> Any:
        full = parse_flag(params, "report")

        def answer(report: Any) -> Any:
            if not report.ok:
                raise MIError(500, report.summary())
            return report.as_dict() if full else "OK"

        # In-process domains answer at once; stream workers' (two phases) later.
        return maybeDeferred(tls.reload).addCallback(answer)

    def tls_list(params: dict[str, Any]) -> list[dict[str, Any]]:
        return tls.list_domains()

    table.register(
        MICommand(
            "tls_reload",
            tls_reload,
            ((), ("report",)),
            "Reload every TLS domain's certificate, key and CA list from disk; a domain that "
            "fails keeps its old ones and the command fails naming it",
        )
    )
    table.register(MICommand("tls_list", tls_list, help="List the TLS domains and certificates"))
