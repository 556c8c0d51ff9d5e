"""The sockets table in an SQLite file, read through `twisted.enterprise.adbapi`.

One connection in one thread (``cp_min=1, cp_max=1``, ``check_same_thread=False``):
the pool closes cleanly and a writer (``sipsock-db``) never meets "database
is locked" from us for long. The daemon never creates the file (nor its
tables): ``sipsock-db init`` does; until then a reload says to run it. A file
deleted, moved or replaced under the daemon is noticed at the next call
(`sipsock.db.sqlitefile`). A reload reads the rows again only when
``PRAGMA data_version`` says another connection changed the file since.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

from twisted.enterprise import adbapi
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from sipsock.config import SocketsMgmSettings
from sipsock.db.pooled import PooledStore, default_reactor
from sipsock.db.sqlitefile import FileId, busy_timeout, existing_file_uri, usable_file_id
from sipsock.db.store import (
    Statements,
    StoreError,
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


#: How sqlite3 (C-level decoding) says a text value is not UTF-8.
UNDECODABLE: Final = "Could not decode to UTF-8"


def select_rows(cursor: Any, sql: str, params: Sequence[object]) -> list[tuple[object, ...]]:
    """Every row of ``sql``, text as `str`, or as bytes where it is not UTF-8 (`decode_text`).

    The rows are decoded by sqlite3 itself (C-level) first: `decode_text`, a
    Python call per text value, cost about a fifth of reading 500 rows. Only
    when some value is not UTF-8 is the query run again through `decode_text`,
    so that the row holding it is rejected with its reason, not the read.
    """
    connection = cursor.connection
    connection.text_factory = str
    try:
        cursor.execute(sql, params)
        return list(cursor.fetchall())
    except sqlite3.OperationalError as exc:
        if not str(exc).startswith(UNDECODABLE):
            raise
    finally:
        connection.text_factory = decode_text
    cursor.execute(sql, params)
    return list(cursor.fetchall())


def ensure_parent(path: str) -> None:
    """Create the directory of an SQLite file when missing; `StoreError` if impossible."""
    parent = Path(path).parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot create directory {parent} for the SQLite file {path}: {exc.strerror}"
        ) from None


class SQLiteStore(PooledStore):
    """`ISocketStore` on an SQLite file (adbapi, one connection).

    Before every call the file's identity is compared with the one opened
    (`sipsock.db.sqlitefile`): a replaced file is reopened, a missing or empty
    one fails the call with `StoreError` (the running sockets stay).
    """

    log = Logger()

    def __init__(self, settings: SocketsMgmSettings, reactor: IReactorTime | None = None) -> None:
        reactor = default_reactor(reactor)
        assert settings.db_url.path is not None
        self._path = settings.db_url.path
        self._busy = busy_timeout(settings.db_timeout)
        self._opened: FileId | None = None
        statements = Statements(settings.tables, "qmark", node=settings.node)
        super().__init__(settings, statements, None, reactor)

    def __repr__(self) -> str:
        return f"<SQLiteStore {self._path} table={self._table}>"

    def _call(
        self,
        what: str,
        run: Callable[[], Deferred[T]],
        missing: Callable[[], StoreError],
    ) -> Deferred[T]:
        if not self._closed:
            try:
                self._open_current_file()
            except StoreError as error:
                return fail(StoreError(f"{what}: {error}"))
        return super()._call(what, run, missing)

    def _open_current_file(self) -> None:
        """Open the file at the path, again if it is not the one open; `StoreError` if gone."""
        current = usable_file_id(self._path)
        if current == self._opened and self._pool is not None:
            return
        if self._pool is not None:
            self.log.info("SQLite file {path} was replaced: reading the new one", path=self._path)
            self._pool.close()
        self._pool = _ConnectionPool(
            "sqlite3",
            existing_file_uri(self._path),
            uri=True,
            timeout=self._busy,
            check_same_thread=False,
            cp_min=1,
            cp_max=1,
            cp_openfun=prepare_connection,
            cp_reactor=self._reactor,
        )
        self._opened = current
        self._rows_mark = None  # a new connection: its data_version starts anew

    def _select_rows(self, cursor: Any) -> list[tuple[object, ...]]:
        return select_rows(cursor, self._statements.select_rows, self._statements.row_params)

    def _table_mark(self, cursor: Any) -> object:
        """``PRAGMA data_version``: changes with every commit of another connection
        (the daemon's own connection never writes)."""
        cursor.execute("PRAGMA data_version")
        return cursor.fetchone()[0]

    def close(self) -> Deferred[None]:
        if self._pool is None:
            self._closed = True
            return succeed(None)
        return super().close()

    def _translate(self, failure: Failure, what: str, missing: Callable[[], StoreError]) -> None:
        exc = failure.value
        if isinstance(exc, sqlite3.OperationalError) and "no such" in str(exc):
            raise missing() from None
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"{what}: SQLite {self._path}: {exc}") from None
        failure.raiseException()
