"""`die_with_parent` in fresh interpreters (it changes the process it runs in)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[3]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
#: ``<sys/prctl.h>``: read the parent-death signal back.
READ_BACK = """
import ctypes, os
from sipsock.workers.lifeline import die_with_parent
problem = die_with_parent(os.getppid())
libc = ctypes.CDLL(None, use_errno=True)
value = ctypes.c_int(0)
libc.prctl(2, ctypes.byref(value), 0, 0, 0)  # PR_GET_PDEATHSIG
print(problem, value.value)
"""


def test_the_kernel_is_asked_for_sigkill_when_the_parent_dies() -> None:
    result = subprocess.run(
        [sys.executable, "-c", READ_BACK],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["None", "9"]


def test_a_worker_whose_control_process_is_gone_already_does_not_start() -> None:
    gone = os.getpid()  # the worker's parent is this process: any other pid is "gone"
    result = subprocess.run(
        [sys.executable, "-m", "sipsock.workers", "--fd", "0", "--parent", str(gone + 1)],
        env=ENV,
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 3
    assert result.stderr == (
        f"warn control process {gone + 1} is gone (parent is now {gone}): not starting\n"
    )
