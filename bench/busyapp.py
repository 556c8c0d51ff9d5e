"""A SIP application for benchmarks: the `Responder`, spending ``cost_us`` of CPU per request.

``bench/autoscale.py`` needs a rate one worker cannot hold that SIPp can send
on a 2-core machine; the built-in OPTIONS shortcut answers about 20,000/s
per worker, more than SIPp sends here. This application answers each OPTIONS
through the full path (no shortcut) after burning ``cost_us`` microseconds
of the process's CPU time (`time.thread_time`, so that a worker waiting for
a core does not count as busy). Importable by the workers when ``bench/`` is
on ``PYTHONPATH``.
"""

from __future__ import annotations

import time
from typing import Any

from sipsock.apps.responder import Responder
from sipsock.sip.message import Request, Response


class BusyResponder(Responder):
    """The `Responder`, every request costing ``cost_us`` microseconds of CPU first."""

    def __init__(self, cost_us: int = 1000, **options: Any) -> None:
        super().__init__(**options)
        self.cost = cost_us / 1e6

    def message_received(self, message: Request | Response, context: Any) -> None:
        until = time.thread_time() + self.cost
        while time.thread_time() < until:
            pass
        super().message_received(message, context)

    def options_reply(self, sdef: Any) -> None:
        """No OPTIONS shortcut: every OPTIONS is the application's."""
        return
