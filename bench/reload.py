"""Print how long ``sockets_reload`` takes on the real daemon, and memory per socket.

Run from the repository root (about 1 minute with the defaults)::

    .venv/bin/python bench/reload.py
    .venv/bin/python bench/reload.py --sizes 500 --runs 10

For each size N a fresh daemon (``twistd -n sipsock``, SQLite, ``max_sockets``
2000) gets N ``udp:127.0.0.1:PORT`` rows and is timed on:

* N new sockets: until the MI call returns, and until the last of the N
  sockets has answered an OPTIONS (every port is probed from the moment of
  the call); then all removed and added again, ``--repeats`` times;
* 1 change among N: a tag (updated in place) and a port (socket replaced);
* no change among N: ``--runs`` reloads, median.

Times are client-side wall times of the HTTP JSON-RPC MI call (an MI round
trip of ``which`` is shown for reference) and the reload's own duration from
the daemon's report (``sockets_reload report=true``). Not a test.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from common import (
    BenchDaemon,
    BenchError,
    OptionsProber,
    ProbeResult,
    free_udp_ports,
    machine_note,
    median,
    ms,
    print_table,
    running_daemon,
)

TARGET_COLD_500 = 0.200
TARGET_NO_CHANGE_500 = 0.005
#: Spare ports tried per port-change run (another process may take one meanwhile).
SPARE_ATTEMPTS = 3
#: Work left after a reload returned that is worth a note (seconds until idle).
IDLE_NOTE = 0.5


@dataclass
class Timing:
    """One measured case: wall times of the MI call, and of the last answer."""

    size: int
    case: str
    runs: int
    call: list[float]
    daemon: list[float]
    answer: list[float | None]
    busy: list[float] = field(default_factory=list)
    taken: int = 0

    def row(self) -> list[object]:
        answers = [a for a in self.answer if a is not None]
        missing = len(self.answer) - len(answers)
        notes = [f"{missing} run(s) with a silent socket"] if missing else []
        if self.taken:
            notes.append(f"{self.taken} socket(s) skipped: port taken by another process")
        if self.busy and max(self.busy) >= IDLE_NOTE:
            notes.append(f"daemon busy {median(self.busy):.1f} s more (median)")
        return [
            self.size,
            self.case,
            self.runs,
            ms(median(self.call)),
            ms(min(self.call)),
            ms(max(self.call)),
            ms(median(answers)) if answers else "-",
            ms(median(self.daemon)) if self.daemon else "-",
            "; ".join(notes),
        ]


def check_report(
    report: dict[str, Any],
    what: str,
    counts: dict[str, int] | None = None,
    *,
    in_use_ok: bool = False,
) -> set[int]:
    """Fail loudly when a reload did not do what the benchmark set up.

    With ``in_use_ok``, sockets that failed because another process took
    their port since it was picked are tolerated (the machine is shared):
    their ports are returned and they count toward ``added``.
    """
    taken: set[int] = set()
    failed = report["failed"]
    if in_use_ok:
        taken = {int(f["socket"].rsplit(":", 1)[1]) for f in failed if "in use" in f["reason"]}
        failed = [f for f in failed if "in use" not in f["reason"]]
    for key, items in (("rejected", report["rejected"]), ("failed", failed)):
        if items:
            raise BenchError(f"{what}: {len(items)} {key}: {items[:3]}")
    for key, expected in (counts or {}).items():
        got = len(report[key]) + (len(taken) if key == "added" else 0)
        if got != expected:
            raise BenchError(f"{what}: {len(report[key])} {key}, expected {expected}")
    return taken


def last_answer(result: ProbeResult[Any], taken: set[int]) -> float | None:
    """When the last socket that could be opened first answered (None: one never did)."""
    if any(port not in taken for port in result.missing):
        return None
    return max(result.answered.values(), default=None)


def mi_round_trip(bench: BenchDaemon, runs: int) -> float:
    """Median wall time of the cheapest MI call (``which``)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        bench.daemon.mi("which")
        times.append(time.perf_counter() - start)
    return median(times)


def settle_rss(bench: BenchDaemon, seconds: float = 1.0) -> tuple[int, int]:
    """RSS of the control process and PSS of all the daemon's processes, in KiB."""
    time.sleep(seconds)
    return bench.rss(), bench.pss()


