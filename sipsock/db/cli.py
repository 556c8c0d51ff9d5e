"""``sipsock-db``: create, fill and show the sockets table.

    sipsock-db [-c FILE] init
    sipsock-db [-c FILE] add SOCKET [--advertised A] [--tag T] [--flags F] [--tos X]
    sipsock-db [-c FILE] remove ID
    sipsock-db [-c FILE] rows

It reads the same configuration file as the daemon (``[sockets_mgm]``) and
talks to the database directly (blocking psycopg2 or sqlite3), with the SQL of
`sipsock.db.store.Statements`. ``add`` validates the row as the daemon will
(`sipsock.sockdef.parse_row`) and refuses what the daemon would reject. Changes
take effect in a running daemon at its next ``sockets_reload``. Errors are one
line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from typing import Any, Literal

import psycopg2
import psycopg2.errorcodes

from sipsock.config import ConfigError, SocketsMgmSettings, load_config
from sipsock.db.postgres import connect_kwargs
from sipsock.db.sqlite import ensure_parent, prepare_connection
from sipsock.db.store import (
    TABLE_VERSION,
    SocketRow,
    Statements,
    StoreError,
    missing_table_error,
    missing_version_table_error,
    row_from_tuple,
    version_error,
)
from sipsock.sockdef import SocketDefError, parse_row

DEFAULT_CONFIG = "etc/sipsock.toml"
HEADERS = ("id", "socket", "advertised", "tag", "flags", "tos")


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``sipsock-db``."""
    parser = argparse.ArgumentParser(
        prog="sipsock-db", description="Create, fill and show the sipsock sockets table."
    )
    parser.add_argument(
        "-c",
        "--config",
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help=f"configuration file, as given to twistd sipsock (default: {DEFAULT_CONFIG})",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("init", help="create the sockets table and its version row (idempotent)")
    add = commands.add_parser("add", help="add a socket row (validated first)")
    add.add_argument("socket", metavar="SOCKET", help="proto:host[:port], e.g. udp:10.0.0.1:5060")
    add.add_argument("--advertised", metavar="A", help="host[:port] written into messages")
    add.add_argument("--tag", metavar="T", help="a tag ([A-Za-z0-9_-]+)")
    add.add_argument("--flags", metavar="F", help="comma list of anycast, frag, reuse_port")
    add.add_argument("--tos", metavar="X", help="IPTOS_* name or 0-255")
    remove = commands.add_parser("remove", help="remove the row with this id")
    remove.add_argument("id", metavar="ID", type=int)
    commands.add_parser("rows", help="print the table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``sipsock-db``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        settings = load_config(args.config).sockets_mgm
        with Database.open(settings) as db:
            if args.command == "init":
                db.init()
                print(f"table {settings.tables.table} ready (version {TABLE_VERSION})")
            elif args.command == "add":
                values = (args.socket, args.advertised, args.tag, args.flags, args.tos)
                parse_row(None, *values)
                row_id = db.add(*values)
                print(f"added row {row_id}: {args.socket}")
            elif args.command == "remove":
                db.remove(args.id)
                print(f"removed row {args.id}")
            else:
                print(format_rows(db.rows()), end="")
    except (ConfigError, StoreError, SocketDefError) as exc:
        return _fail(str(exc))
    except (psycopg2.Error, sqlite3.Error) as exc:
        return _fail(f"database error: {_first_line(exc)}")
    except OSError as exc:
        return _fail(f"{exc.filename or ''}: {exc.strerror}" if exc.strerror else str(exc))
    return 0


class Database:
    """A blocking connection to the configured database, for the command line."""

    def __init__(
        self,
        settings: SocketsMgmSettings,
        connection: Any,
        backend: Literal["postgres", "sqlite"],
    ) -> None:
        self.settings = settings
        self.connection = connection
        self.backend = backend
        self.statements = Statements(
            settings.tables, "format" if backend == "postgres" else "qmark"
        )

    @classmethod
    @contextmanager
    def open(cls, settings: SocketsMgmSettings) -> Iterator[Database]:
        """Connect (creating an SQLite file when missing); closes on exit."""
        url = settings.db_url
        if url.scheme == "sqlite":
            assert url.path is not None
            ensure_parent(url.path)
            connection: Any = sqlite3.connect(url.path, timeout=settings.db_timeout)
            prepare_connection(connection)
            backend: Literal["postgres", "sqlite"] = "sqlite"
        else:
            kwargs = connect_kwargs(url, settings.db_timeout)
            kwargs["options"] = f"-c statement_timeout={int(settings.db_timeout * 1000)}"
            try:
                connection = psycopg2.connect(**kwargs)
            except psycopg2.OperationalError as exc:
                raise StoreError(f"cannot connect to {url.display()}: {_first_line(exc)}") from None
            backend = "postgres"
        with closing(connection):
            yield cls(settings, connection, backend)

    def init(self) -> None:
        """Create the tables and the version row when missing; check the version."""
        script = self.statements.schema(self.backend)
        if self.backend == "sqlite":
            self.connection.executescript(script)
        else:
            with self.connection.cursor() as cursor:
                cursor.execute(script)
        self.connection.commit()
        self.check_version()

    def check_version(self) -> None:
        """Raise `StoreError` unless the version row of the table is right."""
        table = self.settings.tables.table
        try:
            rows = self._query(self.statements.select_version, (table,))
        except (psycopg2.Error, sqlite3.Error) as exc:
            if _is_missing(exc):
                raise missing_version_table_error() from None
            raise
        error = version_error(table, rows[0][0] if rows else None)
        if error is not None:
            raise error

    def add(
        self,
        socket: str,
        advertised: str | None,
        tag: str | None,
        flags: str | None,
        tos: str | None,
    ) -> int:
        """Insert a row as given; returns its id."""
        rows = self._write(self.statements.insert_row, (socket, advertised, tag, flags, tos))
        row_id = rows[0][0]
        assert isinstance(row_id, int)
        return row_id

    def remove(self, row_id: int) -> None:
        """Delete a row; `StoreError` when there is none with this id."""
        cursor = self._execute(self.statements.delete_row, (row_id,))
        count = cursor.rowcount
        self.connection.commit()
        if count == 0:
            raise StoreError(f"no row with id {row_id} in table {self.settings.tables.table}")

    def rows(self) -> list[SocketRow]:
        """Every row, in id order."""
        return [row_from_tuple(row) for row in self._query(self.statements.select_rows)]

    def _execute(self, sql: str, params: tuple[object, ...] = ()) -> Any:
        try:
            if self.backend == "sqlite":
                return self.connection.execute(sql, params)
            cursor = self.connection.cursor()
            cursor.execute(sql, params)
            return cursor
        except (psycopg2.Error, sqlite3.Error) as exc:
            self.connection.rollback()
            if _is_missing(exc):
                raise missing_table_error(self.settings.tables.table) from None
            raise

    def _query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        rows: list[tuple[object, ...]] = self._execute(sql, params).fetchall()
        return rows

    def _write(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        rows = self._query(sql, params)
        self.connection.commit()
        return rows


def format_rows(rows: Sequence[SocketRow]) -> str:
    """The rows as an aligned text table with a header; NULL shown as ``-``."""
    table = [list(HEADERS)]
    for row in rows:
        values = (row.id, row.socket, row.advertised, row.tag, row.flags, row.tos)
        table.append([_cell(value) for value in values])
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        + "\n"
        for line in table
    )


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, str) and value.isprintable() and value.strip() == value:
        return value
    if isinstance(value, int | float):
        return str(value)
    return repr(value)


def _is_missing(exc: Exception) -> bool:
    if isinstance(exc, sqlite3.OperationalError):
        return "no such" in str(exc)
    return getattr(exc, "pgcode", None) in (
        psycopg2.errorcodes.UNDEFINED_TABLE,
        psycopg2.errorcodes.UNDEFINED_COLUMN,
    )


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _fail(message: str) -> int:
    print(f"sipsock-db: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
