"""Limits on hostile traffic: the rules, and how often a limit hit is logged.

Every limit a socket enforces (message size, connections per socket and per
remote IP, the header-section timeout, the pending-send buffer, the outbound
pool) has a name in `LIMITS`; each hit is counted in the socket's counters
and logged, but never once per packet: `LimitLog` lets the first hit of a
period through and folds the rest into one summary per period
("N more in the last 60 s"). `HeaderWatch` says whether a stream connection
is in the middle of a header section (the slowloris rule);
`connection_refusal` whether a new connection is one too many. All pure: the
clock is passed in.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Final

from sipsock.addresses import parse_ip
from sipsock.sip.errors import SipFramingError
from sipsock.sip.framer import KEEPALIVE_PING
from sipsock.sip.parser import find_header_end

#: Seconds between two log lines about the same limit of the same socket.
DEFAULT_LOG_INTERVAL: Final = 60.0

#: The limits, by the name used in counters, logs and metrics, with what a hit means.
LIMITS: Final[dict[str, str]] = {
    "oversize": "message above the size limit",
    "connections": "connection over the per-socket or per-IP limit",
    "header_timeout": "header section not received in time",
    "send_buffer": "peer not reading: pending output above the limit",
    "outbound": "outbound connection pool full",
}


class LimitError(Exception):
    """A limit that cannot be applied (a bad value), naming the limit and the reason."""

    def __init__(self, limit: str, reason: str) -> None:
        self.limit = limit
        self.reason = reason
        super().__init__(f"limit {limit}: {reason}")


# -- rate-limited logging ----------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """Hits of one key that were not logged one by one, over ``seconds``."""

    key: Hashable
    suppressed: int
    seconds: float


@dataclass
class _Window:
    start: float
    suppressed: int = 0


class LimitLog:
    """Which limit hits to log: the first of a period, then one summary per period.

    ``hit(key, now)`` is True when this hit should be logged in full (the
    first since the key was last quiet for a whole period). Hits in the same
    period are only counted; ``flush(now)`` returns a `Summary` for each key
    whose period ended with suppressed hits, and starts a new period for it
    (a flood gives one summary per period). A key whose period ended without
    suppressed hits is forgotten, so its next hit is logged in full again.
    """

    def __init__(self, interval: float = DEFAULT_LOG_INTERVAL) -> None:
        if not interval > 0:
            raise LimitError("log_interval", f"{interval!r} is not a positive number of seconds")
        self.interval = interval
        self._windows: dict[Hashable, _Window] = {}

    def hit(self, key: Hashable, now: float) -> bool:
        """Note one hit of ``key``; True when it should be logged in full."""
        window = self._windows.get(key)
        if window is None:
            self._windows[key] = _Window(now)
            return True
        window.suppressed += 1
        return False

    def next_due(self) -> float | None:
        """When the earliest open period ends (None when no key is open)."""
        if not self._windows:
            return None
        return min(window.start for window in self._windows.values()) + self.interval

    def flush(self, now: float, *, closing: bool = False) -> list[Summary]:
        """Summaries of the periods that ended by ``now`` with hits left unlogged.

        ``closing`` ends every period now (the socket is going away) and
        forgets every key.
        """
        summaries: list[Summary] = []
        for key, window in list(self._windows.items()):
            if closing:
                if window.suppressed:
                    summaries.append(Summary(key, window.suppressed, now - window.start))
                del self._windows[key]
                continue
            if now < window.start + self.interval:
                continue
            if window.suppressed:
                summaries.append(Summary(key, window.suppressed, now - window.start))
                self._windows[key] = _Window(now)
            else:
                del self._windows[key]
        return summaries

    def __len__(self) -> int:
        return len(self._windows)


# -- connection admission ----------------------------------------------------------


def address_key(host: str) -> str:
    """What the per-IP cap counts a remote address under.

    An IPv4 address is itself (an IPv4-mapped IPv6 address too); an IPv6
    address counts under its /64, which one host or subscriber gets whole
    (an attacker would otherwise take a new address per connection). A text
    that is not an address is itself, lower-case.
    """
    address = parse_ip(host, zone="drop")
    if address is None:
        return host.lower()
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def connection_refusal(
    *, socket_count: int, ip_count: int, per_socket: int, per_ip: int, ip: str
) -> str | None:
    """Why one more accepted connection is refused, or None to accept it.

    ``socket_count`` and ``ip_count`` are the connections already open on
    the socket and from that remote IP (its `address_key`, named ``ip``).
    """
    if socket_count >= per_socket:
        return f"{socket_count} connections open on the socket (max_connections_per_socket)"
    if ip_count >= per_ip:
        return f"{ip_count} connections open from {ip} (max_connections_per_ip)"
    return None


# -- the header-section (slowloris) rule -------------------------------------------


class HeaderWatch:
    """Whether a stream connection owes a header section, fed what the framer saw.

    A connection starts *awaiting its first message* when ``first_message``
    is set (accepted connections): until a whole message has arrived, it
    must be cut at the deadline. After that, a header section is *open* from
    the first byte of a message until its blank line: a peer that starts a
    message must finish its header section in time. `fed` takes each read
    with the number of whole messages the framer cut from it and the bytes it
    still holds, and answers whether the deadline applies now. At most
    ``max_head`` bytes of an open header section are kept (the framer's own
    limit stops a longer one).
    """

    def __init__(self, *, first_message: bool, max_head: int = 16384) -> None:
        self.awaiting_first = first_message
        self.max_head = max_head
        self._head = bytearray()
        self._body_pending = False

    @property
    def waiting(self) -> bool:
        """True while the deadline applies (first message owed, or a header section open)."""
        return self.awaiting_first or bool(self._head)

    def message_received(self) -> None:
        """A whole message arrived by another way than `fed` (WebSocket)."""
        self.awaiting_first = False

    def fed(self, data: bytes, messages: Sequence[bytes], pending: int) -> bool:
        """One read: the ``messages`` cut from it, ``pending`` bytes left; `waiting` after."""
        completed = len(messages)
        if any(message != KEEPALIVE_PING for message in messages):
            self.awaiting_first = False
        if pending == 0:
            self._head.clear()
            self._body_pending = False
            return self.waiting
        if completed or not (self._head or self._body_pending):
            # The bytes left over start a new message, inside this read.
            head = bytes(data[-pending:]) if pending <= len(data) else bytes(data)
            self._body_pending = False
        elif self._body_pending:
            return self.waiting
        else:
            head = bytes(self._head + data)[-pending:]
        self._head.clear()
        head = head.lstrip(b"\r\n")
        if not head:
            return self.waiting
        end, _ = find_header_end(head)
        if end >= 0:
            self._body_pending = True
        else:
            self._head += head[-self.max_head :]
        return self.waiting


def is_size_error(error: SipFramingError) -> bool:
    """Whether a stream framing error is a size limit hit (not broken framing).

    Decided by the error's `FramingKind` (a header section or a message
    above its limit), never by the text of its reason.
    """
    return error.kind.is_size_limit
