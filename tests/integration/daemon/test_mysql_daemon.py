"""The real daemon on a real MariaDB: OpenSIPS's own MySQL tables, outages, bad set-ups."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.daemon import Daemon, MIError
from tests.integration.daemon.conftest import DaemonFactory
from tests.mariadb import MariaDBServer
from tests.net import free_port
from tests.sip_probe import options_udp, status_of
from tests.sipp import run_sipp

REPO = Path(__file__).resolve().parents[3]

# OpenSIPS's scripts/mysql/standard-create.sql and sockets_mgm-create.sql, as shipped.
OPENSIPS_VERSION_TABLE = """CREATE TABLE version (
    table_name CHAR(32) NOT NULL,
    table_version INT UNSIGNED DEFAULT 0 NOT NULL,
    CONSTRAINT t_name_idx UNIQUE (table_name)
) ENGINE=InnoDB;"""
OPENSIPS_SOCKETS_VERSION_ROW = (
    "INSERT INTO version (table_name, table_version) values ('sockets','1');"
)
OPENSIPS_SOCKETS_TABLE = """CREATE TABLE sockets (
    id INT(10) UNSIGNED AUTO_INCREMENT PRIMARY KEY NOT NULL,
    socket CHAR(128) NOT NULL,
    advertised CHAR(128) DEFAULT NULL,
    tag CHAR(128) DEFAULT NULL,
    flags CHAR(128) DEFAULT NULL,
    tos CHAR(32) DEFAULT NULL
) ENGINE=InnoDB;"""
OPENSIPS_SCHEMA = (OPENSIPS_VERSION_TABLE, OPENSIPS_SOCKETS_VERSION_ROW, OPENSIPS_SOCKETS_TABLE)

SQL = Callable[..., list[tuple[object, ...]]]


def answers(port: int) -> bool:
    reply = options_udp(port)
    return reply is not None and status_of(reply) == 200


def sipsock_db(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``sipsock-db -c CONFIG ARGS``, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "sipsock.db.cli", "-c", str(config), *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        cwd=config.parent,
        timeout=60,
        check=False,
    )


@pytest.fixture
def sql(mariadb_server: MariaDBServer, mariadb_db: str) -> SQL:
    """Run one statement in the test's MariaDB database, as another tool would."""

    def run(statement: str, *params: object) -> list[tuple[object, ...]]:
        return mariadb_server.execute(statement, params or None, dbname=mariadb_db)

    return run


def insert(sql: SQL, socket: str, **columns: str) -> None:
    values = {"socket": socket, **columns}
    marks = ", ".join(["%s"] * len(values))
    sql(f"INSERT INTO sockets ({', '.join(values)}) VALUES ({marks})", *values.values())


def test_opensips_mysql_tables_serve_sip_unchanged(
    daemon_factory: DaemonFactory,
    mariadb_server: MariaDBServer,
    mariadb_db: str,
    sql: SQL,
    tmp_path: Path,
) -> None:
    for statement in OPENSIPS_SCHEMA:
        sql(statement)
    udp, tcp, padded = free_port(), free_port(), free_port()
    insert(sql, f"udp:127.0.0.1:{udp}", tag="edge", advertised="203.0.113.5:5099")
    insert(sql, f"tcp:127.0.0.1:{tcp}", flags="reuse_port", tos="IPTOS_LOWDELAY")
    sockets = [f"udp:127.0.0.1:{udp}", f"tcp:127.0.0.1:{tcp}", f"udp:127.0.0.1:{padded}"]
    daemon = daemon_factory(mariadb_server.url(mariadb_db))  # loads the table at start
    assert [entry["socket"] for entry in daemon.mi("sockets_list")] == sockets[:2]

    insert(sql, f"udp:127.0.0.1:{padded}   ", tag="padded  ")  # CHAR padding
    report = daemon.reload()

    assert (report["added"], report["kept"]) == (sockets[2:], sockets[:2]), report
    assert report["rejected"] == [] and report["failed"] == []
    assert daemon.mi("sockets_list") == [
        {"socket": sockets[0], "advertised": "203.0.113.5:5099", "tag": "edge"},
        {"socket": sockets[1], "flags": "reuse_port", "tos": 16},
        {"socket": sockets[2], "tag": "padded"},
    ]
    over_udp = run_sipp(f"127.0.0.1:{udp}", calls=30, rate=60, workdir=tmp_path)
    assert over_udp.ok and over_udp.successful == 30, over_udp.output
    over_tcp = run_sipp(f"127.0.0.1:{tcp}", transport="t1", calls=30, rate=60, workdir=tmp_path)
    assert over_tcp.ok and over_tcp.successful == 30, over_tcp.output
    assert answers(padded)

    listed = sipsock_db(daemon.config, "rows")
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[1] for line in listed.stdout.splitlines()[1:]] == sockets

    sql("DELETE FROM sockets WHERE tag = 'edge'")
    assert daemon.reload()["removed"] == [sockets[0]]
    assert daemon.mi("sockets_reload") == "OK"
    assert [entry["socket"] for entry in daemon.mi("sockets_list")] == sockets[1:]
    assert "Traceback" not in daemon.log()


def reload_error(daemon: Daemon) -> tuple[str, float]:
    """The 500 message of a failing ``sockets_reload`` and the seconds it took."""
    started = time.monotonic()
    with pytest.raises(MIError) as failure:
        daemon.reload()
    assert failure.value.code == 500
    return failure.value.message, time.monotonic() - started


