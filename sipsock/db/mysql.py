"""The sockets table in MySQL or MariaDB, read through `twisted.enterprise.adbapi` and PyMySQL.

PyMySQL is pure Python and optional: ``pip install 'sipsock[mysql]'``.

One connection in one pool thread (``cp_min=1, cp_max=1``), opened when first
needed, in autocommit mode with ``utf8mb4`` text. A call that finds the server
gone fails with `StoreError`; the dead connection is dropped quietly (no
"Rollback failed" traceback) and the next call opens a new one, so a reload
after the server comes back just works. Every call is bounded by
``db_timeout`` (`within`); the driver's own connect and read timeouts end a
call the store gave up on soon after (``db_timeout`` + `READ_GRACE`), so the
pool thread is never stuck for long.

MySQL hands CHAR columns back without their trailing padding; anything else
around a value is stripped by `sipsock.sockdef.parse_row`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar

import pymysql
from pymysql.constants import CR, ER
from twisted.enterprise import adbapi
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from sipsock.config import DatabaseURL, SocketsMgmSettings
from sipsock.db.pooled import PooledStore, default_reactor
from sipsock.db.store import (
    Statements,
    StoreError,
)

T = TypeVar("T")

#: The driver's base exception, for callers that must not import PyMySQL themselves.
Error: Final = pymysql.Error
DEFAULT_PORT: Final = 3306
#: Seconds the driver waits for an answer beyond ``db_timeout`` before it gives up.
READ_GRACE: Final = 1.0

_UNAVAILABLE_CODES: Final = frozenset(
    {
        CR.CR_CONNECTION_ERROR,
        CR.CR_CONN_HOST_ERROR,
        CR.CR_UNKNOWN_HOST,
        CR.CR_SERVER_GONE_ERROR,
        CR.CR_SERVER_LOST,
        ER.CON_COUNT_ERROR,
        ER.SERVER_SHUTDOWN,
    }
)
_MISSING_CODES: Final = frozenset({ER.NO_SUCH_TABLE, ER.BAD_FIELD_ERROR})


def connect_kwargs(
    url: DatabaseURL, timeout: float, read_grace: float = READ_GRACE
) -> dict[str, Any]:
    """``pymysql.connect`` keyword arguments for a ``mysql://`` URL."""
    kwargs: dict[str, Any] = {
        "host": url.host or "localhost",
        "port": url.port or DEFAULT_PORT,
        "user": url.user or "",
        "password": url.password or "",
        "database": url.database,
        "charset": "utf8mb4",
        "connect_timeout": timeout,
        "read_timeout": timeout + read_grace,
        "write_timeout": timeout + read_grace,
        "autocommit": True,
    }
    kwargs.update(url.options)  # unix_socket, charset
    return kwargs


def connect(url: DatabaseURL, timeout: float) -> Any:
    """A blocking PyMySQL connection (for ``sipsock-db``); `StoreError` saying what to fix."""
    try:
        return pymysql.connect(**connect_kwargs(url, timeout, read_grace=0.0))
    except pymysql.Error as exc:
        raise store_error(exc, url, None, _no_table_yet) from None


def _no_table_yet() -> StoreError:  # connecting reads no table
    return StoreError("no table read yet")


def store_error(
    exc: BaseException,
    url: DatabaseURL,
    what: str | None,
    missing: Callable[[], StoreError],
) -> StoreError:
    """The one-line `StoreError` for a PyMySQL error: what went wrong and what to fix."""
    code, message = _code_and_message(exc)
    prefix = f"{what}: " if what else ""
    server = f"MySQL {url.display()}"
    if code in _MISSING_CODES:
        return missing()
    if isinstance(exc, pymysql.InterfaceError) or code in _UNAVAILABLE_CODES:
        return StoreError(f"{prefix}{server} unavailable: {message}")
    if code == ER.ACCESS_DENIED_ERROR:
        return StoreError(
            f"{prefix}{server} refused the login: {message}: check the user name and "
            "password in [sockets_mgm] db_url"
        )
    if code == ER.BAD_DB_ERROR:
        return StoreError(
            f"{prefix}{server}: database {url.database!r} does not exist: create it "
            f"(CREATE DATABASE {url.database}) or fix the database name in [sockets_mgm] db_url"
        )
    if code == ER.DBACCESS_DENIED_ERROR:
        return StoreError(
            f"{prefix}{server}: {message}: GRANT the user access to database "
            f"{url.database!r}, or fix the database name in [sockets_mgm] db_url"
        )
    if code in (ER.TABLEACCESS_DENIED_ERROR, ER.COLUMNACCESS_DENIED_ERROR):
        return StoreError(
            f"{prefix}{server}: {message}: GRANT SELECT on the sockets and version "
            "tables to the user"
        )
    return StoreError(f"{prefix}{server}: error {code}: {message}")


def _code_and_message(exc: BaseException) -> tuple[int, str]:
    args = exc.args
    code = args[0] if args and isinstance(args[0], int) else 0
    text = str(args[1]) if len(args) > 1 else str(exc)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return code, (lines[0] if lines else type(exc).__name__)


class _QuietConnection(adbapi.Connection):
    """A pooled connection whose failed rollback drops it instead of logging tracebacks.

    adbapi rolls back after every failed call; with ``cp_reconnect`` it logs
    "Rollback failed" (twice, with tracebacks) when the server is gone. Here a
    connection that cannot roll back is closed and forgotten; the next call
    opens a new one. The caller still gets the original error.
    """

    def rollback(self) -> None:
        connection: Any = self._connection
        try:
            connection.rollback()
        except pymysql.Error:
            self._pool.disconnect(connection)


class _Pool(adbapi.ConnectionPool):
    """An adbapi pool of `_QuietConnection`."""

    connectionFactory = _QuietConnection


_PoolClass: Any = _Pool  # adbapi is untyped


class MySQLStore(PooledStore):
    """`ISocketStore` on MySQL / MariaDB (adbapi + PyMySQL, one connection, reconnect)."""

    def __init__(self, settings: SocketsMgmSettings, reactor: IReactorTime | None = None) -> None:
        reactor = default_reactor(reactor)
        self._url = settings.db_url
        pool = _PoolClass(
            "pymysql",
            cp_min=1,
            cp_max=1,
            cp_reconnect=True,
            cp_noisy=False,
            cp_reactor=reactor,
            **connect_kwargs(settings.db_url, settings.db_timeout),
        )
        statements = Statements.for_backend(settings.tables, "mysql", settings.node)
        super().__init__(settings, statements, pool, reactor)

    def __repr__(self) -> str:
        return f"<MySQLStore {self._url.display()} table={self._table}>"

    def _prepare(self, cursor: Any) -> None:
        """Check the connection before the query: after a server restart the pooled
        connection is dead, and the query itself would fail "Lost connection"."""
        connection = cursor._connection  # adbapi passes ping and connect on to PyMySQL
        try:
            connection.ping(reconnect=False)
        except pymysql.Error:
            connection.connect()  # the same PyMySQL object, connected again

    def _translate(self, failure: Failure, what: str, missing: Callable[[], StoreError]) -> None:
        exc = failure.value
        if isinstance(exc, pymysql.Error):
            raise store_error(exc, self._url, what, missing) from None
        failure.raiseException()
