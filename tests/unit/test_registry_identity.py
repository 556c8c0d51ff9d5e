"""A reload matches unchanged rows by identity first: the outcome is the rule's.

The store hands back the very `SocketRow` of the last read for a row that did
not change, so `RowScreen`, `plan_reload` and the registry's table order look
at the changed places only. Whatever the tables (rows kept, retagged, moved,
inserted, deleted, swapped, duplicated, bad), the registry must end where a
fresh registry reading the same table ends: same sockets in the same order,
each entry keyed by its own definition, and a socket kept across reloads keeps
its slot and its listener.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import defer, task
from twisted.internet.defer import Deferred

from sipsock.db import SocketRow
from sipsock.registry import SocketRegistry
from sipsock.sockdef import SocketDef
from sipsock.testing import FakeListener, FakeStore

PORTS = [5060, 5061, 5062, 5063, 5064, 5065]
TAGS = [None, "a", "b"]

rows_strategy = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=8),
        st.sampled_from([*PORTS, 99999]),
        st.sampled_from(TAGS),
    ),
    max_size=10,
)


def registry_on(store: FakeStore) -> SocketRegistry:
    def opener(sdef: SocketDef, slot: int | None) -> Deferred[Any]:
        return defer.succeed(FakeListener(sdef, slot))

    return SocketRegistry(store, opener, max_sockets=64, reactor=task.Clock())


def table(rows: list[SocketRow], kept: dict[tuple[Any, ...], SocketRow]) -> list[SocketRow]:
    """``rows`` as a store gives them: an unchanged row is the object of the last read."""
    return [kept.setdefault((r.id, r.socket, r.tag), r) for r in rows]


def reload(registry: SocketRegistry) -> None:
    done: list[Any] = []
    registry.reload().addBoth(done.append)
    assert done and not hasattr(done[0], "raiseException"), done


@settings(max_examples=300, deadline=None)
@given(tables=st.lists(rows_strategy, min_size=1, max_size=4))
def test_every_reload_ends_as_a_fresh_registry_reading_the_same_table(
    tables: list[list[tuple[int, int, str | None]]],
) -> None:
    store = FakeStore()
    registry = registry_on(store)
    kept: dict[tuple[Any, ...], SocketRow] = {}
    for specs in tables:
        previous = {e.sdef.socket_text: e for e in registry.entries}
        store.rows = table(
            [SocketRow(row_id, f"udp:127.0.0.1:{port}", tag=tag) for row_id, port, tag in specs],
            kept,
        )
        reload(registry)

        fresh_store = FakeStore()
        fresh_store.rows = [SocketRow(r.id, r.socket, tag=r.tag) for r in store.rows]
        fresh = registry_on(fresh_store)
        reload(fresh)
        assert registry.list_sockets() == fresh.list_sockets()
        assert [e.sdef.row_id for e in registry.entries] == [e.sdef.row_id for e in fresh.entries]
        for key, entry in registry._entries.items():
            assert entry.sdef is key
            assert entry.listener is not None and entry.listener.sdef == entry.sdef
            before = previous.get(entry.sdef.socket_text)
            if before is not None:  # kept or updated in place: same slot, same listener
                assert entry is before
                assert entry.slot == before.slot
