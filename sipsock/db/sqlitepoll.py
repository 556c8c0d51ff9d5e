"""`SQLitePoller`: the SQLite change source of the automatic reload.

It reads ``PRAGMA data_version`` every ``sqlite_poll_interval`` seconds on a
connection of its own; the value moves when another connection commits (any
table of the file). A file deleted, moved or replaced is noticed by its
identity (device, inode) at each poll. It signals once at its first poll too.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from twisted.enterprise import adbapi
from twisted.internet import task
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from sipsock.db.sqlitefile import FileId, busy_timeout, existing_file_uri, file_id
from sipsock.db.store import StoreError


class SQLitePoller:
    """Reads ``PRAGMA data_version`` every ``interval`` s; calls ``on_change`` when it moves.

    Each poll first compares the file's identity (device, inode) with the one
    its connection opened: a file replaced (``mv``, restored from a backup) is
    reopened and signals a change, so does a file that vanished (the reload
    then fails saying so) or appeared.
    """

    log = Logger()

    def __init__(
        self,
        path: str,
        interval: float,
        on_change: Callable[[str], None],
        reactor: Any,
        timeout: float = 5.0,
    ) -> None:
        self._path = path
        self.interval = interval
        self._on_change = on_change
        self._reactor = reactor
        self._timeout = timeout
        self._pool: Any = None
        self._loop: task.LoopingCall | None = None
        self._version: int | None = None
        self._failing = False
        self._watched = False
        self._opened: FileId | None = None

    def start(self) -> None:
        """Poll from now on (the connection opens when the file is there)."""
        self._loop = task.LoopingCall(self._poll)
        self._loop.clock = self._reactor
        self._loop.start(self.interval, now=True)
        self.log.info(
            "auto reload: watching {path} every {interval:g} s",
            path=self._path,
            interval=self.interval,
        )

    def _poll(self) -> Deferred[None]:
        try:
            current = file_id(self._path)
        except StoreError as error:
            self._poll_failed(Failure(error))  # type: ignore[no-untyped-call]
            return succeed(None)
        if current != self._opened or self._pool is None:
            self._reopen(current)
        if self._pool is None:
            return succeed(None)
        d: Deferred[list[tuple[int]]] = self._pool.runQuery("PRAGMA data_version")
        return d.addCallbacks(self._polled, self._poll_failed)

    def _reopen(self, current: FileId | None) -> None:
        """Open the file now at the path (none: close); signal unless it is the first look."""
        first, self._watched = not self._watched, True
        had_file, self._opened = self._opened is not None, current
        self._close_pool()
        self._version = None  # the first poll of the new file signals "catching up"
        if current is None:
            if had_file or first:
                self.log.warn(
                    "auto reload: {path} does not exist (deleted or moved?); still watching",
                    path=self._path,
                )
            if had_file:
                self._on_change("database file removed")
            return
        if had_file:
            self.log.info("auto reload: {path} replaced; watching the new file", path=self._path)
        pool_class: Any = adbapi.ConnectionPool
        self._pool = pool_class(
            "sqlite3",
            existing_file_uri(self._path),
            uri=True,
            timeout=busy_timeout(self._timeout),
            check_same_thread=False,
            cp_min=1,
            cp_max=1,
            cp_reactor=self._reactor,
        )

    def _polled(self, rows: list[tuple[int]]) -> None:
        version = int(rows[0][0])
        if self._failing:
            self._failing = False
            self.log.info("auto reload: {path} readable again", path=self._path)
            self._version = version
            self._on_change("database readable again")
            return
        if self._version is None:
            # What changed before this baseline (first load, file replaced) is unseen.
            self._on_change("now watching (catching up)")
        elif version != self._version:
            self._on_change("data_version changed")
        self._version = version

    def _poll_failed(self, failure: Failure) -> None:
        if not self._failing:
            self._failing = True
            self.log.warn(
                "auto reload: cannot read {path}: {reason}; still trying",
                path=self._path,
                reason=failure.getErrorMessage(),
            )
        if not isinstance(failure.value, sqlite3.Error | StoreError):
            self.log.failure(
                "auto reload: unexpected error polling {path}", failure, path=self._path
            )

    def _close_pool(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def stop(self) -> Deferred[None]:
        """Stop polling and close the connection."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        self._close_pool()
        return succeed(None)
