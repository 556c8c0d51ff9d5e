"""SQLite faults against the real daemon: a column dropped or misnamed, the file
deleted, moved away or replaced, an empty file left by a failed first start.

In every case the running sockets keep answering and the reload error says what
is wrong and where; the daemon reads a replaced file without a restart.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import Daemon, MIError
from tests.net import free_port
from tests.polling import poll_until
from tests.reliability.harness import daemon_park
from tests.sip_probe import options_udp, status_of

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Any]:
    with daemon_park(tmp_path) as start:
        yield start


def answers(port: int) -> bool:
    reply = options_udp(port, timeout=1.0)
    return reply is not None and status_of(reply) == 200


def sql(path: Path, statement: str, *params: object) -> None:
    with sqlite3.connect(path) as connection:
        connection.execute(statement, params)
    connection.close()


def sipsock_db(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sipsock.db.cli", "-c", str(daemon.config), *args],
        capture_output=True,
        text=True,
        cwd=daemon.workdir,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        timeout=60,
        check=False,
    )


def database_of(daemon: Daemon) -> Path:
    return daemon.state_dir / "sipsock.sqlite"


def with_sockets(daemons: Any, *ports: int, extra: str = "") -> Daemon:
    """A daemon on its embedded SQLite file, with a UDP row per port, loaded."""
    daemon: Daemon = daemons(None, extra=extra)
    for port in ports:
        added = sipsock_db(daemon, "add", f"udp:127.0.0.1:{port}", "--tag", f"t{port}")
        assert added.returncode == 0, added.stderr
    report = daemon.reload()  # (with auto_reload, it may have opened them already)
    assert len(report["added"]) + len(report["kept"]) == len(ports), report
    return daemon


def test_a_dropped_column_fails_the_reload_naming_it_and_keeps_every_socket(
    daemons: Any,
) -> None:
    first, second = free_port(), free_port()
    daemon = with_sockets(daemons, first, second)
    listed = daemon.mi("sockets_list")

    sql(database_of(daemon), "ALTER TABLE sockets DROP COLUMN tos")
    with pytest.raises(MIError) as failed:
        daemon.reload()  # before: every row rejected, every socket closed, sockets_list []
    assert "has no column tos (tos_column)" in failed.value.message, failed.value.message
    assert daemon.mi("sockets_list") == listed
    assert answers(first) and answers(second)
    assert "has no column tos (tos_column)" in sipsock_db(daemon, "rows").stderr


def test_a_misnamed_column_at_start_up_fails_the_load_naming_it(daemons: Any) -> None:
    port = free_port()
    daemon = with_sockets(daemons, port)
    daemon.stop()
    daemon.write_config('[sockets_mgm]\nadvertised_column = "nosuchcol"\n')
    daemon.start()
    # before: every socket advertised as "nosuchcol:PORT", no error at all
    poll_until(lambda: "has no column nosuchcol (advertised_column)" in daemon.log(), 10, "error")
    assert daemon.mi("sockets_list") == []
    with pytest.raises(MIError, match=r"has no column nosuchcol \(advertised_column\)"):
        daemon.reload()


def test_a_deleted_file_fails_reloads_and_a_replaced_one_is_read(daemons: Any) -> None:
    first, second = free_port(), free_port()
    daemon = with_sockets(daemons, first)
    listed = daemon.mi("sockets_list")
    path = database_of(daemon)

    moved = path.with_name("moved.sqlite")
    path.rename(moved)  # mv away (rm alike): before, reloads answered OK with the old rows
    with pytest.raises(MIError) as failed:
        daemon.reload()
    assert f"SQLite file {path} does not exist" in failed.value.message, failed.value.message
    assert daemon.mi("sockets_list") == listed and answers(first)
    refused = sipsock_db(daemon, "rows")
    assert refused.returncode == 1 and "does not exist" in refused.stderr, refused.stderr
    assert not path.exists()  # neither the daemon nor sipsock-db made an empty one

    sql(moved, "UPDATE sockets SET socket = ?", f"udp:127.0.0.1:{second}")
    moved.rename(path)  # a new file (inode) at the path
    report = daemon.reload()
    assert report["added"] == [f"udp:127.0.0.1:{second}"], report
    assert report["removed"] == [f"udp:127.0.0.1:{first}"], report
    assert answers(second)


def test_auto_reload_notices_a_replaced_file(daemons: Any) -> None:
    first, second = free_port(), free_port()
    daemon = with_sockets(
        daemons,
        first,
        extra="[sockets_mgm]\nauto_reload = true\nauto_reload_debounce = 0.1\n"
        "sqlite_poll_interval = 0.1\n",
    )
    path = database_of(daemon)
    copy = path.with_name("copy.sqlite")
    source = sqlite3.connect(path)
    target = sqlite3.connect(copy)
    source.backup(target)
    source.close()
    target.close()
    sql(copy, "UPDATE sockets SET socket = ?", f"udp:127.0.0.1:{second}")
    os.replace(copy, path)  # before: the poller watched the old inode, nothing happened
    poll_until(lambda: answers(second), 15, "the row of the replaced file open")
    poll_until(lambda: not answers(first), 15, "the old row closed")


def test_an_empty_file_left_by_a_failed_start_is_initialised(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    daemon = Daemon(tmp_path / "empty")
    daemon.state_dir.mkdir(parents=True)
    database_of(daemon).touch()  # a first start that failed, disk full
    daemon.start()  # before: "version table is missing" at this and every later start
    try:
        assert daemon.reload()["added"] == []
        assert sipsock_db(daemon, "rows").returncode == 0
        assert database_of(daemon).stat().st_size > 0
    finally:
        daemon.stop()
