"""SIP transports: UDP and stream listeners behind one `Listener` interface.

``open_listener(sdef, slot, sink)`` binds a socket definition and starts
serving it; every message goes to the `MessageSink` with its `Origin`.
"""

from sipsock.transport.base import (
    Listener,
    ListenError,
    MessageSink,
    Origin,
    SocketCounters,
    open_listener,
)

__all__ = [
    "ListenError",
    "Listener",
    "MessageSink",
    "Origin",
    "SocketCounters",
    "open_listener",
]
