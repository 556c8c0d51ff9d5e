"""`StatsReporter`: which socket counters a worker's `Stats` answer carries (pure, no I/O).

A full answer lists every socket held, page by page (by index). An answer of
changes lists only the sockets whose counters differ from what the worker
last reported (new ones included) and the keys it no longer holds: with N
sockets, a refresh every second cost a few milliseconds of each process's
CPU per 500 sockets even when nothing moved; now it costs what changed.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from sipsock.seams import SocketCounters
from sipsock.workers.commands import COUNTER_NAMES, STATS_PAGE

#: A `SocketCounters`' values in `COUNTER_NAMES` order, in one call.
counter_values: Final[Callable[[SocketCounters], tuple[int, ...]]] = operator.attrgetter(
    *COUNTER_NAMES
)


@dataclass(frozen=True)
class StatsPage:
    """Rows ``(key, counters...)``, keys no longer held, and whether more follow."""

    rows: list[tuple[int, ...]]
    gone: list[int]
    more: bool


class StatsReporter:
    """What one worker last reported of each socket, to answer with changes only."""

    def __init__(self, most: int = STATS_PAGE) -> None:
        if most < 1:
            raise ValueError(f"a Stats page holds at least one socket, not {most}")
        self.most = most
        #: Counter values last sent per key (what the control process knows).
        self.reported: dict[int, tuple[int, ...]] = {}

    def full(self, counters: Mapping[int, SocketCounters], start: int) -> StatsPage:
        """The page of every socket beginning at index ``start`` (by key order).

        A full pass (``start`` 0) starts the record of what was reported anew.
        """
        if start <= 0:
            self.reported = {}
            start = 0
        keys = sorted(counters)
        rows: list[tuple[int, ...]] = []
        for key in keys[start : start + self.most]:
            values = counter_values(counters[key])
            self.reported[key] = values
            rows.append((key, *values))
        return StatsPage(rows, [], start + self.most < len(keys))

    def changes(self, counters: Mapping[int, SocketCounters]) -> StatsPage:
        """Up to a page of sockets changed since last reported, and of keys gone."""
        reported = self.reported
        rows: list[tuple[int, ...]] = []
        more = False
        for key, socket in counters.items():
            values = counter_values(socket)
            if reported.get(key) != values:
                if len(rows) == self.most:
                    more = True
                    break
                reported[key] = values
                rows.append((key, *values))
        gone: list[int] = []
        for key in reported:
            if key not in counters:
                if len(gone) == self.most:
                    more = True
                    break
                gone.append(key)
        for key in gone:
            del reported[key]
        return StatsPage(rows, gone, more)
