"""Pure rules of worker supervision: when to restart a worker, how long it has to answer,
how to name its end."""

from __future__ import annotations

import signal
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Restart delays of a worker that keeps dying.

    The first death after a stable run (``stable_after`` seconds or more)
    restarts at once; each further quick death doubles the delay from
    ``base``, up to ``cap``.
    """

    base: float = 0.5
    cap: float = 30.0
    stable_after: float = 10.0

    def quick_deaths(self, previous: int, lifetime: float) -> int:
        """Consecutive quick deaths, counting the one that just happened."""
        return 1 if lifetime >= self.stable_after else previous + 1

    def delay(self, quick_deaths: int) -> float:
        """Seconds to wait before restarting after ``quick_deaths`` quick deaths in a row."""
        if quick_deaths <= 1:
            return 0.0
        return min(self.base * 2.0 ** (quick_deaths - 2), self.cap)


def describe_exit(exit_code: int | None, signal_number: int | None) -> str:
    """``"exited with status 1"`` or ``"killed by signal 9 (SIGKILL)"``."""
    if signal_number is not None:
        try:
            name = signal.Signals(signal_number).name
        except ValueError:
            return f"killed by signal {signal_number}"
        return f"killed by signal {signal_number} ({name})"
    if exit_code is None:
        return "ended (status unknown)"
    return f"exited with status {exit_code}"


def answer_deadline(
    starting: bool, started: float, now: float, command_timeout: float, ready_timeout: float
) -> float:
    """Seconds a worker has to answer a command sent at ``now``.

    A running worker answers within ``command_timeout``. A starting one
    (``started`` at that time) reads its first commands only once loaded,
    which its ready timeout bounds: it has what is left of that, if longer.
    """
    if starting:
        return max(command_timeout, started + ready_timeout - now)
    return command_timeout
