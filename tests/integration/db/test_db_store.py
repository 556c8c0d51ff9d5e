"""The sockets table stores against a real SQLite file, PostgreSQL and MariaDB server.

Most tests run once per backend (the ``backend`` fixture); the outage tests run
for each database server (the ``served`` fixture). The ``sipsock-db`` command
runs as a subprocess, the stores in the test's reactor (pytest-twisted).
"""

from __future__ import annotations

import gc
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest
import pytest_twisted  # type: ignore[import-untyped,unused-ignore]
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from zope.interface import provider

from sipsock.config import ConfigError, Settings, load_config
from sipsock.db import ISocketStore, SocketRow, StoreError, open_store
from sipsock.db.sqlite import decode_text
from sipsock.reloadplan import screen_rows
from sipsock.sockdef import SocketDefError, parse_row, parse_row_id
from tests.mariadb import MariaDBServer
from tests.pg import PostgresServer

REPO = Path(__file__).resolve().parents[3]
reactor: IReactorTime = _reactor

# OpenSIPS's own scripts (scripts/<db>/standard-create.sql, sockets-create.sql).
OPENSIPS_SCHEMA = {
    "postgres": [
        "CREATE TABLE version ( table_name VARCHAR(32) NOT NULL, table_version INTEGER "
        "DEFAULT 0 NOT NULL, CONSTRAINT version_t_name_idx UNIQUE (table_name))",
        "INSERT INTO version (table_name, table_version) values ('sockets','1')",
        "CREATE TABLE sockets ( id SERIAL PRIMARY KEY NOT NULL, socket VARCHAR(128) NOT NULL, "
        "advertised VARCHAR(128) DEFAULT NULL, tag VARCHAR(128) DEFAULT NULL, "
        "flags VARCHAR(128) DEFAULT NULL, tos VARCHAR(32) DEFAULT NULL)",
        "ALTER SEQUENCE sockets_id_seq MAXVALUE 2147483647 CYCLE",
    ],
    "sqlite": [
        "CREATE TABLE version ( table_name CHAR(32) NOT NULL, table_version INTEGER "
        "DEFAULT 0 NOT NULL, CONSTRAINT version_t_name_idx UNIQUE (table_name))",
        "INSERT INTO version (table_name, table_version) values ('sockets','1')",
        "CREATE TABLE sockets ( id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, "
        "socket CHAR(128) NOT NULL, advertised CHAR(128) DEFAULT NULL, "
        "tag CHAR(128) DEFAULT NULL, flags CHAR(128) DEFAULT NULL, tos CHAR(32) DEFAULT NULL)",
    ],
    "mysql": [
        "CREATE TABLE version ( table_name CHAR(32) NOT NULL, table_version INT UNSIGNED "
        "DEFAULT 0 NOT NULL, CONSTRAINT t_name_idx UNIQUE (table_name)) ENGINE=InnoDB",
        "INSERT INTO version (table_name, table_version) values ('sockets','1')",
        "CREATE TABLE sockets ( id INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL, "
        "socket CHAR(128) NOT NULL, advertised CHAR(128) DEFAULT NULL, "
        "tag CHAR(128) DEFAULT NULL, flags CHAR(128) DEFAULT NULL, tos CHAR(32) DEFAULT NULL"
        ") ENGINE=InnoDB",
    ],
}


