"""The sockets table as seen by the daemon: the `ISocketStore` interface.

A store reads OpenSIPS's ``sockets`` table (and its ``version`` row). It never
interprets the values: rows come back raw (`SocketRow`), and turning them into
socket definitions, or rejections, is `sipsock.sockdef.parse_row`'s job.

Every SQL statement sipsock sends lives here (`Statements`), shared by both
stores and by the ``sipsock-db`` command. Table and column names reach SQL only
quoted, and only after `sipsock.config` checked them as identifiers.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from string import Template
from typing import TYPE_CHECKING, Final, Literal, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import Interface

if TYPE_CHECKING:
    from collections.abc import Callable

    from twisted.internet.interfaces import IReactorTime

    from sipsock.config import SocketsMgmSettings, TableNames

#: The version of the sockets table this code reads (OpenSIPS's is 1 too).
TABLE_VERSION: Final = 1
#: OpenSIPS's table of table versions.
VERSION_TABLE: Final = "version"

#: A raw column value: text normally; bytes, numbers from a hand-edited SQLite file.
ColumnValue = str | bytes | int | float | None
Paramstyle = Literal["format", "qmark"]
T = TypeVar("T")


class StoreError(Exception):
    """The sockets table cannot be read; the message says what to do about it."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class SocketRow:
    """One row of the sockets table, raw: values as the database gave them, NULL as None."""

    id: int
    socket: ColumnValue
    advertised: ColumnValue = None
    tag: ColumnValue = None
    flags: ColumnValue = None
    tos: ColumnValue = None


class ISocketStore(Interface):
    """Read access to the sockets table; every call fails with `StoreError` or succeeds."""

    def check_version() -> Deferred[None]:
        """Fail with `StoreError` unless the ``version`` row says `TABLE_VERSION`."""

    def fetch() -> Deferred[list[SocketRow]]:
        """Read every row (one query, primary-key order)."""

    def close() -> Deferred[None]:
        """Release the connections; the store is not used afterwards."""


#: The name used in DESIGN.md for the interface.
SocketStore = ISocketStore


def quote(identifier: str) -> str:
    """Quote an SQL identifier already checked against ``IDENTIFIER_RE``."""
    if not identifier.replace("_", "a").isalnum() or not identifier.isascii():
        raise ValueError(f"{identifier!r} is not an identifier")
    return f'"{identifier}"'


@dataclass(frozen=True)
class Statements:
    """The SQL text for one table layout and one driver parameter style."""

    tables: TableNames
    paramstyle: Paramstyle

    @property
    def _param(self) -> str:
        return "%s" if self.paramstyle == "format" else "?"

    @property
    def columns(self) -> tuple[str, ...]:
        """The configured column names, in `SocketRow` order (without ``id``)."""
        t = self.tables
        return (t.socket, t.advertised, t.tag, t.flags, t.tos)

    @property
    def select_version(self) -> str:
        """The version of the sockets table; one parameter, the table name."""
        return f"SELECT table_version FROM {quote(VERSION_TABLE)} WHERE table_name = {self._param}"

    @property
    def select_rows(self) -> str:
        """Every row: ``id`` then the configured columns, in primary-key order."""
        names = ", ".join(quote(c) for c in ("id", *self.columns))
        return f"SELECT {names} FROM {quote(self.tables.table)} ORDER BY {quote('id')}"

    @property
    def insert_row(self) -> str:
        """Add a row; five parameters (the columns in `SocketRow` order); returns its id."""
        names = ", ".join(quote(c) for c in self.columns)
        params = ", ".join([self._param] * len(self.columns))
        return (
            f"INSERT INTO {quote(self.tables.table)} ({names}) VALUES ({params}) "
            f"RETURNING {quote('id')}"
        )

    @property
    def delete_row(self) -> str:
        """Remove a row; one parameter, the id."""
        return f"DELETE FROM {quote(self.tables.table)} WHERE {quote('id')} = {self._param}"

    def schema(self, backend: Literal["postgres", "sqlite"]) -> str:
        """The ``CREATE`` script of ``schema_<backend>.sql`` for this layout (idempotent)."""
        text = resources.files("sipsock.db").joinpath(f"schema_{backend}.sql").read_text("ascii")
        t = self.tables
        return Template(text).substitute(
            table=quote(t.table),
            table_name=t.table,
            socket=quote(t.socket),
            advertised=quote(t.advertised),
            tag=quote(t.tag),
            flags=quote(t.flags),
            tos=quote(t.tos),
            version_table=quote(VERSION_TABLE),
            table_version=str(TABLE_VERSION),
        )


