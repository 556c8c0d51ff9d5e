"""What a UDP socket does for every datagram: read a burst, deliver, send.

`read_burst` is the read loop of one wake-up of a UDP port
(`sipsock.transport.udp.SipUdpPort.doRead`); `DatagramPath` delivers each
datagram of one socket to its sink (the sink's fast entry point first, then
the general path) and sends the socket's datagrams (`UdpListener.send` and
``send_reply`` are its methods). The build compiles this module with mypyc
(`sipsock.buildinfo.COMPILED_MODULES`): it runs for every datagram. The
Twisted classes stay in ``udp`` (mypyc cannot compile a subclass of them);
this module takes from Twisted only the Deferreds it returns, the reactor's
address tests and a log level, and the listener, its protocol and its limit
reporter are ``Any`` to it.
"""

from __future__ import annotations

import array
import errno
import fcntl
import socket
import termios
from collections.abc import Callable
from typing import Any, Final

from twisted.internet import defer
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred
from twisted.logger import LogLevel

from sipsock.seams import Origin, SocketCounters
from sipsock.sip.memo import Memo
from sipsock.sockdef import SocketDef

#: Datagrams made only of these bytes are keep-alives (RFC 5626 CRLF, NAT pings).
BLANK: Final = b"\r\n\t "

#: At most this many datagrams are read per wake-up, so that one busy socket
#: does not starve the others of its process (nor the AMP channel of a worker).
READS_PER_WAKE: Final = 256

#: ``recvfrom`` errors that only mean "nothing more to read now". ECONNREFUSED
#: is an ICMP error for an earlier datagram we sent: nothing to read either.
READ_DONE: Final = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR, errno.ECONNREFUSED})

#: Where ``ioctl(FIONREAD)`` writes the length of the next queued datagram.
#:
#: `read_burst` asks it after the first datagram of a wake-up (most wake-ups
#: bring one): it costs less than the ``recvfrom`` that fails with EAGAIN (an
#: exception built and caught). An empty datagram also answers 0; it is read
#: on the next wake-up (the reactor's epoll is level-triggered). When the
#: kernel cannot say (a closed socket), the loop reads on, and the next
#: ``recvfrom`` raises as before.
_QUEUED: Final = array.array("i", [0])
_FIONREAD: Final = termios.FIONREAD

#: A datagram's address as the kernel gives it: (host, port), and for IPv6
#: flow information and scope id after them.
Address = tuple[Any, ...]


def read_burst(
    sock: Any,
    size: int,
    deliver: Callable[[bytes, Address], object],
    trim: bool,
    failed: Callable[[Address], object],
) -> None:
    """Read up to `READS_PER_WAKE` datagrams of ``sock`` and ``deliver`` each.

    ``size`` is the largest datagram read whole; ``trim`` cuts an IPv6
    address to (host, port). A datagram whose delivery raises goes to
    ``failed`` with its address (inside the ``except``: it may log the
    traceback), and the loop goes on. An error of ``recvfrom`` other than
    "nothing more now" (`READ_DONE`) is raised.
    """
    recvfrom = sock.recvfrom
    for count in range(READS_PER_WAKE):
        try:
            data, addr = recvfrom(size)
        except BlockingIOError:
            return
        except OSError as error:
            if error.errno in READ_DONE:
                return
            raise
        if trim:
            addr = addr[:2]  # no flow information or scope id
        try:
            deliver(data, addr)
        except Exception:
            failed(addr)
        if not count:
            # A second datagram queued? (`_QUEUED`)
            try:
                fcntl.ioctl(sock.fileno(), _FIONREAD, _QUEUED, True)
            except OSError:
                continue
            if not _QUEUED[0]:
                return


