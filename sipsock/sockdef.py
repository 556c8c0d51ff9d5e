"""Socket definitions: one row of the sockets table, parsed and validated.

This module is pure (stdlib only). It knows the grammar of a socket
(``proto:host[:port]``), of the ``advertised``, ``tag``, ``flags`` and ``tos``
columns, the sameness rule used by reloads, and how ``sockets_list`` renders a
socket. Host names are checked for syntax only; resolving them is the
registry's job.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from sipsock.addresses import AddressError, bracket, normal_ip, split_host_port

PROTOS: Final = ("udp", "tcp", "tls", "ws", "wss")
STREAM_PROTOS: Final = frozenset({"tcp", "tls", "ws", "wss"})
DEFAULT_PORTS: Final[Mapping[str, int]] = {
    "udp": 5060,
    "tcp": 5060,
    "tls": 5061,
    "ws": 80,
    "wss": 443,
}
# Flag names in the order OpenSIPS prints them.
FLAG_NAMES: Final = ("anycast", "frag", "reuse_port")
TOS_NAMES: Final[Mapping[str, int]] = {
    "IPTOS_LOWDELAY": 0x10,
    "IPTOS_THROUGHPUT": 0x08,
    "IPTOS_RELIABILITY": 0x04,
    "IPTOS_MINCOST": 0x02,
    "IPTOS_LOWCOST": 0x02,
}
# Column sizes of OpenSIPS's table: longer values cannot come from it.
SOCKET_MAX_LEN: Final = 128
TEXT_MAX_LEN: Final = 128
TOS_MAX_LEN: Final = 32

_TAG_RE: Final = re.compile(r"[A-Za-z0-9_-]+")
_LABEL_RE: Final = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
#: A TOS number: ASCII digits (Python's int() also takes ``+16``, ``1_6``, ``١٦``).
_TOS_DECIMAL_RE: Final = re.compile(r"[0-9]{1,3}")
_TOS_HEX_RE: Final = re.compile(r"0[xX][0-9A-Fa-f]{1,2}")
#: A row id given as text: an optional minus and at most 18 ASCII digits.
_ROW_ID_RE: Final = re.compile(r"-?[0-9]{1,18}")


class SocketDefError(ValueError):
    """A socket definition (or one of its columns) that cannot be used.

    Carries the row id (``None`` for a socket from the config file), the column,
    the offending value and a reason a person can act on.
    """

    def __init__(self, row_id: int | None, column: str, value: object, reason: str) -> None:
        self.row_id = row_id
        self.column = column
        self.value = value
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        where = f"row {self.row_id}: " if self.row_id is not None else ""
        return f"{where}{self.column} {show_value(self.value)}: {self.reason}"


def show_value(value: object, limit: int = 60) -> str:
    """Quote a value from outside for a message: printable, bounded in length."""
    if value is None:
        return "NULL"
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit:
        text = f"{text[:limit]}...({len(text)} characters)"
    return repr(text)


@dataclass(frozen=True, slots=True)
class SocketDef:
    """One SIP listening socket: where it listens and how it presents itself.

    Equality is OpenSIPS's sameness rule: proto, host, port, advertised, tag,
    flags and tos. ``text`` (the column as written) and ``row_id`` do not take
    part in it.
    """

    proto: str
    host: str
    port: int
    advertised_host: str | None = None
    advertised_port: int | None = None
    tag: str | None = None
    flags: frozenset[str] = frozenset()
    tos: int | None = None
    text: str = field(default="", compare=False)
    row_id: int | None = field(default=None, compare=False)
    _hash: int = field(init=False, repr=False, compare=False, default=0)
    #: Canonical ``proto:host:port``, the name used in logs and reports (built once: a
    #: reload names every socket; a plain slot reads faster than a property).
    socket_text: str = field(init=False, repr=False, compare=False, default="")
    #: What two sockets must not share: (``udp`` or ``tcp``, the port space; host; port).
    bind_key: tuple[str, str, int] = field(
        init=False, repr=False, compare=False, default=("", "", 0)
    )
    #: The host written into messages: the advertised one when set (IPv6 in brackets).
    public_host: str = field(init=False, repr=False, compare=False, default="")
    #: The port written into messages: the advertised one when set.
    public_port: int = field(init=False, repr=False, compare=False, default=0)
    #: True for TCP, TLS, WS and WSS.
    is_stream: bool = field(init=False, repr=False, compare=False, default=False)
    #: The transport token of a Via header sent from this socket (``UDP``, ``TLS``...).
    via_transport: str = field(init=False, repr=False, compare=False, default="")

    def __post_init__(self) -> None:
        # Reloads hash every definition several times: compute it once.
        identity = (
            self.proto,
            self.host,
            self.port,
            self.advertised_host,
            self.advertised_port,
            self.tag,
            self.flags,
            self.tos,
        )
        object.__setattr__(self, "_hash", hash(identity))
        object.__setattr__(self, "socket_text", f"{self.proto}:{self.address}")
        # UDP and the stream transports (all over TCP) have separate port spaces.
        object.__setattr__(
            self, "bind_key", ("udp" if self.proto == "udp" else "tcp", self.host, self.port)
        )
        # Read for every message a proxy forwards (its Via, Record-Route, own
        # routes): fields, not properties.
        object.__setattr__(
            self,
            "public_host",
            self.advertised_host if self.advertised_host is not None else bracket(self.host),
        )
        object.__setattr__(
            self,
            "public_port",
            self.advertised_port if self.advertised_port is not None else self.port,
        )
        object.__setattr__(self, "is_stream", self.proto in STREAM_PROTOS)
        object.__setattr__(self, "via_transport", self.proto.upper())

    def __hash__(self) -> int:
        return self._hash

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host

    @property
    def reuse_port(self) -> bool:
        return "reuse_port" in self.flags

    @property
    def address(self) -> str:
        """``host:port`` with IPv6 hosts in brackets."""
        return f"{bracket(self.host)}:{self.port}"

    @property
    def endpoint(self) -> tuple[str, str, int, bool]:
        """What a socket must keep to be updated in place rather than replaced."""
        return (self.proto, self.host, self.port, self.reuse_port)

    @property
    def advertised(self) -> str | None:
        """``host:port`` of the advertised address, or None when not set."""
        if self.advertised_host is None:
            return None
        return f"{self.advertised_host}:{self.advertised_port}"

    def flags_text(self) -> str:
        """The flags as OpenSIPS prints them: anycast,frag,reuse_port order."""
        return ",".join(name for name in FLAG_NAMES if name in self.flags)

    def to_mi(self) -> dict[str, Any]:
        """The ``sockets_list`` entry: ``socket``, then the optional keys when set."""
        entry: dict[str, Any] = {"socket": self.text or self.socket_text}
        if self.advertised is not None:
            entry["advertised"] = self.advertised
        if self.tag is not None:
            entry["tag"] = self.tag
        if self.flags:
            entry["flags"] = self.flags_text()
        if self.tos:
            entry["tos"] = self.tos
        return entry

    def to_row(self) -> dict[str, str | None]:
        """Column values that parse back into an equal definition."""
        return {
            "socket": self.text or self.socket_text,
            "advertised": self.advertised,
            "tag": self.tag,
            "flags": self.flags_text() or None,
            "tos": None if self.tos is None else str(self.tos),
        }

    def with_host(self, host: str) -> SocketDef:
        """The same definition listening on another (resolved) host."""
        return dataclasses.replace(self, host=host)


def parse_row(
    row_id: int | None,
    socket: object,
    advertised: object = None,
    tag: object = None,
    flags: object = None,
    tos: object = None,
) -> SocketDef:
    """Parse one row of the sockets table into a `SocketDef`.

    NULL or empty optional columns mean "not set". Surrounding blanks are the
    padding of CHAR columns and are ignored. Raises `SocketDefError` naming the
    row, the column and the reason.
    """
    socket_text = _column_text(row_id, "socket", socket, SOCKET_MAX_LEN)
    if socket_text is None:
        raise SocketDefError(row_id, "socket", socket, "the socket column is empty")
    proto, host, port = parse_socket(socket_text, row_id=row_id)
    adv_host, adv_port = None, None
    adv_text = _column_text(row_id, "advertised", advertised, TEXT_MAX_LEN)
    if adv_text is not None:
        adv_host, parsed_port = parse_advertised(adv_text, row_id=row_id)
        adv_port = port if parsed_port is None else parsed_port
    return SocketDef(
        proto=proto,
        host=host,
        port=port,
        advertised_host=adv_host,
        advertised_port=adv_port,
        tag=parse_tag(_column_text(row_id, "tag", tag, TEXT_MAX_LEN), row_id=row_id),
        flags=parse_flags(_column_text(row_id, "flags", flags, TEXT_MAX_LEN), row_id=row_id),
        tos=parse_tos(_column_text(row_id, "tos", tos, TOS_MAX_LEN), row_id=row_id),
        text=socket_text,
        row_id=row_id,
    )


def parse_socket(text: str, *, row_id: int | None = None) -> tuple[str, str, int]:
    """Parse ``proto:host[:port]`` into (proto, canonical host, port)."""

    def reject(reason: str) -> SocketDefError:
        return SocketDefError(row_id, "socket", text, reason)

    _check_plain(text, reject)
    proto, sep, rest = text.partition(":")
    if not sep or not proto or _looks_like_host(proto, rest):
        raise reject("no protocol (write it as proto:host[:port], e.g. udp:10.0.0.1:5060)")
    proto = proto.lower()
    if proto not in PROTOS:
        raise reject(f"protocol {proto} is not a SIP transport (use udp, tcp, tls, ws or wss)")
    host, port = _split_host_port(rest, reject)
    return proto, _canonical_host(host, reject), (DEFAULT_PORTS[proto] if port is None else port)


def parse_advertised(text: str, *, row_id: int | None = None) -> tuple[str, int | None]:
    """Parse ``host[:port]``; the host is kept as written (never resolved)."""

    def reject(reason: str) -> SocketDefError:
        return SocketDefError(row_id, "advertised", text, reason)

    _check_plain(text, reject)
    host, port = _split_host_port(text, reject)
    _canonical_host(host, reject)  # syntax check only; the spelling is kept
    return bracket(host), port


def parse_tag(text: str | None, *, row_id: int | None = None) -> str | None:
    """A tag is ``[A-Za-z0-9_-]+``; None when not set."""
    if text is None:
        return None
    if not _TAG_RE.fullmatch(text):
        raise SocketDefError(
            row_id, "tag", text, "a tag may hold only letters, digits, '_' and '-'"
        )
    return text


def parse_flags(text: str | None, *, row_id: int | None = None) -> frozenset[str]:
    """A comma list of anycast, frag, reuse_port (case-insensitive, blanks ignored)."""
    if text is None:
        return frozenset()
    names: set[str] = set()
    for item in text.split(","):
        name = item.strip().lower()
        if not name:
            continue
        if name not in FLAG_NAMES:
            raise SocketDefError(
                row_id,
                "flags",
                text,
                f"unknown flag {show_value(item.strip())} (known: {', '.join(FLAG_NAMES)})",
            )
        names.add(name)
    return frozenset(names)


def parse_tos(text: str | None, *, row_id: int | None = None) -> int | None:
    """An ``IPTOS_*`` name or an integer 0-255 (decimal or 0x hex); 0 means not set."""
    if text is None:
        return None
    value: int | None = TOS_NAMES.get(text.upper())
    if value is None:
        if _TOS_DECIMAL_RE.fullmatch(text):
            value = int(text, 10)
        elif _TOS_HEX_RE.fullmatch(text):
            value = int(text, 16)
        else:
            raise SocketDefError(
                row_id,
                "tos",
                text,
                f"not a TOS value (use {', '.join(TOS_NAMES)}, an integer 0-255 in ASCII "
                "digits or 0x00-0xff)",
            )
        if not 0 <= value <= 255:
            raise SocketDefError(row_id, "tos", text, "TOS must be between 0 and 255")
    return value or None


def parse_row_id(value: object) -> int:
    """The id of a table row: an integer, or its text (``-?[0-9]{1,18}``, ASCII).

    Anything else (NULL, a fraction, ``+1``, ``1_0``, other digits) raises
    `SocketDefError` naming the value: that row is rejected, the others load.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    if isinstance(text, str) and _ROW_ID_RE.fullmatch(text):
        return int(text)
    what = "NULL" if value is None else f"a {type(value).__name__}"
    raise SocketDefError(None, "id", value, f"not an integer row id ({what})")


