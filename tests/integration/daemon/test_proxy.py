"""The built-in stateless proxy in the real daemon, with SIPp on both sides.

Every test runs ``twistd -n sipsock`` with ``[core] application`` set to the
proxy, its sockets as rows of the table (dynamic sockets; UDP ones served by
the UDP worker pool), a SIPp caller (``proxy_uac.xml``) and a SIPp callee
(``proxy_uas.xml``) whose ``ereg`` checks fail a call when the proxy's Via or
Record-Route is not what the test expects.
"""

from __future__ import annotations

import re
import socket
import ssl
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sipsock.sip import Request
from tests.daemon import Daemon
from tests.integration.daemon.conftest import DaemonFactory
from tests.net import free_port
from tests.proxy_scenarios import Check, literal, write_scenario
from tests.sip_uas import CallRecorder, TlsCallee, WsCallee, top_via_problems
from tests.sipp import SippResult, SippRun, start_sipp
from tests.tables import SocketTable
from tests.tlsfiles import TestPKI, domain_toml

#: A Via branch of the proxy (see sipsock.apps.proxyrules.proxy_branch).
BRANCH = r"branch=z9hG4bK[0-9a-f]{24}\.[0-9a-f]{10}"
ADVERTISED_B = "198.51.100.7:5999"
ADVERTISED_A = "192.0.2.10:5070"
CALLS = 1000
RATE = 100
TIMEOUT = 120


@dataclass
class Proxy:
    """A daemon running the proxy, and the table its sockets come from."""

    daemon: Daemon
    table: SocketTable
    workdir: Path
    row_ids: list[int]


def start_proxy(
    daemon_factory: DaemonFactory,
    sqlite_url: str,
    tmp_path: Path,
    routes: list[dict[str, str]],
    rows: list[dict[str, str]],
    extra: str = "",
) -> Proxy:
    """Create the table with ``rows``, start the daemon with ``routes``."""
    table = SocketTable(sqlite_url)
    (tmp_path / "var").mkdir(exist_ok=True)
    table.init()
    row_ids = [table.insert(**row) for row in rows]
    text = '[core]\napplication = "sipsock.apps:StatelessProxy"\n\n[proxy]\n'
    for route in routes:
        text += "[[proxy.route]]\n" + "".join(f'{k} = "{v}"\n' for k, v in route.items())
    daemon = daemon_factory(sqlite_url, extra + text)
    assert all(entry.get("error") is None for entry in daemon.mi("sockets_list")), daemon.log()
    return Proxy(daemon, table, tmp_path, row_ids)


def proxy_via(transport: str, address: str, *, stream_in: bool = False) -> Check:
    """The callee's topmost Via is the proxy's, with ``address`` as sent-by.

    ``stream_in``: the request came on a stream, whose peer port the marker carries.
    """
    port = r"\.[0-9]+" if stream_in else ""
    return Check(
        f"^ *SIP/2\\.0/{transport} {literal(address)};{BRANCH};sipsock-in=s[0-9]+{port}$",
        header="Via:",
        occurrence=1,
    )


def rr_entry(address: str, transport: str = "udp") -> str:
    params = "" if transport == "udp" else f";transport={transport}"
    return literal(f"<sip:{address}{params};lr;sipsock=s") + "[0-9]+>"


def record_route_checks(entries: list[str]) -> tuple[list[Check], list[Check]]:
    """Checks of the Record-Route the callee gets (one header each) and the caller gets.

    SIPp copies them into the 200 either way: one line per header or one
    comma-separated line.
    """
    callee = [
        Check(f"^ *{entry}$", header="Record-Route:", occurrence=index)
        for index, entry in enumerate(entries, start=1)
    ]
    callee.append(Check(".", header="Record-Route:", occurrence=len(entries) + 1, absent=True))
    caller = [Check("Record-Route: *" + "(, *|[^<]*Record-Route: *)".join(entries))]
    return callee, caller


NO_ROUTE = Check("sip", header="Route:", absent=True)


