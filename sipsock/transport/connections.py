"""The connection table of one stream socket: its connections, by id and by peer.

Pure bookkeeping (no reactor, no I/O): which connections a socket has, the
one a send to a peer uses (`to_peer`: an outbound connection is also found
under the host name it was opened for), how many accepted connections it
has in all and per remote IP (the caps of `sipsock.limits.connection_refusal`),
and its outbound pool (the connections it opened). `StreamListener`
(`sipsock.transport.stream`) owns one.
"""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

from sipsock.addresses import normal_ip, unbracket
from sipsock.limits import address_key, connection_refusal
from sipsock.sip.memo import Memo

#: Peer hosts to their key spelling (bounded: the hosts come from peers and messages).
_PEER_HOSTS: Memo[str, str] = Memo(max_bytes=256 * 1024, max_item=128)


def peer_key(peer: tuple[str, int]) -> tuple[str, int]:
    """The key of a peer in a socket's connection table: IP addresses in canonical form.

    Asked on every stream send (the table, the control process's connection
    directory): the spelling of a host is remembered, as ``ipaddress`` is slow.
    """
    given = peer[0]
    host = _PEER_HOSTS.get(given)
    if host is None:
        bare = unbracket(given)
        host = _PEER_HOSTS.remember(
            given, normal_ip(bare, zone="keep") or bare.lower(), 2 * len(given)
        )
    return host, peer[1]


class TableEntry(Protocol):
    """What the table reads of a connection (`StreamConnection`)."""

    @property
    def id(self) -> int:
        """Unique in the process."""

    @property
    def peer(self) -> tuple[str, int]:
        """The remote address."""

    @property
    def inbound(self) -> bool:
        """Accepted (True) or opened by the socket."""

    @property
    def open(self) -> bool:
        """False once closed or closing."""


Entry = TypeVar("Entry", bound=TableEntry)


class ConnectionTable(Generic[Entry]):
    """The connections of one socket; ``by_peer`` holds those that carry messages."""

    def __init__(self) -> None:
        self.connections: dict[int, Entry] = {}
        #: The connection a send to a peer uses (ready ones only).
        self.by_peer: dict[tuple[str, int], Entry] = {}
        # Accepted connections open now, in all and by remote IP (the caps).
        self._inbound = 0
        self._inbound_by_ip: dict[str, int] = {}
        # The outbound pool: connection id -> the (host, port) it was opened for.
        self._opened: dict[int, tuple[str, int]] = {}

    def __len__(self) -> int:
        return len(self.connections)

    @property
    def outbound(self) -> int:
        """Connections in the outbound pool (opened by the socket and still open)."""
        return len(self._opened)

    def refusal(self, host: str, per_socket: int, per_ip: int) -> str | None:
        """Why one more accepted connection from ``host`` is over a cap (None: it is not)."""
        ip = address_key(host)
        return connection_refusal(
            socket_count=self._inbound,
            ip_count=self._inbound_by_ip.get(ip, 0),
            per_socket=per_socket,
            per_ip=per_ip,
            ip=ip,
        )

    def add(self, connection: Entry) -> None:
        """A new connection (an accepted one counts against the caps)."""
        self.connections[connection.id] = connection
        if connection.inbound:
            ip = address_key(connection.peer[0])
            self._inbound += 1
            self._inbound_by_ip[ip] = self._inbound_by_ip.get(ip, 0) + 1

    def ready(self, connection: Entry) -> None:
        """The connection carries messages: sends to its peer use it."""
        self.by_peer[connection.peer] = connection

    def opened(self, peer: tuple[str, int], connection: Entry) -> None:
        """An outbound connect to ``peer`` gave ``connection``: it joins the outbound pool.

        Sends to ``peer`` as asked (a host name, for TLS) use it too when that
        differs from its address, unless an open connection is there already.
        """
        self._opened[connection.id] = peer
        current = self.by_peer.get(peer)
        if current is None or not current.open:
            self.by_peer[peer] = connection

    def remove(self, connection: Entry) -> bool:
        """Forget a closed connection; False when the table did not hold it."""
        if self.connections.pop(connection.id, None) is None:
            return False
        if connection.inbound:
            ip = address_key(connection.peer[0])
            self._inbound -= 1
            left = self._inbound_by_ip.get(ip, 1) - 1
            if left > 0:
                self._inbound_by_ip[ip] = left
            else:
                self._inbound_by_ip.pop(ip, None)
        if self.by_peer.get(connection.peer) is connection:
            del self.by_peer[connection.peer]
        opened_for = self._opened.pop(connection.id, None)
        if opened_for is not None and self.by_peer.get(opened_for) is connection:
            del self.by_peer[opened_for]
        return True