def parse_static(entry: object, *, index: int) -> SocketDef:
    """Parse one ``[core] listen`` entry: a socket string or a table of columns."""
    if isinstance(entry, str):
        return parse_row(None, entry)
    if isinstance(entry, Mapping):
        unknown = set(entry) - {"socket", "advertised", "tag", "flags", "tos"}
        if unknown:
            raise SocketDefError(
                None,
                f"listen[{index}]",
                ", ".join(sorted(map(str, unknown))),
                "unknown keys (use socket, advertised, tag, flags, tos)",
            )
        return parse_row(
            None,
            entry.get("socket"),
            entry.get("advertised"),
            entry.get("tag"),
            entry.get("flags"),
            entry.get("tos"),
        )
    raise SocketDefError(None, f"listen[{index}]", entry, "expected a socket string or a table")


def collapse(defs: Iterable[SocketDef]) -> list[SocketDef]:
    """Drop later definitions equal to an earlier one (identical rows are one socket)."""
    seen: set[SocketDef] = set()
    kept: list[SocketDef] = []
    for sdef in defs:
        if sdef not in seen:
            seen.add(sdef)
            kept.append(sdef)
    return kept


def _looks_like_host(head: str, rest: str) -> bool:
    """``10.0.0.1:5060``, ``[::1]:5060`` or ``name:5060``: a host where a protocol belongs."""
    if head.lower() in PROTOS:
        return False
    return head.startswith("[") or "." in head or head.isdigit() or rest.isdigit()


