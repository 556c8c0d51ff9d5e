"""A worker dies with its control process: Linux's parent-death signal.

Without it, a worker whose control process is killed with SIGKILL while the
worker itself is stopped (SIGSTOP) or stuck never sees its AMP connection
close, and keeps every UDP port: the restarted daemon then finds them all "in
use". `die_with_parent` asks the kernel to SIGKILL this process when its
parent dies (``prctl(PR_SET_PDEATHSIG)``; SIGKILL because a stopped process
would not act on anything else), then checks that the parent is still the one
expected, in case it died before the request was made.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Final

#: ``<sys/prctl.h>``.
PR_SET_PDEATHSIG: Final = 1


class ParentGoneError(Exception):
    """The control process that started this worker is gone already."""


def die_with_parent(parent: int | None) -> str | None:
    """SIGKILL this process when its parent dies; raises `ParentGoneError` if it has.

    ``parent`` is the pid of the process that started this one (None: not
    checked). Returns why the kernel could not be asked (not Linux, prctl
    failed), or None when it was.
    """
    problem: str | None = None
    if not sys.platform.startswith("linux"):
        problem = f"no parent-death signal on {sys.platform}"
    else:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
                problem = f"prctl(PR_SET_PDEATHSIG): {os.strerror(ctypes.get_errno())}"
        except (OSError, AttributeError) as exc:
            problem = f"prctl unavailable: {exc}"
    if parent is not None and os.getppid() != parent:
        raise ParentGoneError(f"control process {parent} is gone (parent is now {os.getppid()})")
    return problem
