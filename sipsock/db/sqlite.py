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
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from sipsock.config import SocketsMgmSettings
from sipsock.db.pooled import PooledStore, default_reactor
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
    """`ISocketStore` on an SQLite file (adbapi, one connection)."""

    log = Logger()

    def __init__(self, settings: SocketsMgmSettings, reactor: IReactorTime | None = None) -> None:
        reactor = default_reactor(reactor)
        assert settings.db_url.path is not None
        self._path = settings.db_url.path
        ensure_parent(self._path)
        pool = _ConnectionPool(
            "sqlite3",
            self._path,
            timeout=settings.db_timeout,
            check_same_thread=False,
            cp_min=1,
            cp_max=1,
            cp_openfun=prepare_connection,
            cp_reactor=reactor,
        )
        statements = Statements(settings.tables, "qmark", node=settings.node)
        super().__init__(settings, statements, pool, reactor)

    def __repr__(self) -> str:
        return f"<SQLiteStore {self._path} table={self._table}>"

    def _translate(self, failure: Failure, what: str, missing: Callable[[], StoreError]) -> None:
        exc = failure.value
        if isinstance(exc, sqlite3.OperationalError) and "no such" in str(exc):
            raise missing() from None
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"{what}: SQLite {self._path}: {exc}") from None
        failure.raiseException()
