"""The sockets table in an SQLite file, read through `twisted.enterprise.adbapi`.

One connection in one thread (``cp_min=1, cp_max=1``, ``check_same_thread=False``):
the pool closes cleanly and a writer (``sipsock-db``) never meets "database
is locked" from us for long. The file and its directory are created when
missing, so the embedded default works on a fresh machine; the tables are
not (run ``sipsock-db init``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from sipsock.config import SocketsMgmSettings
from sipsock.db.store import (
    ISocketStore,
    SocketRow,
    Statements,
    StoreError,
    missing_table_error,
    missing_version_table_error,
    row_from_tuple,
    version_error,
    within,
)

T = TypeVar("T")
_ConnectionPool: Any = adbapi.ConnectionPool  # untyped in Twisted


def decode_text(data: bytes) -> str | bytes:
    """SQLite text as `str`; bytes that are not UTF-8 stay bytes (the row is rejected later)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


def prepare_connection(connection: sqlite3.Connection) -> None:
    """Per-connection settings: tolerant text decoding."""
    connection.text_factory = decode_text


def ensure_parent(path: str) -> None:
    """Create the directory of an SQLite file when missing; `StoreError` if impossible."""
    parent = Path(path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create directory {parent} for the SQLite file {path}: {exc.strerror}"
        ) from None


@implementer(ISocketStore)
class SQLiteStore:
    """`ISocketStore` on an SQLite file (adbapi, one connection)."""

    log = Logger()

    def __init__(self, settings: SocketsMgmSettings, reactor: IReactorTime | None = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        assert reactor is not None
        assert settings.db_url.path is not None
        self._reactor = reactor
        self._path = settings.db_url.path
        self._table = settings.tables.table
        self._timeout = settings.db_timeout
        self._statements = Statements(settings.tables, "qmark", node=settings.node)
        ensure_parent(self._path)
        self._pool: Any = _ConnectionPool(
            "sqlite3",
            self._path,
            timeout=settings.db_timeout,
            check_same_thread=False,
            cp_min=1,
            cp_max=1,
            cp_openfun=prepare_connection,
            cp_reactor=reactor,
        )
        self._closed = False

    def __repr__(self) -> str:
        return f"<SQLiteStore {self._path} table={self._table}>"

    def check_version(self) -> Deferred[None]:
        """Fail with `StoreError` unless the ``version`` row of the table is 1."""

        def check(rows: list[tuple[object, ...]]) -> None:
            error = version_error(self._table, rows[0][0] if rows else None)
            if error is not None:
                raise error

        return self._call(
            "checking the version row",
            lambda: self._pool.runQuery(self._statements.select_version, (self._table,)),
            missing_version_table_error,
        ).addCallback(check)

    def fetch(self) -> Deferred[list[SocketRow]]:
        """Every row of the sockets table, in id order, values raw."""
        d: Deferred[list[tuple[object, ...]]] = self._call(
            f"reading table {self._table}",
            lambda: self._pool.runQuery(self._statements.select_rows, self._statements.row_params),
            lambda: missing_table_error(self._table),
        )
        return d.addCallback(lambda rows: [row_from_tuple(row) for row in rows])

    def close(self) -> Deferred[None]:
        """Close the connection (waits for its thread)."""
        if not self._closed:
            self._closed = True
            self._pool.close()
        return succeed(None)

    def _call(
        self,
        what: str,
        run: Callable[[], Deferred[T]],
        missing: Callable[[], StoreError],
    ) -> Deferred[T]:
        if self._closed:
            return fail(StoreError(f"{what}: the store is closed"))
        operation = run()
        operation.addErrback(self._translate, what, missing)
        return within(operation, self._timeout, self._reactor, what)

    def _translate(self, failure: Failure, what: str, missing: Callable[[], StoreError]) -> None:
        exc = failure.value
        if isinstance(exc, sqlite3.OperationalError) and "no such" in str(exc):
            raise missing() from None
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"{what}: SQLite {self._path}: {exc}") from None
        failure.raiseException()
