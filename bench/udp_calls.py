"""Print the call rate one dynamic UDP socket holds, and the daemon's CPU per call.

Run from the repository root (a few minutes with the defaults)::

    .venv/bin/python bench/udp_calls.py                        # INVITE -> 501 -> ACK, 1 worker
    .venv/bin/python bench/udp_calls.py --processes 2
    .venv/bin/python bench/udp_calls.py --fixed 5000 --ramp 5000,10000,15000 --seconds 3
    .venv/bin/python bench/udp_calls.py --traffic peers --fixed 10000 --ramp ''
    .venv/bin/python bench/udp_calls.py --pin   # SIPp on a CPU of its own

The general path of the daemon (every message but a keep-alive OPTIONS
answered by the shortcut), measured as `bench/udp_options.py` measures the
shortcut: the real daemon (``twistd -n sipsock``, SQLite) with one dynamic
socket ``udp:127.0.0.1:PORT`` and the built-in Responder, and SIPp
(``-buff_size 4194304``) sending bounded runs of calls, at fixed rates for
the daemon's CPU per call (utime + stime of all its processes over the run
/ successful calls) and on a ramp of rising rates for the highest rate held
(``common.held_verdict``: zero failed calls, at least 95 % of the asked rate
achieved, retransmissions under 0.1 % of the calls, no datagram dropped by
the kernel).

``--traffic``:

* ``calls`` (default): ``tests/scenarios/invite_501_uac.xml``, INVITE
  answered 501 then ACK, two datagrams in and one out per call, each parsed,
  validated and (the INVITE) answered by the Responder;
* ``peers``: ``tests/scenarios/options_peers_uac.xml`` over ``-t un``, one
  OPTIONS per call from a source port of its own with CSeq rising (the call
  number): keep-alives from many peers, which the OPTIONS shortcut's memo
  does not cover; figures per OPTIONS.

Not a test.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import udp_options
from common import BenchError, free_udp_ports, machine_note, print_table, running_daemon
from udp_options import HEADERS, Step, pin_daemon, ramp, run_step

#: Daemon CPU per call at 5,000 calls/s with one worker (issue 19).
TARGET_CPU_US = 60.0
#: Highest call rate held (issue 19).
TARGET_RATE = 15000
#: Daemon CPU per many-peer OPTIONS at 10,000/s (issue 19).
TARGET_PEERS_US = 20.0

TRAFFIC = {
    "calls": ("invite_501_uac.xml", "u1", "call"),
    "peers": ("options_peers_uac.xml", "un", "OPTIONS"),
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traffic", choices=sorted(TRAFFIC), default="calls")
    parser.add_argument("--fixed", default="5000", help="rates for CPU per call (5000)")
    parser.add_argument(
        "--ramp",
        default="2000,5000,10000,15000,20000,25000",
        help="rising rates for the highest held rate (2000,...,25000); '' for none",
    )
    parser.add_argument("--bisect", type=int, default=2, help="halvings (2)")
    parser.add_argument("--resolution", type=int, default=500, help="smallest gap (500/s)")
    parser.add_argument("--seconds", type=float, default=5.0, help="calls = rate x seconds (5)")
    parser.add_argument("--max-calls", type=int, default=150000, help="calls per run, at most")
    parser.add_argument("--pause", type=float, default=1.0, help="seconds between runs (1)")
    parser.add_argument("--processes", type=int, default=1, help="UDP workers (1)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of the fixed rates (1)")
    parser.add_argument("--keep", action="store_true", help="keep the daemon's directory")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="SIPp on the last CPU, the daemon on the others (udp_options.pin_daemon)",
    )
    args = parser.parse_args(argv)
    args.fixed_rates = udp_options.rates(args.fixed)
    args.ramp_rates = udp_options.rates(args.ramp)
    if args.ramp_rates != sorted(args.ramp_rates):
        parser.error("--ramp rates must rise")
    args.scenario, args.transport, args.unit = TRAFFIC[args.traffic]
    # -t un opens a socket per call; SIPp refuses to start when its default
    # socket cap (50,000) is above the open-file limit.
    args.sipp_extra = ("-max_socket", "10000") if args.transport == "un" else ()
    return args


def main(argv: Sequence[str] | None = None) -> None:
    """Start the daemon with one dynamic UDP socket, measure, print the tables."""
    args = parse_args(argv)
    print(f"  before: {machine_note()}", flush=True)
    with running_daemon(max_sockets=10, processes=args.processes, keep=args.keep) as bench:
        port = free_udp_ports(1)[0]
        bench.rows.insert_udp([port])
        report = bench.daemon.reload()
        if report["added"] != [f"udp:127.0.0.1:{port}"]:
            raise BenchError(f"the socket did not come up: {report}")
        print(
            f"  daemon pid {bench.pid} ({bench.processes()} processes), "
            f"socket udp:127.0.0.1:{port}, {args.traffic}: {args.scenario} -t {args.transport}",
            flush=True,
        )
        if args.pin:
            print(f"  pinned: {pin_daemon(bench)}", flush=True)
        warm = run_step(bench, port, 1000, argparse.Namespace(**{**vars(args), "seconds": 1}))
        if warm.failed or not warm.successful:
            # (Not the held rule: on a busy machine the warm-up may fall short of its rate.)
            raise BenchError("the warm-up run at 1000/s failed")
        fixed: list[Step] = []
        for _ in range(args.repeat):
            for rate in args.fixed_rates:
                time.sleep(args.pause)
                fixed.append(run_step(bench, port, rate, args))
        steps, best = ramp(bench, port, args) if args.ramp_rates else ([], None)
    print(f"  after: {machine_note()}")
    headers = [h.replace("OPTIONS", args.unit) for h in HEADERS]
    align = "r" * (len(headers) - 1) + "l"
    title = f"processes {args.processes}, {args.traffic} ({args.scenario}, -t {args.transport})"
    print_table(
        f"Daemon CPU per {args.unit} at fixed rates ({title})",
        headers,
        [s.row() for s in fixed],
        align,
    )
    if steps:
        print_table(
            "Ramp: highest rate held (0 failed, < 0.1 % retransmissions, 0 kernel drops)",
            headers,
            [s.row() for s in steps],
            align,
        )
    rows: list[list[object]] = []
    if args.ramp_rates:
        target = f">= {TARGET_RATE:,}/s" if args.traffic == "calls" else ""
        rows.append(["highest rate held", target, "none" if best is None else f"{best:,}/s"])
    for step in fixed:
        target = f"<= {TARGET_CPU_US if args.traffic == 'calls' else TARGET_PEERS_US:g} us"
        value = "-" if step.cpu_us is None else f"{step.cpu_us:.1f} us"
        rows.append([f"daemon CPU per {args.unit} at {step.rate:,}/s", target, value])
    print_table("Targets (issue 19)", ["figure", "target", "measured"], rows, "lrr")


if __name__ == "__main__":
    main()
