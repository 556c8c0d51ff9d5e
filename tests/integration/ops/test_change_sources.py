"""Change sources of automatic reload against a real PostgreSQL server and SQLite file.

The listener runs in the test's reactor (pytest-twisted); rows are written
with blocking psycopg2 / sqlite3 connections, as another tool would.
"""

from __future__ import annotations

import fcntl
import sqlite3
import struct
import termios
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted  # type: ignore[import-untyped,unused-ignore]
from twisted.internet import reactor as _reactor
from twisted.internet.task import deferLater
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from zope.interface import provider

from sipsock.config import SocketsMgmSettings, parse_config
from sipsock.db.cli import Database
from sipsock.db.pglisten import PostgresListener
from sipsock.db.sqlitepoll import SQLitePoller
from tests.pg import PostgresServer
from tests.polling import poll_until, wait_until

reactor: Any = _reactor


def pg_settings(server: PostgresServer, database: str) -> SocketsMgmSettings:
    return parse_config({"sockets_mgm": {"db_url": server.url(database)}}).sockets_mgm


@pytest.fixture
def notifying_db(postgres_server: PostgresServer, postgres_db: str) -> SocketsMgmSettings:
    settings = pg_settings(postgres_server, postgres_db)
    with Database.open(settings) as database:
        database.init()
        assert database.install_notify() == "sipsock_sockets"
    return settings


@pytest.fixture
def listener(notifying_db: SocketsMgmSettings) -> Iterator[tuple[PostgresListener, list[str]]]:
    seen: list[str] = []
    source = PostgresListener(notifying_db, seen.append, reactor)
    source.start()
    yield source, seen
    source.stop()


async def ready(source: PostgresListener, seen: list[str]) -> None:
    """Wait for the LISTEN, its catch-up signal and the listener's own trigger check
    (a query still running would race the test's); then forget the signal."""
    await wait_until(lambda: source.listening and bool(seen), 10, "LISTEN")
    await wait_until(lambda: source.trigger_checked, 10, "the trigger check")
    assert seen == ["now listening (catching up)"]
    seen.clear()


@pytest_twisted.ensureDeferred
async def test_a_row_change_is_notified(
    listener: tuple[PostgresListener, list[str]],
    postgres_server: PostgresServer,
    postgres_db: str,
) -> None:
    source, seen = listener
    await ready(source, seen)
    postgres_server.execute(
        "INSERT INTO sockets (socket) VALUES ('udp:127.0.0.1:5999')", dbname=postgres_db
    )
    await wait_until(lambda: seen == ["NOTIFY INSERT"], 5, "NOTIFY after INSERT")
    postgres_server.execute("DELETE FROM sockets", dbname=postgres_db)
    postgres_server.execute("TRUNCATE sockets", dbname=postgres_db)
    await wait_until(lambda: len(seen) == 3, 5, "NOTIFY after DELETE and TRUNCATE")
    assert seen[1:] == ["NOTIFY DELETE", "NOTIFY TRUNCATE"]


@pytest_twisted.ensureDeferred
async def test_many_rows_in_one_transaction_notify_once(
    listener: tuple[PostgresListener, list[str]],
    postgres_server: PostgresServer,
    postgres_db: str,
) -> None:
    source, seen = listener
    await ready(source, seen)
    values = ", ".join(f"('udp:127.0.0.1:{6000 + i}')" for i in range(100))
    postgres_server.execute(
        "BEGIN; "
        + "; ".join(
            f"INSERT INTO sockets (socket) VALUES ('udp:127.0.0.1:{7000 + i}')" for i in range(100)
        )
        + f"; INSERT INTO sockets (socket) VALUES {values}; COMMIT",
        dbname=postgres_db,
    )
    # NOTIFYs arrive in commit order: once the next transaction's is in, every
    # one of the first transaction is too.
    postgres_server.execute("DELETE FROM sockets", dbname=postgres_db)
    await wait_until(lambda: "NOTIFY DELETE" in seen, 5, "NOTIFY after the next transaction")
    assert seen == ["NOTIFY INSERT", "NOTIFY DELETE"]


def unread_bytes(fd: int) -> int:
    """How many bytes wait in the receive queue of socket ``fd``."""
    (count,) = struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))
    return int(count)


@pytest_twisted.ensureDeferred
async def test_a_notify_read_together_with_a_query_result_is_delivered(
    listener: tuple[PostgresListener, list[str]],
    postgres_server: PostgresServer,
    postgres_db: str,
) -> None:
    """A NOTIFY right behind a query's result is read with it but not parsed.

    The listener runs queries of its own (LISTEN, the trigger check) after
    every reconnection, so a change made at that moment went unnoticed until
    the next one (CI, 2026-11). The reactor stays blocked here until the
    result and the NOTIFY both wait in the socket, in that order.
    """
    source, seen = listener
    await ready(source, seen)
    connection = source.connection.pollable()
    backend = connection.get_backend_pid()
    query = source.connection.runQuery("SELECT 1")

    def answered() -> bool:
        activity = postgres_server.execute(
            "SELECT state, query FROM pg_stat_activity WHERE pid = %s", (backend,)
        )
        return activity == [("idle", "SELECT 1")]

    poll_until(answered, 5, "the listener's backend answered SELECT 1")
    result_size = unread_bytes(connection.fileno())
    postgres_server.execute(
        "INSERT INTO sockets (socket) VALUES ('udp:127.0.0.1:5996')", dbname=postgres_db
    )
    poll_until(
        lambda: unread_bytes(connection.fileno()) > result_size, 5, "NOTIFY behind the result"
    )
    assert await query == [(1,)]
    await wait_until(lambda: "NOTIFY INSERT" in seen, 3, "NOTIFY read with a query result")


