"""ConnectionTable and peer_key: a stream socket's connections by id and by peer, and its caps."""

from __future__ import annotations

from dataclasses import dataclass

from sipsock.transport.connections import ConnectionTable, peer_key
from tests.unit.transport.streamkit import runtime_imports


@dataclass
class Entry:
    id: int
    peer: tuple[str, int]
    inbound: bool = True
    open: bool = True


def test_peer_key_writes_ip_addresses_one_way_and_names_in_lower_case() -> None:
    assert peer_key(("[2001:DB8:0::1]", 5061)) == ("2001:db8::1", 5061)
    assert peer_key(("192.0.2.1", 5060)) == ("192.0.2.1", 5060)
    assert peer_key(("Proxy.Example", 5060)) == ("proxy.example", 5060)


def test_accepted_connections_count_against_the_caps_until_removed() -> None:
    table: ConnectionTable[Entry] = ConnectionTable()
    first, second = Entry(1, ("192.0.2.1", 1)), Entry(2, ("192.0.2.1", 2))
    table.add(first)
    assert table.refusal("192.0.2.1", per_socket=10, per_ip=2) is None
    table.add(second)
    assert table.refusal("192.0.2.1", per_socket=10, per_ip=2) is not None
    assert table.refusal("192.0.2.2", per_socket=10, per_ip=2) is None
    assert table.refusal("192.0.2.2", per_socket=2, per_ip=10) is not None
    assert table.remove(first)
    assert not table.remove(first)
    assert table.refusal("192.0.2.1", per_socket=2, per_ip=2) is None
    assert len(table) == 1


def test_outbound_connections_do_not_count_against_the_caps() -> None:
    table: ConnectionTable[Entry] = ConnectionTable()
    table.add(Entry(1, ("192.0.2.1", 5060), inbound=False))
    assert table.refusal("192.0.2.1", per_socket=1, per_ip=1) is None


def test_only_ready_connections_carry_sends() -> None:
    table: ConnectionTable[Entry] = ConnectionTable()
    connection = Entry(1, ("192.0.2.1", 5060))
    table.add(connection)
    assert table.by_peer == {}
    table.ready(connection)
    assert table.by_peer == {("192.0.2.1", 5060): connection}
    table.remove(connection)
    assert table.by_peer == {}


def test_an_outbound_connection_is_found_under_the_name_it_was_opened_for_until_it_closes() -> None:
    table: ConnectionTable[Entry] = ConnectionTable()
    connection = Entry(1, ("192.0.2.1", 5061), inbound=False)
    table.add(connection)
    table.ready(connection)
    table.opened(("proxy.example", 5061), connection)
    assert table.outbound == 1
    assert table.by_peer[("proxy.example", 5061)] is connection
    assert table.by_peer[("192.0.2.1", 5061)] is connection
    table.remove(connection)
    assert (table.by_peer, table.outbound) == ({}, 0)


def test_an_alias_does_not_replace_an_open_connection_to_that_peer() -> None:
    table: ConnectionTable[Entry] = ConnectionTable()
    existing, other = Entry(1, ("192.0.2.1", 5061)), Entry(2, ("192.0.2.9", 5061), inbound=False)
    for connection in (existing, other):
        table.add(connection)
    table.by_peer[("proxy.example", 5061)] = existing
    table.opened(("proxy.example", 5061), other)
    assert table.by_peer[("proxy.example", 5061)] is existing
    existing.open = False
    table.opened(("proxy.example", 5061), other)
    assert table.by_peer[("proxy.example", 5061)] is other


def test_the_table_is_pure_bookkeeping() -> None:
    from sipsock.transport import connections

    assert not {name for name in runtime_imports(connections) if name.startswith("twisted")}
