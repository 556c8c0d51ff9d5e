"""JSON-RPC over datagrams (UDP or UNIX), as OpenSIPS's mi_datagram serves it.

One request per datagram; the reply goes to the sender's address. A datagram
larger than the bound is answered with a parse error; a reply too large for
one datagram is replaced by an error saying so.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from twisted.application import internet
from twisted.application.service import IService
from twisted.internet.interfaces import IListeningPort, IReactorUDP, IReactorUNIXDatagram
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from sipsock.mi import jsonrpc
from sipsock.mi.commands import CommandTable, answer_jsonrpc, internal_error

#: Largest UDP payload over IPv4.
MAX_DATAGRAM_BYTES = 65507


class MIDatagramProtocol(DatagramProtocol):
    """Answers each datagram holding one JSON-RPC request, to its sender."""

    log = Logger()

    def __init__(
        self,
        table: CommandTable,
        *,
        max_request: int = jsonrpc.MAX_REQUEST_BYTES,
        max_reply: int = MAX_DATAGRAM_BYTES,
    ) -> None:
        self._table = table
        self.max_request = min(max_request, MAX_DATAGRAM_BYTES)
        self.max_reply = max_reply

    @property
    def max_packet_size(self) -> int:
        """The receive size to listen with: one more than the bound, to see overflows."""
        return self.max_request + 1

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        if not addr:
            self.log.warn("MI datagram from an unbound UNIX socket dropped: no reply address")
            return
        if len(datagram) > self.max_request:
            self._send(
                jsonrpc.encode_error(
                    None,
                    jsonrpc.PARSE_ERROR,
                    jsonrpc.MESSAGES[jsonrpc.PARSE_ERROR],
                    f"request larger than {self.max_request} bytes",
                ),
                addr,
            )
            return
        answer_jsonrpc(self._table, datagram).addCallback(self._reply, addr).addErrback(
            self._crashed, addr
        )

    def _reply(self, reply: bytes | None, addr: Any) -> None:
        if reply is None:
            return
        if len(reply) > self.max_reply:
            reply = jsonrpc.encode_error(
                None,
                jsonrpc.COMMAND_FAILED,
                f"reply of {len(reply)} bytes does not fit in a datagram "
                f"(max {self.max_reply}); use the HTTP or FIFO MI",
            )
        self._send(reply, addr)

    def _send(self, reply: bytes, addr: Any) -> None:
        if self.transport is None:
            return
        try:
            self.transport.write(reply, addr)
        except OSError as exc:
            self.log.warn("MI reply to {peer} not sent: {reason}", peer=addr, reason=exc)

    def _crashed(self, failure: Failure, addr: Any) -> None:
        self.log.failure("MI datagram request failed", failure)
        self._send(internal_error("the request could not be answered"), addr)


def _default_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def listen_udp(
    table: CommandTable,
    *,
    port: int,
    interface: str = "127.0.0.1",
    max_request: int = jsonrpc.MAX_REQUEST_BYTES,
    reactor: IReactorUDP | None = None,
) -> IListeningPort:
    """Serve JSON-RPC over UDP on interface:port now (loopback by default)."""
    protocol = MIDatagramProtocol(table, max_request=max_request)
    udp: IReactorUDP = reactor if reactor is not None else _default_reactor()
    return udp.listenUDP(
        port, protocol, interface=interface, maxPacketSize=protocol.max_packet_size
    )


def listen_unix_datagram(
    table: CommandTable,
    path: str,
    *,
    mode: int = 0o600,
    max_request: int = jsonrpc.MAX_REQUEST_BYTES,
    reactor: IReactorUNIXDatagram | None = None,
) -> IListeningPort:
    """Serve JSON-RPC over a UNIX datagram socket at ``path`` (mode 0600).

    A stale socket file left by a previous run is replaced.
    """
    _remove_stale_socket(path)
    protocol = MIDatagramProtocol(table, max_request=max_request)
    unix: IReactorUNIXDatagram = reactor if reactor is not None else _default_reactor()
    return unix.listenUNIXDatagram(path, protocol, protocol.max_packet_size, mode)


def _remove_stale_socket(path: str) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise OSError(f"{path} exists and is not a socket")
    os.unlink(path)


def udp_service(
    table: CommandTable,
    *,
    port: int,
    interface: str = "127.0.0.1",
    max_request: int = jsonrpc.MAX_REQUEST_BYTES,
) -> IService:
    """A service serving JSON-RPC over UDP while running."""
    protocol = MIDatagramProtocol(table, max_request=max_request)
    service: IService = internet.UDPServer(  # type: ignore[no-untyped-call]
        port, protocol, interface=interface, maxPacketSize=protocol.max_packet_size
    )
    return service
