"""`ConnectionDirectory`: which stream worker holds a connection to a peer, by socket (pure).

The control process keeps one for its stream worker pool, as OpenSIPS keeps
its ``tcp_conn`` aliases: an entry per (socket key, peer address and port)
says which worker holds a ready connection there. Workers report each
connection as it becomes ready and as it closes (`apply`); a send to a peer
of a stream socket goes to the worker named here, and only when none holds
one does a worker open it. A worker that ends takes its entries with it
(`forget_worker`), a released socket takes its own (`forget_socket`).

Peers are keyed as each socket's connection table keys them
(`sipsock.transport.connections.peer_key`: IP addresses in canonical form).
No reactor, no I/O.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from sipsock.limits import address_key
from sipsock.transport.connections import peer_key

W = TypeVar("W", bound=Hashable)

#: (socket key, peer host, peer port).
Alias = tuple[int, str, int]


@dataclass(frozen=True)
class ConnectionChange:
    """A worker's connection to ``peer`` on socket ``key`` became ready (``up``) or closed.

    ``inbound``: accepted (it counts against the daemon-wide connection caps).
    """

    key: int
    peer: tuple[str, int]
    up: bool
    inbound: bool = True


class ConnectionDirectory(Generic[W]):
    """Connections of a pool's workers by (socket key, peer), and how many each holds.

    Accepted connections are also counted per socket and per (socket, remote
    IP) across every worker: the daemon-wide connection caps.
    """

    def __init__(self) -> None:
        # alias -> worker -> ready connections that worker holds there
        self._owners: dict[Alias, dict[W, int]] = {}
        self._per_worker: dict[W, int] = {}
        # worker -> (socket key, remote IP) -> accepted connections
        self._accepted: dict[W, dict[tuple[int, str], int]] = {}
        self._inbound: dict[int, int] = {}
        self._inbound_by_ip: dict[tuple[int, str], int] = {}

    def __len__(self) -> int:
        """Aliases (socket, peer) with at least one connection."""
        return len(self._owners)

    def apply(self, worker: W, changes: Iterable[ConnectionChange]) -> None:
        """Record a worker's report; a close never seen open is ignored."""
        for change in changes:
            host, port = peer_key(change.peer)
            alias = (change.key, host, port)
            if change.up:
                owners = self._owners.setdefault(alias, {})
                owners[worker] = owners.get(worker, 0) + 1
                _bump(self._per_worker, worker, 1)
                if change.inbound:
                    self._count(worker, (change.key, address_key(host)), 1)
                continue
            owners_now = self._owners.get(alias)
            if owners_now is None or worker not in owners_now:
                continue
            if owners_now[worker] > 1:
                owners_now[worker] -= 1
            else:
                del owners_now[worker]
                if not owners_now:
                    del self._owners[alias]
            _bump(self._per_worker, worker, -1)
            if change.inbound:
                self._count(worker, (change.key, address_key(host)), -1)

    def owner(self, key: int, peer: tuple[str, int]) -> W | None:
        """The worker holding a connection to ``peer`` on socket ``key`` (the latest one)."""
        host, port = peer_key(peer)
        owners = self._owners.get((key, host, port))
        if not owners:
            return None
        return next(reversed(owners))

    def held_by(self, worker: W) -> int:
        """Ready connections ``worker`` holds (on every socket)."""
        return self._per_worker.get(worker, 0)

    def inbound(self, key: int, host: str | None = None) -> int:
        """Accepted connections on socket ``key`` in every worker (from ``host``'s IP only)."""
        if host is None:
            return self._inbound.get(key, 0)
        return self._inbound_by_ip.get((key, address_key(peer_key((host, 0))[0])), 0)

    def forget_worker(self, worker: W) -> int:
        """A worker ended: its connections are gone. Answers how many there were."""
        for item, count in self._accepted.pop(worker, {}).items():
            _bump(self._inbound, item[0], -count)
            _bump(self._inbound_by_ip, item, -count)
        gone = self._per_worker.pop(worker, 0)
        for alias in [a for a, owners in self._owners.items() if worker in owners]:
            owners = self._owners[alias]
            del owners[worker]
            if not owners:
                del self._owners[alias]
        return gone

    def forget_socket(self, key: int) -> None:
        """A socket was released: every alias of it goes."""
        for alias in [a for a in self._owners if a[0] == key]:
            for worker, count in self._owners.pop(alias).items():
                _bump(self._per_worker, worker, -count)
        self._inbound.pop(key, None)
        for item in [i for i in self._inbound_by_ip if i[0] == key]:
            del self._inbound_by_ip[item]
        for accepted in self._accepted.values():
            for item in [i for i in accepted if i[0] == key]:
                del accepted[item]

    def _count(self, worker: W, item: tuple[int, str], delta: int) -> None:
        _bump(self._accepted.setdefault(worker, {}), item, delta)
        _bump(self._inbound, item[0], delta)
        _bump(self._inbound_by_ip, item, delta)


K = TypeVar("K", bound=Hashable)


def _bump(counts: dict[K, int], key: K, delta: int) -> None:
    """Add ``delta`` to ``counts[key]``; a count that reaches zero is removed."""
    left = counts.get(key, 0) + delta
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)
