"""``kill -USR2`` prints every thread's Python stack on standard error.

For a daemon that stopped answering: the stacks show where each thread
waits, without a debugger or a restart. Python's `faulthandler` writes
them from the signal handler itself, so they come out even when the
reactor no longer turns. The control process's standard error is the
terminal or systemd's journal; a worker's is a pipe that the control
process copies into the log, line by line.
"""

from __future__ import annotations

import faulthandler
import signal
import sys
from typing import IO

#: The signal that asks for the stacks (SIGUSR1 already rotates the log file).
STACK_DUMP_SIGNAL = signal.SIGUSR2


def enable_stack_dump(stream: IO[str] | None = None) -> bool:
    """Print all threads' stacks to ``stream`` (standard error) on `STACK_DUMP_SIGNAL`.

    Returns False, changing nothing, when the signal already has a handler
    of someone else's (an embedding application's) or there is no standard
    error descriptor to write to (twistd's replacement ``sys.stderr`` has none).
    """
    if signal.getsignal(STACK_DUMP_SIGNAL) not in (signal.SIG_DFL, None):
        return False
    target = stream or sys.__stderr__
    try:
        if target is None or target.fileno() < 0:
            return False
    except (OSError, ValueError, AttributeError):
        return False
    faulthandler.register(STACK_DUMP_SIGNAL, file=target, all_threads=True, chain=False)
    return True
