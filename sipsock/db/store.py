"""The sockets table as seen by the daemon: the `ISocketStore` interface.

A store reads OpenSIPS's ``sockets`` table (and its ``version`` row). It never
interprets the values: rows come back raw (`SocketRow`), and turning them into
socket definitions, or rejections, is `sipsock.sockdef.parse_row`'s job.

Every SQL statement sipsock sends lives here (`Statements`), shared by the
stores and by the ``sipsock-db`` command. Table and column names reach SQL only
quoted (double quotes, or backquotes for MySQL), and only after
`sipsock.config` checked them as identifiers.
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
    from collections.abc import Callable, Sequence

    from twisted.internet.interfaces import IReactorTime

    from sipsock.config import TableNames

#: The version of the sockets table this code reads (OpenSIPS's is 1 too).
TABLE_VERSION: Final = 1
#: OpenSIPS's table of table versions.
VERSION_TABLE: Final = "version"

#: A raw column value: text normally; bytes, numbers from a hand-edited SQLite file.
ColumnValue = str | bytes | int | float | None
Paramstyle = Literal["format", "qmark"]
#: "standard": "quoted" names, INSERT ... RETURNING (PostgreSQL, SQLite);
#: "mysql": `quoted` names, the new id from the cursor's ``lastrowid``.
Dialect = Literal["standard", "mysql"]
Backend = Literal["postgres", "sqlite", "mysql"]
T = TypeVar("T")


class StoreError(Exception):
    """The sockets table cannot be read; the message says what to do about it."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class SocketRow:
    """One row of the sockets table, raw: values as the database gave them, NULL as None.

    ``id`` too: `sipsock.sockdef.parse_row_id` checks it, row by row.
    """

    id: ColumnValue
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

    def read() -> Deferred[list[SocketRow]]:
        """What a reload reads: `check_version`, then `fetch`, in as few calls to the
        database as the driver allows (same errors)."""

    def close() -> Deferred[None]:
        """Release the connections; the store is not used afterwards."""


#: The name used in DESIGN.md for the interface.
SocketStore = ISocketStore


def quote(identifier: str, mark: str = '"') -> str:
    """Quote an SQL identifier already checked against ``IDENTIFIER_RE`` (MySQL: mark="`")."""
    if not identifier.replace("_", "a").isalnum() or not identifier.isascii():
        raise ValueError(f"{identifier!r} is not an identifier")
    return f"{mark}{identifier}{mark}"


