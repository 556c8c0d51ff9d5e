"""Services that hold what the daemon has for its whole life: the state lock, the store.

Both are taken before the tree is built (a second daemon on the same state
directory stops before it binds anything); these children let them go at
the very end of a stop, being the first children of the daemon.
"""

from __future__ import annotations

import os

from twisted.application.service import Service
from twisted.internet.defer import Deferred

from sipsock.db import ISocketStore
from sipsock.statelock import StateLock


class StateLockService(Service):
    """Records this process's pid in the held state lock at start; releases it at stop."""

    name = "state-lock"

    def __init__(self, lock: StateLock) -> None:
        self.lock = lock

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self.lock.record_pid(os.getpid())  # twistd may have forked since the lock was taken

    def stopService(self) -> None:
        super().stopService()  # type: ignore[no-untyped-call]
        self.lock.release()


class StoreService(Service):
    """Closes the database store at stop, once nothing reads the table any more."""

    name = "store"

    def __init__(self, store: ISocketStore) -> None:
        self.store = store

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        return self.store.close()