@dataclass
class Backend:
    """One database under test: its URL, raw SQL access and config files."""

    name: str
    url: str
    tmp_path: Path
    run_sql: Callable[[str, tuple[object, ...]], list[tuple[Any, ...]]]
    table_names: Callable[[], set[str]]

    def sql(self, statement: str, *params: object) -> list[tuple[Any, ...]]:
        """Run one statement outside sipsock; the rows it returns."""
        return self.run_sql(statement, params)

    @property
    def param(self) -> str:
        return "?" if self.name == "sqlite" else "%s"

    def config(self, extra: str = "", db_timeout: float = 5.0) -> Path:
        """A config file for this database (``extra`` lines go into [sockets_mgm])."""
        path = self.tmp_path / "sipsock.toml"
        path.write_text(
            f'[sockets_mgm]\ndb_url = "{self.url}"\ndb_timeout = {db_timeout}\n{extra}\n'
        )
        return path

    def settings(self, extra: str = "", db_timeout: float = 5.0) -> Settings:
        return load_config(self.config(extra, db_timeout))

    def cli(self, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``sipsock-db -c CONFIG ARGS`` as a user would."""
        env = dict(os.environ, PYTHONPATH=str(REPO))
        return subprocess.run(
            [sys.executable, "-m", "sipsock.db.cli", "-c", str(config or self.config()), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=self.tmp_path,
            timeout=60,
            check=False,
        )

    def init(self) -> None:
        result = self.cli("init")
        assert result.returncode == 0, result.stderr


def _sqlite_backend(tmp_path: Path) -> Backend:
    path = tmp_path / "state" / "sipsock.sqlite"

    def run_sql(statement: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        path.parent.mkdir(exist_ok=True)
        connection = sqlite3.connect(path)
        try:
            rows = connection.execute(statement, params).fetchall()
            connection.commit()
            return rows
        finally:
            connection.close()

    def table_names() -> set[str]:
        if not path.exists():
            return set()
        return {row[0] for row in run_sql("SELECT name FROM sqlite_master", ())}

    return Backend("sqlite", f"sqlite:///{path}", tmp_path, run_sql, table_names)


def _postgres_backend(tmp_path: Path, server: PostgresServer, dbname: str) -> Backend:
    def run_sql(statement: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        return server.execute(statement, params or None, dbname=dbname)

    def table_names() -> set[str]:
        rows = run_sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'", ())
        return {row[0] for row in rows}

    return Backend("postgres", server.url(dbname), tmp_path, run_sql, table_names)


def _mysql_backend(tmp_path: Path, server: MariaDBServer, dbname: str) -> Backend:
    def run_sql(statement: str, params: tuple[object, ...]) -> list[tuple[Any, ...]]:
        return server.execute(statement, params or None, dbname=dbname)

    def table_names() -> set[str]:
        return {row[0] for row in run_sql("SHOW TABLES", ())}

    return Backend("mysql", server.url(dbname), tmp_path, run_sql, table_names)


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Each database in turn: an SQLite file in tmp_path, a fresh PostgreSQL or MariaDB one."""
    if request.param == "sqlite":
        return _sqlite_backend(tmp_path)
    if request.param == "mysql":
        mariadb: MariaDBServer = request.getfixturevalue("mariadb_server")
        return _mysql_backend(tmp_path, mariadb, request.getfixturevalue("mariadb_db"))
    server: PostgresServer = request.getfixturevalue("postgres_server")
    dbname: str = request.getfixturevalue("postgres_db")
    return _postgres_backend(tmp_path, server, dbname)


@pytest.fixture
def mysql(mariadb_server: MariaDBServer, mariadb_db: str, tmp_path: Path) -> Backend:
    """MariaDB only."""
    return _mysql_backend(tmp_path, mariadb_server, mariadb_db)


class Server(Protocol):
    """What the outage tests do to a database server (tests/pg.py, tests/mariadb.py)."""

    def stop(self) -> None: ...
    def start(self) -> None: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...


@dataclass
class Served:
    """A database on a server the test may stop, restart, pause and resume."""

    backend: Backend
    server: Server


@pytest.fixture(params=["postgres", "mysql"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Served:
    """Each database server in turn, with a fresh database (outage tests)."""
    if request.param == "mysql":
        mariadb: MariaDBServer = request.getfixturevalue("mariadb_server")
        dbname = request.getfixturevalue("mariadb_db")
        return Served(_mysql_backend(tmp_path, mariadb, dbname), mariadb)
    postgres: PostgresServer = request.getfixturevalue("postgres_server")
    dbname = request.getfixturevalue("postgres_db")
    return Served(_postgres_backend(tmp_path, postgres, dbname), postgres)


@pytest.fixture
def errors_logged() -> Iterator[list[LogEvent]]:
    """Log events carrying a failure ("Unhandled Error", unhandled Deferred errors)."""
    events: list[LogEvent] = []

    @provider(ILogObserver)
    def observe(event: LogEvent) -> None:
        if "log_failure" in event:
            events.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(observe)


class Stores:
    """Opens stores for a test and closes them at its end."""

    def __init__(self) -> None:
        self.opened: list[ISocketStore] = []

    def open(self, settings: Settings) -> ISocketStore:
        store = open_store(settings.sockets_mgm, reactor=reactor)
        self.opened.append(store)
        return store


@pytest.fixture
def stores() -> Iterator[Stores]:
    keeper = Stores()
    yield keeper
    for store in keeper.opened:
        store.close()


async def store_error(d: Deferred[Any]) -> StoreError:
    """The StoreError that ``d`` fails with (AssertionError if it succeeds)."""
    try:
        result = await d
    except StoreError as exc:
        return exc
    raise AssertionError(f"expected StoreError, got {result!r}")


def lines_of(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


# -- sipsock-db ------------------------------------------------------------------


def test_cli_init_add_rows_remove(backend: Backend) -> None:
    assert backend.cli("init").returncode == 0
    again = backend.cli("init")
    assert again.returncode == 0, again.stderr  # idempotent
    assert backend.sql("SELECT table_version FROM version WHERE table_name = 'sockets'") == [(1,)]

    added = backend.cli("add", "udp:10.0.0.1:5060", "--tag", "edge", "--tos", "IPTOS_LOWDELAY")
    assert added.returncode == 0, added.stderr
    assert "added row 1" in added.stdout
    added = backend.cli(
        "add", "tcp:[::1]:5070", "--advertised", "sip.example.com:5080", "--flags", "frag,anycast"
    )
    assert added.returncode == 0, added.stderr

    rows = backend.cli("rows")
    assert rows.returncode == 0, rows.stderr
    assert lines_of(rows.stdout) == [
        ["id", "socket", "advertised", "tag", "flags", "tos"],
        ["1", "udp:10.0.0.1:5060", "-", "edge", "-", "IPTOS_LOWDELAY"],
        ["2", "tcp:[::1]:5070", "sip.example.com:5080", "-", "frag,anycast", "-"],
    ]

    for loose in ("+1", "1_0", "\u0661", "1.0"):  # int() takes the first three
        refused = backend.cli("remove", loose)
        assert refused.returncode == 2, (loose, refused.stdout)
        assert "not an integer row id" in refused.stderr
    removed = backend.cli("remove", "1")
    assert removed.returncode == 0, removed.stderr
    assert [line[0] for line in lines_of(backend.cli("rows").stdout)] == ["id", "2"]


def test_cli_add_refuses_invalid_row_with_the_reason(backend: Backend) -> None:
    backend.init()
    refused = backend.cli("add", "bin:10.0.0.1:5555")
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        "sipsock-db: socket 'bin:10.0.0.1:5555': protocol bin is not a SIP transport "
        "(use udp, tcp, tls, ws or wss)"
    ]
    assert "Traceback" not in refused.stderr
    refused = backend.cli("add", "udp:10.0.0.1", "--tos", "IPTOS_FAST")
    assert refused.returncode == 1
    assert "tos" in refused.stderr and "Traceback" not in refused.stderr
    assert backend.sql("SELECT COUNT(*) FROM sockets") == [(0,)]


def test_cli_add_refuses_a_row_the_daemon_would_reject_beside_others(backend: Backend) -> None:
    static = 'listen = ["udp:127.0.0.1:5099", "tcp:localhost:5098"]'
    config = backend.tmp_path / "with_static.toml"
    config.write_text(
        f'[core]\n{static}\n[sockets_mgm]\ndb_url = "{backend.url}"\nnode_column = "node"\n'
        'node = "a"\n'
    )
    assert backend.cli("init", config=config).returncode == 0
    assert backend.cli("add", "udp:127.0.0.1:5060", "--tag", "a", config=config).returncode == 0
    cases = [
        (("udp:127.0.0.1:5060", "--tag", "a"), "already defined by row 1 (udp:127.0.0.1:5060)"),
        (("udp:127.0.0.1:5060",), "uses the same address as row 1 (udp:127.0.0.1:5060)"),
        (("udp:localhost:5060",), "uses the same address as row 1"),  # resolved as the daemon
        (("udp:127.0.0.1:5099",), "address of the static socket udp:127.0.0.1:5099"),
        (("tls:127.0.0.1:5098",), "address of the static socket"),  # TCP port space
        (("udp:127.0.0.1:5060", "--tag", "a", "--node", "a"), "already defined by row 1"),
    ]
    for args, reason in cases:
        refused = backend.cli("add", *args, config=config)
        assert refused.returncode == 1 and reason in refused.stderr, (args, refused.stderr)
        assert "Traceback" not in refused.stderr
    for args in (("udp:127.0.0.1:5061",), ("tcp:127.0.0.1:5060",), ("udp:127.0.0.1:5062",)):
        added = backend.cli("add", *args, config=config)
        assert added.returncode == 0, (args, added.stderr)
    # A row for another node does not collide with one for node b only.
    assert backend.cli("add", "udp:127.0.0.1:5070", "--node", "b", config=config).returncode == 0
    assert backend.cli("add", "udp:127.0.0.1:5070", "--node", "c", config=config).returncode == 0
    assert backend.sql("SELECT COUNT(*) FROM sockets") == [(6,)]


def test_cli_errors_are_one_line(backend: Backend) -> None:
    missing_table = backend.cli("rows")
    assert missing_table.returncode == 1
    assert missing_table.stderr.count("\n") == 1
    assert "sipsock-db init" in missing_table.stderr
    backend.init()
    no_row = backend.cli("remove", "42")
    assert (no_row.returncode, no_row.stderr) == (
        1,
        "sipsock-db: no row with id 42 in table sockets\n",
    )
    no_config = backend.cli("rows", config=backend.tmp_path / "absent.toml")
    assert no_config.returncode == 1
    assert "absent.toml" in no_config.stderr and "Traceback" not in no_config.stderr


@pytest_twisted.ensureDeferred
async def test_custom_table_and_column_names(backend: Backend, stores: Stores) -> None:
    extra = 'table_name = "sip_listeners"\nsocket_column = "addr"\ntos_column = "dscp"'
    config = backend.config(extra)
    assert backend.cli("init", config=config).returncode == 0
    assert {"sip_listeners", "version"} <= backend.table_names()
    assert backend.cli("add", "tls:192.0.2.7", "--tos", "46", config=config).returncode == 0
    assert backend.sql("SELECT addr, dscp FROM sip_listeners") == [("tls:192.0.2.7", "46")]
    assert backend.sql("SELECT table_version FROM version WHERE table_name = 'sip_listeners'") == [
        (1,)
    ]
    store = stores.open(backend.settings(extra))
    await store.check_version()
    assert await store.fetch() == [SocketRow(1, "tls:192.0.2.7", tos="46")]


@pytest_twisted.ensureDeferred
async def test_a_missing_or_misnamed_column_fails_naming_it_in_store_and_cli(
    backend: Backend, stores: Stores
) -> None:
    backend.init()
    backend.sql(f"INSERT INTO sockets (socket, tag) VALUES ({backend.param}, 'a')", "udp:1.2.3.4")
    cases = [
        (f'{key}_column = "nosuchcol"', f"nosuchcol ({key}_column)")
        for key in ("socket", "advertised", "tag", "flags", "tos")
    ]
    cases.append(('node_column = "nosuchcol"\nnode = "a"', "nosuchcol (node_column)"))
    for extra, named in cases:
        store = stores.open(backend.settings(extra))
        for call in (store.check_version, store.fetch, store.read):
            error = str(await store_error(call()))
            if call != store.fetch:  # fetch alone fails too, never reads a literal
                assert (
                    f"table sockets in {backend.settings().sockets_mgm.db_url.display()} "
                    f"has no column {named}" in error
                ), (extra, error)
        for command in (("rows",), ("add", "udp:127.0.0.1:5060"), ("remove", "1")):
            result = backend.cli(*command, config=backend.config(extra))
            assert result.returncode == 1 and f"has no column {named}" in result.stderr, (
                extra,
                command,
                result.stderr,
            )
    assert backend.sql("SELECT socket FROM sockets") == [("udp:1.2.3.4",)]  # nothing added

    backend.sql("ALTER TABLE sockets DROP COLUMN tos")
    store = stores.open(backend.settings())
    error = str(await store_error(store.check_version()))
    assert "has no column tos (tos_column)" in error, error
    await store_error(store.fetch())
    error = str(await store_error(store.read()))  # a reload after a read that worked
    assert "has no column tos (tos_column)" in error, error
    assert "has no column tos (tos_column)" in backend.cli("rows").stderr

    backend.sql("ALTER TABLE sockets RENAME COLUMN id TO ident")
    for call in (store.check_version, store.read):
        error = str(await store_error(call()))
        assert "has no column id (OpenSIPS's primary key), tos (tos_column)" in error, error


# -- the stores ---------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_fetch_returns_rows_in_id_order_with_nulls(backend: Backend, stores: Stores) -> None:
    backend.init()
    p = backend.param
    insert = (
        f"INSERT INTO sockets (id, socket, advertised, tag, flags, tos) "
        f"VALUES ({p}, {p}, {p}, {p}, {p}, {p})"
    )
    backend.sql(insert, 9, "udp:10.0.0.9", None, None, None, None)
    backend.sql(insert, 2, "tcp:10.0.0.2:5070", "1.2.3.4:5080", "t2", "frag", "IPTOS_LOWDELAY")
    backend.sql(insert, 5, "ws:10.0.0.5", None, "", None, "16")
    store = stores.open(backend.settings())

    await store.check_version()
    rows = await store.fetch()

    assert rows == [
        SocketRow(2, "tcp:10.0.0.2:5070", "1.2.3.4:5080", "t2", "frag", "IPTOS_LOWDELAY"),
        SocketRow(5, "ws:10.0.0.5", None, "", None, "16"),
        SocketRow(9, "udp:10.0.0.9", None, None, None, None),
    ]
    assert [
        parse_row(parse_row_id(r.id), r.socket, r.advertised, r.tag, r.flags, r.tos).port
        for r in rows
    ] == [
        5070,
        80,
        5060,
    ]


@pytest_twisted.ensureDeferred
async def test_a_fetch_sees_every_change_and_unchanged_rows_come_back_equal(
    backend: Backend, stores: Stores
) -> None:
    """Every store hands back the very row object for a row that did not change
    (a reload matches those by identity), also when other rows moved it."""
    backend.init()
    p = backend.param
    insert = f"INSERT INTO sockets (id, socket, tag) VALUES ({p}, {p}, {p})"
    backend.sql(insert, 1, "udp:10.0.0.1", "a")
    backend.sql(insert, 2, "udp:10.0.0.2", None)
    store = stores.open(backend.settings())
    first = await store.fetch()
    again = await store.fetch()
    assert again == first
    assert all(a is b for a, b in zip(again, first, strict=True))
    backend.sql(f"UPDATE sockets SET tag = {p} WHERE id = {p}", "b", 1)
    changed = await store.read()
    assert changed == [SocketRow(1, "udp:10.0.0.1", tag="b"), SocketRow(2, "udp:10.0.0.2")]
    assert changed[1] is first[1]  # the untouched row is not built again
    backend.sql(f"DELETE FROM sockets WHERE id = {p}", 1)
    moved = await store.fetch()
    assert moved == [SocketRow(2, "udp:10.0.0.2")]
    assert moved[0] is first[1]  # moved to another place by the delete: still the same
    backend.sql(insert, 1, "udp:10.0.0.1", "b")
    assert (await store.fetch())[1] is first[1]  # and back
    backend.sql(f"DELETE FROM sockets WHERE id = {p}", 2)
    assert await store.fetch() == [SocketRow(1, "udp:10.0.0.1", tag="b")]


@pytest_twisted.ensureDeferred
async def test_existing_opensips_table_works_unchanged(backend: Backend, stores: Stores) -> None:
    for statement in OPENSIPS_SCHEMA[backend.name]:
        backend.sql(statement)
    backend.sql("INSERT INTO sockets (socket, tag) VALUES ('udp:127.0.0.1:5090', 'opensips')")
    store = stores.open(backend.settings())

    await store.check_version()
    rows = await store.fetch()

    assert [(r.socket, r.tag) for r in rows] == [("udp:127.0.0.1:5090", "opensips")]
    listed = backend.cli("rows")
    assert listed.returncode == 0, listed.stderr
    assert "udp:127.0.0.1:5090" in listed.stdout


@pytest_twisted.ensureDeferred
async def test_missing_version_row_says_how_to_fix(backend: Backend, stores: Stores) -> None:
    backend.init()
    store = stores.open(backend.settings())
    assert await store.read() == []
    backend.sql("DELETE FROM version")

    for call in (store.check_version, store.read):  # read: the same table as last time
        error = await store_error(call())
        assert str(error) == (
            'sockets table version row missing: run "sipsock-db init" or INSERT INTO version '
            "(table_name, table_version) VALUES ('sockets', 1)"
        )
    assert backend.cli("init").returncode == 0  # the advice works
    await store.check_version()
    assert await store.read() == []


@pytest_twisted.ensureDeferred
async def test_missing_version_table_says_how_to_fix(backend: Backend, stores: Stores) -> None:
    if backend.name == "sqlite":  # a database file, without sipsock's tables
        backend.sql("CREATE TABLE unrelated (x)")
    store = stores.open(backend.settings())
    for call in (store.check_version, store.read):
        error = await store_error(call())
        assert "version table is missing" in str(error) and "sipsock-db init" in str(error)
    error = await store_error(store.fetch())
    database = backend.settings().sockets_mgm.db_url.display()
    assert f"cannot read table sockets in {database}" in str(error)
    assert "sipsock-db init" in str(error)


@pytest_twisted.ensureDeferred
async def test_wrong_version_says_how_to_fix(backend: Backend, stores: Stores) -> None:
    backend.init()
    backend.sql("UPDATE version SET table_version = 2 WHERE table_name = 'sockets'")
    store = stores.open(backend.settings())

    error = await store_error(store.check_version())

    assert "sockets table version is 2" in str(error)
    assert "UPDATE version SET table_version = 1 WHERE table_name = 'sockets'" in str(error)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("table_name", "sockets; DROP TABLE version"),
        ("table_name", "1sockets"),
        ("socket_column", 'socket"'),
        ("advertised_column", "adv-col"),
        ("tag_column", "tag name"),
        ("flags_column", ""),
        ("tos_column", "t\u00f6s"),
    ],
)
def test_non_identifier_names_refused_before_any_sql(
    backend: Backend, key: str, value: str
) -> None:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    config = backend.config(f'{key} = "{escaped}"')
    with pytest.raises(ConfigError) as caught:
        load_config(config)
    assert caught.value.key == f"[sockets_mgm] {key}"
    assert "not an SQL identifier" in caught.value.reason

    tables_before = backend.table_names()
    refused = backend.cli("init", config=config)
    assert refused.returncode == 1
    assert f"[sockets_mgm] {key}" in refused.stderr and "Traceback" not in refused.stderr
    assert backend.table_names() == tables_before == set()
    if backend.name == "sqlite":
        assert not (backend.tmp_path / "state").exists()  # not even the file was made


HOSTILE = [
    ("udp:10.0.0.1:5060   ", "frag  ", " edge ", True),  # CHAR padding: accepted
    ("udp:" + "1" * 296, None, None, False),  # 300 characters
    ("udp:ñandú.example", None, None, False),  # non-ASCII host
    ("udp:10.0.0.1'; DROP TABLE sockets; --", None, None, False),  # SQL-looking
    ("tcp:10.0.0.2", "reuse_port); DELETE FROM version; --", None, False),
    ("ws:10.0.0.3", None, "t\u00e4g", False),  # non-ASCII tag
]


@pytest_twisted.ensureDeferred
async def test_hostile_values_round_trip_and_are_rejected_by_parse_row(
    backend: Backend, stores: Stores
) -> None:
    # A table made by hand with no constraints, as other tools might leave it.
    backend.init()
    backend.sql("DROP TABLE sockets")
    backend.sql(
        "CREATE TABLE sockets (id INTEGER PRIMARY KEY, socket TEXT, advertised TEXT, "
        "tag TEXT, flags TEXT, tos TEXT)"
    )
    p = backend.param
    insert = f"INSERT INTO sockets (id, socket, flags, tag) VALUES ({p}, {p}, {p}, {p})"
    backend.sql(insert, 1, None, None, None)  # NULL socket
    for row_id, (socket, flags, tag, _) in enumerate(HOSTILE, start=2):
        backend.sql(insert, row_id, socket, flags, tag)
    backend.sql(
        f"INSERT INTO sockets (id, socket, tos) VALUES ({p}, {p}, {p})",
        50,
        "udp:10.0.0.4",
        "x" * 300,
    )
    store = stores.open(backend.settings())

    rows = await store.fetch()

    assert [r.socket for r in rows] == [None, *(h[0] for h in HOSTILE), "udp:10.0.0.4"]
    assert [r.flags for r in rows[1:-1]] == [h[1] for h in HOSTILE]
    assert [r.tag for r in rows[1:-1]] == [h[2] for h in HOSTILE]
    assert rows[-1].tos == "x" * 300
    accepted = []
    for row in rows:
        try:
            parse_row(parse_row_id(row.id), row.socket, row.advertised, row.tag, row.flags, row.tos)
        except SocketDefError as exc:
            assert exc.row_id == row.id
            assert len(str(exc)) < 300  # the value is quoted, bounded
        else:
            accepted.append(row.id)
    assert accepted == [2]
    assert "sockets" in backend.table_names()


@pytest_twisted.ensureDeferred
async def test_sqlite_odd_storage_classes_do_not_break_fetch(
    tmp_path: Path, stores: Stores
) -> None:
    backend = _sqlite_backend(tmp_path)
    backend.init()
    backend.sql(
        "INSERT INTO sockets (id, socket, tag, tos) VALUES (1, ?, ?, ?)",
        b"udp:\xff\xfe",
        b"\x00blob",
        16,
    )
    backend.sql("INSERT INTO sockets (id, socket) VALUES (2, CAST(X'7564703aff' AS TEXT))")
    backend.sql("INSERT INTO sockets (id, socket, tos) VALUES (3, 'udp:10.0.0.1', 16)")
    store = stores.open(backend.settings())

    rows = await store.fetch()

    assert rows[0] == SocketRow(1, b"udp:\xff\xfe", None, b"\x00blob", None, "16")
    assert rows[1].socket == b"udp:\xff"  # not UTF-8: kept as bytes
    assert parse_row(3, rows[2].socket, tos=rows[2].tos).tos == 16
    for row in rows[:2]:
        with pytest.raises(SocketDefError):
            parse_row(parse_row_id(row.id), row.socket, row.advertised, row.tag, row.flags, row.tos)


@pytest_twisted.ensureDeferred
async def test_sqlite_rows_in_utf8_are_decoded_without_a_python_call_per_value(
    tmp_path: Path, stores: Stores
) -> None:
    """sqlite3 decodes UTF-8 text itself; `decode_text` runs only for a table with a
    value that is not UTF-8 (whose row is then rejected, the others read)."""
    backend = _sqlite_backend(tmp_path)
    backend.init()
    for port in range(5060, 5160):
        backend.sql(
            "INSERT INTO sockets (socket, tag) VALUES (?, ?)", f"udp:127.0.0.1:{port}", f"t{port}"
        )
    calls: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code is decode_text.__code__:
            calls.append(event)

    threading.setprofile(profile)  # the store's pool thread starts with it
    try:
        store = stores.open(backend.settings())
        rows = await store.read()
        assert [row.tag for row in rows] == [f"t{port}" for port in range(5060, 5160)]
        assert calls == []  # before: two Python calls per row
        backend.sql("INSERT INTO sockets (id, socket) VALUES (500, CAST(X'7564703aff' AS TEXT))")

        rows = await store.read()
    finally:
        threading.setprofile(None)

    assert len(calls) > 100  # this read went through decode_text
    assert [row.socket for row in rows[-2:]] == ["udp:127.0.0.1:5159", b"udp:\xff"]
    assert rows[0].tag == "t5060"
    assert [rejection.row_id for rejection in screen_rows(rows)[1]] == [500]


@pytest_twisted.ensureDeferred
async def test_sqlite_store_and_cli_never_create_the_file_but_init_does(
    tmp_path: Path, stores: Stores
) -> None:
    backend = _sqlite_backend(tmp_path)
    path = tmp_path / "state" / "sipsock.sqlite"
    store = stores.open(backend.settings())
    for call in (store.check_version, store.fetch):
        error = await store_error(call())
        assert f"SQLite file {path} does not exist" in str(error), error
        assert "sipsock-db init" in str(error)
    for command in (("rows",), ("add", "udp:127.0.0.1:5060"), ("remove", "1")):
        result = backend.cli(*command)
        assert result.returncode == 1
        assert f"SQLite file {path} does not exist" in result.stderr, result.stderr
    assert not path.exists()

    path.parent.mkdir()
    path.touch()  # what a first start that failed (disk full) leaves
    error = await store_error(store.fetch())
    assert "is empty (0 bytes" in str(error) and "sipsock-db init" in str(error), error
    assert "is empty (0 bytes" in backend.cli("rows").stderr
    backend.init()  # an empty file is initialised
    assert await store.fetch() == []


@pytest_twisted.ensureDeferred
async def test_closed_store_refuses_calls(backend: Backend, stores: Stores) -> None:
    backend.init()
    store = stores.open(backend.settings())
    assert await store.fetch() == []
    await store.close()
    error = await store_error(store.fetch())
    assert "closed" in str(error)


# -- MySQL / MariaDB only ----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_mysql_char_padding_is_not_part_of_a_value(mysql: Backend, stores: Stores) -> None:
    for statement in OPENSIPS_SCHEMA["mysql"]:
        mysql.sql(statement)
    mysql.sql(
        "INSERT INTO sockets (socket, advertised, tag, flags, tos) VALUES (%s, %s, %s, %s, %s)",
        "udp:127.0.0.1:5090   ",
        "203.0.113.9  ",
        "edge ",
        "frag,reuse_port  ",
        "IPTOS_LOWDELAY   ",
    )
    store = stores.open(mysql.settings())

    [row] = await store.fetch()

    assert row == SocketRow(
        1, "udp:127.0.0.1:5090", "203.0.113.9", "edge", "frag,reuse_port", "IPTOS_LOWDELAY"
    )
    sdef = parse_row(parse_row_id(row.id), row.socket, row.advertised, row.tag, row.flags, row.tos)
    assert (sdef.port, sdef.tag, sdef.tos) == (5090, "edge", 16)


@pytest_twisted.ensureDeferred
async def test_mysql_through_the_unix_socket(
    mysql: Backend, mariadb_server: MariaDBServer, stores: Stores
) -> None:
    mysql.init()
    assert mysql.cli("add", "tcp:127.0.0.1:5070", "--tag", "sock").returncode == 0
    url = f"{mysql.url.replace('127.0.0.1', 'localhost')}?unix_socket={mariadb_server.socket}"
    socket_db = Backend("mysql", url, mysql.tmp_path, mysql.run_sql, mysql.table_names)
    store = stores.open(socket_db.settings())
    await store.check_version()
    assert await store.fetch() == [SocketRow(1, "tcp:127.0.0.1:5070", tag="sock")]
    listed = socket_db.cli("rows")
    assert listed.returncode == 0, listed.stderr
    assert "tcp:127.0.0.1:5070" in listed.stdout


def _login_cases(server: MariaDBServer, dbname: str) -> list[tuple[str, tuple[str, ...]]]:
    """(db_url, what its one-line error must say) for each login problem."""
    return [
        (
            server.url(dbname, password="not-the-password"),
            (
                "refused the login: Access denied for user 'sipsock'",
                "check the user name and password in [sockets_mgm] db_url",
            ),
        ),
        (
            server.url("no_such_db"),
            (
                "database 'no_such_db' does not exist: create it (CREATE DATABASE no_such_db)",
                "or fix the database name in [sockets_mgm] db_url",
            ),
        ),
    ]


@pytest_twisted.ensureDeferred
async def test_mysql_login_errors_say_what_to_fix(
    mysql: Backend, mariadb_server: MariaDBServer, mariadb_db: str, stores: Stores
) -> None:
    mysql.init()
    for url, expected in _login_cases(mariadb_server, mariadb_db):
        wrong = Backend("mysql", url, mysql.tmp_path, mysql.run_sql, mysql.table_names)
        store = stores.open(wrong.settings())
        for call in (store.check_version, store.fetch):
            message = str(await store_error(call()))
            assert all(part in message for part in expected), (url, message)
            assert "\n" not in message and "not-the-password" not in message

        refused = wrong.cli("rows")
        assert refused.returncode == 1
        assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
        assert refused.stderr.startswith("sipsock-db: ")
        assert all(part in refused.stderr for part in expected), refused.stderr
        assert "not-the-password" not in refused.stderr


# -- database servers stopped or not answering -------------------------------------------


async def fetch_until_ok(store: ISocketStore, timeout: float) -> list[SocketRow]:
    """Retry ``fetch`` until it succeeds; AssertionError after ``timeout`` seconds."""
    deadline = reactor.seconds() + timeout
    while True:
        try:
            rows: list[SocketRow] = await store.fetch()
        except StoreError:
            if reactor.seconds() > deadline:
                raise
            await deferLater(reactor, 0.1, lambda: None)
        else:
            return rows


@pytest_twisted.ensureDeferred
async def test_server_stopped_gives_store_error_then_recovers(
    served: Served,
    stores: Stores,
    errors_logged: list[LogEvent],
) -> None:
    db, server = served.backend, served.server
    db.init()
    assert db.cli("add", "udp:10.0.0.1").returncode == 0
    store = stores.open(db.settings(db_timeout=3.0))
    await store.check_version()
    assert len(await store.fetch()) == 1

    server.stop()  # the idle connection is dropped by the server
    await deferLater(reactor, 0.2, lambda: None)
    started = reactor.seconds()
    error = await store_error(store.fetch())
    assert reactor.seconds() - started < 3.5
    assert "unavailable" in str(error)
    error = await store_error(store.check_version())  # still down: a new attempt, same answer
    assert "unavailable" in str(error)

    server.start()
    rows = await fetch_until_ok(store, timeout=20.0)
    assert [r.socket for r in rows] == ["udp:10.0.0.1"]
    await store.check_version()

    gc.collect()  # unhandled Deferred errors are logged when collected
    assert [event.get("log_format") for event in errors_logged] == []


@pytest_twisted.ensureDeferred
async def test_server_not_answering_gives_timeout_not_a_hang(
    served: Served,
    stores: Stores,
    errors_logged: list[LogEvent],
) -> None:
    db, server = served.backend, served.server
    db.init()
    store = stores.open(db.settings(db_timeout=1.0))
    assert await store.fetch() == []

    server.pause()
    try:
        started = reactor.seconds()
        error = await store_error(store.fetch())  # on the open connection
        assert 0.9 < reactor.seconds() - started < 3.0
        assert f"no answer from {db.settings().sockets_mgm.db_url.display()} within 1 s" in str(
            error
        )
        started = reactor.seconds()
        error = await store_error(store.check_version())  # while connecting anew
        assert reactor.seconds() - started < 3.0
        assert "within 1 s" in str(error)
    finally:
        server.resume()

    assert await fetch_until_ok(store, timeout=20.0) == []
    gc.collect()
    assert [event.get("log_format") for event in errors_logged] == []


@pytest_twisted.ensureDeferred
async def test_server_down_at_start_then_up(
    served: Served,
    stores: Stores,
    errors_logged: list[LogEvent],
) -> None:
    db, server = served.backend, served.server
    db.init()
    server.stop()
    store = stores.open(db.settings(db_timeout=3.0))
    error = await store_error(store.check_version())
    assert "unavailable" in str(error)
    server.start()
    assert await fetch_until_ok(store, timeout=20.0) == []
    gc.collect()
    assert [event.get("log_format") for event in errors_logged] == []


async def reload_like_the_registry(store: ISocketStore) -> StoreError:
    """Read the table as a reload does (`ISocketStore.read`); the error."""
    return await store_error(store.read())


@pytest_twisted.ensureDeferred
async def test_paused_server_fails_each_reload_within_db_timeout(
    served: Served, stores: Stores, errors_logged: list[LogEvent]
) -> None:
    db, server = served.backend, served.server
    db.init()
    store = stores.open(db.settings(db_timeout=1.0))
    assert await store.fetch() == []

    server.pause()
    try:
        for attempt in range(3):
            started = reactor.seconds()
            error = await reload_like_the_registry(store)
            took = reactor.seconds() - started
            assert "within 1 s" in str(error), (attempt, error)
            # Before: the abandoned fetch of the previous reload held the store for
            # another db_timeout, so the second reload took twice as long.
            assert took < 1.6, (attempt, took)
    finally:
        server.resume()
    assert await fetch_until_ok(store, timeout=20.0) == []
    gc.collect()
    assert [event.get("log_format") for event in errors_logged] == []


@pytest_twisted.ensureDeferred
async def test_restarted_server_the_first_call_after_works(
    served: Served, stores: Stores, errors_logged: list[LogEvent]
) -> None:
    db, server = served.backend, served.server
    db.init()
    assert db.cli("add", "udp:10.0.0.1").returncode == 0
    store = stores.open(db.settings(db_timeout=3.0))
    assert len(await store.fetch()) == 1

    server.stop()
    server.start()
    await store.check_version()  # before: MySQL "Lost connection" on the dead connection
    assert [r.socket for r in await store.fetch()] == ["udp:10.0.0.1"]
    gc.collect()
    assert [event.get("log_format") for event in errors_logged] == []


def _sqlite_file_with(tmp_path: Path, name: str, socket: str) -> Path:
    """A complete SQLite database file elsewhere, holding one row."""
    other = _sqlite_backend(tmp_path / name)
    (tmp_path / name).mkdir()
    other.init()
    other.sql("INSERT INTO sockets (socket) VALUES (?)", socket)
    return tmp_path / name / "state" / "sipsock.sqlite"


@pytest_twisted.ensureDeferred
async def test_sqlite_file_replaced_is_read_again_and_a_removed_one_fails(
    tmp_path: Path, stores: Stores
) -> None:
    backend = _sqlite_backend(tmp_path)
    path = tmp_path / "state" / "sipsock.sqlite"
    backend.init()
    backend.sql("INSERT INTO sockets (socket) VALUES (?)", "udp:10.0.0.1")
    store = stores.open(backend.settings())
    await store.check_version()
    assert [r.socket for r in await store.fetch()] == ["udp:10.0.0.1"]

    os.replace(_sqlite_file_with(tmp_path, "b", "udp:10.0.0.2"), path)  # mv new over old
    await store.check_version()
    assert [r.socket for r in await store.fetch()] == ["udp:10.0.0.2"]

    path.unlink()
    for call in (store.check_version, store.fetch):
        error = await store_error(call())
        assert f"SQLite file {path} does not exist" in str(error), error
    assert not path.exists()  # and the store did not create an empty one

    os.replace(_sqlite_file_with(tmp_path, "c", "udp:10.0.0.3"), path)
    assert [r.socket for r in await store.fetch()] == ["udp:10.0.0.3"]


@pytest_twisted.ensureDeferred
async def test_sqlite_locked_file_says_database_is_locked(tmp_path: Path, stores: Stores) -> None:
    backend = _sqlite_backend(tmp_path)
    backend.init()
    store = stores.open(backend.settings(db_timeout=1.0))
    assert await store.fetch() == []
    holder = sqlite3.connect(tmp_path / "state" / "sipsock.sqlite", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        started = reactor.seconds()
        error = await store_error(store.fetch())
        assert reactor.seconds() - started < 1.5
        assert "database is locked" in str(error), error
    finally:
        holder.close()
    assert await store.fetch() == []


@pytest_twisted.ensureDeferred
async def test_sqlite_rows_with_a_null_or_non_integer_id_are_rejected_one_by_one(
    tmp_path: Path, stores: Stores
) -> None:
    # A table made by another tool, whose id is not an INTEGER PRIMARY KEY.
    backend = _sqlite_backend(tmp_path)
    backend.init()
    backend.sql("DROP TABLE sockets")
    backend.sql(
        "CREATE TABLE sockets (id TEXT, socket TEXT, advertised TEXT, "
        "tag TEXT, flags TEXT, tos TEXT)"
    )
    insert = "INSERT INTO sockets (id, socket) VALUES (?, ?)"
    for row_id, socket in [
        ("1", "udp:10.0.0.1"),
        (None, "udp:10.0.0.2"),
        ("abc", "udp:10.0.0.3"),
        (2.5, "udp:10.0.0.4"),
        ("1_0", "udp:10.0.0.5"),
        (7, "udp:10.0.0.6"),
    ]:
        backend.sql(insert, row_id, socket)
    store = stores.open(backend.settings())

    rows = await store.fetch()
    defs, rejected = screen_rows(rows)

    assert sorted(d.host for d in defs) == ["10.0.0.1", "10.0.0.6"]
    assert sorted((r.socket, r.reason) for r in rejected) == [
        ("udp:10.0.0.2", "id NULL: not an integer row id (NULL)"),
        ("udp:10.0.0.3", "id 'abc': not an integer row id (a str)"),
        ("udp:10.0.0.4", "id '2.5': not an integer row id (a str)"),  # TEXT affinity
        ("udp:10.0.0.5", "id '1_0': not an integer row id (a str)"),
    ]


# -- a reload's read ------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_read_sees_every_change_between_reads(backend: Backend, stores: Stores) -> None:
    backend.init()
    p = backend.param
    store = stores.open(backend.settings())
    assert await store.read() == []
    backend.sql(f"INSERT INTO sockets (id, socket) VALUES ({p}, {p})", 3, "udp:10.0.0.3")
    assert await store.read() == [SocketRow(3, "udp:10.0.0.3")]
    assert await store.read() == [SocketRow(3, "udp:10.0.0.3")]  # unchanged
    backend.sql(f"UPDATE sockets SET tag = {p} WHERE id = 3", "t")
    assert await store.read() == [SocketRow(3, "udp:10.0.0.3", tag="t")]
    backend.sql("UPDATE version SET table_version = 2 WHERE table_name = 'sockets'")
    assert "sockets table version is 2" in str(await store_error(store.read()))
    backend.sql("UPDATE version SET table_version = 1 WHERE table_name = 'sockets'")
    backend.sql("DELETE FROM sockets")
    assert await store.read() == []


@pytest_twisted.ensureDeferred
async def test_sqlite_read_of_an_unchanged_file_checks_the_version_row_only(
    tmp_path: Path, stores: Stores
) -> None:
    """Issue 17/19: a reload of an unchanged table sent the column query and the row query
    again (two calls to the pool thread); ``PRAGMA data_version`` says nothing changed."""
    backend = _sqlite_backend(tmp_path)
    backend.init()
    backend.sql("INSERT INTO sockets (socket) VALUES ('udp:10.0.0.1')")
    store = stores.open(backend.settings())
    assert await store.read() == [SocketRow(1, "udp:10.0.0.1")]
    sent: list[str] = []
    pool: Any = store._pool  # type: ignore[attr-defined]
    await pool.runWithConnection(lambda connection: connection.set_trace_callback(sent.append))

    assert await store.read() == [SocketRow(1, "udp:10.0.0.1")]
    assert [s for s in sent if "SELECT" in s] == [
        'SELECT "version"."table_version" FROM "version" '
        """WHERE "version"."table_name" = 'sockets'"""
    ], sent
    assert not [s for s in sent if "pragma_table_info" in s or '"sockets"' in s], sent

    sent.clear()  # a change by another connection: the rows are read, and only they
    backend.sql("UPDATE sockets SET tag = 'x' WHERE id = 1")
    assert await store.read() == [SocketRow(1, "udp:10.0.0.1", tag="x")]
    assert [s for s in sent if 'FROM "sockets"' in s], sent
    assert not [s for s in sent if "pragma_table_info" in s], sent

    # The file replaced by another one with other rows: read, not taken for the old one.
    other = tmp_path / "other"
    other.mkdir()
    replacement = _sqlite_backend(other)
    replacement.init()
    replacement.sql("INSERT INTO sockets (socket) VALUES ('udp:10.0.0.2')")
    os.replace(other / "state" / "sipsock.sqlite", tmp_path / "state" / "sipsock.sqlite")
    assert await store.read() == [SocketRow(1, "udp:10.0.0.2")]
