"""Edit the sockets table of a test database directly, as another tool would."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2

from sipsock.config import parse_config, parse_db_url
from sipsock.db.cli import Database

COLUMNS = ("socket", "advertised", "tag", "flags", "tos")


class SocketTable:
    """The ``sockets`` table of one SQLite file or PostgreSQL database."""

    def __init__(self, db_url: str, table: str = "sockets") -> None:
        self.db_url = db_url
        self.url = parse_db_url(db_url)
        self.table = table

    def init(self) -> None:
        settings = parse_config({"sockets_mgm": {"db_url": self.db_url, "table_name": self.table}})
        with Database.open(settings.sockets_mgm) as database:
            database.init()

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        if self.url.scheme == "sqlite":
            assert self.url.path is not None
            sqlite = sqlite3.connect(self.url.path, timeout=10)
            try:
                yield sqlite.cursor()
                sqlite.commit()
            finally:
                sqlite.close()
            return
        pg = psycopg2.connect(
            host=self.url.host,
            port=self.url.port,
            user=self.url.user,
            password=self.url.password,
            dbname=self.url.database,
            connect_timeout=5,
        )
        try:
            with pg, pg.cursor() as cursor:
                yield cursor
        finally:
            pg.close()

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.url.scheme == "postgres" else sql

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        with self._cursor() as cursor:
            cursor.execute(self._sql(sql), params)

    def insert(self, socket: Any, **columns: Any) -> int:
        values = {"socket": socket, **columns}
        names = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        sql = f"INSERT INTO {self.table} ({names}) VALUES ({marks})"
        with self._cursor() as cursor:
            if self.url.scheme == "postgres":
                cursor.execute(self._sql(sql) + " RETURNING id", tuple(values.values()))
                return int(cursor.fetchone()[0])
            cursor.execute(sql, tuple(values.values()))
            return int(cursor.lastrowid)

    def update(self, row_id: int, **columns: Any) -> None:
        sets = ", ".join(f"{name} = ?" for name in columns)
        self.execute(f"UPDATE {self.table} SET {sets} WHERE id = ?", (*columns.values(), row_id))

    def delete(self, row_id: int) -> None:
        self.execute(f"DELETE FROM {self.table} WHERE id = ?", (row_id,))

    def clear(self) -> None:
        self.execute(f"DELETE FROM {self.table}")
