"""`ConnectionDirectory` and the `ConnectionsChanged` wire form (pure)."""

from __future__ import annotations

import pytest

from sipsock.workers.commands import WorkerError
from sipsock.workers.connection_directory import ConnectionChange, ConnectionDirectory
from sipsock.workers.stream_commands import decode_changes, encode_changes


def up(key: int, host: str, port: int, inbound: bool = True) -> ConnectionChange:
    return ConnectionChange(key, (host, port), True, inbound)


def down(key: int, host: str, port: int, inbound: bool = True) -> ConnectionChange:
    return ConnectionChange(key, (host, port), False, inbound)


def test_a_peer_is_found_in_the_worker_that_holds_its_connection_by_socket() -> None:
    directory: ConnectionDirectory[str] = ConnectionDirectory()
    directory.apply("a", [up(1, "192.0.2.1", 5060)])
    directory.apply("b", [up(2, "192.0.2.1", 5060), up(1, "192.0.2.2", 5060)])
    assert directory.owner(1, ("192.0.2.1", 5060)) == "a"
    assert directory.owner(2, ("192.0.2.1", 5060)) == "b"
    assert directory.owner(1, ("192.0.2.1", 5061)) is None
    assert directory.held_by("a") == 1 and directory.held_by("b") == 2


def test_ipv6_peers_are_found_whatever_their_spelling() -> None:
    directory: ConnectionDirectory[str] = ConnectionDirectory()
    directory.apply("a", [up(1, "[2001:DB8::0001]", 5060)])
    assert directory.owner(1, ("2001:db8::1", 5060)) == "a"
    directory.apply("a", [down(1, "2001:db8:0::1", 5060)])
    assert directory.owner(1, ("2001:db8::1", 5060)) is None
    assert len(directory) == 0


def test_a_close_never_seen_open_changes_nothing() -> None:
    directory: ConnectionDirectory[str] = ConnectionDirectory()
    directory.apply("a", [down(1, "192.0.2.1", 5060)])
    directory.apply("a", [up(1, "192.0.2.1", 5060)])
    directory.apply("b", [down(1, "192.0.2.1", 5060)])
    assert directory.owner(1, ("192.0.2.1", 5060)) == "a"
    assert directory.inbound(1) == 1


def test_an_ended_worker_takes_its_connections_and_counts_with_it() -> None:
    directory: ConnectionDirectory[str] = ConnectionDirectory()
    directory.apply("a", [up(1, "192.0.2.1", 1000), up(1, "192.0.2.1", 1001)])
    directory.apply("b", [up(1, "192.0.2.1", 1002), up(1, "192.0.2.9", 1000, inbound=False)])
    assert directory.inbound(1) == 3
    assert directory.inbound(1, "192.0.2.1") == 3
    assert directory.forget_worker("a") == 2
    assert directory.owner(1, ("192.0.2.1", 1000)) is None
    assert directory.owner(1, ("192.0.2.1", 1002)) == "b"
    assert directory.inbound(1) == 1 and directory.inbound(1, "192.0.2.1") == 1


def test_inbound_counts_are_per_socket_and_per_ip_and_ipv6_counts_per_64() -> None:
    directory: ConnectionDirectory[str] = ConnectionDirectory()
    directory.apply("a", [up(1, "2001:db8::1", 1), up(1, "2001:db8::2", 1)])
    directory.apply("b", [up(1, "2001:db8:0:1::1", 1), up(2, "2001:db8::1", 1)])
    assert directory.inbound(1, "2001:db8::ffff") == 2
    assert directory.inbound(1) == 3
    assert directory.inbound(2) == 1


def test_a_released_socket_takes_its_aliases_and_counts() -> None:
    directory: ConnectionDirectory[str] = ConnectionDirectory()
    directory.apply("a", [up(1, "192.0.2.1", 1), up(2, "192.0.2.1", 1)])
    directory.forget_socket(1)
    assert directory.owner(1, ("192.0.2.1", 1)) is None
    assert directory.inbound(1) == 0 and directory.held_by("a") == 1
    directory.apply("a", [down(1, "192.0.2.1", 1)])  # a late report of the released socket
    assert directory.held_by("a") == 1


def test_changes_round_trip_and_garbage_is_refused_by_name() -> None:
    changes = [up(1, "::1", 5060), down(7, "192.0.2.1", 1, inbound=False)]
    assert decode_changes(encode_changes(changes)) == changes
    garbage = [b"{", b"{}", b"[[1, 2, 3, 1, 1]]", b'[[1, "h", 3, 2, 1]]', b'[[true, "h", 1, 1, 1]]']
    for bad in garbage:
        with pytest.raises(WorkerError, match="ConnectionsChanged"):
            decode_changes(bad)
