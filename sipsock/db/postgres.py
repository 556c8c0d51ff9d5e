"""The sockets table in PostgreSQL, read through txpostgres.

Connections are opened when first needed. A call that finds the server gone
fails with `StoreError` and drops the connection pool; the next call opens a
new one, so a reload after the server comes back just works (no background
retry loop, nothing left scheduled after `close`). Every call is bounded by
``db_timeout``: a server that stops answering (network cut, stopped process)
gives `StoreError` in time, and the pool is dropped so the stuck query ends.

An idle connection whose server goes away is noticed by the reactor; the
driver error that comes with it is logged as one line, not as an "Unhandled
Error" traceback.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg2
import psycopg2.errorcodes
from twisted.internet.defer import Deferred, DeferredLock, succeed
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from txpostgres import txpostgres
from zope.interface import implementer

from sipsock.config import DatabaseURL, SocketsMgmSettings
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

_CONNECTION_ERRORS = (
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
    ConnectionDone,
    ConnectionLost,
)
_MISSING_OBJECT_CODES = frozenset(
    {psycopg2.errorcodes.UNDEFINED_TABLE, psycopg2.errorcodes.UNDEFINED_COLUMN}
)


def connect_kwargs(url: DatabaseURL, timeout: float) -> dict[str, Any]:
    """``psycopg2.connect`` keyword arguments for a ``postgres://`` URL."""
    kwargs: dict[str, Any] = {"dbname": url.database}
    if url.host:
        kwargs["host"] = url.host
    if url.port:
        kwargs["port"] = url.port
    if url.user:
        kwargs["user"] = url.user
    if url.password is not None:
        kwargs["password"] = url.password
    kwargs.update(url.options)
    # libpq's own limit (whole seconds, at least 2) for blocking connects.
    kwargs.setdefault("connect_timeout", str(max(2, math.ceil(timeout))))
    kwargs.setdefault("application_name", "sipsock")
    return kwargs


class QuietConnection(txpostgres.Connection):  # type: ignore[misc]
    """A txpostgres connection that reports a dropped server as a lost connection.

    txpostgres watches idle connections for NOTIFY; when the server goes away,
    psycopg2's ``poll()`` raises there and the reactor would log the error as
    "Unhandled Error". Returning the error from ``doRead`` makes the reactor
    call ``connectionLost`` with it instead.
    """

    log = Logger()

    def doRead(self) -> object:
        try:
            super().doRead()
        except psycopg2.Error as exc:
            self.log.info("PostgreSQL connection lost: {reason}", reason=_first_line(exc))
            return exc
        return None


class _Pool(txpostgres.ConnectionPool):  # type: ignore[misc]
    """A txpostgres pool of `QuietConnection` on a given reactor."""

    connectionFactory = QuietConnection

    def __init__(self, reactor: IReactorTime, size: int, connkw: dict[str, Any]) -> None:
        self.reactor = reactor
        super().__init__(None, min=size, **connkw)

    def alive(self) -> bool:
        """Whether no pooled connection has been closed (by the server or by us)."""
        return all(
            conn.pollable() is not None and not conn.pollable().closed for conn in self.connections
        )

    def shut(self) -> None:
        """Close every connection, ending any query still running on them."""
        for conn in list(self.connections):
            with contextlib.suppress(Exception):  # a half-open connection may refuse
                conn.close()


