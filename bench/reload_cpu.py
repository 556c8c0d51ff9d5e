"""CPU seconds each daemon process spends per load of N new sockets, and per idle second.

Run from the repository root, or from elsewhere with ``PYTHONPATH`` naming the
tree to measure (CPU is less sensitive to a loaded machine than wall time)::

    .venv/bin/python bench/reload_cpu.py --size 500 --loads 5

A fresh daemon (``twistd -n sipsock``, SQLite, ``processes`` UDP workers)
gets N ``udp:127.0.0.1:PORT`` rows; each load is ``sockets_reload`` plus the
work it leaves behind (until the daemon is idle, statistics refresh
included), then the rows are deleted and reloaded away (measured apart).
Then ``--tags`` reloads that each change one row's tag (updated in place:
one batched round trip to every worker) and as many that change nothing,
per reload. Last, the CPU of ``--idle`` seconds with N sockets open
(statistics paging). Not a test.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from common import (
    BenchDaemon,
    BenchError,
    _own_cpu_seconds,
    free_udp_ports,
    median,
    print_table,
    process_tree,
    running_daemon,
)


def per_process(bench: BenchDaemon) -> dict[int, float]:
    """CPU seconds of the control process and of each worker, by pid."""
    return {pid: _own_cpu_seconds(pid) for pid in process_tree(bench.pid)}


def delta(before: dict[int, float], after: dict[int, float]) -> tuple[float, float]:
    """(control process, sum of workers) CPU seconds between two readings."""
    pids = list(after)
    control = after[pids[0]] - before.get(pids[0], 0.0)
    workers = sum(after[p] - before.get(p, 0.0) for p in pids[1:])
    return control, workers


def measured_step(bench: BenchDaemon, what: str, expect: dict[str, int]) -> tuple[float, float]:
    before = per_process(bench)
    report = bench.daemon.reload()
    for key, count in expect.items():
        if len(report[key]) != count:
            raise BenchError(f"{what}: {len(report[key])} {key}, expected {count}")
    bench.wait_idle(window=0.3, busy=0.03)
    return delta(before, per_process(bench))


def repeated_reloads(bench: BenchDaemon, count: int, *, retag: bool) -> tuple[float, float] | None:
    """CPU seconds per plain ``sockets_reload`` (control, workers), each after a tag change
    of one row when ``retag`` (None when ``count`` is 0)."""
    if count < 1:
        return None
    row_id = bench.rows.row_ids()[len(bench.rows.row_ids()) // 2]
    bench.wait_idle(window=0.3, busy=0.03)
    before = per_process(bench)
    for run in range(count):
        if retag:
            bench.rows.set_tag(row_id, f"cpu{run}")
        answer = bench.daemon.mi("sockets_reload")
        if answer != "OK":
            raise BenchError(f"sockets_reload answered {answer!r}")
    bench.wait_idle(window=0.3, busy=0.03)
    control, workers = delta(before, per_process(bench))
    return control / count, workers / count


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=500, help="sockets per load (500)")
    parser.add_argument("--loads", type=int, default=5, help="loads measured (5)")
    parser.add_argument("--processes", type=int, default=2, help="UDP workers (2)")
    parser.add_argument(
        "--tags", type=int, default=0, help="tag-change and no-change reloads measured (0)"
    )
    parser.add_argument("--idle", type=float, default=10.0, help="idle seconds measured (10)")
    args = parser.parse_args(argv)
    loads: list[tuple[float, float]] = []
    removals: list[tuple[float, float]] = []
    with running_daemon(max_sockets=2 * args.size + 10, processes=args.processes) as bench:
        ports = free_udp_ports(args.size)
        bench.wait_idle()
        for _ in range(args.loads):
            bench.rows.insert_udp(ports)
            loads.append(measured_step(bench, "load", {"added": args.size}))
            bench.rows.clear()
            removals.append(measured_step(bench, "removal", {"removed": args.size}))
        bench.rows.insert_udp(ports)
        measured_step(bench, "load", {"added": args.size})
        tags = repeated_reloads(bench, args.tags, retag=True)
        unchanged = repeated_reloads(bench, args.tags, retag=False)
        before = per_process(bench)
        time.sleep(args.idle)
        idle = delta(before, per_process(bench))
    rows: list[list[object]] = []
    for name, steps in (("load", loads), ("removal", removals)):
        rows.append(
            [
                f"{args.size} sockets, {name}",
                f"{median([c for c, _ in steps]) * 1000:.0f}",
                f"{median([w for _, w in steps]) * 1000:.0f}",
                " ".join(f"{(c + w) * 1000:.0f}" for c, w in steps),
            ]
        )
    for name, step in (("1 tag change", tags), ("no change", unchanged)):
        if step is not None:
            rows.append(
                [
                    f"{name} among {args.size}, per reload ({args.tags} reloads)",
                    f"{step[0] * 1000:.2f}",
                    f"{step[1] * 1000:.2f}",
                    "",
                ]
            )
    rows.append(
        [
            f"idle with {args.size} sockets, per second",
            f"{idle[0] / args.idle * 1000:.1f}",
            f"{idle[1] / args.idle * 1000:.1f}",
            "",
        ]
    )
    print_table(
        f"CPU ms per step ({args.processes} workers; median of {args.loads})",
        ["step", "control", "workers (sum)", "each run, total"],
        rows,
        align="lrrl",
    )


if __name__ == "__main__":
    main()