def _column_text(row_id: int | None, column: str, value: object, limit: int) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray | memoryview):
        try:
            value = bytes(value).decode("ascii")
        except UnicodeDecodeError:
            raise SocketDefError(row_id, column, value, "not ASCII text") from None
    if isinstance(value, int) and not isinstance(value, bool) and column == "tos":
        value = str(value)
    if not isinstance(value, str):
        raise SocketDefError(row_id, column, value, f"not text but {type(value).__name__}")
    if len(value) > limit:
        raise SocketDefError(
            row_id, column, value, f"longer than {limit} characters ({len(value)})"
        )
    text = value.strip(" \t")
    return text or None


def _check_plain(text: str, reject: Any) -> None:
    if not text.isascii():
        raise reject("not ASCII (write IDN host names in their xn-- form)")
    # In ASCII every blank but the space is a control character: not printable.
    if " " in text or not text.isprintable():
        raise reject("contains blanks or control characters")


def _split_host_port(text: str, reject: Any) -> tuple[str, int | None]:
    try:
        return split_host_port(text)
    except AddressError as error:
        raise reject(error.reason) from None


#: Hosts already found good, and their canonical spelling: a table names few hosts
#: for many sockets, and the `ipaddress` check cost more than the rest of a row.
#: Emptied when full, as `sipsock.sip.memo.Memo` is (which this module cannot import:
#: `sipsock.sip` imports it); a good host has at most 253 characters.
_GOOD_HOSTS: Final[dict[str, str]] = {}
GOOD_HOSTS_MAX: Final = 4096


def _canonical_host(host: str, reject: Any) -> str:
    known = _GOOD_HOSTS.get(host)
    if known is not None:
        return known
    canonical = _checked_host(host, reject)
    if len(_GOOD_HOSTS) >= GOOD_HOSTS_MAX:
        _GOOD_HOSTS.clear()
    _GOOD_HOSTS[host] = canonical
    return canonical


def _checked_host(host: str, reject: Any) -> str:
    if "%" in host:
        raise reject(
            f"{show_value(host)} has a zone id: a scoped IPv6 address cannot be written "
            "into SIP headers (use a global address)"
        )
    if ":" in host or all(part.isdigit() for part in host.split(".")):
        address = normal_ip(host)
        if address is None or host.startswith("["):
            version = "IPv6" if ":" in host else "IPv4"
            raise reject(f"{show_value(host)} is not an {version} address")
        return address
    if len(host) > 253:
        raise reject("host name longer than 253 characters")
    labels = host.rstrip(".").split(".")
    for label in labels:
        if not _LABEL_RE.fullmatch(label):
            raise reject(
                f"{show_value(host)} is not a host name (labels of 1-63 letters, "
                "digits and '-', not starting or ending with '-')"
            )
    return host.rstrip(".").lower()
