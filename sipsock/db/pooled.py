"""What the stores on a `twisted.enterprise.adbapi` pool share (SQLite, MySQL).

`PooledStore` runs the version check and the row query of `Statements` on its
pool, bounds every call by ``db_timeout`` and turns driver errors into
`StoreError` through the subclass's `PooledStore._translate`. A reload's
`PooledStore.read` asks all of it in one call to the pool thread; the column
names are read only when the row query fails (it names every column, so it
succeeds only when they are all there), to say which one is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from sipsock.config import SocketsMgmSettings
from sipsock.db.samerows import SameRows
from sipsock.db.store import (
    ISocketStore,
    SocketRow,
    Statements,
    StoreError,
    missing_table_error,
    missing_version_table_error,
    version_error,
    within,
)

T = TypeVar("T")


@implementer(ISocketStore)
class PooledStore:
    """An `ISocketStore` on an adbapi pool; subclasses make the pool and translate errors."""

    def __init__(
        self,
        settings: SocketsMgmSettings,
        statements: Statements,
        pool: Any,
        reactor: IReactorTime,
    ) -> None:
        self._reactor = reactor
        self._table = settings.tables.table
        self._database = settings.db_url.display()
        self._timeout = settings.db_timeout
        self._statements = statements
        self._pool = pool
        self._closed = False
        #: The rows of the last read; an unchanged row comes back as the same object.
        self._same = SameRows()
        #: `_table_mark` when the rows of `_same` were read (None: unknown, read the rows).
        self._rows_mark: object = None

    def check_version(self) -> Deferred[None]:
        """Fail with `StoreError` unless the ``version`` row of the table is 1 and the
        table has every configured column."""
        statements = self._statements

        def read(cursor: Any) -> tuple[list[Any], list[Any]]:
            self._prepare(cursor)
            cursor.execute(statements.select_version, (self._table,))
            version = list(cursor.fetchall())
            cursor.execute(statements.select_columns, statements.columns_params)
            return version, [row[0] for row in cursor.fetchall()]

        def check(found: tuple[list[Any], list[Any]]) -> None:
            version, columns = found
            error = version_error(self._table, version[0][0] if version else None)
            error = error or statements.table_error(columns, self._database)
            if error is not None:
                raise error

        d: Deferred[tuple[list[Any], list[Any]]] = self._call(
            "checking the version row and the columns",
            lambda: self._pool.runInteraction(read),
            missing_version_table_error,
        )
        return d.addCallback(check)

    def fetch(self) -> Deferred[list[SocketRow]]:
        """Every row of the sockets table, in id order, values raw.

        When the table holds what the last fetch returned, the same `SocketRow`
        objects come back (one comparison per row, nothing rebuilt).
        """

        def read(cursor: Any) -> list[tuple[object, ...]]:
            self._prepare(cursor)
            return self._select_rows(cursor)

        d: Deferred[Sequence[tuple[object, ...]]] = self._call(
            f"reading table {self._table}",
            lambda: self._pool.runInteraction(read),
            lambda: missing_table_error(self._table, self._database),
        )
        return d.addCallback(self._same.rows_of)

    def read(self) -> Deferred[list[SocketRow]]:
        """`check_version`, then `fetch`, in one call to the pool thread.

        The columns are checked by the row query itself (it names each one);
        only when it fails are they read, to name the missing one. When the
        database says nothing changed since the rows were last read
        (`_table_mark`), the version row is still checked and the rows of last
        time come back without being read again.
        """
        statements = self._statements

        def read(cursor: Any) -> tuple[object, list[tuple[object, ...]] | None]:
            self._prepare(cursor)
            cursor.execute(statements.select_version, (self._table,))
            version = cursor.fetchall()
            error = version_error(self._table, version[0][0] if version else None)
            if error is not None:
                raise error
            mark = self._table_mark(cursor)
            if mark is not None and mark == self._rows_mark:
                return mark, None
            if not statements.rows_name_every_column:
                self._check_columns(cursor)
            try:
                return mark, self._select_rows(cursor)
            except Exception:
                self._check_columns(cursor)  # the error that names the column, if one is missing
                raise

        pools: list[Any] = []

        def start() -> Deferred[tuple[object, list[tuple[object, ...]] | None]]:
            pools.append(self._pool)  # the one this call reads (SQLite opens a new one)
            started: Deferred[tuple[object, list[tuple[object, ...]] | None]]
            started = self._pool.runInteraction(read)
            return started

        def rows(found: tuple[object, list[tuple[object, ...]] | None]) -> list[SocketRow]:
            mark, raw = found
            if raw is None:
                return list(self._same.rows)
            result = self._same.rows_of(raw)
            # A mark is only worth something on the connection it was read from.
            self._rows_mark = mark if pools == [self._pool] else None
            return result

        d: Deferred[tuple[object, list[tuple[object, ...]] | None]] = self._call(
            f"reading table {self._table}", start, missing_version_table_error
        )
        return d.addCallback(rows)

    def _select_rows(self, cursor: Any) -> list[tuple[object, ...]]:
        """Every row of `Statements.select_rows`, values as the driver gives them (pool thread)."""
        cursor.execute(self._statements.select_rows, self._statements.row_params)
        return list(cursor.fetchall())

    def _check_columns(self, cursor: Any) -> None:
        """Raise the `StoreError` naming the missing table or column, if any (pool thread)."""
        statements = self._statements
        cursor.execute(statements.select_columns, statements.columns_params)
        error = statements.table_error([row[0] for row in cursor.fetchall()], self._database)
        if error is not None:
            raise error

    def _table_mark(self, cursor: Any) -> object:
        """Something that changes whenever the database changes (pool thread); None: unknown.

        Equal marks mean the tables are as they were, so the rows need not be read.
        """
        return None

    def _prepare(self, cursor: Any) -> None:
        """Run in the pool thread before a call's queries (MySQL: check the connection)."""

    def close(self) -> Deferred[None]:
        """Close the pool (it waits for a call still running)."""
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
        return within(operation, self._timeout, self._reactor, what, self._database)

    def _translate(self, failure: Failure, what: str, missing: Callable[[], StoreError]) -> None:
        """Raise the `StoreError` for a driver error (or re-raise anything else)."""
        failure.raiseException()


def default_reactor(reactor: IReactorTime | None) -> IReactorTime:
    """``reactor``, or the global one."""
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        return global_reactor
    return reactor
