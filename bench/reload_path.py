# mypy: disable-error-code="no-untyped-call"
"""Print the registry's own CPU per reload of N sockets, in this process. Not a test.

Run from the repository root, or from elsewhere with ``PYTHONPATH`` naming the
tree to measure::

    .venv/bin/python bench/reload_path.py
    .venv/bin/python bench/reload_path.py --size 500 --number 300 --profile
    PYTHONHASHSEED=0 valgrind --tool=callgrind bench/reload_path.py --only tag --number 100

A `SocketRegistry` on an in-memory store (`sipsock.testing.FakeStore`, which
hands back the same row objects for unchanged rows, as the real stores do)
and listeners that apply an update at once (`FakeListener`): what is left is
the registry's work for a reload (screening the rows, planning, applying the
plan, the report and its log lines), without the store's thread, the workers
or the MI. Figures are thread CPU time per reload, best of five rounds:
no change, one tag change (updated in place), and one port change (a socket
closed and another opened). ``--only`` runs one kind of reload for callgrind,
whose instruction counts survive a loaded machine: the difference between
``--number 100`` and ``--number 0``, divided by 100, is one reload.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections.abc import Callable, Sequence

from twisted.internet import defer
from twisted.internet.task import Clock

from sipsock.registry import SocketRegistry
from sipsock.seams import Listener
from sipsock.sockdef import SocketDef
from sipsock.testing import FakeListener, FakeStore


def make_registry(size: int) -> tuple[SocketRegistry, FakeStore]:
    store = FakeStore()
    for index in range(size):
        store.add(f"udp:127.0.0.1:{20000 + index}")

    def opener(sdef: SocketDef, slot: int | None) -> defer.Deferred[Listener]:
        return defer.succeed(FakeListener(sdef, slot))

    registry = SocketRegistry(store, opener, max_sockets=2 * size + 10, reactor=Clock())
    registry.startService()
    return registry, store


def per_reload(registry: SocketRegistry, change: Callable[[int], None], number: int) -> float:
    """Thread CPU seconds per reload, each after ``change(run)``."""
    best = float("inf")
    for _ in range(5):
        start = time.thread_time()
        for run in range(number):
            change(run)
            registry.reload()
        best = min(best, (time.thread_time() - start) / number)
    return best


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=500, help="sockets (500)")
    parser.add_argument("--number", type=int, default=300, help="reloads per round (300)")
    parser.add_argument("--profile", action="store_true", help="cProfile the tag changes")
    parser.add_argument(
        "--only",
        choices=("tag", "port"),
        help="run --number reloads of this change once and print nothing (for callgrind: "
        "difference a run with --number N and one with --number 0)",
    )
    args = parser.parse_args(argv)
    registry, store = make_registry(args.size)
    middle = args.size // 2
    row = store.rows[middle]

    def nothing(run: int) -> None:
        pass

    def retag(run: int) -> None:
        store.rows[middle] = type(row)(row.id, row.socket, tag=f"t{run}")

    def move(run: int) -> None:
        port = 40000 + run % 2
        store.rows[middle] = type(row)(row.id, f"udp:127.0.0.1:{port}")

    if args.only:
        change = retag if args.only == "tag" else move
        for run in range(args.number):
            change(run)
            registry.reload()
        return
    if args.profile:
        profile = cProfile.Profile()

        def tag_changes() -> None:
            for run in range(args.number):
                retag(run)
                registry.reload()

        profile.runcall(tag_changes)
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        return
    print(f"registry reload of {args.size} sockets, thread CPU per reload (best of 5 rounds)")
    for name, change in (("no change", nothing), ("1 tag change", retag), ("1 port change", move)):
        seconds = per_reload(registry, change, args.number)
        print(f"  {name:14s} {seconds * 1e6:8.1f} us")


if __name__ == "__main__":
    main()