def cold_reloads(
    bench: BenchDaemon,
    prober: OptionsProber,
    ports: Sequence[int],
    args: argparse.Namespace,
) -> tuple[Timing, Timing, Timing, tuple[float, float], list[int]]:
    """N new sockets (first time, then ``repeats`` more), removals; KiB per socket.

    Returns the ports left running: a port another process took meanwhile
    is dropped from the table, so the later cases run on sockets that work.
    """
    size = len(ports)
    rss_before, pss_before = settle_rss(bench)
    bench.rows.insert_udp(ports)
    first = Timing(size, f"{size} new sockets, first load", 1, [], [], [])
    again = Timing(size, f"{size} new sockets, again", 0, [], [], [])
    removal = Timing(size, f"remove all {size}", 0, [], [], [])
    kib_per_socket = (0.0, 0.0)
    taken_all: set[int] = set()
    for run in range(args.repeats):
        if run > 0:
            bench.rows.clear()
            start = time.perf_counter()
            report = bench.daemon.reload()
            removal.call.append(time.perf_counter() - start)
            removal.daemon.append(report["seconds"])
            removal.busy.append(bench.wait_idle())
            removal.runs += 1
            check_report(report, "removing all")
            bench.rows.insert_udp(ports)
        result = prober.during(
            bench.daemon.reload,
            ports,
            timeout=args.timeout,
            interval=args.interval,
            after_return=args.probe_after_return,
        )
        taken = check_report(result.value, f"loading {size}", {"added": size}, in_use_ok=True)
        timing = first if run == 0 else again
        timing.taken = max(timing.taken, len(taken))
        taken_all |= taken
        timing.call.append(result.call_seconds)
        timing.daemon.append(result.value["seconds"])
        timing.answer.append(last_answer(result, taken))
        timing.busy.append(bench.wait_idle())
        if run > 0:
            timing.runs += 1
        if run == 0:
            rss_after, pss_after = settle_rss(bench)
            kib_per_socket = ((rss_after - rss_before) / size, (pss_after - pss_before) / size)
            print(
                f"  N={size}: control RSS {rss_before / 1024:.1f} -> {rss_after / 1024:.1f} MiB, "
                f"all processes PSS {pss_before / 1024:.1f} -> {pss_after / 1024:.1f} MiB; "
                f"{result.sent} probes sent",
                flush=True,
            )
    if taken_all:
        bench.rows.delete_udp(sorted(taken_all))
        check_report(bench.daemon.reload(), "dropping taken ports", in_use_ok=True)
    live = [port for port in ports if port not in taken_all]
    return first, again, removal, kib_per_socket, live


def timed_reloads(
    bench: BenchDaemon, runs: int, before: Callable[[int], None], expect: dict[str, int]
) -> tuple[list[float], list[float]]:
    """``runs`` plain reloads (wall time) and ``runs`` with report (daemon time)."""
    calls: list[float] = []
    daemon: list[float] = []
    bench.wait_idle()
    for run in range(runs):
        before(2 * run)
        start = time.perf_counter()
        answer = bench.daemon.mi("sockets_reload")
        calls.append(time.perf_counter() - start)
        if answer != "OK":
            raise BenchError(f"sockets_reload answered {answer!r}")
        before(2 * run + 1)
        report = bench.daemon.reload()
        check_report(report, "timed reload", expect)
        daemon.append(report["seconds"])
    return calls, daemon