@dataclass(frozen=True)
class Statements:
    """The SQL text for one table layout, one driver parameter style and one dialect.

    ``node`` (a fleet member's name) filters `select_rows` to the rows whose
    ``tables.node`` column is NULL or that name; without a node column or a
    node the SQL is the one for OpenSIPS's table.
    """

    tables: TableNames
    paramstyle: Paramstyle
    dialect: Dialect = "standard"
    node: str | None = None

    @classmethod
    def for_backend(
        cls, tables: TableNames, backend: Backend, node: str | None = None
    ) -> Statements:
        """The statements for a ``db_url`` scheme's driver."""
        if backend == "sqlite":
            return cls(tables, "qmark", node=node)
        return cls(tables, "format", "mysql" if backend == "mysql" else "standard", node)

    @property
    def _param(self) -> str:
        return "%s" if self.paramstyle == "format" else "?"

    def _quote(self, identifier: str) -> str:
        return quote(identifier, "`" if self.dialect == "mysql" else '"')

    def _qualified(self, column: str, table: str | None = None) -> str:
        """``"table"."column"``: SQLite takes an unknown ``"column"`` alone for a string."""
        return f"{self._quote(table or self.tables.table)}.{self._quote(column)}"

    @property
    def returns_id(self) -> bool:
        """Whether `insert_row` returns the new id as a row (else: ``cursor.lastrowid``)."""
        return self.dialect != "mysql"

    @property
    def columns(self) -> tuple[str, ...]:
        """The configured column names, in `SocketRow` order (without ``id``)."""
        t = self.tables
        return (t.socket, t.advertised, t.tag, t.flags, t.tos)

    @property
    def select_version(self) -> str:
        """The version of the sockets table; one parameter, the table name."""
        value, name = (self._qualified(c, VERSION_TABLE) for c in ("table_version", "table_name"))
        return f"SELECT {value} FROM {self._quote(VERSION_TABLE)} WHERE {name} = {self._param}"

    @property
    def select_rows(self) -> str:
        """Every row: ``id`` then the configured columns, in primary-key order."""
        names = ", ".join(self._qualified(c) for c in ("id", *self.columns))
        table, order = self._quote(self.tables.table), self._qualified("id")
        where = ""
        if self.row_params:
            node = self._qualified(self.tables.node or "")
            where = f" WHERE {node} IS NULL OR {node} = {self._param}"
        return f"SELECT {names} FROM {table}{where} ORDER BY {order}"

    @property
    def rows_name_every_column(self) -> bool:
        """Whether `select_rows` names every column `required_columns` lists, so that it
        fails when one is missing (else: the node column is not in it)."""
        return not self.tables.node or bool(self.row_params)

    @property
    def row_params(self) -> tuple[str, ...]:
        """The parameters of `select_rows`: the node name in a fleet, else none."""
        return (self.node,) if self.tables.node and self.node else ()

    @property
    def insert_row(self) -> str:
        """Add a row; five parameters (the columns in `SocketRow` order).

        Returns its id as a row when `returns_id`; MySQL gives it as ``lastrowid``.
        """
        names = ", ".join(self._quote(c) for c in self.columns)
        params = ", ".join([self._param] * len(self.columns))
        insert = f"INSERT INTO {self._quote(self.tables.table)} ({names}) VALUES ({params})"
        return f"{insert} RETURNING {self._qualified('id')}" if self.returns_id else insert

    @property
    def delete_row(self) -> str:
        """Remove a row; one parameter, the id."""
        table, row_id = self._quote(self.tables.table), self._qualified("id")
        return f"DELETE FROM {table} WHERE {row_id} = {self._param}"

    @property
    def select_columns(self) -> str:
        """The column names of the sockets table (no row: no table); parameters `columns_params`."""
        if self.paramstyle == "qmark":  # SQLite
            return "SELECT name FROM pragma_table_info(?)"
        if self.dialect == "mysql":
            return (
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = DATABASE() AND table_name = %s"
            )
        return (
            "SELECT attname FROM pg_catalog.pg_attribute "
            "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped"
        )

    @property
    def columns_params(self) -> tuple[str]:
        """The parameter of `select_columns`: the table name (quoted for to_regclass)."""
        table = self.tables.table
        return (self._quote(table),) if self._is_postgres else (table,)

    @property
    def _is_postgres(self) -> bool:
        return self.paramstyle == "format" and self.dialect != "mysql"

    def table_error(self, present: Sequence[object], database: str) -> StoreError | None:
        """The error for a table whose columns are ``present`` (none: no table), or None.

        Every configured name is checked, ``id`` and the node column included:
        a reload of a table without one of them must fail naming it.
        """
        if not present:
            return missing_table_error(self.tables.table, database)
        # PostgreSQL compares quoted names exactly; SQLite and MySQL ignore case.
        exact = self._is_postgres
        have = {str(n) if exact else str(n).casefold() for n in present}
        missing = [
            f"{column} ({key})"
            for key, column in required_columns(self.tables)
            if (column if exact else column.casefold()) not in have
        ]
        if not missing:
            return None
        return StoreError(
            f"table {self.tables.table} in {database} has no column {', '.join(missing)}: "
            "add the column, or fix the name in [sockets_mgm]"
        )

    def schema(self, backend: Backend) -> str:
        """The ``CREATE`` script of ``schema_<backend>.sql`` for this layout (idempotent)."""
        text = resources.files("sipsock.db").joinpath(f"schema_{backend}.sql").read_text("ascii")
        t = self.tables
        return Template(text).substitute(
            table=self._quote(t.table),
            table_name=t.table,
            socket=self._quote(t.socket),
            advertised=self._quote(t.advertised),
            tag=self._quote(t.tag),
            flags=self._quote(t.flags),
            tos=self._quote(t.tos),
            version_table=self._quote(VERSION_TABLE),
            table_version=str(TABLE_VERSION),
        )

    def schema_statements(self, backend: Backend) -> list[str]:
        """`schema` as single statements, for drivers that run one at a time (PyMySQL)."""
        lines = [
            line for line in self.schema(backend).splitlines() if not line.lstrip().startswith("--")
        ]
        return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]


def required_columns(tables: TableNames) -> list[tuple[str, str]]:
    """(configuration key, column name) of every column sipsock reads."""
    keys = [
        ("OpenSIPS's primary key", "id"),
        ("socket_column", tables.socket),
        ("advertised_column", tables.advertised),
        ("tag_column", tables.tag),
        ("flags_column", tables.flags),
        ("tos_column", tables.tos),
    ]
    if tables.node is not None:
        keys.append(("node_column", tables.node))
    return keys


def row_from_tuple(values: tuple[object, ...] | list[object]) -> SocketRow:
    """Build a `SocketRow` from a result tuple of `Statements.select_rows`."""
    row_id, socket, advertised, tag, flags, tos = values
    return SocketRow(
        id=_column(row_id),
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


def missing_table_error(table: str, database: str) -> StoreError:
    """The error when the sockets table (or one of its columns) is missing in ``database``."""
    return StoreError(
        f'cannot read table {table} in {database}: run "sipsock-db init", or check '
        "table_name and the *_column names in [sockets_mgm]"
    )


def within(
    operation: Deferred[T],
    seconds: float,
    reactor: IReactorTime,
    what: str,
    database: str,
    on_timeout: Callable[[], object] = lambda: None,
    limit: float | None = None,
) -> Deferred[T]:
    """``operation``'s result, or `StoreError` after ``seconds``; never waits longer.

    The operation is not cancelled (a database driver may not survive that) but
    abandoned: ``on_timeout`` runs (a store closes its connection there, which
    ends the operation) and its late result is dropped. ``limit`` is the
    timeout the message names when ``seconds`` is what was left of it.
    """
    result: Deferred[T] = Deferred(lambda _: timer.cancel() if timer.active() else None)
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True  # from now on, whatever the operation gives is dropped
        if not result.called:
            on_timeout()
            shown = limit or seconds
            result.errback(StoreError(f"{what}: no answer from {database} within {shown:g} s"))

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


def first_line(text: str) -> str:
    """The first non-blank line of a (database) error message."""
    return next((line.strip() for line in text.splitlines() if line.strip()), text)
