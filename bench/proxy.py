"""Print the call rate the stateless proxy holds, its message rate and CPU per message.

Run from the repository root (a few minutes with the defaults)::

    .venv/bin/python bench/proxy.py
    .venv/bin/python bench/proxy.py --legs udp-tcp --rates 300,600 --seconds 5 --processes 2

The real daemon (``twistd -n sipsock``, SQLite, ``[core] application =
"sipsock.apps:StatelessProxy"``) gets two dynamic sockets: ``a`` (UDP, where
calls come in) and ``b`` (UDP or TCP, where they go out). A SIPp caller
(``tests/scenarios/proxy_uac.xml``: INVITE, 200, ACK, 1 s, BYE, 200, over
UDP) calls a SIPp callee (``proxy_uas.xml``, over UDP or TCP) through it.
Every call is five forwarded messages: INVITE, ACK and BYE one way, the two
200s the other (Record-Route on, so ACK and BYE go through the proxy too).

For each leg and each rate of ``--rates`` a bounded run of ``rate *
--seconds`` calls is made; the table shows the calls that failed, the calls
and forwarded messages per second actually achieved (successful calls over
the caller's wall time less one call length), and the daemon's CPU time per
forwarded message (utime + stime of every daemon process: the control
process, the UDP workers and the stream workers, from /proc/PID/stat, over
the run, divided by five messages per successful call); ``ctl/udp/stream``
splits that figure by process. The ramp stops at the first
rate not held (``common.held_verdict``: a failed call, less than 95 % of
the asked rate achieved, retransmissions above 0.1 % of the calls, or a
datagram dropped by the kernel on the proxy's or SIPp's UDP sockets).
SIPp runs on the same cores (its CPU is shown too). Not a test.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import (
    ROLES,
    Verdict,
    cpu_by_role,
    free_udp_ports,
    held_verdict,
    print_table,
    sipp_totals,
)
from common import udp_drops as udp_drops_of

from tests.daemon import Daemon
from tests.net import free_port
from tests.proxy_scenarios import write_scenario
from tests.sipp import SippResult, start_sipp
from tests.tables import SocketTable

MESSAGES_PER_CALL = 5
#: What SIPp writes when a call fails (other -trace_err lines are late messages).
_FAILURE = re.compile(r"Aborting call|Failed regexp|Call-Id '[^']*': while")
#: Seconds from a call's INVITE to its last 200 (ACK, 1 s pause, BYE): the
#: caller's wall time is calls / rate plus this.
CALL_LENGTH = 1.1
LEGS = ("udp-udp", "udp-tcp")
COLUMNS = [
    "leg",
    "rate",
    "calls",
    "failed",
    "calls/s",
    "msgs/s",
    "CPU us/msg",
    "ctl/udp/stream",
    "SIPp CPU s",
    "retrans",
    "drops",
    "verdict",
]


@dataclass
class Run:
    """One bounded run at one rate."""

    leg: str
    rate: int
    calls: int
    result: SippResult
    callee: SippResult
    wall: float
    cpu_by_role: dict[str, float]
    sipp_cpu: float
    retransmissions: int
    kernel_drops: int | None

    @property
    def successful(self) -> int:
        return self.result.successful

    @property
    def failed(self) -> int:
        return self.result.failed + self.callee.failed + (self.calls - self.result.successful)

    @property
    def calls_per_second(self) -> float:
        seconds = self.wall - CALL_LENGTH
        return self.successful / seconds if seconds > 0 else 0.0

    @property
    def messages_per_second(self) -> float:
        return self.calls_per_second * MESSAGES_PER_CALL

    @property
    def cpu(self) -> float:
        """CPU seconds of every daemon process over the run."""
        return sum(self.cpu_by_role.values())

    @property
    def cpu_us_per_message(self) -> float:
        return self._per_message(self.cpu)

    def _per_message(self, seconds: float) -> float:
        messages = self.successful * MESSAGES_PER_CALL
        return seconds / messages * 1e6 if messages else 0.0

    @property
    def split(self) -> str:
        """`cpu_us_per_message` of the control process, the UDP workers, the stream workers."""
        return "/".join(f"{self._per_message(self.cpu_by_role[role]):.1f}" for role in ROLES)

    @property
    def verdict(self) -> Verdict:
        return held_verdict(
            rate=self.rate,
            calls=self.calls,
            successful=self.successful,
            failed=self.failed,
            retransmissions=self.retransmissions,
            kernel_drops=self.kernel_drops,
            achieved=self.calls_per_second,
        )

    def held(self) -> bool:
        return self.verdict.held

    def row(self) -> list[object]:
        return [
            self.leg,
            self.rate,
            self.calls,
            self.failed,
            f"{self.calls_per_second:.0f}",
            f"{self.messages_per_second:.0f}",
            f"{self.cpu_us_per_message:.1f}",
            self.split,
            f"{self.sipp_cpu:.1f}",
            self.retransmissions,
            "?" if self.kernel_drops is None else self.kernel_drops,
            str(self.verdict),
        ]


class ProxyBench:
    """A proxy daemon with sockets a (UDP) and b (UDP or TCP) for one leg."""

    def __init__(self, leg: str, processes: int, workdir: Path) -> None:
        self.leg = leg
        self.workdir = workdir
        self.port_a, self.port_b, self.callee_port = free_port(), free_port(), free_port()
        self.out_proto = leg.split("-")[1]
        transport = "" if self.out_proto == "udp" else f";transport={self.out_proto}"
        extra = (
            f"[sockets_mgm]\nprocesses = {processes}\n"
            '[core]\napplication = "sipsock.apps:StatelessProxy"\n'
            "[proxy]\n[[proxy.route]]\n"
            'in_tag = "a"\n'
            f'destination = "sip:127.0.0.1:{self.callee_port}{transport}"\n'
            'out_tag = "b"\n'
        )
        self.daemon = Daemon(workdir, extra=extra)
        self.daemon.state_dir.mkdir(parents=True, exist_ok=True)
        table = SocketTable(self.daemon.db_url)
        table.init()
        table.insert(f"udp:127.0.0.1:{self.port_a}", tag="a")
        table.insert(f"{self.out_proto}:127.0.0.1:{self.port_b}", tag="b")
        # A second between ACK and BYE, as callers do: two datagrams sent close
        # together may be forwarded in either order by two UDP workers.
        self.caller = write_scenario("proxy_uac.xml", workdir, pause_ms=1000)
        self.callee = write_scenario("proxy_uas.xml", workdir)

    def __enter__(self) -> ProxyBench:
        self.daemon.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.daemon.stop()

    def run(self, rate: int, seconds: float) -> Run:
        calls = max(1, int(rate * seconds))
        timeout = seconds * 3 + 30
        callee = start_sipp(
            "127.0.0.1:9",
            scenario=str(self.callee),
            transport="t1" if self.out_proto == "tcp" else "u1",
            calls=calls,
            local_port=self.callee_port,
            workdir=self.workdir,
            timeout=timeout,
            extra=("-trace_err",),
        )
        time.sleep(0.5)
        daemon_ports = [self.port_a, *([self.port_b] if self.out_proto == "udp" else [])]
        [caller_port] = free_udp_ports(1)
        sipp_ports = [caller_port, *([self.callee_port] if self.out_proto == "udp" else [])]
        drops_before = [udp_drops_of(port) for port in daemon_ports]
        children_before = _children_cpu()
        cpu_before = cpu_by_role(self.daemon.pid)
        start = time.perf_counter()
        caller = start_sipp(
            f"127.0.0.1:{self.port_a}",
            scenario=str(self.caller),
            transport="u1",
            calls=calls,
            rate=rate,
            workdir=self.workdir,
            timeout=timeout,
            extra=("-l", str(max(rate * 2, 100)), "-trace_err"),
            local_port=caller_port,
        )
        # SIPp's sockets are gone once it exits: read their drops while the caller runs.
        sipp_drops = dict.fromkeys(sipp_ports, 0)
        while caller.running():
            for port in sipp_ports:
                sipp_drops[port] = max(sipp_drops[port], udp_drops_of(port) or 0)
            time.sleep(0.05)
        result = caller.wait()
        wall = time.perf_counter() - start
        cpu_after = cpu_by_role(self.daemon.pid)
        cpu = {role: cpu_after[role] - cpu_before[role] for role in ROLES}
        callee_result = callee.wait()
        sipp_cpu = _children_cpu() - children_before
        retransmissions = sum(sipp_totals(run.stat)[0] for run in (caller, callee))
        drops_after = [udp_drops_of(port) for port in daemon_ports]
        kernel_drops: int | None = sum(sipp_drops.values())
        for before, after in zip(drops_before, drops_after, strict=True):
            if before is None or after is None or kernel_drops is None:
                kernel_drops = None
            else:
                kernel_drops += after - before
        return Run(
            self.leg,
            rate,
            calls,
            result,
            callee_result,
            wall,
            cpu,
            sipp_cpu,
            retransmissions,
            kernel_drops,
        )

    def first_error(self) -> str:
        """The first call failure SIPp logged with -trace_err (late "dead call" noise skipped)."""
        for path in sorted(self.workdir.glob("*_errors.log")):
            text = path.read_text(errors="replace")
            match = _FAILURE.search(text)
            if match is not None:
                return f"{path.name}: " + " | ".join(text[match.start() :].splitlines()[:4])[:400]
        return "none logged"


def _children_cpu() -> float:
    usage = os.times()
    return usage.children_user + usage.children_system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--legs", default=",".join(LEGS), help="udp-udp, udp-tcp (comma list)")
    parser.add_argument("--rates", default="100,200,400,600,800,1000", help="calls/s to try")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run")
    parser.add_argument("--processes", type=int, default=2, help="UDP workers of the daemon")
    parser.add_argument("--keep", action="store_true", help="keep the work directories")
    args = parser.parse_args()
    legs = [leg.strip() for leg in args.legs.split(",") if leg.strip()]
    for leg in legs:
        if leg not in LEGS:
            parser.error(f"unknown leg {leg!r} (use {', '.join(LEGS)})")
    rates = [int(rate) for rate in args.rates.split(",")]
    print(
        f"stateless proxy, {args.processes} UDP worker(s), {args.seconds:g} s per rate, "
        f"{os.cpu_count()} CPU(s); {MESSAGES_PER_CALL} forwarded messages per call"
    )
    rows: list[list[object]] = []
    best: dict[str, Run] = {}
    for leg in legs:
        workdir = Path(tempfile.mkdtemp(prefix=f"sipsock-bench-proxy-{leg}-"))
        print(f"{leg}: work directory {workdir}", flush=True)
        try:
            with ProxyBench(leg, args.processes, workdir) as bench:
                for rate in rates:
                    run = bench.run(rate, args.seconds)
                    rows.append(run.row())
                    print("  " + "  ".join(str(cell) for cell in run.row()), flush=True)
                    if not run.held():
                        print(f"  first SIPp error: {bench.first_error()}")
                        break
                    best[leg] = run
        finally:
            if not args.keep:
                shutil.rmtree(workdir, ignore_errors=True)
    print_table(
        "every run",
        COLUMNS,
        rows,
        align="lrrrrrrrrrrl",
    )
    print_table(
        "highest rate held (0 failed, >= 95 % of the rate, < 0.1 % retransmissions, 0 drops)",
        COLUMNS,
        [run.row() for run in best.values()],
        align="lrrrrrrrrrrl",
    )


if __name__ == "__main__":
    main()
