"""Automatic reload against the real daemon: rows written by another tool take effect
with no MI call (PostgreSQL NOTIFY, SQLite data_version polling)."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

from sipsock.config import parse_config
from sipsock.db.cli import Database
from tests.daemon import TWISTD, Daemon
from tests.integration.daemon.conftest import DaemonFactory
from tests.net import free_port
from tests.pg import SUPERUSER, PostgresServer
from tests.polling import poll_until
from tests.sip_probe import options_udp, status_of
from tests.sipp import run_sipp

AUTO = "[sockets_mgm]\nauto_reload = true\nauto_reload_debounce = 0.2\n"


def answers(port: int) -> bool:
    reply = options_udp(port, timeout=0.2)
    return reply is not None and status_of(reply) == 200


def statistic(daemon: Daemon, name: str) -> int:
    value: int = daemon.mi("get_statistics", {"statistics": [name]})[name]
    return value


def psql(server: PostgresServer, database: str, sql: str) -> None:
    binary = shutil.which("psql")
    assert binary, "psql is missing: apt-get install postgresql-client (scripts/test does)"
    subprocess.run(
        [
            binary,
            "-h",
            server.host,
            "-p",
            str(server.port),
            "-U",
            SUPERUSER,
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-c",
            sql,
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )


def notifying_table(server: PostgresServer, database: str) -> str:
    url = server.url(database)
    with Database.open(parse_config({"sockets_mgm": {"db_url": url}}).sockets_mgm) as db:
        db.init()
        db.install_notify()
    return url


def settled_reloads(daemon: Daemon) -> int:
    """The automatic reload count once no reload happened for a second."""
    last = statistic(daemon, "sockets_mgm:auto_reloads")
    stable_since = time.monotonic()
    deadline = stable_since + 30
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = statistic(daemon, "sockets_mgm:auto_reloads")
        if now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since >= 1.0:
            return last
    raise AssertionError("automatic reloads did not settle within 30 s")


def test_insert_through_psql_answers_sipp_within_two_seconds(
    daemon_factory: DaemonFactory,
    postgres_server: PostgresServer,
    postgres_db: str,
    tmp_path: Path,
) -> None:
    daemon = daemon_factory(notifying_table(postgres_server, postgres_db), AUTO)
    port = free_port()
    psql(
        postgres_server,
        postgres_db,
        f"INSERT INTO sockets (socket) VALUES ('udp:127.0.0.1:{port}')",
    )
    inserted = time.monotonic()
    poll_until(lambda: answers(port), 2.0, "the new socket answering")
    assert time.monotonic() - inserted < 2.0
    result = run_sipp(f"127.0.0.1:{port}", calls=20, rate=50, workdir=tmp_path)
    assert result.ok, result.output
    assert statistic(daemon, "sockets_mgm:auto_reloads") >= 1
    assert daemon.mi("sockets_list") == [{"socket": f"udp:127.0.0.1:{port}"}]


def test_bursts_of_a_hundred_changes_give_a_few_reloads(
    daemon_factory: DaemonFactory, postgres_server: PostgresServer, postgres_db: str
) -> None:
    url = notifying_table(postgres_server, postgres_db)
    daemon = daemon_factory(url, AUTO)
    one, many = free_port(), free_port()
    before = settled_reloads(daemon)  # after the catch-up reload of the start
    # 100 rows in one transaction (identical rows collapse into one socket)
    values = ", ".join([f"('udp:127.0.0.1:{one}')"] * 50)
    statements = [f"INSERT INTO sockets (socket) VALUES ('udp:127.0.0.1:{one}')"] * 50
    psql(
        postgres_server,
        postgres_db,
        "BEGIN; "
        + "; ".join(statements)
        + f"; INSERT INTO sockets (socket) VALUES {values}; COMMIT",
    )
    poll_until(lambda: answers(one), 10, "the socket of the transaction")
    after_one = settled_reloads(daemon)
    assert 1 <= after_one - before <= 2
    # 100 rows in 100 transactions
    connection = postgres_server.connect(postgres_db)  # autocommit: one transaction each
    try:
        with connection.cursor() as cursor:
            for _ in range(100):
                cursor.execute(
                    "INSERT INTO sockets (socket) VALUES (%s)", (f"udp:127.0.0.1:{many}",)
                )
    finally:
        connection.close()
    poll_until(lambda: answers(many), 10, "the socket of the separate transactions")
    after_many = settled_reloads(daemon)
    assert 1 <= after_many - after_one <= 4
    assert statistic(daemon, "sockets_mgm:change_signals") >= 2


def test_a_row_inserted_after_a_postgresql_restart_is_loaded(
    daemon_factory: DaemonFactory, postgres_server: PostgresServer, postgres_db: str
) -> None:
    daemon = daemon_factory(notifying_table(postgres_server, postgres_db), AUTO)
    postgres_server.stop()
    postgres_server.start()
    port = free_port()
    connection = postgres_server.connect(postgres_db)
    try:
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO sockets (socket) VALUES (%s)", (f"udp:127.0.0.1:{port}",))
    finally:
        connection.close()
    poll_until(lambda: answers(port), 30, "the socket inserted after the restart")
    assert daemon.mi("sockets_list") == [{"socket": f"udp:127.0.0.1:{port}"}]
    # the LISTEN is renewed: the next change comes by NOTIFY again
    second = free_port()
    psql(
        postgres_server,
        postgres_db,
        f"INSERT INTO sockets (socket) VALUES ('udp:127.0.0.1:{second}')",
    )
    poll_until(lambda: answers(second), 5, "the next socket, by NOTIFY")
    assert "auto reload: connection to" in daemon.log()


def test_sqlite_changes_are_picked_up_by_polling(
    daemon_factory: DaemonFactory, sqlite_url: str, tmp_path: Path
) -> None:
    path = sqlite_url.removeprefix("sqlite:///")
    daemon = daemon_factory(sqlite_url, AUTO + "sqlite_poll_interval = 0.2\n")
    port = free_port()
    with sqlite3.connect(path, timeout=10) as writer:
        writer.execute("INSERT INTO sockets (socket) VALUES (?)", (f"udp:127.0.0.1:{port}",))
    inserted = time.monotonic()
    poll_until(lambda: answers(port), 2.0, "the new socket answering")
    assert time.monotonic() - inserted < 2.0
    with sqlite3.connect(path, timeout=10) as writer:
        writer.execute("DELETE FROM sockets")
    poll_until(lambda: daemon.mi("sockets_list") == [], 5, "the socket closed")
    # sockets_reload keeps working beside it
    assert daemon.mi("sockets_reload") == "OK"


def test_auto_reload_is_refused_for_mysql(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path, db_url="mysql://u:p@127.0.0.1/db", extra=AUTO)
    result = subprocess.run(
        [*daemon_command(daemon)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "[sockets_mgm] auto_reload" in lines[0], result.stderr


def daemon_command(daemon: Daemon) -> list[str]:
    return [TWISTD, "-n", "--pidfile=", "sipsock", "-c", str(daemon.config)]