@implementer(ISocketStore)
class PostgresStore:
    """`ISocketStore` on PostgreSQL (txpostgres), with reconnect and per-call timeout."""

    log = Logger()

    def __init__(
        self,
        settings: SocketsMgmSettings,
        reactor: IReactorTime | None = None,
        pool_size: int = 1,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        assert reactor is not None
        self._reactor = reactor
        self._url = settings.db_url
        self._table = settings.tables.table
        self._timeout = settings.db_timeout
        self._statements = Statements(settings.tables, "format", node=settings.node)
        self._connkw = connect_kwargs(settings.db_url, settings.db_timeout)
        self._pool_size = pool_size
        self._pool: _Pool | None = None
        self._lock = DeferredLock()
        self._closed = False
        #: The rows of the last read; an unchanged row comes back as the same object.
        self._same = SameRows()

    def __repr__(self) -> str:
        return f"<PostgresStore {self._url.display()} table={self._table}>"

    def check_version(self) -> Deferred[None]:
        """Fail with `StoreError` unless the ``version`` row of the table is 1 and the
        table has every configured column."""
        statements = self._statements

        def check_version(rows: list[tuple[object, ...]], pool: _Pool) -> Deferred[None]:
            error = version_error(self._table, rows[0][0] if rows else None)
            if error is not None:
                raise error
            d: Deferred[list[tuple[object, ...]]] = pool.runQuery(
                statements.select_columns, statements.columns_params
            )
            return d.addCallback(check_columns)

        def check_columns(rows: list[tuple[object, ...]]) -> None:
            error = statements.table_error([row[0] for row in rows], self._url.display())
            if error is not None:
                raise error

        def run(pool: _Pool) -> Deferred[None]:
            d: Deferred[list[tuple[object, ...]]] = pool.runQuery(
                statements.select_version, (self._table,)
            )
            return d.addCallback(check_version, pool)

        return self._call(
            "checking the version row and the columns", run, missing_version_table_error
        )

    def fetch(self) -> Deferred[list[SocketRow]]:
        """Every row of the sockets table, in id order, values raw."""

        def run(pool: _Pool) -> Deferred[list[SocketRow]]:
            d: Deferred[list[tuple[object, ...]]] = pool.runQuery(
                self._statements.select_rows, self._statements.row_params
            )
            return d.addCallback(self._same.rows_of)

        return self._call(
            f"reading table {self._table}",
            run,
            lambda: missing_table_error(self._table, self._url.display()),
        )

    def read(self) -> Deferred[list[SocketRow]]:
        """`check_version`, then `fetch`, in one turn of the connection: two queries
        (the columns are read only when the row query fails, to name the missing one)."""
        statements = self._statements

        async def check_columns(pool: _Pool) -> None:
            rows = await pool.runQuery(statements.select_columns, statements.columns_params)
            error = statements.table_error([row[0] for row in rows], self._url.display())
            if error is not None:
                raise error

        async def read(pool: _Pool) -> list[SocketRow]:
            version = await pool.runQuery(statements.select_version, (self._table,))
            error = version_error(self._table, version[0][0] if version else None)
            if error is not None:
                raise error
            if not statements.rows_name_every_column:
                await check_columns(pool)
            try:
                rows = await pool.runQuery(statements.select_rows, statements.row_params)
            except Exception as error:
                exc = _unwrapped(error)
                if isinstance(exc, psycopg2.Error) and exc.pgcode in _MISSING_OBJECT_CODES:
                    await check_columns(pool)  # the error naming the column, if one is missing
                raise
            return self._same.rows_of(rows)

        return self._call(
            f"reading table {self._table}",
            lambda pool: Deferred.fromCoroutine(read(pool)),
            missing_version_table_error,
        )

    def close(self) -> Deferred[None]:
        """Close the connections; later calls fail with `StoreError`."""
        self._closed = True
        self._drop_pool()
        return succeed(None)

    def _call(
        self,
        what: str,
        run: Callable[[_Pool], Deferred[T]],
        missing: Callable[[], StoreError],
    ) -> Deferred[T]:
        # The deadline runs from the call, not from when the lock is free: a call
        # queued behind one the server never answers fails in time too.
        deadline = self._reactor.seconds() + self._timeout

        def attempt() -> Deferred[T]:
            if self._closed:
                raise StoreError(f"{what}: the store is closed")
            left = deadline - self._reactor.seconds()
            if left <= 0:
                raise StoreError(
                    f"{what}: no answer from {self._url.display()} within {self._timeout:g} s "
                    "(an earlier call held the connection)"
                )
            reused = self._pool is not None
            operation = self._get_pool().addCallback(run)
            if reused:  # a connection the server dropped (restart) fails once: open anew
                operation.addErrback(self._again_if_dropped, run)
            operation.addErrback(self._translate, what, missing)
            database = self._url.display()
            return within(
                operation, left, self._reactor, what, database, self._drop_pool, self._timeout
            )

        return self._lock.run(attempt)

    def _again_if_dropped(
        self, failure: Failure, run: Callable[[_Pool], Deferred[T]]
    ) -> Deferred[T] | Failure:
        """Run once more on a new connection when the pooled one turned out dead."""
        if not isinstance(_cause(failure), _CONNECTION_ERRORS) or self._closed:
            return failure
        self._drop_pool()
        return self._get_pool().addCallback(run)

    def _get_pool(self) -> Deferred[_Pool]:
        pool = self._pool
        if pool is not None and pool.alive():
            return succeed(pool)
        self._drop_pool()
        pool = self._pool = _Pool(self._reactor, self._pool_size, self._connkw)
        self.log.debug("connecting to {url}", url=self._url.display())
        started: Deferred[_Pool] = pool.start()
        return started

    def _drop_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shut()

    def _translate(self, failure: Failure, what: str, missing: Callable[[], StoreError]) -> None:
        exc = _cause(failure)
        if isinstance(exc, StoreError):
            raise exc
        if isinstance(exc, psycopg2.Error) and exc.pgcode in _MISSING_OBJECT_CODES:
            raise missing() from None
        if isinstance(exc, _CONNECTION_ERRORS):
            self._drop_pool()
            raise StoreError(
                f"{what}: PostgreSQL {self._url.display()} unavailable: {_first_line(exc)}"
            ) from None
        if isinstance(exc, psycopg2.Error):
            raise StoreError(f"{what}: PostgreSQL error: {_first_line(exc)}") from None
        failure.raiseException()


def _cause(failure: Failure) -> BaseException | None:
    """The error of a failure, out of DeferredList's FirstError wrapping."""
    return _unwrapped(failure.value)


def _unwrapped(exc: BaseException | None) -> BaseException | None:
    """An error out of DeferredList's FirstError wrapping."""
    while isinstance(getattr(exc, "subFailure", None), Failure):
        exc = exc.subFailure.value  # type: ignore[union-attr]
    return exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__
