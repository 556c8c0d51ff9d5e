"""The statistics MI commands, answering like OpenSIPS's core.

``get_statistics`` and ``reset_statistics`` take ``statistics``, an array of
names (``all``, ``group:``, ``group:name`` or a bare ``name``);
``list_statistics`` takes it optionally. So ``opensips-mi -s NAME...`` and
``opensips-cli -x mi get_statistics NAME...`` work unchanged. No match:
error 404 "Statistics Not Found", as OpenSIPS answers.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from sipsock.mi.commands import CommandTable, MICommand, MIError, invalid_params
from sipsock.stats import Statistics
from sipsock.statvalues import Stat, StatisticsError, as_kinds, as_values, select

#: OpenSIPS's error code when no statistic matches.
NOT_FOUND = 404


def statistic_names(params: dict[str, Any]) -> list[str]:
    """The ``statistics`` parameter as a list of names (a lone string is one name)."""
    value = params.get("statistics")
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, list) or not value:
        raise invalid_params("'statistics' must be a non-empty array of statistic names")
    if not all(isinstance(item, str) for item in value):
        raise invalid_params("'statistics' must hold strings")
    return value


def _chosen(stats: list[Stat], names: list[str]) -> list[Stat]:
    try:
        return select(stats, names)
    except StatisticsError as error:
        raise MIError(NOT_FOUND, error.reason) from None


def register_statistics(table: CommandTable, statistics: Statistics) -> None:
    """Add ``get_statistics``, ``list_statistics`` and ``reset_statistics`` to ``table``;
    the statistics count the table's requests."""
    statistics.mi = table

    def get_statistics(params: dict[str, Any]) -> Deferred[dict[str, int | float]]:
        names = statistic_names(params)
        return statistics.collect().addCallback(
            lambda stats: as_values(statistics.shown(_chosen(stats, names)))
        )

    def list_statistics(params: dict[str, Any]) -> dict[str, str]:
        stats = statistics.snapshot()
        if "statistics" in params:
            stats = _chosen(stats, statistic_names(params))
        return as_kinds(stats)

    def reset_statistics(params: dict[str, Any]) -> Deferred[str]:
        names = statistic_names(params)

        def reset(stats: list[Stat]) -> str:
            statistics.reset(_chosen(stats, names))
            return "OK"

        return statistics.collect().addCallback(reset)

    table.register(
        MICommand(
            "get_statistics",
            get_statistics,
            (("statistics",),),
            "Show statistics: names, group: for a whole group, or all",
        )
    )
    table.register(
        MICommand(
            "list_statistics",
            list_statistics,
            ((), ("statistics",)),
            "List the statistics and whether each is incremental",
        )
    )
    table.register(
        MICommand(
            "reset_statistics",
            reset_statistics,
            (("statistics",),),
            "Start incremental statistics from zero in MI answers (/metrics is not reset)",
        )
    )
