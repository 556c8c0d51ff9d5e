"""`StatsReporter`: full pages by index, then only the sockets that changed and the keys gone."""

from __future__ import annotations

import pytest

from sipsock.seams import SocketCounters
from sipsock.workers.reported import StatsReporter, counter_values


def test_after_a_full_pass_only_changed_new_and_gone_sockets_are_reported() -> None:
    counters = {key: SocketCounters(received=key) for key in (1, 2, 3)}
    reporter = StatsReporter(most=2)
    first = reporter.full(counters, 0)
    assert [row[0] for row in first.rows] == [1, 2] and first.more
    last = reporter.full(counters, 2)
    assert [row[0] for row in last.rows] == [3] and not last.more
    assert reporter.changes(counters).rows == []  # nothing moved: nothing sent

    counters[2].received += 5
    counters[4] = SocketCounters()  # new, all zero: still reported (it is held)
    del counters[1]
    page = reporter.changes(counters)
    assert page.rows == [(2, *counter_values(counters[2])), (4, *counter_values(counters[4]))]
    assert page.gone == [1] and not page.more
    assert reporter.changes(counters) == type(page)([], [], False)


def test_changes_come_a_page_at_a_time_and_a_full_pass_starts_over() -> None:
    counters = {key: SocketCounters(received=1) for key in range(5)}
    reporter = StatsReporter(most=2)
    pages = [reporter.changes(counters) for _ in range(3)]
    assert [len(p.rows) for p in pages] == [2, 2, 1]
    assert [p.more for p in pages] == [True, True, False]
    counters.clear()
    gone = [reporter.changes(counters) for _ in range(3)]
    assert [len(p.gone) for p in gone] == [2, 2, 1]
    assert [p.more for p in gone] == [True, True, False]
    counters[7] = SocketCounters()
    reporter.changes(counters)
    # A full pass forgets what was reported before it.
    reporter.full({}, 0)
    assert reporter.changes(counters).rows == [(7, *counter_values(counters[7]))]


def test_a_page_holds_at_least_one_socket() -> None:
    with pytest.raises(ValueError, match="at least one"):
        StatsReporter(most=0)
