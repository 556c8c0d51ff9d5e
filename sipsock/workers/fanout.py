"""`SocketFanOut`: a pool's socket changes carried to each of its live workers, in batches.

The `ChangeHandler` of the pool's `ChangeQueue`: each batch of adoptions,
updates, releases, announcements or withdrawals becomes, for every live
worker, one command per slice (`commands.batches`). A socket one worker
refuses fails alone (and is released); a worker that cannot update or
release a socket is killed, and its replacement takes the current state.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from typing import Final, TypeVar

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from sipsock.deferreds import all_or_first_failure, settle
from sipsock.gcpause import collection_paused
from sipsock.seams import ListenError
from sipsock.transport.sockopts import bind_member
from sipsock.workers.commands import (
    Adoption,
    AdoptSockets,
    AnnounceMany,
    ReleaseSockets,
    UpdateSockets,
    WithdrawMany,
    WorkerError,
    batches,
    decode_failures,
    encode_adoption,
    encode_entries,
    encode_updates,
    join_encoded,
)
from sipsock.workers.directory import BookEntry
from sipsock.workers.listener import PooledListener
from sipsock.workers.supervisor import Supervisor, WorkerProcess

#: Up to this many sockets released in one batch get a log line each (else one line).
LOG_EACH: Final = 10

#: Keys or names in one `ReleaseSockets` / `WithdrawMany` batch (a ListOf value: < 64 KiB).
RELEASE_BATCH: Final = 2000

#: Sockets in one `AnnounceMany` / `UpdateSockets` batch (no descriptors: larger slices).
ANNOUNCE_BATCH: Final = 1000

T = TypeVar("T")


class SocketFanOut:
    """Carries each batch of socket changes to every live worker of ``supervisor``.

    ``release`` takes a refused socket away again; ``refreshed`` asks for
    fresh statistics once the sockets changed.
    """

    log = Logger(namespace="sipsock.workers.pool.UdpWorkerPool")

    def __init__(
        self,
        supervisor: Supervisor,
        *,
        release: Callable[[PooledListener], Deferred[None]],
        refreshed: Callable[[], None],
    ) -> None:
        self.supervisor = supervisor
        self.release = release
        self.refreshed = refreshed

    async def adopt_all(self, listeners: list[PooledListener]) -> list[PooledListener | Failure]:
        """Every live worker adopts ``listeners``; a listener refused by one is released."""
        processes = self.supervisor.processes()
        encoded: dict[int, bytes] = {}  # each socket's item, encoded for the first worker
        with collection_paused():  # every socket encoded and sent: one collection after
            sending = [
                self.adopt_many(process, _rotated(listeners, index, len(processes)), encoded)
                for index, process in enumerate(processes)
            ]
        answers = await settle(sending)
        refused: dict[int, str] = {}
        for process, answer in zip(processes, answers, strict=True):
            if isinstance(answer, Failure):
                # A worker that went away is restarted with every socket: not a refusal.
                if isinstance(answer.value, WorkerError | ListenError):
                    for listener in listeners:
                        refused.setdefault(
                            listener.key,
                            f"UDP worker {process.label} refused it: {answer.getErrorMessage()}",
                        )
                continue
            for key, reason in answer.items():
                refused.setdefault(key, f"UDP worker {process.label} refused it: {reason}")
        results: list[PooledListener | Failure] = []
        for listener in listeners:
            refusal = refused.get(listener.key)
            if refusal is None:
                results.append(listener)
                continue
            self.log.error(
                "socket {socket}: {reason}", socket=listener.sdef.socket_text, reason=refusal
            )
            results.append(Failure(ListenError(listener.sdef, refusal)))  # type: ignore[no-untyped-call]
        await settle([self.release(lst) for lst in listeners if lst.key in refused])
        self.refreshed()
        return results

    def adopt_many(
        self,
        process: WorkerProcess,
        listeners: Sequence[PooledListener],
        encoded: dict[int, bytes] | None = None,
    ) -> Deferred[dict[int, str]]:
        """Pass the descriptors (or new members) of ``listeners`` to one worker, batched.

        Fires with the keys the worker (or binding its member) refused, and
        why. A listener this worker was already given is skipped. ``encoded``
        keeps each listener's `AdoptSockets` item by key, for the next worker.
        """
        refused: dict[int, str] = {}
        members: list[socket.socket] = []
        items: list[tuple[bytes, int]] = []
        known = encoded if encoded is not None else {}
        for listener in listeners:
            if listener.key in process.given:
                continue
            if listener.sock is not None:
                fd = listener.sock.fileno()
            else:
                try:
                    member = bind_member(listener.sdef)
                except ListenError as error:
                    refused[listener.key] = error.reason
                    continue
                members.append(member)
                fd = member.fileno()
            process.given.add(listener.key)
            item = known.get(listener.key)
            if item is None:
                shared = listener.sock is not None
                adoption = Adoption(
                    listener.key, listener.slot, shared, listener.static, listener.sdef
                )
                item = known[listener.key] = encode_adoption(adoption)
            items.append((item, fd))
        sending = [
            process.call(
                AdoptSockets,
                sockets=join_encoded([item for item, _ in batch]),
                fds=[fd for _, fd in batch],
            )
            for batch in batches(items)
        ]

        async def answered() -> dict[int, str]:
            try:
                for sent in sending:
                    answer = await sent
                    refused.update(decode_failures(answer["failed"]))
            finally:
                # The worker has its own copy once it answered (or it is gone).
                await settle(sending)
                for member in members:
                    member.close()
            return refused

        return Deferred.fromCoroutine(answered())

    async def release_all(self, listeners: list[PooledListener]) -> None:
        """Every live worker closes ``listeners`` (batched); a worker that cannot is restarted."""
        keys = [listener.key for listener in listeners]
        processes = self.supervisor.processes()
        sending = []
        for process in processes:
            process.given.difference_update(keys)
            calls = [
                process.call(ReleaseSockets, keys=batch) for batch in batches(keys, RELEASE_BATCH)
            ]
            sending.append(all_or_first_failure(calls))
        results = await settle(sending)
        for process, result in zip(processes, results, strict=True):
            if isinstance(result, Failure) and isinstance(result.value, WorkerError):
                self.log.error(
                    "sockets {sockets}: UDP worker {worker} could not release them ({reason}); "
                    "restarting the worker so that it lets go",
                    sockets=_names(listeners),
                    worker=process.label,
                    reason=result.getErrorMessage(),
                )
                process.kill()
        if len(listeners) <= LOG_EACH:
            for listener in listeners:
                self.log.info(
                    "socket {socket} (slot {slot}) released by the {pool} UDP workers",
                    socket=listener.sdef.socket_text,
                    slot=listener.slot,
                    pool=self.supervisor.name,
                )
            return
        self.log.info(
            "{count} sockets released by the {pool} UDP workers: {listing}",
            count=len(listeners),
            pool=self.supervisor.name,
            listing=", ".join(f"{lst.sdef.socket_text} slot {lst.slot}" for lst in listeners),
            sockets=[listener.sdef.socket_text for listener in listeners],
        )

    async def update_all(self, listeners: list[PooledListener]) -> None:
        """Every live worker applies the listeners' new definitions; one that refuses is killed."""
        unique = list({listener.key: listener for listener in listeners}.values())
        items = [(listener.key, listener.sdef) for listener in unique]
        encoded = [encode_updates(batch) for batch in batches(items, ANNOUNCE_BATCH)]
        processes = self.supervisor.processes()
        sending = [
            [process.call(UpdateSockets, sockets=batch) for batch in encoded]
            for process in processes
        ]
        by_key = {listener.key: listener for listener in unique}
        for process, calls in zip(processes, sending, strict=True):
            for result in await settle(calls):
                if isinstance(result, Failure):
                    if isinstance(result.value, WorkerError):
                        self._update_failed(process, _names(unique), result.getErrorMessage())
                    continue
                for key, reason in decode_failures(result["failed"]).items():
                    listener = by_key.get(key)
                    name = listener.sdef.socket_text if listener else f"key {key}"
                    self._update_failed(process, name, reason)

    def _update_failed(self, process: WorkerProcess, name: str, reason: str) -> None:
        self.log.error(
            "socket {socket}: UDP worker {worker} could not update it ({reason}); "
            "restarting the worker",
            socket=name,
            worker=process.label,
            reason=reason,
        )
        process.kill()

    async def announce_all(self, entries: list[BookEntry]) -> None:
        encoded = _encoded_entries(entries)  # the same batches for every worker
        await settle([self._announce(p, encoded) for p in self.supervisor.processes()])

    def announce_many(self, process: WorkerProcess, entries: Sequence[BookEntry]) -> Deferred[None]:
        """Tell one worker about ``entries`` (batched); fails when a batch fails."""
        return self._announce(process, _encoded_entries(entries))

    def _announce(self, process: WorkerProcess, encoded: list[bytes]) -> Deferred[None]:
        return all_or_first_failure(
            [process.call(AnnounceMany, entries=batch) for batch in encoded]
        )

    async def withdraw_all(self, names: list[str]) -> None:
        waits = [
            process.call(WithdrawMany, sockets=batch)
            for process in self.supervisor.processes()
            for batch in batches(names, RELEASE_BATCH)
        ]
        await settle(waits)


def _encoded_entries(entries: Sequence[BookEntry]) -> list[bytes]:
    """The `AnnounceMany` batches of ``entries``."""
    items = [(entry.name, entry.slot, entry.static, entry.sdef) for entry in entries]
    return [encode_entries(batch) for batch in batches(items, ANNOUNCE_BATCH)]


def _rotated(items: Sequence[T], index: int, count: int) -> list[T]:
    """``items`` starting ``index / count`` of the way in (and wrapping round).

    Worker ``index`` of ``count`` adopts a batch in this order. A shared socket
    answers as soon as any one worker holds it, so with every worker starting
    elsewhere the whole batch answers after about 1/count of the work, not all.
    """
    if not items or count < 2:
        return list(items)
    start = index * len(items) // count
    return [*items[start:], *items[:start]]


def _names(listeners: Sequence[PooledListener], most: int = 3) -> str:
    """``a, b, c and 7 more``: sockets named in one log line."""
    names = [listener.sdef.socket_text for listener in listeners[:most]]
    more = len(listeners) - len(names)
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")