def reload_until_ok(daemon: Daemon, timeout: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return daemon.reload()
        except MIError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_mariadb_stopped_or_frozen_fails_the_reload_in_bounded_time_and_sockets_keep_serving(
    daemon_factory: DaemonFactory,
    mariadb_server: MariaDBServer,
    mariadb_db: str,
    sql: SQL,
) -> None:
    daemon = daemon_factory(
        mariadb_server.url(mariadb_db), "[sockets_mgm]\ndb_timeout = 2.0\n", name="outage"
    )
    initialised = sipsock_db(daemon.config, "init")
    assert initialised.returncode == 0, initialised.stderr
    port = free_port()
    assert sipsock_db(daemon.config, "add", f"udp:127.0.0.1:{port}").returncode == 0
    assert daemon.reload()["added"] == [f"udp:127.0.0.1:{port}"]

    mariadb_server.stop()
    message, seconds = reload_error(daemon)
    assert seconds < 10
    assert "MySQL" in message and "unavailable" in message, message
    assert answers(port)
    assert daemon.mi("sockets_list") == [{"socket": f"udp:127.0.0.1:{port}"}]

    mariadb_server.start()
    other = free_port()
    insert(sql, f"udp:127.0.0.1:{other}")
    assert daemon.reload()["added"] == [f"udp:127.0.0.1:{other}"]
    assert answers(port) and answers(other)

    mariadb_server.pause()
    try:
        message, seconds = reload_error(daemon)
        assert seconds < 10
        assert "no answer from mysql://" in message and "within 2 s" in message, message
        assert answers(port) and answers(other)
    finally:
        mariadb_server.resume()
    assert reload_until_ok(daemon)["kept"] == [f"udp:127.0.0.1:{port}", f"udp:127.0.0.1:{other}"]

    log = daemon.log()
    assert "Unhandled Error" not in log and "Rollback failed" not in log
    assert "Traceback" not in log


def test_the_first_reload_after_a_mariadb_restart_works(
    daemon_factory: DaemonFactory, mariadb_server: MariaDBServer, mariadb_db: str
) -> None:
    daemon = daemon_factory(mariadb_server.url(mariadb_db), name="restart")
    assert sipsock_db(daemon.config, "init").returncode == 0
    port = free_port()
    assert sipsock_db(daemon.config, "add", f"udp:127.0.0.1:{port}").returncode == 0
    assert daemon.reload()["added"] == [f"udp:127.0.0.1:{port}"]

    mariadb_server.stop()
    mariadb_server.start()  # the daemon's pooled connection is dead; the server is up
    assert daemon.reload()["kept"] == [f"udp:127.0.0.1:{port}"]  # before: "Lost connection"
    assert "Traceback" not in daemon.log()


def _wrong_password(server: MariaDBServer, dbname: str, sql: SQL) -> str:
    for statement in OPENSIPS_SCHEMA:
        sql(statement)
    return server.url(dbname, password="not-the-password")


def _unknown_database(server: MariaDBServer, dbname: str, sql: SQL) -> str:
    return server.url("no_such_db")


def _missing_table(server: MariaDBServer, dbname: str, sql: SQL) -> str:
    sql(OPENSIPS_VERSION_TABLE)
    sql(OPENSIPS_SOCKETS_VERSION_ROW)
    return server.url(dbname)


def _wrong_version(server: MariaDBServer, dbname: str, sql: SQL) -> str:
    for statement in OPENSIPS_SCHEMA:
        sql(statement)
    sql("UPDATE version SET table_version = 2 WHERE table_name = 'sockets'")
    return server.url(dbname)


BAD_SETUPS: list[tuple[Callable[[MariaDBServer, str, SQL], str], tuple[str, ...]]] = [
    (
        _wrong_password,
        (
            "refused the login: Access denied for user 'sipsock'",
            "check the user name and password in [sockets_mgm] db_url",
        ),
    ),
    (
        _unknown_database,
        (
            "database 'no_such_db' does not exist: create it (CREATE DATABASE no_such_db)",
            "or fix the database name in [sockets_mgm] db_url",
        ),
    ),
    (
        _missing_table,
        ("cannot read table sockets in mysql://", 'run "sipsock-db init"', "table_name"),
    ),
    (
        _wrong_version,
        (
            "sockets table version is 2 in the version table",
            "UPDATE version SET table_version = 1 WHERE table_name = 'sockets'",
        ),
    ),
]


@pytest.mark.parametrize(
    ("setup", "expected"), BAD_SETUPS, ids=[setup.__name__[1:] for setup, _ in BAD_SETUPS]
)
def test_bad_mysql_setup_is_one_line_saying_what_to_fix(
    daemon_factory: DaemonFactory,
    mariadb_server: MariaDBServer,
    mariadb_db: str,
    sql: SQL,
    setup: Callable[[MariaDBServer, str, SQL], str],
    expected: tuple[str, ...],
) -> None:
    static = free_port()
    url = setup(mariadb_server, mariadb_db, sql)
    daemon = daemon_factory(url, f'[core]\nlisten = ["udp:127.0.0.1:{static}"]\n')

    refused = sipsock_db(daemon.config, "rows")
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("sipsock-db: ")
    assert all(part in refused.stderr for part in expected), refused.stderr
    assert "not-the-password" not in refused.stderr

    message, seconds = reload_error(daemon)
    assert seconds < 10
    assert "\n" not in message and "not-the-password" not in message
    assert all(part in message for part in expected), message
    assert answers(static)  # the daemon runs on its static sockets meanwhile
    assert "Traceback" not in daemon.log()
