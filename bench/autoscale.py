"""Print how an auto-scaled UDP pool follows a load ramp: low, more than one worker holds, low.

Run from the repository root (about two minutes with the defaults)::

    .venv/bin/python bench/autoscale.py
    .venv/bin/python bench/autoscale.py --balance reuseport --high 1400

The real daemon (``twistd -n sipsock``, SQLite, one dynamic socket) runs a
pool with ``[auto_scaling.bench]``: min 1, max 4, scale up on ``--up``% for
2 cycles within 3, scale down on ``--down``% for 6 cycles, cycles of
``--cycle`` s. The application is ``bench/busyapp.BusyResponder``: each
OPTIONS costs ``--cost-us`` of CPU (the built-in OPTIONS shortcut answers
about 20,000/s per worker, more than SIPp sends on this machine), so that
one worker holds about 1e6/cost OPTIONS/s. SIPp
(``tests/scenarios/options_uac.xml``: a call fails without a 200 within 5 s)
sends ``--low``/s, then ``--high``/s, then ``--low``/s again.

For each phase: calls, failed calls, retransmissions, the pool's size at
the end (and the largest), the daemon's CPU time (control process and every
worker, from /proc) per answered OPTIONS. Then the timeline of the pool
(size, ready workers, load, the decision taken, from ``ps`` every 0.1 s),
the time from the start of the overload to the first scale-up decision and
to the new worker being ready (it serves the socket by then), and a
worker's start-up time in a fresh interpreter (imports, no load). Not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    BenchError,
    _own_cpu_seconds,
    machine_note,
    print_table,
    process_tree,
    sipp_totals,
)

from tests.daemon import Daemon
from tests.net import free_port
from tests.sipp import start_sipp
from tests.tables import SocketTable

BENCH = Path(__file__).resolve().parent


@dataclass
class Sample:
    at: float
    size: int
    ready: int
    load: float | None
    decision: str
    ups: int
    downs: int


@dataclass
class Timeline:
    """``ps`` every ``interval`` seconds, in a thread."""

    daemon: Daemon
    interval: float = 0.1
    samples: list[Sample] = field(default_factory=list)
    #: The last CPU seconds seen of each process of the daemon (ended workers keep theirs).
    cpu: dict[int, float] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)

    def cpu_total(self) -> float:
        """CPU seconds of every process of the daemon seen so far, ended ones included."""
        return sum(self.cpu.values())

    def run(self) -> None:
        while not self.stop.is_set():
            for pid in process_tree(self.daemon.pid):
                with contextlib.suppress(OSError, ValueError, IndexError):
                    # A process gone meanwhile reads 0: keep its last figure.
                    self.cpu[pid] = max(self.cpu.get(pid, 0.0), _own_cpu_seconds(pid))
            try:
                rows = [r for r in self.daemon.mi("ps")["Processes"] if r.get("Pool") == "dynamic"]
            except OSError:
                continue
            scaling: dict[str, Any] = rows[0].get("Scaling", {}) if rows else {}
            self.samples.append(
                Sample(
                    time.monotonic() - self.started,
                    len(rows),
                    sum(1 for r in rows if r["State"] == "ready"),
                    scaling.get("Load %"),
                    str(scaling.get("Decision")),
                    int(scaling.get("Changes", {}).get("up", 0)),
                    int(scaling.get("Changes", {}).get("down", 0)),
                )
            )
            self.stop.wait(self.interval)


def config(args: argparse.Namespace) -> str:
    return f"""
[core]
application = "busyapp:BusyResponder"

[application]
cost_us = {args.cost_us}

[sockets_mgm]
processes = 1
udp_balance = "{args.balance}"
auto_scaling_profile = "bench"

