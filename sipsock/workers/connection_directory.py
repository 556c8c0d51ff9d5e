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

from sipsock.transport.connections import peer_key

W = TypeVar("W", bound=Hashable)

#: (socket key, peer host, peer port).
Alias = tuple[int, str, int]


@dataclass(frozen=True)
class ConnectionChange:
    """A worker's connection to ``peer`` on socket ``key`` became ready (``up``) or closed."""

    key: int
    peer: tuple[str, int]
    up: bool


class ConnectionDirectory(Generic[W]):
    """Connections of a pool's workers by (socket key, peer), and how many each holds."""

    def __init__(self) -> None:
        # alias -> worker -> ready connections that worker holds there
        self._owners: dict[Alias, dict[W, int]] = {}
        self._per_worker: dict[W, int] = {}

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
                self._per_worker[worker] = self._per_worker.get(worker, 0) + 1
                continue
            owners_now = self._owners.get(alias)
            if owners_now is None or worker not in owners_now:
                continue
            left = owners_now[worker] - 1
            if left > 0:
                owners_now[worker] = left
            else:
                del owners_now[worker]
                if not owners_now:
                    del self._owners[alias]
            self._drop_count(worker, 1)

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

    def forget_worker(self, worker: W) -> int:
        """A worker ended: its connections are gone. Answers how many there were."""
        gone = self._per_worker.pop(worker, 0)
        if not gone:
            return 0
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
                self._drop_count(worker, count)

    def _drop_count(self, worker: W, count: int) -> None:
        left = self._per_worker.get(worker, 0) - count
        if left > 0:
            self._per_worker[worker] = left
        else:
            self._per_worker.pop(worker, None)
