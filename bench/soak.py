"""A bounded soak of the real daemon: traffic, reloads, worker kills and floods at once.

Run from the repository root (10 minutes by default)::

    .venv/bin/python bench/soak.py
    .venv/bin/python bench/soak.py --minutes 3

The real daemon (``twistd -n sipsock``, SQLite, ``processes`` UDP workers)
serves a steady UDP and a steady TCP socket, an exposed UDP socket and up to
50 churning rows. For ``--minutes`` it takes, all at once:

* SIPp OPTIONS to the steady sockets (``--udp-rate`` over UDP, ``--tcp-rate``
  over TCP), stopped gracefully at the end;
* a reload every ``--reload-every`` seconds after one to five seeded random
  edits of the churning rows (add, remove, change tag, port or protocol;
  `tests.reliability.harness.Churn`), with the FIFO slot rule checked on
  each (`FifoSlotModel`);
* SIGKILL of one worker (never the last one, in turn) every ``--kill-every``
  seconds;
* every ``--flood-every`` seconds, ``sipvicious_svmap`` and then
  ``--flood-seconds`` of random bytes and cut SIP messages, as fast as one
  Python thread sends them, to the exposed socket.

Then the rows are put back as they started and the script prints messages
handled, failed calls, reloads, kills, flood datagrams, and the memory
(VmRSS) and descriptor counts of the control process and the workers: at
the start, at their peak (sampled every 5 s) and at the end. Not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from common import BenchError, machine_note, running_daemon

from tests.daemon import Daemon
from tests.net import free_port
from tests.polling import poll_until
from tests.reliability.harness import (
    Churn,
    FifoSlotModel,
    Flood,
    FloodFigures,
    ProcessFigures,
    finish_sipp,
    quiet_ports,
    run_svmap,
    snapshot,
    worker_pid,
    worker_rows,
)
from tests.sipp import SippResult, start_sipp
from tests.tables import SocketTable

CHURNING = 50
MAX_SOCKETS = 100
SAMPLE_EVERY = 5.0
PROGRESS_EVERY = 30.0


@dataclass
class Tally:
    """What happened during the soak."""

    reloads: int = 0
    failed_reloads: int = 0
    failed_opens: int = 0
    kills: int = 0
    floods: list[FloodFigures] = field(default_factory=list)
    scans_found: int = 0
    peak_rss: int = 0
    peak_fds: dict[str, int] = field(default_factory=dict)
    samples: int = 0

    def sample(self, figures: ProcessFigures, daemon: Daemon) -> None:
        self.samples += 1
        self.peak_rss = max(self.peak_rss, figures.total_rss)
        seats = seat_names(daemon, figures)
        for pid, count in figures.fds.items():
            name = seats.get(pid, str(pid))
            self.peak_fds[name] = max(self.peak_fds.get(name, 0), count)


def seat_names(daemon: Daemon, figures: ProcessFigures) -> dict[int, str]:
    names = {figures.control: "control"}
    for row in worker_rows(daemon):
        if row["PID"] is not None:
            names[row["PID"]] = f"worker {row['Worker']}"
    return names


def by_seat(daemon: Daemon, figures: ProcessFigures) -> dict[str, tuple[int, int]]:
    """Seat name -> (RSS KiB, descriptors): workers change pids when they restart."""
    names = seat_names(daemon, figures)
    return {names.get(pid, str(pid)): (figures.rss[pid], figures.fds[pid]) for pid in figures.rss}


def slots_of(daemon: Daemon) -> dict[int, str]:
    listed: list[dict[str, Any]] = daemon.mi("sockets_list", {"details": True})
    return {entry["slot"]: entry["socket"] for entry in listed}


def soak(args: argparse.Namespace) -> None:
    seconds = args.minutes * 60
    with running_daemon(max_sockets=MAX_SOCKETS, processes=args.processes) as bench:
        daemon = bench.daemon
        workdir = bench.workdir
        table = SocketTable(daemon.db_url)
        steady_udp, steady_tcp, exposed = quiet_ports(3, args.seed + 1)
        table.insert(f"udp:127.0.0.1:{steady_udp}", tag="steady")
        table.insert(f"tcp:127.0.0.1:{steady_tcp}", tag="steady")
        table.insert(f"udp:127.0.0.1:{exposed}", tag="exposed")
        rng = random.Random(args.seed)
        ports = [
            p
            for p in quiet_ports(CHURNING + 13, args.seed)
            if p not in (steady_udp, steady_tcp, exposed)
        ]
        churn = Churn(table, ports[: CHURNING + 10], rng, CHURNING)
        for _ in range(CHURNING // 2):
            churn.add()
        start_rows = dict(churn.rows)
        report = daemon.reload()
        if report["failed"]:
            raise BenchError(f"the first reload failed: {report['failed']}")
        poll_until(lambda: all(r["State"] == "ready" for r in worker_rows(daemon)), 30, "workers")
        model = FifoSlotModel(MAX_SOCKETS, slots_of(daemon))
        tally = Tally()
        start = snapshot(daemon)
        start_seats = by_seat(daemon, start)
        tally.sample(start, daemon)

        duration = seconds + 60
        udp = start_sipp(
            f"127.0.0.1:{steady_udp}",
            calls=int(args.udp_rate * duration),
            rate=args.udp_rate,
            workdir=workdir,
            timeout=duration + 120,
            local_port=free_port(),
        )
        tcp = start_sipp(
            f"127.0.0.1:{steady_tcp}",
            transport="t1",
            calls=int(args.tcp_rate * duration),
            rate=args.tcp_rate,
            workdir=workdir,
            timeout=duration + 120,
        )
        began = time.monotonic()
        next_reload = began + args.reload_every
        next_kill = began + args.kill_every
        next_flood = began + min(args.flood_every, 10.0)
        next_sample = began + SAMPLE_EVERY
        next_progress = began + PROGRESS_EVERY
        flood: Flood | None = None
        victim = 0
        print(f"soak: {args.minutes:g} min, {machine_note()}", flush=True)
        while time.monotonic() - began < seconds:
            now = time.monotonic()
            if now >= next_reload:
                next_reload = now + args.reload_every
                for _ in range(rng.randint(1, 5)):
                    churn.edit()
                try:
                    report = daemon.reload()
                except Exception as error:  # a failed reload is a figure, not the end
                    tally.failed_reloads += 1
                    print(f"  reload failed: {error}", flush=True)
                else:
                    tally.reloads += 1
                    tally.failed_opens += len(report["failed"])
                    model.observe(slots_of(daemon))
            if now >= next_kill:
                next_kill = now + args.kill_every
                pid = worker_pid(daemon, 1 + victim % max(1, args.processes - 1))
                victim += 1
                if pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                        tally.kills += 1
            if flood is not None and flood.figures is not None:
                tally.floods.append(flood.wait())
                flood = None
            if flood is None and now >= next_flood:
                next_flood = now + args.flood_every
                scan = run_svmap(exposed, workdir)
                tally.scans_found += scan.stdout.count("sipsock/")
                flood = Flood("127.0.0.1", exposed, seconds=args.flood_seconds).start()
            if now >= next_sample:
                next_sample = now + SAMPLE_EVERY
                tally.sample(snapshot(daemon), daemon)
            if now >= next_progress:
                next_progress = now + PROGRESS_EVERY
                minute = (now - began) / 60
                print(
                    f"  {minute:4.1f} min: {tally.reloads} reloads, {tally.kills} kills, "
                    f"{len(tally.floods)} floods, {tally.peak_rss / 1024:.1f} MiB peak",
                    flush=True,
                )
            time.sleep(0.05)
        soaked = time.monotonic() - began
        if flood is not None:
            tally.floods.append(flood.wait())
        results: list[SippResult] = [finish_sipp(udp), finish_sipp(tcp)]

        churn.restore(start_rows)
        daemon.reload()
        model.observe(slots_of(daemon))
        poll_until(
            lambda: all(r["State"] == "ready" for r in worker_rows(daemon)),
            90,
            "every worker ready after the soak",
            0.2,
        )
        final = snapshot(daemon)
        deadline = time.monotonic() + 15
        while by_seat(daemon, final) != start_seats and time.monotonic() < deadline:
            time.sleep(0.5)
            final = snapshot(daemon)
        tally.sample(final, daemon)
        report_figures(args, soaked, tally, results, daemon, start, start_seats, final, model)


def report_figures(
    args: argparse.Namespace,
    soaked: float,
    tally: Tally,
    results: list[SippResult],
    daemon: Daemon,
    start: ProcessFigures,
    start_seats: dict[str, tuple[int, int]],
    final: ProcessFigures,
    model: FifoSlotModel,
) -> None:
    rows = worker_rows(daemon)
    handled = sum(row["Handled"] for row in rows)
    sent = sum(f.sent for f in tally.floods)
    flood_seconds = sum(f.seconds for f in tally.floods)
    final_seats = by_seat(daemon, final)
    print(f"\nsoak over: {soaked / 60:.1f} min")
    print(
        f"SIPp: UDP {args.udp_rate:g}/s {results[0].successful} ok {results[0].failed} failed; "
        f"TCP {args.tcp_rate:g}/s {results[1].successful} ok {results[1].failed} failed"
    )
    print(f"messages handled by the UDP workers: {handled} (flood datagrams read included)")
    print(
        f"reloads: {tally.reloads} ({tally.failed_reloads} failed, {tally.failed_opens} "
        f"sockets failed to open); slots freed {model.freed}, handed out {model.allocated}, "
        "FIFO rule held"
    )
    print(
        f"worker kills: {tally.kills}; restarts per worker (ps): "
        f"{[row['Restarts'] for row in rows]}"
    )
    print(
        f"floods: {len(tally.floods)}, {sent} datagrams in {flood_seconds:.0f} s "
        f"({sent / flood_seconds if flood_seconds else 0:,.0f}/s); svmap found the daemon "
        f"{tally.scans_found} time(s)"
    )
    print(
        f"memory (VmRSS, all processes): start {start.total_rss / 1024:.1f} MiB, "
        f"peak {tally.peak_rss / 1024:.1f} MiB, final {final.total_rss / 1024:.1f} MiB "
        f"({(final.total_rss / start.total_rss - 1) * 100:+.1f}%)"
    )
    print("process      RSS start  RSS final  fds start  fds peak  fds final")
    for name in sorted(start_seats, key=lambda n: (n != "control", n)):
        rss0, fds0 = start_seats[name]
        rss1, fds1 = final_seats.get(name, (0, 0))
        print(
            f"{name:<11} {rss0 / 1024:8.1f}M {rss1 / 1024:9.1f}M {fds0:10d} "
            f"{tally.peak_fds.get(name, 0):9d} {fds1:10d}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="soak length (default 10)")
    parser.add_argument("--processes", type=int, default=3, help="UDP workers (default 3)")
    parser.add_argument("--udp-rate", type=float, default=100.0, help="SIPp UDP calls/s")
    parser.add_argument("--tcp-rate", type=float, default=25.0, help="SIPp TCP calls/s")
    parser.add_argument("--reload-every", type=float, default=1.0, help="seconds (default 1)")
    parser.add_argument("--kill-every", type=float, default=20.0, help="seconds (default 20)")
    parser.add_argument("--flood-every", type=float, default=60.0, help="seconds (default 60)")
    parser.add_argument("--flood-seconds", type=float, default=5.0, help="seconds (default 5)")
    parser.add_argument("--seed", type=int, default=9, help="random seed of the table edits")
    args = parser.parse_args()
    if args.minutes <= 0 or args.minutes > 24 * 60:
        parser.error("--minutes must be more than 0 and at most 1440")
    if args.processes < 2:
        parser.error("--processes must be at least 2: one worker is never killed")
    try:
        soak(args)
    except BenchError as error:
        raise SystemExit(f"soak: {error}") from None


if __name__ == "__main__":
    main()