[auto_scaling.bench]
min_processes = 1
max_processes = 4
scale_up_load = {args.up}
scale_up_cycles = 2
scale_up_within = 3
scale_down_load = {args.down}
scale_down_cycles = 6
cycle = {args.cycle}
"""


def import_seconds(repeat: int = 3) -> float:
    """Median wall time of a fresh interpreter importing what a worker imports."""
    code = (
        "import sipsock.workers.worker, sipsock.apps.spec; "
        "from sipsock.workers.epoll import install; install()"
    )
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--low", type=int, default=100, help="OPTIONS/s of the quiet phases")
    parser.add_argument(
        "--high",
        type=int,
        default=0,
        help="OPTIONS/s of the overload (default: --overload times what one worker holds, "
        "estimated from its load in the first quiet phase)",
    )
    parser.add_argument("--overload", type=float, default=1.5)
    parser.add_argument("--seconds", type=str, default="10,25,25", help="low,high,low seconds")
    parser.add_argument("--cost-us", type=int, default=1000, help="CPU per OPTIONS in a worker")
    parser.add_argument("--balance", default="shared", choices=("shared", "reuseport"))
    parser.add_argument("--cycle", type=float, default=0.5)
    parser.add_argument("--up", type=int, default=70, help="scale-up load, percent")
    parser.add_argument("--down", type=int, default=25, help="scale-down load, percent")
    args = parser.parse_args()
    durations = [float(x) for x in args.seconds.split(",")]
    if len(durations) != 3:
        raise BenchError("--seconds takes three durations: low,high,low")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(BENCH), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    print(f"# auto-scaling bench: {machine_note()}")
    print(f"# worker start-up in a fresh interpreter (imports): {import_seconds():.2f} s")
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / f"sipsock-autoscale-{os.getpid()}"
    workdir.mkdir()
    daemon = Daemon(workdir, extra=config(args))
    daemon.state_dir.mkdir(parents=True, exist_ok=True)
    table = SocketTable(daemon.db_url)
    table.init()
    port = free_port()
    table.insert(f"udp:127.0.0.1:{port}")
    daemon.start(timeout=60)
    timeline = Timeline(daemon)
    watcher = threading.Thread(target=timeline.run, daemon=True)
    watcher.start()
    rows = []
    phases = [("low", args.low), ("high", args.high), ("low", args.low)]
    marks: list[tuple[str, float, float]] = []
    try:
        for index, ((name, asked), seconds) in enumerate(zip(phases, durations, strict=True)):
            rate = asked or overload_rate(timeline.samples, marks[-1], args)
            phases[index] = (name, rate)
            cpu_before = timeline.cpu_total()
            begin = time.monotonic() - timeline.started
            run = start_sipp(
                f"127.0.0.1:{port}",
                calls=int(rate * seconds),
                rate=rate,
                workdir=workdir,
                timeout=seconds + 60,
            )
            result = run.wait()
            end = time.monotonic() - timeline.started
            marks.append((name, begin, end))
            time.sleep(2 * timeline.interval)  # one more CPU sample of each process
            cpu = timeline.cpu_total() - cpu_before
            retrans, _ = sipp_totals(run.stat)
            during = [s for s in timeline.samples if begin <= s.at <= end]
            rows.append(
                [
                    f"{name} {rate}/s",
                    f"{int(rate * seconds)}",
                    f"{result.successful}",
                    f"{result.failed}",
                    f"{retrans}",
                    f"{during[-1].size if during else '?'}",
                    f"{max((s.size for s in during), default=0)}",
                    f"{cpu / max(result.successful, 1) * 1e6:.0f}",
                ]
            )
        # The last quiet phase may end before the pool is back at its minimum.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and timeline.samples[-1].size > 1:
            time.sleep(0.2)
    finally:
        timeline.stop.set()
        watcher.join(10)
        daemon.stop(timeout=60)
    print_table(
        f"phases ({args.balance}, {args.cost_us} us of CPU per OPTIONS in a worker)",
        [
            "phase",
            "calls",
            "answered",
            "failed",
            "retrans",
            "size at end",
            "max size",
            "us CPU/OPTIONS",
        ],
        rows,
    )
    print_timeline(timeline.samples, marks)
    print(f"# total failed calls: {sum(int(r[3]) for r in rows)}; log: {daemon.logfile}")


def overload_rate(samples: list[Sample], quiet: tuple[str, float, float], args: Any) -> int:
    """``--overload`` times the rate one worker holds, from its load in the quiet phase."""
    _, begin, end = quiet
    loads = [s.load for s in samples if begin + 2 <= s.at <= end and s.load]
    if not loads:
        raise BenchError("no load measured in the first quiet phase: give --high")
    load = statistics.median(loads) / 100
    capacity = args.low / load
    rate = int(args.overload * capacity)
    print(
        f"# one worker: {load:.0%} busy at {args.low}/s, so it holds about {capacity:.0f}/s;"
        f" overload at {args.overload:g}x: {rate}/s"
    )
    return rate


def print_timeline(samples: list[Sample], marks: list[tuple[str, float, float]]) -> None:
    print("\n# timeline (a line when the size, ready count or a change count moves)")
    last: tuple[int, int, int, int] | None = None
    for sample in samples:
        key = (sample.size, sample.ready, sample.ups, sample.downs)
        if key != last:
            load = "-" if sample.load is None else f"{sample.load:.0f}%"
            print(
                f"  {sample.at:6.1f} s  size {sample.size} ready {sample.ready}  load {load:>4}"
                f"  {sample.decision}"
            )
            last = key
    high = next((m for m in marks if m[0] == "high"), None)
    if high is None:
        return
    begin = high[1]
    first_up = next((s.at for s in samples if s.at >= begin and s.ups >= 1), None)
    grown = next((s.at for s in samples if s.at >= begin and s.ready >= 2), None)
    if first_up is not None and grown is not None:
        print(
            f"# overload at {begin:.1f} s: first scale-up decided after {first_up - begin:.2f} s,"
            f" the new worker ready (serving the socket) after {grown - begin:.2f} s"
            f" (start-up under load {grown - first_up:.2f} s)"
        )


if __name__ == "__main__":
    main()
