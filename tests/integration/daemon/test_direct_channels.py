"""UDP and stream workers relay to each other directly, and the path heals when one dies.

The real daemon runs the stateless proxy with a UDP socket ``a`` and a TCP
socket ``b`` (two stream workers, one UDP worker); SIPp calls through it
(INVITE, 200, ACK, BYE, 200) to a SIPp callee over TCP.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.integration.daemon.conftest import DaemonFactory
from tests.integration.daemon.test_proxy import (
    TIMEOUT,
    Proxy,
    assert_all_calls,
    start_callee,
    start_proxy,
)
from tests.net import free_port
from tests.polling import poll_until
from tests.proxy_scenarios import write_scenario
from tests.sipp import SippResult, SippRun, start_sipp


def proxy_udp_to_tcp(
    daemon_factory: DaemonFactory, sqlite_url: str, tmp_path: Path
) -> tuple[Proxy, int, int]:
    port_a, port_b, uas_port = free_port(), free_port(), free_port()
    proxy = start_proxy(
        daemon_factory,
        sqlite_url,
        tmp_path,
        routes=[
            {
                "in_tag": "a",
                "destination": f"sip:127.0.0.1:{uas_port};transport=tcp",
                "out_tag": "b",
            }
        ],
        rows=[
            {"socket": f"udp:127.0.0.1:{port_a}", "tag": "a"},
            {"socket": f"tcp:127.0.0.1:{port_b}", "tag": "b"},
        ],
        extra="[sockets_mgm]\nprocesses = 1\n",  # and the default two stream workers
    )
    return proxy, port_a, uas_port


def call(proxy: Proxy, port_a: int, calls: int, rate: float = 50) -> SippResult:
    """``calls`` calls from a SIPp caller to socket ``a``; its result."""
    caller = start_sipp(
        f"127.0.0.1:{port_a}",
        scenario=str(write_scenario("proxy_uac.xml", proxy.workdir, pause_ms=100)),
        transport="u1",
        calls=calls,
        rate=rate,
        workdir=proxy.workdir,
        timeout=TIMEOUT,
        extra=("-trace_err",),
    )
    return caller.wait()


def callee(proxy: Proxy, uas_port: int, calls: int) -> SippRun:
    return start_callee(
        proxy.workdir, write_scenario("proxy_uas.xml", proxy.workdir), uas_port, "tcp", calls
    )


def test_udp_to_tcp_calls_complete_while_the_control_process_is_stopped(
    daemon_factory: DaemonFactory, sqlite_url: str, tmp_path: Path
) -> None:
    """Once the connection to the callee is open, no message crosses the control process."""
    proxy, port_a, uas_port = proxy_udp_to_tcp(daemon_factory, sqlite_url, tmp_path)
    uas = callee(proxy, uas_port, calls=5 + 40)
    warm = call(proxy, port_a, 5)  # opens the connection (through the control process)
    assert (warm.successful, warm.failed) == (5, 0), proxy.daemon.log()[-3000:]
    control = proxy.daemon.pid
    os.kill(control, signal.SIGSTOP)
    try:
        stopped = call(proxy, port_a, 40)
    finally:
        os.kill(control, signal.SIGCONT)
    answered = uas.wait()
    detail = f"{stopped.output}\n{answered.output}\n{proxy.daemon.log()[-3000:]}"
    assert (stopped.successful, stopped.failed, stopped.returncode) == (40, 0, 0), detail
    assert (answered.successful, answered.failed, answered.returncode) == (45, 0, 0), detail


def stream_pids(proxy: Proxy) -> list[int]:
    rows = proxy.daemon.mi("ps")["Processes"]
    return sorted(
        int(row["PID"])
        for row in rows
        if row.get("Pool") == "stream" and row.get("State") == "ready"
    )


def test_calls_go_through_again_once_killed_stream_workers_are_replaced(
    daemon_factory: DaemonFactory, sqlite_url: str, tmp_path: Path
) -> None:
    proxy, port_a, uas_port = proxy_udp_to_tcp(daemon_factory, sqlite_url, tmp_path)
    first = callee(proxy, uas_port, calls=5)
    before = call(proxy, port_a, 5)
    assert (before.successful, before.failed) == (5, 0), proxy.daemon.log()[-3000:]
    first.wait()
    old = stream_pids(proxy)
    assert len(old) == 2
    for pid in old:
        os.kill(pid, signal.SIGKILL)
    poll_until(
        lambda: len(new := stream_pids(proxy)) == 2 and not set(new) & set(old),
        timeout=30,
        what="two new stream workers ready",
    )
    uas = callee(proxy, uas_port, calls=20)
    after = call(proxy, port_a, 20)
    assert_all_calls((after, uas.wait()), 20, proxy)


def test_calls_go_through_again_once_a_killed_udp_worker_is_replaced(
    daemon_factory: DaemonFactory, sqlite_url: str, tmp_path: Path
) -> None:
    """The stream workers' channels to the dead UDP worker close; its replacement gets new ones."""
    proxy, port_a, uas_port = proxy_udp_to_tcp(daemon_factory, sqlite_url, tmp_path)
    uas = callee(proxy, uas_port, calls=5 + 20)
    before = call(proxy, port_a, 5)
    assert (before.successful, before.failed) == (5, 0), proxy.daemon.log()[-3000:]

    def udp_pids() -> list[int]:
        rows = proxy.daemon.mi("ps")["Processes"]
        ready = [r for r in rows if r.get("Pool") == "dynamic" and r.get("State") == "ready"]
        return [int(row["PID"]) for row in ready]

    [old] = udp_pids()
    os.kill(old, signal.SIGKILL)
    poll_until(lambda: udp_pids() not in ([], [old]), timeout=30, what="a new UDP worker ready")
    after = call(proxy, port_a, 20)
    answered = uas.wait()
    detail = f"{after.output}\n{answered.output}\n{proxy.daemon.log()[-3000:]}"
    assert (after.successful, after.failed, after.returncode) == (20, 0, 0), detail
    assert (answered.successful, answered.failed, answered.returncode) == (25, 0, 0), detail