def run_calls(
    proxy: Proxy,
    *,
    target_port: int,
    uas_port: int,
    uas_transport: str,
    via: Check,
    record_route: list[str],
    calls: int = CALLS,
    rate: float = RATE,
    caller_transport: str = "u1",
) -> tuple[SippResult, SippResult]:
    """Start the callee, place ``calls`` calls through the proxy; both results."""
    callee_rr, caller_rr = record_route_checks(record_route)
    in_dialog = [via, NO_ROUTE, Check("^ *69$", header="Max-Forwards:")]
    uas_file = write_scenario(
        "proxy_uas.xml",
        proxy.workdir,
        invite=[via, *callee_rr, Check("^ *69$", header="Max-Forwards:")],
        ack=in_dialog,
        bye=in_dialog,
    )
    uac_file = write_scenario("proxy_uac.xml", proxy.workdir, ok=caller_rr)
    uas = start_callee(proxy.workdir, uas_file, uas_port, uas_transport, calls)
    uac = start_sipp(
        f"127.0.0.1:{target_port}",
        scenario=str(uac_file),
        transport=caller_transport,
        calls=calls,
        rate=rate,
        workdir=proxy.workdir,
        timeout=TIMEOUT,
        # One connection per call (tn): SIPp wants its socket cap under the file limit.
        extra=("-trace_err", *(("-max_socket", "2000") if caller_transport == "tn" else ())),
    )
    return uac.wait(), uas.wait()


def start_callee(workdir: Path, scenario: Path, port: int, transport: str, calls: int) -> SippRun:
    run = start_sipp(
        "127.0.0.1:9",  # not used: a callee answers where requests come from
        scenario=str(scenario),
        transport="t1" if transport == "tcp" else "u1",
        calls=calls,
        workdir=workdir,
        local_port=port,
        timeout=TIMEOUT,
        extra=("-trace_err",),
    )
    wait_listening(port, transport, run)
    return run


def wait_listening(port: int, transport: str, run: SippRun, timeout: float = 10) -> None:
    """Wait until SIPp holds its port (bounded)."""
    deadline = time.monotonic() + timeout
    kind = socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM
    while time.monotonic() < deadline:
        if not run.running():
            raise AssertionError(f"SIPp callee exited: {run.wait().output}")
        with socket.socket(socket.AF_INET, kind) as probe:
            if transport == "tcp":
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return
        time.sleep(0.05)
    raise AssertionError(f"SIPp callee not listening on {transport} port {port}")


def errors(workdir: Path) -> str:
    """What SIPp logged with -trace_err (the failed checks)."""
    return "\n".join(p.read_text(errors="replace")[:3000] for p in workdir.glob("*_errors.log"))


def assert_all_calls(results: tuple[SippResult, SippResult], calls: int, proxy: Proxy) -> None:
    uac, uas = results
    detail = f"{errors(proxy.workdir)}\n{uac.output}\n{uas.output}\n{proxy.daemon.log()[-3000:]}"
    assert (uac.successful, uac.failed) == (calls, 0), detail
    assert (uas.successful, uas.failed) == (calls, 0), detail
    assert uac.returncode == 0 and uas.returncode == 0, detail


# --- probes --------------------------------------------------------------------------