@pytest_twisted.ensureDeferred
async def test_listen_is_renewed_after_the_server_restarts(
    listener: tuple[PostgresListener, list[str]],
    postgres_server: PostgresServer,
    postgres_db: str,
) -> None:
    source, seen = listener
    await ready(source, seen)
    postgres_server.stop()
    await wait_until(lambda: source.detector.connectionIsDead, 10, "outage noticed")
    postgres_server.start()
    await wait_until(lambda: any("reconnected" in s for s in seen), 20, "reconnection")
    postgres_server.execute(
        "INSERT INTO sockets (socket) VALUES ('udp:127.0.0.1:5998')", dbname=postgres_db
    )
    await wait_until(lambda: "NOTIFY INSERT" in seen, 5, "NOTIFY after the restart")


@pytest_twisted.ensureDeferred
async def test_a_listener_started_while_the_server_is_down_catches_up(
    notifying_db: SocketsMgmSettings, postgres_server: PostgresServer, postgres_db: str
) -> None:
    seen: list[str] = []
    postgres_server.stop()
    source = PostgresListener(notifying_db, seen.append, reactor)
    try:
        source.start()
        await deferLater(reactor, 1.0, lambda: None)
        assert not source.listening
        postgres_server.start()
        await wait_until(lambda: source.listening, 20, "LISTEN once the server is back")
        postgres_server.execute(
            "INSERT INTO sockets (socket) VALUES ('udp:127.0.0.1:5997')", dbname=postgres_db
        )
        await wait_until(lambda: "NOTIFY INSERT" in seen, 5, "NOTIFY")
    finally:
        source.stop()


@pytest_twisted.ensureDeferred
async def test_sqlite_poller_sees_commits_of_other_connections(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    settings = parse_config({"sockets_mgm": {"db_url": f"sqlite:///{path}"}}).sockets_mgm
    with Database.open(settings) as database:
        database.init()
    seen: list[str] = []
    poller = SQLitePoller(str(path), 0.05, seen.append, reactor)
    poller.start()
    try:
        await wait_until(lambda: bool(seen), 5, "the first poll")
        assert seen == ["now watching (catching up)"]
        seen.clear()
        with sqlite3.connect(path) as writer:
            writer.execute("INSERT INTO sockets (socket) VALUES ('udp:127.0.0.1:5996')")
        await wait_until(lambda: seen == ["data_version changed"], 5, "data_version change")
        with sqlite3.connect(path) as writer:
            for port in range(5900, 5950):
                writer.execute(f"INSERT INTO sockets (socket) VALUES ('udp:127.0.0.1:{port}')")
        await wait_until(lambda: len(seen) == 2, 5, "one signal for one transaction")
    finally:
        await poller.stop()


@pytest_twisted.ensureDeferred
async def test_a_table_without_the_trigger_is_reported(
    postgres_server: PostgresServer, postgres_db: str
) -> None:
    settings = pg_settings(postgres_server, postgres_db)
    with Database.open(settings) as database:
        database.init()  # no --notify
    events: list[str] = []

    @provider(ILogObserver)
    def observe(event: LogEvent) -> None:
        events.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    source = PostgresListener(settings, lambda _: None, reactor)
    try:
        source.start()
        await wait_until(
            lambda: any("has no NOTIFY trigger" in e for e in events), 10, "the warning"
        )
    finally:
        globalLogPublisher.removeObserver(observe)
        await source.stop()


def _database_with_one_row(path: Path, socket: str) -> None:
    settings = parse_config({"sockets_mgm": {"db_url": f"sqlite:///{path}"}}).sockets_mgm
    with Database.open(settings) as database:
        database.init()
    with sqlite3.connect(path) as writer:
        writer.execute("INSERT INTO sockets (socket) VALUES (?)", (socket,))


@pytest_twisted.ensureDeferred
async def test_sqlite_poller_sees_the_file_replaced_removed_and_back(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    _database_with_one_row(path, "udp:127.0.0.1:5996")
    seen: list[str] = []
    poller = SQLitePoller(str(path), 0.05, seen.append, reactor)
    poller.start()
    try:
        await wait_until(lambda: bool(seen), 5, "the first poll")
        seen.clear()
        _database_with_one_row(tmp_path / "new.sqlite", "udp:127.0.0.1:5997")
        (tmp_path / "new.sqlite").replace(path)  # before: data_version of the old inode, still
        await wait_until(lambda: bool(seen), 5, "the replaced file noticed")
        assert seen == ["now watching (catching up)"]
        seen.clear()
        with sqlite3.connect(path) as writer:  # the new file is the one watched
            writer.execute("DELETE FROM sockets")
        await wait_until(lambda: seen == ["data_version changed"], 5, "a change in the new file")
        seen.clear()
        path.unlink()
        await wait_until(lambda: seen == ["database file removed"], 5, "the removal noticed")
        assert not path.exists()  # the poller does not create an empty file
        _database_with_one_row(path, "udp:127.0.0.1:5998")
        await wait_until(lambda: len(seen) == 2, 5, "the file back")
        assert seen[1] == "now watching (catching up)"
    finally:
        await poller.stop()
