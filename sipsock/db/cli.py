"""``sipsock-db``: create, fill and show the sockets table.

    sipsock-db [-c FILE] init [--notify]
    sipsock-db [-c FILE] add SOCKET [--advertised A] [--tag T] [--flags F] [--tos X] [--node N]
    sipsock-db [-c FILE] remove ID
    sipsock-db [-c FILE] rows

It reads the same configuration file as the daemon (``[sockets_mgm]``) and
talks to the database directly (blocking psycopg2, PyMySQL or sqlite3), with
the SQL of `sipsock.db.store.Statements`. ``add`` validates the row as the
daemon will (`sipsock.sockdef.parse_row`, then `sipsock.db.rowcheck`: not on
the address of another row or of a static socket) and refuses what the daemon
would reject; ``rows`` prints the table, then fails if the daemon would refuse it
(missing or wrong ``version`` row). Changes take effect in a running daemon at
its next ``sockets_reload``. Errors are one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from typing import Any

import psycopg2
import psycopg2.errorcodes

from sipsock.config import ConfigError, SocketsMgmSettings, load_config
from sipsock.db import fleet, notify
from sipsock.db.postgres import connect_kwargs
from sipsock.db.rowcheck import RowConflictError, check_new_row
from sipsock.db.sqlite import ensure_parent, prepare_connection
from sipsock.db.sqlitefile import existing_file_uri, usable_file_id
from sipsock.db.store import (
    TABLE_VERSION,
    Backend,
    SocketRow,
    Statements,
    StoreError,
    missing_table_error,
    missing_version_table_error,
    row_from_tuple,
    version_error,
)
from sipsock.sockdef import SocketDefError, parse_row, parse_row_id

DEFAULT_CONFIG = "etc/sipsock.toml"


def _row_id(text: str) -> int:
    """A row id argument: ASCII digits (``int()`` would also take ``+1``, ``1_0``, other digits)."""
    try:
        return parse_row_id(text)
    except SocketDefError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is {error.reason}") from None


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
    init = commands.add_parser(
        "init", help="create the sockets table and its version row (idempotent)"
    )
    init.add_argument(
        "--notify",
        action="store_true",
        help="PostgreSQL: also install the trigger that NOTIFYs daemons of every change "
        "(for [sockets_mgm] auto_reload)",
    )
    add = commands.add_parser("add", help="add a socket row (validated first)")
    add.add_argument("socket", metavar="SOCKET", help="proto:host[:port], e.g. udp:10.0.0.1:5060")
    add.add_argument("--advertised", metavar="A", help="host[:port] written into messages")
    add.add_argument("--tag", metavar="T", help="a tag ([A-Za-z0-9_-]+)")
    add.add_argument("--flags", metavar="F", help="comma list of anycast, frag, reuse_port")
    add.add_argument("--tos", metavar="X", help="IPTOS_* name or 0-255")
    add.add_argument("--node", metavar="N", help="the fleet node the row is for (node_column)")
    remove = commands.add_parser("remove", help="remove the row with this id")
    remove.add_argument("id", metavar="ID", type=_row_id)
    commands.add_parser("rows", help="print the table (and check its version row)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``sipsock-db``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
        settings = config.sockets_mgm
        with Database.open(settings, create=args.command == "init") as db:
            if args.command != "init":
                db.check_columns()
            if args.command == "init":
                db.init()
                print(f"table {settings.tables.table} ready (version {TABLE_VERSION})")
                if args.notify:
                    print(f"change notifications on channel {db.install_notify()}")
            elif args.command == "add":
                values = (args.socket, args.advertised, args.tag, args.flags, args.tos)
                new = parse_row(None, *values)
                check_new_row(new, db.rows(node=args.node), config.core.listen)
                row_id = db.add(*values)
                if args.node is not None:
                    db.set_node(row_id, args.node)
                print(f"added row {row_id}: {args.socket}")
            elif args.command == "remove":
                db.remove(args.id)
                print(f"removed row {args.id}")
            else:
                print(format_rows(db.rows()), end="")
                db.check_version()  # the daemon would refuse the table: say why (exit 1)
    except (ConfigError, StoreError, SocketDefError, RowConflictError) as exc:
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
        backend: Backend,
    ) -> None:
        self.settings = settings
        self.connection = connection
        self.backend = backend
        self.statements = Statements.for_backend(settings.tables, backend)
        self.errors: tuple[type[Exception], ...] = (psycopg2.Error, sqlite3.Error)
        if backend == "mysql":
            from sipsock.db import mysql

            self.errors = (*self.errors, mysql.Error)

    @classmethod
    @contextmanager
    def open(cls, settings: SocketsMgmSettings, create: bool = True) -> Iterator[Database]:
        """Connect; closes on exit. A missing SQLite file is created with ``create``
        (for ``init``); without, it is an error, and so is an empty one."""
        url = settings.db_url
        if url.scheme == "sqlite":
            assert url.path is not None
            if create:
                ensure_parent(url.path)
                connection: Any = sqlite3.connect(url.path, timeout=settings.db_timeout)
            else:
                usable_file_id(url.path)
                connection = sqlite3.connect(
                    existing_file_uri(url.path), uri=True, timeout=settings.db_timeout
                )
            prepare_connection(connection)
            backend: Backend = "sqlite"
        elif url.scheme == "mysql":
            try:
                from sipsock.db import mysql
            except ImportError as exc:
                raise StoreError(
                    f"{url.display()} needs PyMySQL ({exc}): pip install 'sipsock[mysql]'"
                ) from None
            connection = mysql.connect(url, settings.db_timeout)
            backend = "mysql"
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
        elif self.backend == "mysql":  # PyMySQL runs one statement at a time
            for statement in self.statements.schema_statements(self.backend):
                self._execute(statement)
        else:
            with self.connection.cursor() as cursor:
                cursor.execute(script)
        self._commit()
        if self.settings.tables.node is not None:
            self._ensure_node_column()
        self.check_version()
        self.check_columns()

    def _ensure_node_column(self) -> None:
        try:
            self._execute(fleet.probe_node_column(self.statements))
        except StoreError:  # the column is missing (the table exists: the schema ran)
            self._execute(fleet.add_node_column(self.statements))
        self._commit()

    def install_notify(self) -> str:
        """Install the NOTIFY trigger (PostgreSQL only); returns the channel name."""
        if self.backend != "postgres":
            raise StoreError(
                f"init --notify needs PostgreSQL, not {self.backend}: with SQLite, "
                "[sockets_mgm] auto_reload polls the file instead"
            )
        with self.connection.cursor() as cursor:
            cursor.execute(notify.notify_script(self.settings.tables))
        self._commit()
        return notify.notify_channel(self.settings.tables)

    def set_node(self, row_id: int, node: str) -> None:
        """Set the fleet node of a row (needs ``node_column``)."""
        if self.settings.tables.node is None:
            raise StoreError("--node needs [sockets_mgm] node_column")
        self._execute(fleet.set_row_node(self.statements), (node, row_id))
        self._commit()

    def check_version(self) -> None:
        """Raise `StoreError` unless the version row of the table is right."""
        table = self.settings.tables.table
        rows = self._query(self.statements.select_version, (table,), missing_version_table_error)
        error = version_error(table, rows[0][0] if rows else None)
        if error is not None:
            raise error

    def check_columns(self) -> None:
        """Raise `StoreError` naming what is missing: the table or a configured column."""
        found = self._query(self.statements.select_columns, self.statements.columns_params)
        error = self.statements.table_error(
            [row[0] for row in found], self.settings.db_url.display()
        )
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
        values = (socket, advertised, tag, flags, tos)
        if self.statements.returns_id:
            row_id = self._write(self.statements.insert_row, values)[0][0]
        else:
            row_id = self._execute(self.statements.insert_row, values).lastrowid
            self._commit()
        assert isinstance(row_id, int)
        return row_id

    def remove(self, row_id: int) -> None:
        """Delete a row; `StoreError` when there is none with this id."""
        cursor = self._execute(self.statements.delete_row, (row_id,))
        count = cursor.rowcount
        self._commit()
        if count == 0:
            raise StoreError(f"no row with id {row_id} in table {self.settings.tables.table}")

    def rows(self, node: str | None = None) -> list[SocketRow]:
        """Every row, in id order (with ``node``: the rows that node loads)."""
        statements = Statements.for_backend(self.settings.tables, self.backend, node)
        return [
            row_from_tuple(row)
            for row in self._query(statements.select_rows, statements.row_params)
        ]

    def _execute(
        self,
        sql: str,
        params: tuple[object, ...] = (),
        missing: Callable[[], StoreError] | None = None,
    ) -> Any:
        missing = missing or self._missing_table
        try:
            if self.backend == "sqlite":
                return self.connection.execute(sql, params)
            cursor = self.connection.cursor()
            cursor.execute(sql, params)
            return cursor
        except self.errors as exc:
            with contextlib.suppress(*self.errors):  # a dead connection cannot roll back
                self.connection.rollback()
            if self.backend == "mysql":
                from sipsock.db import mysql

                raise mysql.store_error(exc, self.settings.db_url, None, missing) from None
            if _is_missing(exc):
                raise missing() from None
            raise

    def _query(
        self,
        sql: str,
        params: tuple[object, ...] = (),
        missing: Callable[[], StoreError] | None = None,
    ) -> list[tuple[object, ...]]:
        return list(self._execute(sql, params, missing).fetchall())

    def _write(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        rows = self._query(sql, params)
        self._commit()
        return rows

    def _missing_table(self) -> StoreError:
        return missing_table_error(self.settings.tables.table, self.settings.db_url.display())

    def _commit(self) -> None:
        try:
            self.connection.commit()
        except self.errors as exc:
            if self.backend == "mysql":
                from sipsock.db import mysql

                raise mysql.store_error(
                    exc, self.settings.db_url, None, self._missing_table
                ) from None
            raise


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