def invite(port: int, local_port: int, *, max_forwards: int = 70, method: str = "INVITE") -> bytes:
    call = uuid.uuid4().hex
    return (
        f"{method} sip:svc@127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{local_port};branch=z9hG4bK{call};rport\r\n"
        f"From: <sip:probe@127.0.0.1>;tag={call[:8]}\r\n"
        f"To: <sip:svc@127.0.0.1:{port}>\r\n"
        f"Call-ID: {call}@probe\r\n"
        f"CSeq: 1 {method}\r\n"
        f"Max-Forwards: {max_forwards}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def send_invite(port: int, *, max_forwards: int = 70, timeout: float = 5.0) -> tuple[int, str]:
    """One INVITE over UDP; the status code and reason phrase of the answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(timeout)
        local = sock.getsockname()[1]
        sock.sendto(invite(port, local, max_forwards=max_forwards), ("127.0.0.1", port))
        data, _ = sock.recvfrom(65535)
    status = data.split(b"\r\n", 1)[0].decode()
    _, code, reason = status.split(" ", 2)
    return int(code), reason


# --- calls -----------------------------------------------------------------------------


def test_udp_to_tcp_calls_carry_the_advertised_via_and_a_double_record_route(
    daemon_factory: DaemonFactory, sqlite_url: str, tmp_path: Path
) -> None:
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
            {"socket": f"tcp:127.0.0.1:{port_b}", "tag": "b", "advertised": ADVERTISED_B},
        ],
    )
    results = run_calls(
        proxy,
        target_port=port_a,
        uas_port=uas_port,
        uas_transport="tcp",
        via=proxy_via("TCP", ADVERTISED_B),
        record_route=[rr_entry(ADVERTISED_B, "tcp"), rr_entry(f"127.0.0.1:{port_a}")],
    )
    assert_all_calls(results, CALLS, proxy)


def test_udp_to_udp_calls_to_a_host_name_through_two_sockets_and_three_workers(
    daemon_factory: DaemonFactory, sqlite_url: str, tmp_path: Path
) -> None:
    port_a, port_b, uas_port = free_port(), free_port(), free_port()
    proxy = start_proxy(
        daemon_factory,
        sqlite_url,
        tmp_path,
        # A host name: resolved (A/AAAA) in the workers, the IPv4 address
        # taken for the IPv4 socket b.
        routes=[{"in_tag": "a", "destination": f"sip:localhost:{uas_port}", "out_tag": "b"}],
        rows=[
            {"socket": f"udp:127.0.0.1:{port_a}", "tag": "a", "advertised": ADVERTISED_A},
            {"socket": f"udp:127.0.0.1:{port_b}", "tag": "b"},
        ],
        # Requests and responses land on whichever worker reads first.
        extra="[sockets_mgm]\nprocesses = 3\n",
    )
    results = run_calls(
        proxy,
        target_port=port_a,
        uas_port=uas_port,
        uas_transport="udp",
        via=proxy_via("UDP", f"127.0.0.1:{port_b}"),
        record_route=[rr_entry(f"127.0.0.1:{port_b}"), rr_entry(ADVERTISED_A)],
    )
    assert_all_calls(results, CALLS, proxy)
    processes = proxy.daemon.mi("ps")["Processes"]
    workers = [row for row in processes if row.get("Pool") == "dynamic"]
    assert len(workers) == 3, processes


def test_removing_the_out_socket_gives_503_naming_its_tag_and_spares_other_routes(
    daemon_factory: DaemonFactory, sqlite_url: str, tmp_path: Path
) -> None:
    port_a, port_b, port_c, port_d = (free_port() for _ in range(4))
    uas_b, uas_d = free_port(), free_port()
    proxy = start_proxy(
        daemon_factory,
        sqlite_url,
        tmp_path,
        routes=[
            {"in_tag": "a", "destination": f"sip:127.0.0.1:{uas_b};transport=tcp", "out_tag": "b"},
            {"in_tag": "c", "destination": f"sip:127.0.0.1:{uas_d}", "out_tag": "d"},
        ],
        rows=[
            {"socket": f"udp:127.0.0.1:{port_a}", "tag": "a"},
            {"socket": f"tcp:127.0.0.1:{port_b}", "tag": "b"},
            {"socket": f"udp:127.0.0.1:{port_c}", "tag": "c"},
            {"socket": f"udp:127.0.0.1:{port_d}", "tag": "d"},
        ],
    )
    b_row = proxy.row_ids[1]
    # Calls on the other route (c -> d) run during the whole test.
    other_calls = 300
    callee_rr, caller_rr = record_route_checks(
        [rr_entry(f"127.0.0.1:{port_d}"), rr_entry(f"127.0.0.1:{port_c}")]
    )
    uas_file = write_scenario("proxy_uas.xml", proxy.workdir, invite=callee_rr)
    uac_file = write_scenario("proxy_uac.xml", proxy.workdir, ok=caller_rr)
    other_uas = start_callee(proxy.workdir, uas_file, uas_d, "udp", other_calls)
    other_uac = start_sipp(
        f"127.0.0.1:{port_c}",
        scenario=str(uac_file),
        transport="u1",
        calls=other_calls,
        rate=30,
        workdir=proxy.workdir,
        timeout=TIMEOUT,
        extra=("-trace_err",),
    )
    proxy.table.delete(b_row)
    report = proxy.daemon.reload()
    assert report["removed"] == [f"tcp:127.0.0.1:{port_b}"]
    code, reason = send_invite(port_a)
    assert code == 503
    assert "socket tag b is not open" in reason
    assert other_uac.running(), "the other route's calls ended before the check"
    # The row back, a reload: the route forwards again.
    proxy.table.insert(f"tcp:127.0.0.1:{port_b}", tag="b")
    assert proxy.daemon.reload()["added"] == [f"tcp:127.0.0.1:{port_b}"]
    results = run_calls(
        proxy,
        target_port=port_a,
        uas_port=uas_b,
        uas_transport="tcp",
        via=proxy_via("TCP", f"127.0.0.1:{port_b}"),
        record_route=[rr_entry(f"127.0.0.1:{port_b}", "tcp"), rr_entry(f"127.0.0.1:{port_a}")],
        calls=50,
        rate=25,
    )
    assert_all_calls(results, 50, proxy)
    assert_all_calls((other_uac.wait(), other_uas.wait()), other_calls, proxy)
    assert proxy.daemon.proc is not None and proxy.daemon.proc.poll() is None


# --- TLS and WebSocket callees (Python peers: SIPp speaks neither) ---------------------------


def python_callee_checks(
    transport: str, address: str, record_route: list[str]
) -> Callable[[Request], list[str]]:
    """What a Python callee checks on each request (Python regexes)."""
    via = rf"SIP/2\.0/{transport} {re.escape(address)};{BRANCH};sipsock-in=s\d+"
    # The POSIX patterns of rr_entry are Python patterns too.
    expected_rr = [re.compile(entry) for entry in record_route]

    def check(request: Request) -> list[str]:
        problems = top_via_problems(request, via)
        if request.get("max-forwards") != "69":
            problems.append(f"Max-Forwards {request.get('max-forwards')}")
        if request.get_all("route"):
            problems.append(f"Route left: {request.get_all('route')}")
        if request.method == "INVITE":
            got = request.get_all("record-route")
            if len(got) != len(expected_rr) or not all(
                pattern.fullmatch(value) for pattern, value in zip(expected_rr, got, strict=False)
            ):
                problems.append(f"Record-Route {got}")
        return problems

    return check


def run_calls_to_python_callee(
    proxy: Proxy, recorder: CallRecorder, *, target_port: int, record_route: list[str]
) -> SippResult:
    _, caller_rr = record_route_checks(record_route)
    uac_file = write_scenario("proxy_uac.xml", proxy.workdir, ok=caller_rr)
    return start_sipp(
        f"127.0.0.1:{target_port}",
        scenario=str(uac_file),
        transport="u1",
        calls=CALLS,
        rate=RATE,
        workdir=proxy.workdir,
        timeout=TIMEOUT,
        extra=("-trace_err",),
    ).wait()


def assert_python_callee_calls(
    uac: SippResult, recorder: CallRecorder, errors_seen: list[str], proxy: Proxy
) -> None:
    detail = f"{errors(proxy.workdir)}\n{uac.output}\n{proxy.daemon.log()[-3000:]}"
    assert (uac.successful, uac.failed) == (CALLS, 0), detail
    assert recorder.problems[:5] == [], detail
    odd = [
        (call, seen)
        for call, seen in recorder.methods.items()
        if list(dict.fromkeys(seen)) != ["INVITE", "ACK", "BYE"]
    ]
    assert recorder.complete_calls() == CALLS, f"{odd[:5]}\n{detail}"
    assert errors_seen == [], detail


def test_udp_to_tls_calls_reach_a_python_tls_callee_by_name(
    daemon_factory: DaemonFactory, sqlite_url: str, tmp_path: Path
) -> None:
    pki = TestPKI(tmp_path / "pki")
    port_a, port_b, uas_port = free_port(), free_port(), free_port()
    record_route = [rr_entry(ADVERTISED_B, "tls"), rr_entry(f"127.0.0.1:{port_a}")]
    recorder = CallRecorder(
        f"sip:callee@localhost:{uas_port};transport=tls",
        python_callee_checks("TLS", ADVERTISED_B, record_route),
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    callee_files = pki.issue("callee", "localhost")
    context.load_cert_chain(str(callee_files.certificate), str(callee_files.private_key))
    callee = TlsCallee(recorder, uas_port, context)
    try:
        proxy = start_proxy(
            daemon_factory,
            sqlite_url,
            tmp_path,
            # By name: the proxy checks the callee's certificate against it.
            routes=[
                {
                    "in_tag": "a",
                    "destination": f"sip:localhost:{uas_port};transport=tls",
                    "out_tag": "b",
                }
            ],
            rows=[
                {"socket": f"udp:127.0.0.1:{port_a}", "tag": "a"},
                {"socket": f"tls:127.0.0.1:{port_b}", "tag": "b", "advertised": ADVERTISED_B},
            ],
            extra=domain_toml(
                "main", pki.issue("proxy", "localhost", "127.0.0.1"), ca_list=pki.ca_file
            ),
        )
        uac = run_calls_to_python_callee(
            proxy, recorder, target_port=port_a, record_route=record_route
        )
    finally:
        callee.stop()
    assert_python_callee_calls(uac, recorder, callee.errors, proxy)
    # One connection, opened for the name and reused for every call.
    assert callee.accepted == 1


def test_udp_to_ws_calls_reach_a_websockets_callee(
    daemon_factory: DaemonFactory, sqlite_url: str, tmp_path: Path
) -> None:
    port_a, port_b, uas_port = free_port(), free_port(), free_port()
    record_route = [rr_entry(ADVERTISED_B, "ws"), rr_entry(f"127.0.0.1:{port_a}")]
    recorder = CallRecorder(
        f"sip:callee@127.0.0.1:{uas_port};transport=ws",
        python_callee_checks("WS", ADVERTISED_B, record_route),
    )
    callee = WsCallee(recorder, uas_port)
    try:
        proxy = start_proxy(
            daemon_factory,
            sqlite_url,
            tmp_path,
            routes=[
                {
                    "in_tag": "a",
                    "destination": f"sip:127.0.0.1:{uas_port};transport=ws",
                    "out_tag": "b",
                }
            ],
            rows=[
                {"socket": f"udp:127.0.0.1:{port_a}", "tag": "a"},
                {"socket": f"ws:127.0.0.1:{port_b}", "tag": "b", "advertised": ADVERTISED_B},
            ],
        )
        uac = run_calls_to_python_callee(
            proxy, recorder, target_port=port_a, record_route=record_route
        )
    finally:
        callee.stop()
    assert_python_callee_calls(uac, recorder, [], proxy)
    # One connection, reused for every call, speaking the sip subprotocol.
    assert callee.subprotocols == ["sip"]


# --- what the proxy answers itself ----------------------------------------------------------


def test_max_forwards_zero_is_answered_483(
    daemon_factory: DaemonFactory, sqlite_url: str, tmp_path: Path
) -> None:
    port_a = free_port()
    start_proxy(
        daemon_factory,
        sqlite_url,
        tmp_path,
        routes=[{"in_tag": "a", "destination": f"sip:127.0.0.1:{free_port()}"}],
        rows=[{"socket": f"udp:127.0.0.1:{port_a}", "tag": "a"}],
    )
    assert send_invite(port_a, max_forwards=0) == (483, "Too Many Hops")


def test_a_route_to_itself_is_detected_as_a_loop(
    daemon_factory: DaemonFactory, sqlite_url: str, tmp_path: Path
) -> None:
    port_loop, port_a = free_port(), free_port()
    proxy = start_proxy(
        daemon_factory,
        sqlite_url,
        tmp_path,
        routes=[
            {"in_tag": "loop", "destination": f"sip:127.0.0.1:{port_loop}", "out_tag": "loop"},
            {"in_tag": "a", "destination": f"sip:127.0.0.1:{port_loop}", "out_tag": "loop"},
        ],
        rows=[
            {"socket": f"udp:127.0.0.1:{port_loop}", "tag": "loop"},
            {"socket": f"udp:127.0.0.1:{port_a}", "tag": "a"},
        ],
    )
    # Straight into the looping route, and through another socket into it.
    assert send_invite(port_loop) == (482, "Loop Detected")
    assert send_invite(port_a) == (482, "Loop Detected")
    assert "Unhandled" not in proxy.daemon.log()


@pytest.mark.parametrize("method", ["INVITE", "OPTIONS"])
def test_a_request_no_route_matches_is_answered_404(
    daemon_factory: DaemonFactory, sqlite_url: str, tmp_path: Path, method: str
) -> None:
    port_a = free_port()
    start_proxy(
        daemon_factory,
        sqlite_url,
        tmp_path,
        routes=[{"in_tag": "elsewhere", "destination": "request-uri"}],
        rows=[{"socket": f"udp:127.0.0.1:{port_a}", "tag": "a"}],
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        sock.sendto(invite(port_a, sock.getsockname()[1], method=method), ("127.0.0.1", port_a))
        data, _ = sock.recvfrom(65535)
    assert data.startswith(b"SIP/2.0 404 Not Found (no route)\r\n")


def test_a_refused_connection_is_answered_503(
    daemon_factory: DaemonFactory, sqlite_url: str, tmp_path: Path
) -> None:
    port_a, port_b, nobody = free_port(), free_port(), free_port()
    start_proxy(
        daemon_factory,
        sqlite_url,
        tmp_path,
        routes=[
            {"in_tag": "a", "destination": f"sip:127.0.0.1:{nobody};transport=tcp", "out_tag": "b"}
        ],
        rows=[
            {"socket": f"udp:127.0.0.1:{port_a}", "tag": "a"},
            {"socket": f"tcp:127.0.0.1:{port_b}", "tag": "b"},
        ],
    )
    code, reason = send_invite(port_a)
    assert code == 503
    assert f"cannot reach sip:127.0.0.1:{nobody};transport=tcp" in reason
    assert "refused" in reason


def stream_workers(proxy: Proxy) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = proxy.daemon.mi("ps")["Processes"]
    return [row for row in rows if row.get("Pool") == "stream"]


def test_tcp_to_tcp_calls_from_many_connections_cross_the_two_stream_workers(
    daemon_factory: DaemonFactory, sqlite_url: str, tmp_path: Path
) -> None:
    # tcp_workers = 2 (the default): the callers' connections are split between
    # the workers, the one connection to the callee lives in one of them, and
    # requests (and the responses back to the callers) cross between them.
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
            {"socket": f"tcp:127.0.0.1:{port_a}", "tag": "a"},
            {"socket": f"tcp:127.0.0.1:{port_b}", "tag": "b", "advertised": ADVERTISED_B},
        ],
    )
    calls = 300
    results = run_calls(
        proxy,
        target_port=port_a,
        uas_port=uas_port,
        uas_transport="tcp",
        via=proxy_via("TCP", ADVERTISED_B, stream_in=True),
        record_route=[rr_entry(ADVERTISED_B, "tcp"), rr_entry(f"127.0.0.1:{port_a}", "tcp")],
        calls=calls,
        rate=50,
        caller_transport="tn",
    )
    assert_all_calls(results, calls, proxy)
    [entry] = [
        e
        for e in proxy.daemon.mi("sockets_list", {"details": True})
        if e["socket"] == f"tcp:127.0.0.1:{port_a}"
    ]
    handled = [row["Handled"] for row in stream_workers(proxy)]
    assert len(handled) == 2 and all(count > 0 for count in handled), handled
    assert entry["counters"]["received"] >= calls * 3  # INVITE, ACK, BYE of each call


def test_tcp_to_udp_calls_are_answered(
    daemon_factory: DaemonFactory, sqlite_url: str, tmp_path: Path
) -> None:
    port_a, port_b, uas_port = free_port(), free_port(), free_port()
    proxy = start_proxy(
        daemon_factory,
        sqlite_url,
        tmp_path,
        routes=[{"in_tag": "a", "destination": f"sip:127.0.0.1:{uas_port}", "out_tag": "b"}],
        rows=[
            {"socket": f"tcp:127.0.0.1:{port_a}", "tag": "a"},
            {"socket": f"udp:127.0.0.1:{port_b}", "tag": "b"},
        ],
    )
    calls = 200
    results = run_calls(
        proxy,
        target_port=port_a,
        uas_port=uas_port,
        uas_transport="udp",
        via=proxy_via("UDP", f"127.0.0.1:{port_b}", stream_in=True),
        record_route=[rr_entry(f"127.0.0.1:{port_b}"), rr_entry(f"127.0.0.1:{port_a}", "tcp")],
        calls=calls,
        rate=50,
        caller_transport="tn",
    )
    assert_all_calls(results, calls, proxy)
