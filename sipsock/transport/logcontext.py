"""`skip_log_context`: a connection's socket events handled without Twisted's legacy log context.

Twisted's reactor wraps the handling of every event of a selectable in
``log.callWithLogger``, which builds a context naming the selectable in
legacy ``log.msg`` lines (about 2 us per event). A worker writes flat JSON
lines, which do not carry that name, so its reactor
(`sipsock.workers.epoll.ExclusiveEPollReactor`) skips the context for a
selectable marked here: every read of a stream connection and of a relay
channel. Any other reactor ignores the mark.
"""

from __future__ import annotations

from typing import Any, Final

from twisted.internet.abstract import FileDescriptor

#: The attribute the workers' reactor reads (`sipsock.workers.epoll.NO_LOG_CONTEXT`).
MARK: Final = "sipsockNoLogContext"


def skip_log_context(transport: Any) -> None:
    """Mark the selectable under ``transport`` (itself, or under a TLS wrapper's ``transport``)."""
    for _ in range(4):
        if transport is None or isinstance(transport, FileDescriptor):
            break
        transport = getattr(transport, "transport", None)
    if isinstance(transport, FileDescriptor):
        setattr(transport, MARK, True)