def one_change(
    bench: BenchDaemon,
    prober: OptionsProber,
    ports: Sequence[int],
    spare: int,
    args: argparse.Namespace,
) -> tuple[Timing, Timing]:
    size = len(ports)
    row_id = bench.rows.row_ids()[size // 2]

    def retag(run: int) -> None:
        bench.rows.set_tag(row_id, f"bench{run}")

    calls, daemon = timed_reloads(bench, args.runs, retag, {"updated": 1})
    tag = Timing(size, f"1 tag change among {size}", args.runs, calls, daemon, [])

    moved = Timing(size, f"1 port change among {size}", args.runs, [], [], [])
    old = ports[size // 2]
    for run in range(args.runs):
        for _attempt in range(SPARE_ATTEMPTS):
            new = spare if run % 2 == 0 else old
            bench.rows.set_socket(row_id, f"udp:127.0.0.1:{new}")
            result = prober.during(
                bench.daemon.reload,
                [new],
                timeout=args.timeout,
                interval=args.interval,
                after_return=args.probe_after_return,
            )
            if check_report(result.value, "port change", in_use_ok=True):
                # Another process took the port since we let it go or picked it: pick another.
                if new == spare:
                    spare = free_udp_ports(1)[0]
                else:
                    old = free_udp_ports(1)[0]
                moved.taken += 1
                continue
            break
        check_report(result.value, "port change", {"added": 1, "removed": 1})
        moved.call.append(result.call_seconds)
        moved.daemon.append(result.value["seconds"])
        moved.answer.append(result.last_answer)
        moved.busy.append(bench.wait_idle())
    if args.runs % 2 == 1:
        bench.rows.set_socket(row_id, f"udp:127.0.0.1:{old}")
        check_report(bench.daemon.reload(), "port change back", {"added": 1, "removed": 1})
    return tag, moved


def no_change(bench: BenchDaemon, size: int, runs: int) -> Timing:
    calls, daemon = timed_reloads(bench, runs, lambda run: None, {"kept": size})
    return Timing(size, f"no change among {size}", runs, calls, daemon, [])


def measure_size(
    size: int, args: argparse.Namespace
) -> tuple[list[Timing], float, tuple[float, float], float | None, float | None]:
    with running_daemon(
        max_sockets=args.max_sockets,
        processes=args.processes,
        balance=args.balance,
        keep=args.keep,
    ) as bench:
        print(
            f"  N={size}: daemon pid {bench.pid} ({bench.processes()} processes), "
            f"directory {bench.workdir}",
            flush=True,
        )
        ports = free_udp_ports(size + 1)
        spare = ports.pop()
        prober = OptionsProber()
        round_trip = mi_round_trip(bench, 20)
        first, again, removal, kib, live = cold_reloads(bench, prober, ports, args)
        unchanged = no_change(bench, len(live), args.runs)
        tag, moved = one_change(bench, prober, live, spare, args)
        timings = [first, again, removal, unchanged, tag, moved]
        return timings, round_trip, kib, first.answer[0], median(unchanged.call)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="500,1000", help="numbers of sockets, comma-separated (500,1000)"
    )
    parser.add_argument(
        "--max-sockets", type=int, default=2000, help="[sockets_mgm] max_sockets (2000)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="loads of N new sockets per size (3)"
    )
    parser.add_argument(
        "--runs", type=int, default=20, help="reloads per no-change/one-change case (20)"
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=0.005,
        help="seconds before a refused probe (port not bound yet) is sent again (0.005)",
    )
    parser.add_argument(
        "--probe-after-return",
        action="store_true",
        help="send the first probes when the MI call has returned, not with the call",
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds a reload may take (60)"
    )
    parser.add_argument(
        "--processes", type=int, default=2, help="[sockets_mgm] processes, UDP workers (2)"
    )
    parser.add_argument(
        "--balance", default=None, help="[sockets_mgm] udp_balance (the daemon's default)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the daemon's directory")
    args = parser.parse_args(argv)
    args.size_list = [int(s) for s in args.sizes.split(",") if s.strip()]
    if any(n < 2 or n >= args.max_sockets for n in args.size_list):
        parser.error(f"every size must be between 2 and max_sockets - 1 ({args.max_sockets})")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Measure every size and print the tables."""
    args = parse_args(argv)
    print(f"  before: {machine_note()}", flush=True)
    timings: list[Timing] = []
    memory: list[list[object]] = []
    targets: list[list[object]] = []
    for size in args.size_list:
        measured, round_trip, kib, cold_answer, unchanged = measure_size(size, args)
        timings += measured
        memory.append([size, f"{kib[0]:.1f}", f"{kib[1]:.1f}", ms(round_trip)])
        if size == 500:
            targets.append(
                [
                    "500 new sockets all answering",
                    "<= 200.0",
                    ms(cold_answer),
                    "met"
                    if cold_answer is not None and cold_answer <= TARGET_COLD_500
                    else "MISSED",
                ]
            )
            targets.append(
                [
                    "no-change reload of 500 (MI call)",
                    "< 5.0",
                    ms(unchanged),
                    "met"
                    if unchanged is not None and unchanged < TARGET_NO_CHANGE_500
                    else "MISSED",
                ]
            )
    print(f"  after: {machine_note()}")
    probing = "from the return of the call" if args.probe_after_return else "from the call"
    workers = f"processes {args.processes}" + (
        f", udp_balance {args.balance}" if args.balance else ""
    )
    print_table(
        f"sockets_reload on the real daemon (SQLite, max_sockets {args.max_sockets}, {workers}; "
        f"times in ms; refused OPTIONS probes repeated every {args.interval * 1000:g} ms "
        f"{probing})",
        [
            "N",
            "case",
            "runs",
            "call median",
            "call min",
            "call max",
            "last answer median",
            "daemon report median",
            "note",
        ],
        [t.row() for t in timings],
        align="llrrrrrrl",
    )
    print_table(
        "Memory per dynamic socket (delta after the first load / N)",
        [
            "N",
            "control RSS KiB/socket",
            "all processes PSS KiB/socket",
            "MI round trip (which), ms",
        ],
        memory,
    )
    if targets:
        print_table(
            "Targets (issue 4)", ["figure", "target ms", "measured ms", ""], targets, "lrrl"
        )


if __name__ == "__main__":
    main()