def describe_send_error(error: BaseException) -> str:
    """A send error for the log: the OS's text without the errno ("Message too long")."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


class DatagramPath:
    """The datagrams of one UDP listener (a `sipsock.transport.udp.UdpListener`), in and out.

    In (`deliver`): each datagram is counted and size-checked, then offered
    to the sink's ``answer_datagram`` (the `Dispatcher` answers a plain
    OPTIONS there, straight from its bytes): an answer is sent back at once
    and the datagram goes no further; a decline (None) sends it on to the
    sink's ``message_received`` with its `Origin`, unless it is a blank
    keep-alive. A sink that raises costs the datagram, counted and logged.

    Out (`send`, `send_reply`): straight to the socket's ``sendto`` when the
    address is one the reactor's ``write`` would take, else through that
    ``write``; counted. The listener gives the socket with `open` when it
    starts reading and takes it back with `close`.
    """

    def __init__(self, listener: Any, max_message_size: int) -> None:
        self.listener = listener
        self.counters: SocketCounters = listener.counters
        self.reporter: Any = listener.limit_reporter
        #: Larger datagrams are dropped and counted (``limit_oversize``).
        self.max_message_size = max_message_size
        sink = listener.sink
        #: The sink's entry points (the sink of a listener never changes).
        self.answer: Callable[[bytes, Address, SocketDef], bytes | None] = sink.answer_datagram
        self.message_received: Callable[[bytes, Origin], None] = sink.message_received
        #: ``sendto`` of the socket, while it is open.
        self.sendto: Callable[[bytes, Any], int] | None = None
        #: The listener's protocol (set by the listener once it made it): its
        #: ``transport`` is the reactor's port, or None before and after.
        self.protocol: Any = None
        #: The socket's address family (0 until it is open).
        self.family = 0
        self.closing = False

    def open(self, sendto: Callable[[bytes, Any], int] | None, family: int) -> None:
        """The socket is read: its ``sendto`` (None: send through the transport's
        ``write`` only) and its address ``family``."""
        self.sendto = sendto
        self.family = family

    def close(self) -> None:
        """The socket is closing: every later send fails (counted as a drop)."""
        self.closing = True

    # --- in -----------------------------------------------------------------------

    def deliver(self, datagram: bytes, addr: Address) -> None:
        """One datagram received from ``addr`` (see the class)."""
        counters = self.counters
        size = len(datagram)
        counters.bytes_in += size
        if size > self.max_message_size:
            self.reporter.hit(
                "oversize",
                f"datagram of {size} bytes dropped (max_udp_message_size {self.max_message_size})",
                (addr[0], addr[1]),
            )
            return
        listener = self.listener
        try:
            answer = self.answer(datagram, addr, listener.sdef)
        except Exception:
            answer = None
            self.reporter.answer_failed(peer=addr)
        if answer is not None:
            counters.received += 1  # a request (`MessageSink.answer_datagram`)
            self.send_reply(answer, addr)
            return
        if datagram[:1] in BLANK and not datagram.strip(BLANK):
            return
        counters.count_in(datagram)
        peer = (addr[0], addr[1])
        origin = Origin(listener.sdef, listener.slot, peer, _Reply(self, peer), None, listener)
        try:
            self.message_received(datagram, origin)
        except Exception:
            counters.drops += 1
            self.reporter.problem(
                "messages the sink raised on",
                "socket {socket} (slot {slot}): message from {peer} dropped: "
                "the message sink raised",
                level=LogLevel.critical,
                traceback=True,
                peer=peer,
            )

    # --- out ----------------------------------------------------------------------

    def send(self, data: bytes, peer: tuple[str, int]) -> Deferred[None]:
        """Send one datagram to ``peer``; fails with the socket error, if any."""
        try:
            self.write_or_raise(data, peer)
        except Exception as error:
            return defer.fail(error)
        return defer.succeed(None)

    def write(self, data: bytes, peer: tuple[str, int]) -> None:
        """Send a datagram; errors are logged and counted, never raised."""
        try:
            self.write_or_raise(data, peer)
        except Exception as error:
            self.reporter.problem(
                "send failures",
                "socket {socket} (slot {slot}): cannot send to {peer}: {reason}",
                peer=peer,
                reason=describe_send_error(error),
            )

    def send_reply(self, data: bytes, peer: Address) -> None:
        """`write` an answer to a datagram just received from ``peer``.

        ``peer`` came from the kernel, so it is an address of the socket's
        family: the datagram goes straight to the socket, without the
        address checks of the reactor's ``write``. When the kernel refuses
        it, `write` tries again, and logs and counts a failure.
        """
        sendto = self.sendto
        if sendto is None or self.closing:
            self.write(data, (peer[0], peer[1]))
            return
        try:
            sendto(data, peer)
        except OSError:
            self.write(data, (peer[0], peer[1]))
            return
        self.counters.count_out(data)

    def write_or_raise(self, data: bytes, peer: tuple[str, int]) -> None:
        """Send a datagram, or raise why not (counted as a drop)."""
        protocol = self.protocol
        transport = protocol.transport if protocol is not None else None
        if transport is None or self.closing:
            self.counters.drops += 1
            raise ConnectionError("socket is closed")
        sendto = self.sendto
        try:
            if sendto is not None and address_family(peer[0]) == self.family:
                # An address the reactor's write would take (its checks, remembered):
                # straight to the socket; a refusal gets the write's own handling.
                try:
                    sendto(data, peer)
                except OSError:
                    transport.write(data, peer)
            else:
                transport.write(data, peer)
        except Exception:
            self.counters.drops += 1
            raise
        self.counters.count_out(data)


class _Reply:
    """``origin.reply``: sends bytes back to the peer a datagram came from."""

    def __init__(self, path: DatagramPath, peer: tuple[str, int]) -> None:
        self.path = path
        self.peer = peer

    def __call__(self, data: bytes) -> None:
        self.path.send_reply(data, self.peer)


#: Hosts to the family of the address they are (0: neither), by the reactor's own tests.
_FAMILIES: Final[Memo[str, int]] = Memo(max_bytes=256 * 1024, max_item=128)


def address_family(host: str) -> int:
    """``AF_INET`` or ``AF_INET6`` when the reactor's UDP ``write`` takes ``host`` as
    such an address (`twisted.internet.abstract.isIPAddress` / ``isIPv6Address``),
    else 0. Remembered (bounded): those tests parse the text in Python on every
    send, and a proxy sends to the same few hosts again and again.
    """
    family = _FAMILIES.get(host)
    if family is None:
        if isIPAddress(host):
            family = socket.AF_INET
        elif isIPv6Address(host):
            family = socket.AF_INET6
        else:
            family = 0
        _FAMILIES.remember(host, family, len(host))
    return family
