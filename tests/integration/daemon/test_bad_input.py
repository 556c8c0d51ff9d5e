"""Bad rows, a broken database and bad start-up input against the real daemon."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import TWISTD, Daemon, MIError
from tests.integration.daemon.conftest import DaemonFactory
from tests.net import free_port
from tests.pg import PostgresServer
from tests.sip_probe import options_udp, status_of
from tests.tables import SocketTable


def answers(port: int) -> bool:
    reply = options_udp(port)
    return reply is not None and status_of(reply) == 200


def bad_rows(backend: str, static_port: int) -> list[tuple[dict[str, Any], str]]:
    """(row, part of the rejection reason) for every kind of bad row."""
    port = free_port()
    long_host = "a" * 60 + "." + "b" * 63  # a 128-character socket column
    rows: list[tuple[dict[str, Any], str]] = [
        ({"socket": f"127.0.0.1:{port}"}, "no protocol"),
        ({"socket": f"bin:127.0.0.1:{port}"}, "protocol bin is not a SIP transport"),
        ({"socket": f"hep_udp:127.0.0.1:{port}"}, "protocol hep_udp is not a SIP transport"),
        ({"socket": f"sctp:127.0.0.1:{port}"}, "protocol sctp is not a SIP transport"),
        ({"socket": "udp:127.0.0.1:0"}, "port 0 is out of range (1-65535)"),
        ({"socket": "udp:127.0.0.1:70000"}, "port 70000 is out of range (1-65535)"),
        ({"socket": f"udp:no-such-host.invalid:{port}"}, "cannot resolve host name"),
        ({"socket": f"udp:127.0.0.1:{port}", "flags": "frag,turbo"}, "unknown flag 'turbo'"),
        ({"socket": f"udp:127.0.0.1:{port}", "tos": "IPTOS_BOGUS"}, "not a TOS value"),
        ({"socket": f"udp:127.0.0.1:{port}", "tos": "1_6"}, "not a TOS value"),
        ({"socket": f"udp:127.0.0.1:{port}", "tos": "+16"}, "not a TOS value"),
        ({"socket": f"udp:127.0.0.1:{port}", "tos": "\uff11\uff16"}, "not a TOS value"),
        ({"socket": f"udp:127.0.0.1:{port}", "advertised": "[fe80::1%eth0]"}, "zone id"),
        ({"socket": None}, "the socket column is empty"),
        ({"socket": f"udp:{long_host}"}, "cannot resolve host name"),
        ({"socket": f"udp:127.0.0.1:{static_port}"}, "on the address of the static socket"),
        ({"socket": f"udp:127.0.0.1:{port}", "tag": "bad tag!"}, "a tag may hold only"),
        ({"socket": "udp:h\u00e9.example.com"}, "not ASCII"),
        ({"socket": "udp:1.2.3.4'; DROP TABLE sockets; --"}, "contains blanks"),
    ]
    if backend == "sqlite":  # PostgreSQL's varchar(128) refuses these values itself
        rows.append(({"socket": "udp:" + "c" * 128}, "longer than 128 characters"))
    return rows


def allow_null_socket(table: SocketTable, backend: str) -> None:
    """Make the table accept a NULL socket, as a table made by another tool may."""
    if backend == "postgres":
        table.execute("ALTER TABLE sockets ALTER COLUMN socket DROP NOT NULL")
        return
    table.execute("ALTER TABLE sockets RENAME TO sockets_old")
    table.execute(
        "CREATE TABLE sockets (id INTEGER PRIMARY KEY AUTOINCREMENT, socket VARCHAR(128), "
        "advertised VARCHAR(128), tag VARCHAR(128), flags VARCHAR(128), tos VARCHAR(32))"
    )
    table.execute("DROP TABLE sockets_old")


def test_each_bad_row_is_rejected_with_its_reason_and_good_rows_come_up(
    daemon_factory: DaemonFactory, table: SocketTable, db_url: str, backend: str
) -> None:
    static_port = free_port()
    allow_null_socket(table, backend)
    daemon = daemon_factory(db_url, f'[core]\nlisten = ["udp:127.0.0.1:{static_port}"]\n')
    cases = bad_rows(backend, static_port)

    for row, reason in cases:  # each alone beside a good row
        table.clear()
        good = free_port()
        bad_id = table.insert(**row)
        table.insert(f"udp:127.0.0.1:{good}")
        report = daemon.reload()
        assert [r["id"] for r in report["rejected"]] == [bad_id], (row, report)
        assert reason in report["rejected"][0]["reason"], (row, report)
        assert f"row {bad_id}" in report["rejected"][0]["reason"]
        assert report["failed"] == []
        assert answers(good), row

    table.clear()  # all together, good rows first, between and last
    goods = [free_port() for _ in range(3)]
    table.insert(f"udp:127.0.0.1:{goods[0]}")
    ids = [table.insert(**row) for row, _ in cases[: len(cases) // 2]]
    table.insert(f"tcp:127.0.0.1:{goods[1]}")
    ids += [table.insert(**row) for row, _ in cases[len(cases) // 2 :]]
    table.insert(f"udp:127.0.0.1:{goods[2]}")
    report = daemon.reload()
    assert sorted(r["id"] for r in report["rejected"]) == sorted(ids)
    for rejection, (_, reason) in zip(
        sorted(report["rejected"], key=lambda r: r["id"]), cases, strict=True
    ):
        assert reason in rejection["reason"]
        assert rejection["reason"] in daemon.log()
    assert answers(goods[0])
    assert answers(goods[2])
    with socket.create_connection(("127.0.0.1", goods[1]), timeout=2):
        pass
    assert answers(static_port)
    assert len(daemon.mi("sockets_list")) == 3


def test_a_null_socket_in_the_first_row_does_not_hide_the_table(
    daemon: Daemon, table: SocketTable, backend: str
) -> None:
    allow_null_socket(table, backend)
    table.insert(None)
    good = free_port()
    table.insert(f"udp:127.0.0.1:{good}")
    report = daemon.reload()
    assert report["added"] == [f"udp:127.0.0.1:{good}"]
    assert answers(good)


def test_rows_with_a_null_or_non_integer_id_are_rejected_and_the_others_load(
    daemon_factory: DaemonFactory, sqlite_url: str
) -> None:
    table = SocketTable(sqlite_url)
    table.init()
    # A table made by another tool: its id is not an INTEGER PRIMARY KEY.
    table.execute("DROP TABLE sockets")
    table.execute(
        "CREATE TABLE sockets (id TEXT, socket VARCHAR(128), advertised VARCHAR(128), "
        "tag VARCHAR(128), flags VARCHAR(128), tos VARCHAR(32))"
    )
    good, null_id, text_id = free_port(), free_port(), free_port()
    table.execute("INSERT INTO sockets (id, socket) VALUES ('1', ?)", (f"udp:127.0.0.1:{good}",))
    table.execute(
        "INSERT INTO sockets (id, socket) VALUES (NULL, ?)", (f"udp:127.0.0.1:{null_id}",)
    )
    table.execute("INSERT INTO sockets (id, socket) VALUES ('x', ?)", (f"udp:127.0.0.1:{text_id}",))
    daemon = daemon_factory(sqlite_url)

    report = daemon.reload()

    assert report["added"] == [] and report["kept"] == [f"udp:127.0.0.1:{good}"], report
    reasons = sorted((r["socket"], r["reason"]) for r in report["rejected"])
    assert reasons == sorted(
        [
            (f"udp:127.0.0.1:{null_id}", "id NULL: not an integer row id (NULL)"),
            (f"udp:127.0.0.1:{text_id}", "id 'x': not an integer row id (a str)"),
        ]
    )
    assert answers(good)


def test_postgres_down_fails_the_reload_in_bounded_time_and_sockets_keep_serving(
    daemon_factory: DaemonFactory,
    postgres_server: PostgresServer,
    postgres_db: str,
) -> None:
    url = postgres_server.url(postgres_db)
    table = SocketTable(url)
    table.init()
    port = free_port()
    table.insert(f"udp:127.0.0.1:{port}")
    daemon = daemon_factory(url, "[sockets_mgm]\ndb_timeout = 2.0\n")
    assert answers(port)

    postgres_server.stop()
    started = time.monotonic()
    with pytest.raises(MIError) as failure:
        daemon.reload()
    assert time.monotonic() - started < 10
    assert failure.value.code == 500
    assert "PostgreSQL" in failure.value.message or "database" in failure.value.message
    assert answers(port)
    assert daemon.mi("sockets_list") == [{"socket": f"udp:127.0.0.1:{port}"}]

    postgres_server.start()
    other = free_port()
    table.insert(f"udp:127.0.0.1:{other}")
    assert daemon.reload()["added"] == [f"udp:127.0.0.1:{other}"]
    assert answers(port)
    assert answers(other)
    assert "Unhandled Error" not in daemon.log()


def test_a_renamed_table_fails_the_reload_and_sockets_keep_serving(
    daemon: Daemon, table: SocketTable
) -> None:
    port = free_port()
    table.insert(f"udp:127.0.0.1:{port}")
    daemon.reload()
    table.execute("ALTER TABLE sockets RENAME TO sockets_away")
    with pytest.raises(MIError) as failure:
        daemon.reload()
    assert failure.value.code == 500
    assert "sockets" in failure.value.message
    assert answers(port)
    table.execute("ALTER TABLE sockets_away RENAME TO sockets")
    assert daemon.reload()["kept"] == [f"udp:127.0.0.1:{port}"]


def test_daemon_starts_on_static_sockets_when_the_table_is_missing_and_loads_later(
    daemon_factory: DaemonFactory, sqlite_url: str, tmp_path: Path
) -> None:
    static = free_port()
    table = SocketTable(sqlite_url)
    table.init()
    table.execute("ALTER TABLE sockets RENAME TO sockets_away")
    daemon = daemon_factory(sqlite_url, f'[core]\nlisten = ["udp:127.0.0.1:{static}"]\n')
    assert answers(static)
    assert "loading the dynamic sockets failed" in daemon.log()
    assert "static sockets serve" in daemon.log()
    table.execute("ALTER TABLE sockets_away RENAME TO sockets")
    port = free_port()
    table.insert(f"udp:127.0.0.1:{port}")
    assert daemon.reload()["added"] == [f"udp:127.0.0.1:{port}"]


def test_static_sockets_serve_and_are_not_listed(
    daemon_factory: DaemonFactory, sqlite_url: str
) -> None:
    udp, tcp = free_port(), free_port()
    SocketTable(sqlite_url).init()
    daemon = daemon_factory(
        sqlite_url,
        f'[core]\nlisten = ["udp:127.0.0.1:{udp}", {{ socket = "tcp:127.0.0.1:{tcp}" }}]\n',
    )
    assert answers(udp)
    with socket.create_connection(("127.0.0.1", tcp), timeout=2):
        pass
    assert daemon.mi("sockets_list") == []
    assert daemon.reload()["removed"] == []
    assert answers(udp)


def run_twistd(workdir: Path, config: str) -> subprocess.CompletedProcess[str]:
    path = workdir / "sipsock.toml"
    path.write_text(config)
    return subprocess.run(
        [
            TWISTD,
            "-n",
            "--pidfile=",
            "--logfile",
            str(workdir / "twistd.log"),
            "sipsock",
            "-c",
            str(path),
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_a_static_socket_that_cannot_bind_stops_start_up_with_one_line(tmp_path: Path) -> None:
    port = free_port()
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", port))
    try:
        result = run_twistd(
            tmp_path,
            f'[core]\nstate_dir = "{tmp_path}/var"\nlisten = ["udp:127.0.0.1:{port}"]\n'
            f"[mi]\nhttp_port = {free_port(udp=False)}\n",
        )
    finally:
        holder.close()
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"sipsock: {tmp_path}/sipsock.toml: [core] listen: cannot open static socket "
        f"udp:127.0.0.1:{port}: port already in use"
    ]
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("[sockets_mgm]\nmax_sockets = 0\n", "[sockets_mgm] max_sockets: 0 is out of range"),
        ("[sockets_mgm]\nbogus = 1\n", "[sockets_mgm] bogus: unknown key"),
        ('[core]\nlisten = ["bin:1.2.3.4"]\n', "[core] listen[0]: socket 'bin:1.2.3.4'"),
        ("[sockets_mgm\n", "not valid TOML"),
        (
            '[sockets_mgm]\nauto_scaling_profile = "p"\n',
            "[sockets_mgm] auto_scaling_profile: no profile 'p'",
        ),
        (
            "[auto_scaling.p]\nscale_up_load = 20\nscale_down_load = 30\n",
            "[auto_scaling.p] scale_down_load: 30% must be below scale_up_load (20%)",
        ),
    ],
)
def test_a_bad_config_stops_start_up_with_one_line_naming_the_key(
    tmp_path: Path, config: str, message: str
) -> None:
    result = run_twistd(tmp_path, config)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"sipsock: {tmp_path}/sipsock.toml: ")
    assert message in lines[0]
    assert "Traceback" not in result.stdout + result.stderr


def test_first_start_creates_the_embedded_database_and_stops_cleanly(tmp_path: Path) -> None:
    daemon = Daemon(tmp_path)
    assert not (tmp_path / "var" / "sipsock.sqlite").exists()
    daemon.start()
    try:
        assert (tmp_path / "var" / "sipsock.sqlite").exists()
        assert daemon.mi("sockets_list") == []
        assert daemon.mi("sockets_reload") == "OK"
    finally:
        assert daemon.stop(timeout=5) == 0
    assert "Traceback" not in daemon.log()
