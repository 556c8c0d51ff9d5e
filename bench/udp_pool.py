"""Print what the UDP worker pool costs and how it spreads load, per balancing mode.

Run from the repository root (about 30 minutes with the defaults; no new
daemon starts after ``--max-minutes``)::

    .venv/bin/python bench/udp_pool.py
    .venv/bin/python bench/udp_pool.py --processes 1,2 --modes shared,reuseport --repeat 1

For each ``udp_balance`` mode (``shared``: every worker reads one descriptor
registered with EPOLLEXCLUSIVE; ``reuseport``: one SO_REUSEPORT member per
worker; ``plain``: shared without EPOLLEXCLUSIVE, to show what the flag
buys) and each ``processes`` count, the real daemon (``twistd -n sipsock``,
SQLite) gets one dynamic socket ``udp:127.0.0.1:PORT``, and SIPp
(``tests/scenarios/options_uac.xml``, one OPTIONS per call,
``-buff_size 4194304``) sends it bounded runs, from one peer (one SIPp, one
source port) and from many peers (several SIPp instances sharing the rate):

* a run at the fixed ``--light`` rate: daemon CPU time per answered OPTIONS
  (utime + stime of the control process and every worker, from /proc, over
  the run, divided by the answered calls);
* a ramp of rising rates until a run is not held (``common.held_verdict``:
  a failed call, fewer answers than calls, less than 95 % of the asked rate
  achieved, retransmissions above 0.1 % of the calls, or a datagram dropped
  by the kernel on the daemon's or a SIPp socket), then ``--bisect``
  halvings: the highest rate held, and the CPU per OPTIONS at that rate
  (saturation);
* how many workers took at least 5 % of the messages of that run.

SIPp shares the two cores with the daemon: its own CPU per call is printed
too. Other load on the machine lowers the figures: every setting is measured
``--repeat`` times in rounds, the modes of one pool size back to back, and the
table keeps the best rate of any round and the median CPU. Not a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from common import (
    BenchDaemon,
    BenchError,
    RateFigures,
    children_cpu_seconds,
    free_udp_ports,
    machine_note,
    print_table,
    running_daemon,
    sipp_totals,
    udp_drops,
)

from sipsock.workers.worker import NO_EXCLUSIVE_ENV
from tests.sipp import SippRun, start_sipp

#: A worker "took a share" of a run when it handled at least this part of it.
SHARE = 0.05
#: Seconds to wait after a run for the workers' counters to be polled (every 1 s).
STATS_LAG = 1.3
MODES = {"shared": "shared", "reuseport": "reuseport", "plain": "shared"}


@dataclass
class Run(RateFigures):
    """SIPp runs at one total rate (one per peer), and what they cost the daemon."""

    rate: int
    peers: int
    calls: int
    successful: int = 0
    failed: int = 0
    retransmissions: int = 0
    kernel_drops: int | None = None
    elapsed: float = 0.0
    daemon_cpu: float = 0.0
    sipp_cpu: float = 0.0
    handled: list[int] = field(default_factory=list)

    @property
    def busy_workers(self) -> int:
        total = sum(self.handled)
        return sum(1 for count in self.handled if total and count >= SHARE * total)


@dataclass
class Result:
    """One row of the summary: a mode, a pool size, a number of peers, every repetition.

    The light-rate CPU is the median over the repetitions; the best rate is
    the highest any repetition held (other load on the machine only lowers
    it), its CPU the median of the repetitions' best runs.
    """

    mode: str
    processes: int
    peers: int
    lights: list[Run] = field(default_factory=list)
    bests: list[Run] = field(default_factory=list)
    misses: int = 0

    @property
    def best(self) -> Run | None:
        return max(self.bests, key=lambda r: r.rate, default=None)

    @property
    def light_cpu(self) -> float | None:
        return _median([r.cpu_us for r in self.lights])

    @property
    def best_cpu(self) -> float | None:
        return _median([r.cpu_us for r in self.bests])

    def row(self) -> list[object]:
        best = self.best
        light = self.lights[0] if self.lights else None
        return [
            self.mode,
            self.processes,
            self.peers,
            "-" if best is None else f"{best.rate:,}",
            "/".join(f"{r.rate // 1000}k" for r in self.bests) or "-",
            _us(self.light_cpu),
            _us(self.best_cpu),
            "-" if best is None else f"{best.busy_workers}/{self.processes}",
            "-" if light is None else f"{light.busy_workers}/{self.processes}",
            _us(best.sipp_cpu / best.calls * 1e6 if best and best.calls else None),
            f"{self.misses} ramp(s) held nothing" if self.misses else "",
        ]


HEADERS = [
    "mode",
    "processes",
    "peers",
    "best rate/s",
    "each repeat",
    "us/OPTIONS light",
    "us/OPTIONS best",
    "workers busy (best)",
    "workers busy (light)",
    "SIPp us/call",
    "note",
]


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _median(values: Sequence[float | None]) -> float | None:
    known = sorted(v for v in values if v is not None)
    return statistics.median(known) if known else None


def handled(bench: BenchDaemon) -> list[int]:
    """Messages handled so far by each dynamic-pool worker (from ``ps``)."""
    rows = bench.daemon.mi("ps")["Processes"]
    return [int(row["Handled"]) for row in rows if row.get("Pool") == "dynamic"]


def run(bench: BenchDaemon, port: int, rate: int, peers: int, args: argparse.Namespace) -> Run:
    """``peers`` SIPp instances sending ``rate`` OPTIONS/s between them for ``--seconds``."""
    calls_each = max(1, min(int(rate * args.seconds), args.max_calls) // peers)
    result = Run(rate=rate, peers=peers, calls=calls_each * peers)
    before = handled(bench)
    drops_before = udp_drops(port)
    sipp_ports = free_udp_ports(peers)
    cpu_before = bench.cpu()
    sipp_before = children_cpu_seconds()
    runs: list[SippRun] = [
        start_sipp(
            f"127.0.0.1:{port}",
            calls=calls_each,
            rate=rate / peers,
            workdir=bench.workdir,
            timeout=calls_each / (rate / peers) * 3 + 20,
            local_port=sipp_port,
        )
        for sipp_port in sipp_ports
    ]
    # A SIPp socket is gone once SIPp exits: read its drops while it runs.
    sipp_drops = dict.fromkeys(sipp_ports, 0)
    while any(sipp.running() for sipp in runs):
        for sipp_port in sipp_ports:
            sipp_drops[sipp_port] = max(sipp_drops[sipp_port], udp_drops(sipp_port) or 0)
        time.sleep(0.05)
    for sipp in runs:
        outcome = sipp.wait()
        result.successful += outcome.successful
        result.failed += outcome.failed
        retransmissions, elapsed = sipp_totals(sipp.stat)
        sipp.stat.unlink()
        result.retransmissions += retransmissions
        result.elapsed = max(result.elapsed, elapsed)
    result.daemon_cpu = bench.cpu() - cpu_before
    result.sipp_cpu = children_cpu_seconds() - sipp_before
    if result.successful + result.failed == 0:
        raise BenchError(f"SIPp at {rate}/s made no call")
    time.sleep(STATS_LAG)
    after = handled(bench)
    result.handled = [a - b for a, b in zip(after, before, strict=False)]
    drops_after = udp_drops(port)
    daemon_drops = (
        None if drops_before is None or drops_after is None else drops_after - drops_before
    )
    result.kernel_drops = None if daemon_drops is None else daemon_drops + sum(sipp_drops.values())
    print(
        f"    {rate:>6}/s from {peers} peer(s): {result.successful}/{result.calls} ok, "
        f"{result.failed} failed, {result.retransmissions} retransmissions, "
        f"kernel drops {daemon_drops} daemon / {sum(sipp_drops.values())} SIPp, "
        f"{result.achieved:,.0f}/s, {_us(result.cpu_us)} us/OPTIONS, "
        f"per worker {result.handled}: {result.verdict}",
        flush=True,
    )
    return result


def ramp(
    bench: BenchDaemon, port: int, peers: int, args: argparse.Namespace
) -> tuple[list[Run], Run | None]:
    """Rising rates until one is not held, then halve the gap; the best held run."""
    steps: list[Run] = []
    best: Run | None = None
    failing: int | None = None
    for rate in args.ramp_rates:
        step = run(bench, port, rate, peers, args)
        steps.append(step)
        if not step.held:
            failing = rate
            break
        best = step
    for _ in range(args.bisect):
        if failing is None:
            break
        low = best.rate if best else 0
        rate = (low + failing) // 2
        if failing - low < args.resolution or rate <= 0:
            break
        step = run(bench, port, rate, peers, args)
        steps.append(step)
        if step.held:
            best = step
        else:
            failing = rate
    return steps, best


@contextmanager
def environment(name: str, value: str | None) -> Iterator[None]:
    """Set (or unset) an environment variable for the daemons started inside."""
    old = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def measure(
    mode: str, processes: int, args: argparse.Namespace, results: dict[tuple[str, int, int], Result]
) -> None:
    """One daemon in ``mode`` with ``processes`` workers: one more repetition per peer count."""
    print(f"\n  {mode}, processes = {processes}", flush=True)
    plain = "1" if mode == "plain" else None
    with (
        environment(NO_EXCLUSIVE_ENV, plain),
        running_daemon(max_sockets=10, processes=processes, balance=MODES[mode]) as bench,
    ):
        port = free_udp_ports(1)[0]
        bench.rows.insert_udp([port])
        report = bench.daemon.reload()
        if report["added"] != [f"udp:127.0.0.1:{port}"]:
            raise BenchError(f"the socket did not come up: {report}")
        warm = run(bench, port, 1000, 1, argparse.Namespace(**{**vars(args), "seconds": 1}))
        if not warm.held:
            raise BenchError(f"{mode}, processes {processes}: the warm-up run at 1000/s failed")
        for peers in args.peer_counts:
            result = results.setdefault((mode, processes, peers), Result(mode, processes, peers))
            result.lights.append(run(bench, port, args.light, peers, args))
            _, best = ramp(bench, port, peers, args)
            if best is None:
                result.misses += 1
            else:
                result.bests.append(best)


def numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default="shared,reuseport,plain", help="balancing modes")
    parser.add_argument("--processes", default="1,2,4,8", help="pool sizes (1,2,4,8)")
    parser.add_argument("--peers", default="1,4", help="SIPp instances (1,4)")
    parser.add_argument("--light", type=int, default=2000, help="fixed rate for CPU (2000/s)")
    parser.add_argument(
        "--ramp",
        default="3000,5000,10000,15000,20000,30000,40000,50000,60000",
        help="rising rates",
    )
    parser.add_argument("--bisect", type=int, default=1, help="halvings after a failure (1)")
    parser.add_argument("--resolution", type=int, default=500, help="smallest gap halved (500)")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds of calls a run (2)")
    parser.add_argument("--repeat", type=int, default=2, help="rounds over every setting (2)")
    parser.add_argument("--max-calls", type=int, default=100000, help="at most calls a run")
    parser.add_argument(
        "--max-minutes", type=float, default=45.0, help="start no new daemon after this (45)"
    )
    args = parser.parse_args(argv)
    args.mode_list = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = sorted(set(args.mode_list) - set(MODES))
    if unknown:
        parser.error(f"unknown modes {unknown} (known: {', '.join(MODES)})")
    args.process_counts = numbers(args.processes)
    args.peer_counts = numbers(args.peers)
    args.ramp_rates = numbers(args.ramp)
    if args.ramp_rates != sorted(args.ramp_rates):
        parser.error("--ramp rates must rise")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Measure every mode and pool size asked for; print the tables."""
    args = parse_args(argv)
    print(f"  before: {machine_note()}", flush=True)
    started = time.monotonic()
    by_key: dict[tuple[str, int, int], Result] = {}
    skipped: list[str] = []
    # Rounds outermost and modes innermost: the modes compared at one pool
    # size run back to back, under the same load from the rest of the machine.
    for round_number in range(1, args.repeat + 1):
        for processes in args.process_counts:
            for mode in args.mode_list:
                if time.monotonic() - started > args.max_minutes * 60:
                    skipped.append(f"{mode}/{processes} (round {round_number})")
                    continue
                measure(mode, processes, args, by_key)
    results = sorted(
        by_key.values(),
        key=lambda r: (args.mode_list.index(r.mode), r.processes, r.peers),
    )
    print(f"\n  after: {machine_note()}; {(time.monotonic() - started) / 60:.1f} minutes")
    print_table(
        "UDP worker pool: highest OPTIONS rate held (0 failed, <0.1 % retransmissions, "
        f"0 kernel drops), daemon CPU per "
        f"answered OPTIONS (control + workers) at {args.light:,}/s (light) and at the best "
        f"rate; {args.seconds:g} s runs; peers = SIPp instances sharing the rate",
        HEADERS,
        [r.row() for r in results],
        "lrrrrrrrrrl",
    )
    if skipped:
        print(f"\n  skipped (over --max-minutes): {', '.join(skipped)}")
    ratios(results, args)


def ratios(results: list[Result], args: argparse.Namespace) -> None:
    """The issue's targets: the pool costs little, and it spreads load."""
    by_key = {(r.mode, r.processes, r.peers): r for r in results}
    rows: list[list[object]] = []
    for mode in args.mode_list:
        one = by_key.get((mode, 1, 1))
        for processes in args.process_counts:
            many = by_key.get((mode, processes, 1))
            if one is None or many is None or processes == 1:
                continue
            rows.append(
                [
                    mode,
                    f"{processes} vs 1",
                    _ratio(many.light_cpu, one.light_cpu),
                    _ratio(many.best_cpu, one.best_cpu),
                    _ratio(
                        float(many.best.rate) if many.best else None,
                        float(one.best.rate) if one.best else None,
                    ),
                ]
            )
    if rows:
        print_table(
            "One peer: processes = N against processes = 1 (CPU ratios: targets <= 1.5 light, "
            "<= 1.2 at saturation; rate ratio: > 1 means more workers answer more)",
            ["mode", "pool", "CPU light", "CPU best", "best rate"],
            rows,
            "llrrr",
        )


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}"


if __name__ == "__main__":
    main()
