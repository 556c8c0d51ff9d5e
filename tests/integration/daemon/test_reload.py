"""sockets_reload against the real daemon: rows become sockets that answer SIP."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.daemon import Daemon
from tests.integration.daemon.conftest import DaemonFactory
from tests.net import free_port
from tests.sip_probe import TcpClient, options_udp, port_is_free, status_of
from tests.sipp import run_sipp, start_sipp
from tests.tables import SocketTable


def details(daemon: Daemon) -> dict[str, dict[str, Any]]:
    return {entry["socket"]: entry for entry in daemon.mi("sockets_list", {"details": True})}


def socket_inode(daemon: Daemon, fd: int) -> str:
    return os.readlink(f"/proc/{daemon.pid}/fd/{fd}")


def test_udp_and_tcp_rows_answer_sipp_and_close_when_deleted(
    daemon: Daemon, table: SocketTable, tmp_path: Path
) -> None:
    udp, tcp = free_port(), free_port()
    udp_row = table.insert(f"udp:127.0.0.1:{udp}")
    tcp_row = table.insert(f"tcp:127.0.0.1:{tcp}")
    report = daemon.reload()
    assert report["added"] == [f"udp:127.0.0.1:{udp}", f"tcp:127.0.0.1:{tcp}"]
    assert daemon.mi("sockets_list") == [
        {"socket": f"udp:127.0.0.1:{udp}"},
        {"socket": f"tcp:127.0.0.1:{tcp}"},
    ]

    over_udp = run_sipp(f"127.0.0.1:{udp}", calls=50, rate=100, workdir=tmp_path)
    assert over_udp.ok, over_udp.output
    assert over_udp.successful == 50
    over_tcp = run_sipp(f"127.0.0.1:{tcp}", transport="t1", calls=50, rate=100, workdir=tmp_path)
    assert over_tcp.ok, over_tcp.output
    assert over_tcp.successful == 50

    table.delete(udp_row)
    table.delete(tcp_row)
    report = daemon.reload()
    assert sorted(report["removed"]) == sorted([f"udp:127.0.0.1:{udp}", f"tcp:127.0.0.1:{tcp}"])
    assert daemon.mi("sockets_list") == []
    assert port_is_free(udp, udp=True)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", tcp), timeout=2).close()


def test_reload_answers_ok_and_the_aliases_work(daemon: Daemon, table: SocketTable) -> None:
    port = free_port()
    table.insert(f"udp:127.0.0.1:{port}", tag="edge")
    assert daemon.mi("sockets_reload") == "OK"
    assert daemon.mi("sockets_mgm:list") == [{"socket": f"udp:127.0.0.1:{port}", "tag": "edge"}]
    assert daemon.mi("sockets_mgm:reload") == "OK"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_in_place_update_keeps_descriptor_and_slot_and_loses_nothing(
    daemon: Daemon, table: SocketTable, tmp_path: Path
) -> None:
    port = free_port()
    row = table.insert(f"udp:127.0.0.1:{port}", tag="a")
    daemon.reload()
    before = details(daemon)[f"udp:127.0.0.1:{port}"]
    inode = socket_inode(daemon, before["fd"])

    sipp = start_sipp(f"127.0.0.1:{port}", calls=1500, rate=300, workdir=tmp_path)
    changes: list[dict[str, Any]] = [
        {"tag": "b"},
        {"advertised": "203.0.113.7:5099"},
        {"tos": "IPTOS_LOWDELAY"},
        {"flags": "frag"},
        {"tag": "a", "advertised": None, "tos": None, "flags": None},
    ]
    reloads = 0
    while sipp.running() or reloads < len(changes):
        table.update(row, **changes[reloads % len(changes)])
        report = daemon.reload()
        assert report["updated"] == [f"udp:127.0.0.1:{port}"], report
        reloads += 1
    result = sipp.wait()
    assert result.ok, result.output
    assert result.successful == 1500
    assert reloads >= len(changes)

    table.update(row, tag="z", advertised="sip.example.com", tos="184", flags="frag")
    daemon.reload()
    after = details(daemon)[f"udp:127.0.0.1:{port}"]
    assert (after["slot"], after["fd"]) == (before["slot"], before["fd"])
    assert socket_inode(daemon, after["fd"]) == inode
    assert daemon.mi("sockets_list") == [
        {
            "socket": f"udp:127.0.0.1:{port}",
            "advertised": "sip.example.com:" + str(port),
            "tag": "z",
            "flags": "frag",
            "tos": 184,
        }
    ]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_endpoint_change_replaces_the_socket(daemon: Daemon, table: SocketTable) -> None:
    old_port, new_port = free_port(), free_port()
    row = table.insert(f"udp:127.0.0.1:{old_port}")
    daemon.reload()
    first = details(daemon)[f"udp:127.0.0.1:{old_port}"]
    first_inode = socket_inode(daemon, first["fd"])

    table.update(row, socket=f"udp:127.0.0.1:{new_port}")
    report = daemon.reload()
    assert report["removed"] == [f"udp:127.0.0.1:{old_port}"]
    assert report["added"] == [f"udp:127.0.0.1:{new_port}"]
    assert port_is_free(old_port, udp=True)
    answer = options_udp(new_port)
    assert answer is not None
    assert status_of(answer) == 200

    table.update(row, flags="reuse_port")
    report = daemon.reload()
    assert report["added"] == [f"udp:127.0.0.1:{new_port}"]
    replaced = details(daemon)[f"udp:127.0.0.1:{new_port}"]
    assert socket_inode(daemon, replaced["fd"]) != first_inode
    assert replaced["flags"] == "reuse_port"


@pytest.mark.parametrize("backend", ["sqlite"])
def test_unchanged_rows_keep_slot_and_tcp_connection_across_ten_reloads(
    daemon: Daemon, table: SocketTable
) -> None:
    tcp = free_port()
    table.insert(f"tcp:127.0.0.1:{tcp}")
    daemon.reload()
    slot = details(daemon)[f"tcp:127.0.0.1:{tcp}"]["slot"]
    client = TcpClient(tcp)
    try:
        assert client.options() == 200
        for _ in range(10):
            other = table.insert(f"udp:127.0.0.1:{free_port()}")
            assert daemon.reload()["kept"] == [f"tcp:127.0.0.1:{tcp}"]
            assert client.options() == 200
            table.delete(other)
            daemon.reload()
            assert client.options() == 200
    finally:
        client.close()
    assert details(daemon)[f"tcp:127.0.0.1:{tcp}"]["slot"] == slot


@pytest.mark.parametrize("backend", ["sqlite"])
def test_advertised_host_name_is_written_as_given(daemon: Daemon, table: SocketTable) -> None:
    port = free_port()
    table.insert(f"udp:127.0.0.1:{port}", advertised="Edge.Example.COM:5099")
    daemon.reload()
    answer = options_udp(port)
    assert answer is not None
    assert status_of(answer) == 200
    assert b"Edge.Example.COM:5099" in answer


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_port_in_use_is_reported_failed_and_listed_with_error(
    daemon: Daemon, table: SocketTable
) -> None:
    busy, good = free_port(), free_port()
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind(("127.0.0.1", busy))
    try:
        table.insert(f"udp:127.0.0.1:{busy}")
        table.insert(f"udp:127.0.0.1:{good}")
        report = daemon.reload()
        assert report["failed"] == [
            {"socket": f"udp:127.0.0.1:{busy}", "reason": "port already in use"}
        ]
        assert report["added"] == [f"udp:127.0.0.1:{good}"]
        listed = daemon.mi("sockets_list")
        assert listed[1] == {"socket": f"udp:127.0.0.1:{good}"}
        assert listed[0]["socket"] == f"udp:127.0.0.1:{busy}"
        # Retried by itself meanwhile: the error counts the attempts.
        assert re.fullmatch(
            r"port already in use \(\d+ attempt\(s\); next retry in \d+ s\)", listed[0]["error"]
        ), listed
        answer = options_udp(good)
        assert answer is not None
        assert status_of(answer) == 200
        assert "port already in use" in daemon.log()
    finally:
        holder.close()
    # The next reload opens it, unless a retry did already.
    report = daemon.reload()
    assert f"udp:127.0.0.1:{busy}" in report["added"] + report["kept"], report
    assert daemon.mi("sockets_list")[0] == {"socket": f"udp:127.0.0.1:{busy}"}


def test_max_sockets_takes_rows_in_table_order_and_reuses_slots_fifo(
    daemon_factory: DaemonFactory, sqlite_url: str
) -> None:
    table = SocketTable(sqlite_url)
    table.init()
    ports = [free_port() for _ in range(5)]
    rows = [table.insert(f"udp:127.0.0.1:{port}") for port in ports]
    daemon = daemon_factory(sqlite_url, "[sockets_mgm]\nmax_sockets = 3\n")
    listed = details(daemon)
    assert [listed[f"udp:127.0.0.1:{p}"]["slot"] for p in ports[:3]] == [0, 1, 2]
    report = daemon.reload()
    assert [r["id"] for r in report["rejected"]] == rows[3:]
    for rejection, port in zip(report["rejected"], ports[3:], strict=True):
        assert rejection["reason"] == (
            f"row {rejection['id']}: socket 'udp:127.0.0.1:{port}': no free slot (max_sockets=3)"
        )
        assert options_udp(port, timeout=0.3) is None

    # A slot freed by a removal in the same reload is usable at once.
    table.delete(rows[0])
    report = daemon.reload()
    assert report["removed"] == [f"udp:127.0.0.1:{ports[0]}"]
    assert report["added"] == [f"udp:127.0.0.1:{ports[3]}"]
    assert details(daemon)[f"udp:127.0.0.1:{ports[3]}"]["slot"] == 0
    answer = options_udp(ports[3])
    assert answer is not None

    # Slots come back in the order they were freed.
    table.delete(rows[2])
    table.delete(rows[1])
    table.delete(rows[3])
    report = daemon.reload()
    assert report["added"] == [f"udp:127.0.0.1:{ports[4]}"]
    # Freed in table order: slot 1 (row 2), slot 2 (row 3), slot 0 (row 4).
    assert details(daemon)[f"udp:127.0.0.1:{ports[4]}"]["slot"] == 1


@pytest.mark.parametrize("backend", ["sqlite"])
def test_removed_udp_port_is_closed_while_tcp_sockets_exist_and_can_come_back(
    daemon: Daemon, table: SocketTable
) -> None:
    udp, tcp = free_port(), free_port()
    udp_row = table.insert(f"udp:127.0.0.1:{udp}")
    table.insert(f"tcp:127.0.0.1:{tcp}")
    daemon.reload()
    table.delete(udp_row)
    daemon.reload()
    assert port_is_free(udp, udp=True)
    table.insert(f"udp:127.0.0.1:{udp}")
    assert daemon.reload()["added"] == [f"udp:127.0.0.1:{udp}"]
    answer = options_udp(udp)
    assert answer is not None
    assert status_of(answer) == 200


def test_sigterm_closes_every_socket_and_exits_zero(daemon: Daemon, table: SocketTable) -> None:
    udp, tcp = free_port(), free_port()
    table.insert(f"udp:127.0.0.1:{udp}")
    table.insert(f"tcp:127.0.0.1:{tcp}")
    daemon.reload()
    client = TcpClient(tcp)
    assert client.options() == 200
    assert daemon.stop(timeout=5) == 0
    assert client.sock.recv(100) == b""
    client.close()
    assert port_is_free(udp, udp=True)
    assert port_is_free(tcp, udp=False)
    assert port_is_free(daemon.http_port, udp=False)


def descriptor_table_size(pid: int) -> int:
    """The kernel's size of a process's descriptor table (``FDSize``; it never shrinks)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("FDSize:"):
                return int(line.split()[1])
    raise AssertionError(f"no FDSize in /proc/{pid}/status")


def test_a_first_load_of_many_sockets_does_not_grow_the_descriptor_table(
    daemon_factory: DaemonFactory, sqlite_url: str
) -> None:
    """The control process has threads: each growth in a reload waited for the kernel."""
    table = SocketTable(sqlite_url)
    table.init()
    daemon = daemon_factory(sqlite_url, "[sockets_mgm]\nmax_sockets = 400\n")
    size = descriptor_table_size(daemon.pid)
    assert size > 400
    ports = list(dict.fromkeys(free_port() for _ in range(300)))
    for port in ports:
        table.insert(f"udp:127.0.0.1:{port}")
    report = daemon.reload()
    # (The machine is shared: a port picked free may be taken meanwhile.)
    assert len(report["added"]) > 250, report
    assert options_udp(int(report["added"][-1].rsplit(":", 1)[1])) is not None
    assert descriptor_table_size(daemon.pid) == size
