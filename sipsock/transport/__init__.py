"""SIP transports: UDP and stream listeners behind one `Listener` interface.

``open_listener(sdef, slot, sink)`` binds a socket definition and starts
serving it; every message goes to the `MessageSink` with its `Origin`. The
seam types are those of `sipsock.seams`, importable from here too.
"""

from sipsock.seams import Listener, ListenError, MessageSink, Origin, SocketCounters
from sipsock.transport.listener_factory import open_listener

__all__ = [
    "ListenError",
    "Listener",
    "MessageSink",
    "Origin",
    "SocketCounters",
    "open_listener",
]
