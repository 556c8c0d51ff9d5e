"""Room in the descriptor table for every socket the daemon may open, made once at start.

Linux grows a process's descriptor table by doubling it when a descriptor
number does not fit (64, 128, 256, 512, 1024, ...), and the table never
shrinks. In a process with more than one thread each growth waits for an RCU
grace period (``synchronize_rcu`` in ``expand_fdtable``): 5-15 ms on a quiet
machine, more on a busy one. The control process has threads (the database's
and the resolver's), so the first load of 500 sockets used to pay two such
waits in the middle of the reload, and the sockets of that load answered
20-60 ms later than the same load a second time. Growing the table once
before the reactor runs, to fit every socket the configuration allows, moves
that cost out of every reload.
"""

from __future__ import annotations

import os
import resource

from twisted.logger import Logger

_log = Logger()

#: The daemon's own descriptors beside its sockets: log, database, MI, manhole,
#: the channels to every worker, a resolver's.
OWN_DESCRIPTORS = 256


def open_descriptors() -> list[int]:
    """The descriptors this process has open (empty when ``/proc`` cannot tell)."""
    try:
        return [int(name) for name in os.listdir("/proc/self/fd")]
    except (OSError, ValueError):
        return []


def descriptor_limit() -> int | None:
    """The soft RLIMIT_NOFILE: no descriptor number reaches it (None: unlimited)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def reserve_descriptors(count: int) -> int:
    """Grow the descriptor table to hold ``count`` descriptors more than the highest open.

    Returns the highest descriptor number the table now holds for sure (the
    table is at least one larger), or 0 when nothing was reserved. Capped
    below the open-files limit; a failure is logged, never raised: the
    sockets still open, paying for the growth when they do.
    """
    if count < 1:
        return 0
    highest = max(open_descriptors(), default=2)
    target = highest + count
    limit = descriptor_limit()
    if limit is not None:
        target = min(target, limit - 1)
    if target <= highest:
        return 0
    try:
        probe = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.dup2(probe, target, inheritable=False)
            os.close(target)
        finally:
            os.close(probe)
    except OSError as error:
        _log.warn(
            "cannot make room for {count} descriptors (up to {target}): {reason}; "
            "the first reload of many sockets may be slower",
            count=count,
            target=target,
            reason=error.strerror or str(error),
        )
        return 0
    return target