def row_from_tuple(values: tuple[object, ...] | list[object]) -> SocketRow:
    """Build a `SocketRow` from a result tuple of `Statements.select_rows`."""
    row_id, socket, advertised, tag, flags, tos = values
    return SocketRow(
        id=int(row_id),  # type: ignore[call-overload]
        socket=_column(socket),
        advertised=_column(advertised),
        tag=_column(tag),
        flags=_column(flags),
        tos=_column(tos),
    )


def _column(value: object) -> ColumnValue:
    if value is None or isinstance(value, str | bytes | int | float):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return str(value)


def version_error(table: str, found: object) -> StoreError | None:
    """The error for a ``version`` lookup result (None: the version is right)."""
    fix_missing = (
        f'run "sipsock-db init" or INSERT INTO version (table_name, table_version) '
        f"VALUES ('{table}', {TABLE_VERSION})"
    )
    if found is None:
        return StoreError(f"{table} table version row missing: {fix_missing}")
    if found != TABLE_VERSION:
        return StoreError(
            f"{table} table version is {found!r} in the version table, sipsock reads "
            f"version {TABLE_VERSION}: migrate the table to OpenSIPS's layout (id, socket, "
            f"advertised, tag, flags, tos) and UPDATE version SET table_version = "
            f"{TABLE_VERSION} WHERE table_name = '{table}'"
        )
    return None


def missing_version_table_error() -> StoreError:
    """The error when there is no ``version`` table at all."""
    return StoreError(
        'the version table is missing: run "sipsock-db init" (it creates the version '
        "table and the sockets table), or load OpenSIPS's standard-create.sql"
    )


def missing_table_error(table: str) -> StoreError:
    """The error when the sockets table (or one of its columns) is missing."""
    return StoreError(
        f'cannot read table {table}: run "sipsock-db init", or check table_name and '
        "the *_column names in [sockets_mgm]"
    )


def open_store(settings: SocketsMgmSettings, reactor: IReactorTime | None = None) -> ISocketStore:
    """The store for ``settings.db_url``: PostgreSQL or SQLite."""
    if settings.db_url.scheme == "sqlite":
        from sipsock.db.sqlite import SQLiteStore

        return SQLiteStore(settings, reactor=reactor)
    if settings.db_url.scheme == "postgres":
        from sipsock.db.postgres import PostgresStore

        return PostgresStore(settings, reactor=reactor)
    raise StoreError(f"unsupported database scheme {settings.db_url.scheme!r}")


def within(
    operation: Deferred[T],
    seconds: float,
    reactor: IReactorTime,
    what: str,
    on_timeout: Callable[[], object] = lambda: None,
) -> Deferred[T]:
    """``operation``'s result, or `StoreError` after ``seconds``; never waits longer.

    The operation is not cancelled (a database driver may not survive that) but
    abandoned: ``on_timeout`` runs (a store closes its connection there, which
    ends the operation) and its late result is dropped.
    """
    result: Deferred[T] = Deferred(lambda _: timer.cancel() if timer.active() else None)
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True  # from now on, whatever the operation gives is dropped
        if not result.called:
            on_timeout()
            result.errback(StoreError(f"{what}: no answer from the database within {seconds:g} s"))

    def settle(value: T | Failure) -> None:
        if timer.active():
            timer.cancel()
        if expired or result.called:
            return
        if isinstance(value, Failure):
            result.errback(value)
        else:
            result.callback(value)

    timer = reactor.callLater(seconds, expire)
    operation.addBoth(settle)
    return result
