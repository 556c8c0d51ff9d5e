# mypy: disable-error-code="no-untyped-call"
"""AMP commands between the control process and its UDP workers, and their wire forms.

Control process to worker: `Start` (the frozen `AppSpec` the worker builds
its application from: the first command), `AdoptSockets` (bound UDP
descriptors, passed like ``amp.Descriptor``), `UpdateSockets`,
`ReleaseSockets`, `AnnounceMany` / `WithdrawMany` (the daemon's other
sockets, so the worker's application can choose them by tag or slot),
`SendDatagram` (the control process sends UDP through a worker when it holds
no descriptor), `OpenChannel` (a direct relay channel to a worker of another
pool), `Stats` and `Shutdown`. A batch command carries many sockets
in one round trip (a reload's worth, cut into slices by `batches`), as JSON
in `LargeBytes` so that no AMP value limit applies; a socket of a batch fails
alone.

Worker to control process: `SendThroughSocket`, for a message the worker's
application sends through a socket the worker does not hold (TCP, TLS, WS,
WSS, or a UDP socket of another pool), and `SendManyThroughSockets`, the
same for every such message of a reactor turn in one round trip
(`encode_relays`; the worker's `sipsock.workers.relaybatch`).

A pool-local integer ``key`` names each adopted socket on the wire; a
daemon-wide socket is named by its ``socket_text`` (``proto:host:port``).
The encoders and decoders here are pure; a value that does not decode raises
`WorkerError` naming what was wrong.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Final, NamedTuple, TypeVar

from twisted.protocols import amp

from sipsock.apps.spec import AppSpec, thaw
from sipsock.config import ConfigError
from sipsock.seams import SocketCounters
from sipsock.sockdef import FLAG_NAMES, SocketDef

T = TypeVar("T")

#: Largest value AMP carries under one key.
AMP_VALUE_LIMIT: Final = 0xFFFF

#: Sockets listed in one `Stats` answer (each page stays far below the AMP limit).
STATS_PAGE: Final = 500

#: Counters sent per socket by `Stats`, in this order.
COUNTER_NAMES: Final = tuple(f.name for f in fields(SocketCounters))


class WorkerError(Exception):
    """A worker command that could not be carried out (either side), with the reason.

    Raised by the responders of both sides (AMP sends ``str(error)`` across)
    and by the wire decoders. ``reason`` is meant for a person.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class LargeBytes(amp.Argument):
    """Bytes of any length: one AMP value holds 65535 bytes, so longer data is split
    over ``name``, ``name.1``, ``name.2``, ... and joined on arrival."""

    def __init__(self, optional: bool = False) -> None:
        super().__init__(optional)

    def toBox(
        self, name: bytes, strings: dict[bytes, bytes], objects: dict[str, Any], proto: Any
    ) -> None:
        data = objects.pop(name.decode("ascii"))
        for index, chunk in enumerate(split_chunks(bytes(data))):
            strings[name if index == 0 else name + b".%d" % index] = chunk

    def fromBox(
        self, name: bytes, strings: dict[bytes, bytes], objects: dict[str, Any], proto: Any
    ) -> None:
        chunks = [strings.pop(name)]
        index = 1
        while (key := name + b".%d" % index) in strings:
            chunks.append(strings.pop(key))
            index += 1
        objects[name.decode("ascii")] = b"".join(chunks)


def split_chunks(data: bytes, size: int = AMP_VALUE_LIMIT) -> list[bytes]:
    """``data`` cut into pieces of at most ``size`` bytes (one empty piece for b"")."""
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


class Descriptors(amp.Argument):
    """A list of file descriptors, each passed like `amp.Descriptor` (one ordinal each).

    The value is the ordinals joined by commas; the receiver claims every
    descriptor, so none leaks even when the command then fails.
    """

    def toStringProto(self, inObject: Sequence[int], proto: Any) -> bytes:
        ordinals = [proto._sendFileDescriptor(fd) for fd in inObject]
        return ",".join(str(ordinal) for ordinal in ordinals).encode("ascii")

    def fromStringProto(self, inString: bytes, proto: Any) -> list[int]:
        if not inString:
            return []
        try:
            ordinals = [int(part) for part in inString.split(b",")]
        except ValueError:
            raise WorkerError(f"bad descriptor list {inString[:40]!r}") from None
        return [proto._getDescriptor(ordinal) for ordinal in ordinals]


# --- control process -> worker -------------------------------------------------------


class Start(amp.Command):
    """Build the application from ``spec`` (`encode_spec`): the first command a worker gets.

    The spec is what the control process loaded, not the file as it is now;
    a worker takes no socket before it started, and starts once.
    """

    arguments = [(b"spec", LargeBytes())]
    response = []
    errors = {WorkerError: b"WORKER_ERROR"}


class AdoptSockets(amp.Command):
    """Serve bound UDP descriptors: one round trip for a reload's worth of sockets.

    ``sockets`` is `encode_adoptions` text (key, slot, whether other workers
    read the descriptor too, definition), ``fds`` the descriptors in the same
    order; the worker reads its own duplicate of each and closes the one it
    received. Each socket is adopted on its own; ``failed`` (`encode_failures`)
    lists the keys the worker refused (a key it holds already, say), with the
    reason; the others are served.
    """

    arguments = [(b"sockets", LargeBytes()), (b"fds", Descriptors())]
    response = [(b"failed", LargeBytes())]
    errors = {WorkerError: b"WORKER_ERROR"}


class UpdateSockets(amp.Command):
    """New tag / advertised / tos / frag (same endpoints) for sockets by key (`encode_updates`).

    ``failed`` lists the keys the worker refused, with the reason.
    """

    arguments = [(b"sockets", LargeBytes())]
    response = [(b"failed", LargeBytes())]
    errors = {WorkerError: b"WORKER_ERROR"}


class ReleaseSockets(amp.Command):
    """Stop reading the sockets ``keys`` and close their descriptors (idempotent).

    Answered when every one is closed.
    """

    arguments = [(b"keys", amp.ListOf(amp.Integer()))]
    response = []
    errors = {WorkerError: b"WORKER_ERROR"}


class SendDatagram(amp.Command):
    """Send ``data`` to ``host``:``port`` from the worker's socket ``key``."""

    arguments = [
        (b"key", amp.Integer()),
        (b"host", amp.Unicode()),
        (b"port", amp.Integer()),
        (b"data", LargeBytes()),
    ]
    response = []
    errors = {WorkerError: b"WORKER_ERROR"}


class SendDatagrams(amp.Command):
    """`SendDatagram` for many messages in one round trip (the control process's relays).

    ``messages`` is `encode_relays` bytes whose socket field is the worker's
    socket key in decimal; each message is sent on its own, in order, and the
    answer comes once every send is done: ``failed`` (`encode_failures`)
    gives the index of each message that could not be sent, with the reason.
    A garbled ``messages`` fails the whole command.
    """

    arguments = [(b"messages", LargeBytes())]
    response = [(b"failed", LargeBytes())]
    errors = {WorkerError: b"WORKER_ERROR"}


class OpenChannel(amp.Command):
    """Relay straight to the worker ``peer`` (``dynamic/1``, ``stream/2``) on ``fds``.

    ``fds`` is one end of a UNIX socket pair whose other end ``peer`` gets;
    both speak `sipsock.workers.relaychannel` on it. ``pool`` is the peer's
    pool (``dynamic``, ``static`` or ``stream``) and ``index`` its seat
    number, the order in which a worker picks among its channels
    (`sipsock.workers.direct`).
    """

    arguments = [
        (b"fds", Descriptors()),
        (b"peer", amp.Unicode()),
        (b"pool", amp.Unicode()),
        (b"index", amp.Integer()),
    ]
    response = []
    errors = {WorkerError: b"WORKER_ERROR"}


class AnnounceMany(amp.Command):
    """Sockets of the daemon (any transport, any process) the application may send through.

    ``entries`` is `encode_entries` text. A worker is not told about the
    sockets it adopts (it knows them already).
    """

    arguments = [(b"entries", LargeBytes())]
    response = []
    errors = {WorkerError: b"WORKER_ERROR"}


class WithdrawMany(amp.Command):
    """The sockets named in ``sockets`` are gone (idempotent)."""

    arguments = [(b"sockets", amp.ListOf(amp.Unicode()))]
    response = []
    errors = {WorkerError: b"WORKER_ERROR"}


class Stats(amp.Command):
    """The worker's pid, messages handled and per-socket counters, from socket ``start`` on.

    ``sockets`` is a JSON list of ``[key, counters...]`` (`COUNTER_NAMES`
    order), at most `STATS_PAGE` of them; ``more`` says another page follows.
    With ``changes``, only the sockets whose counters changed since the worker
    last reported them (``start`` is ignored), and in ``gone`` the keys it no
    longer holds (`sipsock.workers.reported`).
    """

    arguments = [(b"start", amp.Integer()), (b"changes", amp.Boolean(optional=True))]
    response = [
        (b"pid", amp.Integer()),
        (b"handled", amp.Integer()),
        (b"sockets", amp.Unicode()),
        (b"more", amp.Boolean()),
        (b"gone", amp.ListOf(amp.Integer(), optional=True)),
    ]
    errors = {WorkerError: b"WORKER_ERROR"}


class Busy(amp.Command):
    """How long the worker has waited for work so far (``idle``: seconds in epoll_wait) by
    its monotonic ``clock``: between two answers, the rest of the time it was busy."""

    arguments = []
    response = [(b"idle", amp.Float()), (b"clock", amp.Float())]


class Shutdown(amp.Command):
    """Close every socket and exit (status 0) once the answer has been sent."""

    arguments = []
    response = []


# --- worker -> control process -------------------------------------------------------


class SendThroughSocket(amp.Command):
    """Send ``data`` to ``host``:``port`` through the daemon's socket ``socket``.

    For a socket the worker does not hold: the control process sends on the
    named socket whatever its transport (UDP of another pool, or a stream
    socket, which reuses or opens a connection). Fails with the reason.
    """

    arguments = [
        (b"socket", amp.Unicode()),
        (b"host", amp.Unicode()),
        (b"port", amp.Integer()),
        (b"data", LargeBytes()),
    ]
    response = []
    errors = {WorkerError: b"WORKER_ERROR"}


class SendManyThroughSockets(amp.Command):
    """`SendThroughSocket` for many messages in one round trip.

    ``messages`` is `encode_relays` bytes; each message is sent on its own
    (in order), and the answer comes once every send is done: ``failed``
    (`encode_failures`) gives the index of each message that could not be
    sent, with the reason. A garbled ``messages`` fails the whole command.
    """

    arguments = [(b"messages", LargeBytes())]
    response = [(b"failed", LargeBytes())]
    errors = {WorkerError: b"WORKER_ERROR"}


#: One message of `encode_relays`: lengths of socket name, host and data, and the port.
_RELAY_HEAD: Final = struct.Struct("!HHIH")


class Relayed(NamedTuple):
    """One message of a `SendManyThroughSockets` batch.

    (A NamedTuple: built twice for every relayed message, once in each
    process, and a frozen dataclass's ``__init__`` sets each field through
    ``object.__setattr__``.)
    """

    socket: str
    host: str
    port: int
    data: bytes


def encode_relays(messages: Iterable[Relayed]) -> bytes:
    """The ``messages`` of `SendManyThroughSockets`: per message a fixed head, then
    the socket name, the host (UTF-8) and the data, without separators."""
    parts: list[bytes] = []
    pack = _RELAY_HEAD.pack
    for message in messages:
        name = message.socket.encode("utf-8")
        host = message.host.encode("utf-8")
        parts += (pack(len(name), len(host), len(message.data), message.port), name, host)
        parts.append(message.data)
    return b"".join(parts)


def decode_relays(data: bytes) -> list[Relayed]:
    """The messages of `encode_relays`; `WorkerError` when the bytes do not add up."""
    messages: list[Relayed] = []
    view = memoryview(data)
    offset, end, head = 0, len(data), _RELAY_HEAD.size
    unpack = _RELAY_HEAD.unpack_from
    while offset < end:
        if end - offset < head:
            raise WorkerError(f"SendManyThroughSockets: message {len(messages)} is cut short")
        name_size, host_size, size, port = unpack(data, offset)
        offset += head
        stop = offset + name_size + host_size + size
        if stop > end:
            raise WorkerError(f"SendManyThroughSockets: message {len(messages)} is cut short")
        try:
            name = str(view[offset : offset + name_size], "utf-8")
            host = str(view[offset + name_size : offset + name_size + host_size], "utf-8")
        except UnicodeDecodeError:
            raise WorkerError(
                f"SendManyThroughSockets: message {len(messages)} has a name that is not UTF-8"
            ) from None
        messages.append(Relayed(name, host, port, data[stop - size : stop]))
        offset = stop
    return messages


# --- batches ---------------------------------------------------------------------------

#: Sockets in one batch command: the worker answers each batch as soon as it
#: is done, so a large reload is served in slices rather than all at the end.
BATCH_ITEMS: Final = 128


def batches(items: Sequence[T], most: int = BATCH_ITEMS) -> list[list[T]]:
    """``items`` cut in order into lists of at most ``most`` (none for no items)."""
    if most < 1:
        raise ValueError(f"a batch holds at least one item, not {most}")
    return [list(items[i : i + most]) for i in range(0, len(items), most)]


@dataclass(frozen=True)
class Adoption:
    """One socket of an `AdoptSockets` batch (its descriptor travels beside it)."""

    key: int
    slot: int | None
    shared: bool
    #: A static socket (``[core] listen``): looked up before the dynamic ones.
    static: bool
    sdef: SocketDef


def encode_adoptions(adoptions: Sequence[Adoption]) -> bytes:
    """The ``sockets`` of `AdoptSockets`: ``[[key, slot, shared, static, definition], ...]``."""
    return join_encoded([encode_adoption(adoption) for adoption in adoptions])


def encode_adoption(adoption: Adoption) -> bytes:
    """One item of `encode_adoptions` (the same for every worker: encode it once)."""
    a = adoption
    row = [a.key, a.slot, a.shared, a.static, definition_fields(a.sdef)]
    return json.dumps(row, separators=(",", ":")).encode("utf-8")


def join_encoded(items: Sequence[bytes]) -> bytes:
    """The JSON list of items already encoded (what ``json.dumps`` of the list gives)."""
    return b"[" + b",".join(items) + b"]"


def decode_adoptions(data: bytes) -> list[tuple[int, Adoption | WorkerError]]:
    """Each socket of an `AdoptSockets` batch by key: its adoption, or what is wrong with it.

    A garbled batch (not a JSON list, an item without its key) raises
    `WorkerError`; a bad definition is an error in its item's place (its
    descriptor must still be closed).
    """
    results: list[tuple[int, Adoption | WorkerError]] = []
    for item in _decode_list(data, "AdoptSockets"):
        if (
            not isinstance(item, list)
            or len(item) != 5
            or not _is_int(item[0])
            or not (item[1] is None or _is_int(item[1]))
            or not isinstance(item[2], bool)
            or not isinstance(item[3], bool)
        ):
            raise WorkerError(f"AdoptSockets: bad item {str(item)[:80]}")
        try:
            sdef = definition_from_fields(item[4])
        except WorkerError as error:
            results.append((item[0], error))
            continue
        results.append((item[0], Adoption(item[0], item[1], item[2], item[3], sdef)))
    return results


def encode_updates(updates: Sequence[tuple[int, SocketDef]]) -> bytes:
    """The ``sockets`` of `UpdateSockets`: ``[[key, definition], ...]``."""
    rows = [[key, definition_fields(sdef)] for key, sdef in updates]
    return json.dumps(rows, separators=(",", ":")).encode("utf-8")


def decode_updates(data: bytes) -> list[tuple[int, SocketDef | WorkerError]]:
    """Each (key, definition or error) of an `UpdateSockets` batch; `WorkerError` if garbled."""
    results: list[tuple[int, SocketDef | WorkerError]] = []
    for item in _decode_list(data, "UpdateSockets"):
        if not isinstance(item, list) or len(item) != 2 or not _is_int(item[0]):
            raise WorkerError(f"UpdateSockets: bad item {str(item)[:80]}")
        try:
            results.append((item[0], definition_from_fields(item[1])))
        except WorkerError as error:
            results.append((item[0], error))
    return results


def encode_entries(entries: Sequence[tuple[str, int | None, bool, SocketDef]]) -> bytes:
    """The ``entries`` of `AnnounceMany`: ``[[socket, slot, static, definition], ...]``."""
    rows = [[name, slot, static, definition_fields(sdef)] for name, slot, static, sdef in entries]
    return json.dumps(rows, separators=(",", ":")).encode("utf-8")


def decode_entries(data: bytes) -> list[tuple[str, int | None, bool, SocketDef]]:
    """The sockets of an `AnnounceMany` batch; `WorkerError` names a bad one."""
    results: list[tuple[str, int | None, bool, SocketDef]] = []
    for item in _decode_list(data, "AnnounceMany"):
        if (
            not isinstance(item, list)
            or len(item) != 4
            or not isinstance(item[0], str)
            or not (item[1] is None or _is_int(item[1]))
            or not isinstance(item[2], bool)
        ):
            raise WorkerError(f"AnnounceMany: bad item {str(item)[:80]}")
        results.append((item[0], item[1], item[2], definition_from_fields(item[3])))
    return results


def encode_failures(failures: Mapping[int, str]) -> bytes:
    """The ``failed`` answer of a batch: ``[[key, reason], ...]``."""
    if not failures:
        return b"[]"
    return json.dumps([[key, reason] for key, reason in failures.items()]).encode("utf-8")


def decode_failures(data: bytes) -> dict[int, str]:
    """The refused keys of a batch answer and why; `WorkerError` when garbled."""
    if data == b"[]":
        return {}
    failures: dict[int, str] = {}
    for item in _decode_list(data, "batch answer"):
        if not isinstance(item, list) or len(item) != 2 or not _is_int(item[0]):
            raise WorkerError(f"batch answer: bad item {str(item)[:80]}")
        failures[item[0]] = str(item[1])
    return failures


def _decode_list(data: bytes, what: str) -> list[Any]:
    try:
        items = json.loads(data)
    except ValueError as exc:
        raise WorkerError(f"{what}: not JSON: {exc}") from None
    if not isinstance(items, list):
        raise WorkerError(f"{what}: not a JSON list")
    return items


def _is_int(value: object) -> bool:
    return type(value) is int


def encode_spec(spec: AppSpec) -> bytes:
    """The ``spec`` of `Start`: ``{"source": ..., "text": ..., "secret": ...}``."""
    data = {"source": spec.source, "text": spec.text, "secret": spec.secret}
    return json.dumps(data, separators=(",", ":")).encode("utf-8")


#: The keys of `encode_spec`, each with its JSON type (None allowed but for source).
_SPEC_KEYS: Final = {"source": str, "text": str, "secret": str}


def decode_spec(data: bytes) -> AppSpec:
    """The `AppSpec` of `encode_spec`; raises `WorkerError` naming what is wrong.

    The settings text is checked as the control process checked it when it
    loaded the file (`sipsock.config.parse_config_text`).
    """
    try:
        fields_ = json.loads(data)
    except ValueError as exc:
        raise WorkerError(f"Start: spec is not JSON: {exc}") from None
    if not isinstance(fields_, dict) or set(fields_) != set(_SPEC_KEYS):
        raise WorkerError(f"Start: spec must hold exactly {', '.join(sorted(_SPEC_KEYS))}")
    for name, kind in _SPEC_KEYS.items():
        value = fields_[name]
        if not (isinstance(value, kind) or (value is None and name != "source")):
            raise WorkerError(f"Start: spec {name} is {repr(value)[:40]}")
    secret = fields_["secret"]
    if secret == "":
        raise WorkerError("Start: spec secret is empty")
    try:
        return thaw(fields_["source"], fields_["text"], secret)
    except ConfigError as exc:
        raise WorkerError(f"Start: spec settings: {exc}") from None


# --- wire forms ------------------------------------------------------------------------


def definition_fields(sdef: SocketDef) -> dict[str, Any]:
    """A `SocketDef` as a JSON object (every field, the row's text and id included)."""
    return {
        "proto": sdef.proto,
        "host": sdef.host,
        "port": sdef.port,
        "advertised_host": sdef.advertised_host,
        "advertised_port": sdef.advertised_port,
        "tag": sdef.tag,
        "flags": sorted(sdef.flags),
        "tos": sdef.tos,
        "text": sdef.text,
        "row_id": sdef.row_id,
    }


_PROTOS: Final = frozenset({"udp", "tcp", "tls", "ws", "wss"})


def definition_from_fields(data: object) -> SocketDef:
    """The `SocketDef` of `definition_fields`; raises `WorkerError` for anything else.

    A reload sends hundreds at once: a well-formed one is checked in one
    expression (`_well_formed`); anything else goes through the field-by-field
    reading that names what is wrong.
    """
    if type(data) is dict:
        sdef = _well_formed(data)
        if sdef is not None:
            return sdef
    return _read_definition(data)


#: The fields of a definition, in the order `_well_formed` reads them.
_FIELDS: Final = (
    "proto",
    "host",
    "port",
    "flags",
    "text",
    "advertised_host",
    "advertised_port",
    "tag",
    "tos",
    "row_id",
)


def _well_formed(data: dict[str, Any]) -> SocketDef | None:
    """The definition when every field has its type and range, else None."""
    proto, host, port, flags, text, ahost, aport, tag, tos, row_id = map(data.get, _FIELDS)
    if not (
        type(proto) is str
        and proto in _PROTOS
        and type(host) is str
        and type(port) is int
        and 0 <= port <= 65535
        and type(flags) is list
        and (not flags or all(type(f) is str and f in FLAG_NAMES for f in flags))
        and type(text) is str
        and (ahost is None or type(ahost) is str)
        and (aport is None or (type(aport) is int and 1 <= aport <= 65535))
        and (tag is None or type(tag) is str)
        and (tos is None or (type(tos) is int and 0 <= tos <= 255))
        and (row_id is None or type(row_id) is int)
    ):
        return None
    return SocketDef(
        proto=proto,
        host=host,
        port=port,
        advertised_host=ahost,
        advertised_port=aport,
        tag=tag,
        flags=frozenset(flags),
        tos=tos,
        text=text,
        row_id=row_id,
    )


def _read_definition(data: object) -> SocketDef:
    if not isinstance(data, dict):
        raise WorkerError("socket definition is not a JSON object")
    reader = _FieldReader(data)
    proto = reader.text("proto")
    if proto not in _PROTOS:
        raise WorkerError(f"socket definition: unknown proto {proto!r}")
    port = reader.integer("port", 0, 65535)
    flags = reader.value("flags", list)
    if not all(isinstance(f, str) and f in FLAG_NAMES for f in flags):
        raise WorkerError(f"socket definition: bad flags {flags!r}")
    advertised_port = reader.optional_integer("advertised_port", 1, 65535)
    tos = reader.optional_integer("tos", 0, 255)
    row_id = reader.optional_integer("row_id", None, None)
    return SocketDef(
        proto=proto,
        host=reader.text("host"),
        port=port,
        advertised_host=reader.optional_text("advertised_host"),
        advertised_port=advertised_port,
        tag=reader.optional_text("tag"),
        flags=frozenset(flags),
        tos=tos,
        text=reader.text("text"),
        row_id=row_id,
    )


@dataclass
class _FieldReader:
    data: Mapping[str, Any]

    def value(self, name: str, kind: type) -> Any:
        if name not in self.data:
            raise WorkerError(f"socket definition: {name} is missing")
        value = self.data[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise WorkerError(f"socket definition: {name} is {value!r}")
        return value

    def text(self, name: str) -> str:
        value: str = self.value(name, str)
        return value

    def optional_text(self, name: str) -> str | None:
        return None if self.data.get(name) is None else self.text(name)

    def integer(self, name: str, low: int | None, high: int | None) -> int:
        value: int = self.value(name, int)
        if (low is not None and value < low) or (high is not None and value > high):
            raise WorkerError(f"socket definition: {name} {value} is out of range")
        return value

    def optional_integer(self, name: str, low: int | None, high: int | None) -> int | None:
        return None if self.data.get(name) is None else self.integer(name, low, high)


@dataclass(frozen=True)
class SocketStats:
    """The counters of one socket in one worker."""

    key: int
    counters: SocketCounters = field(default_factory=SocketCounters)

    def as_row(self) -> list[int]:
        """``[key, counters...]`` as `Stats` sends it."""
        return [self.key, *(getattr(self.counters, name) for name in COUNTER_NAMES)]


def encode_stats_page(stats: Sequence[SocketStats], start: int) -> tuple[str, bool]:
    """The JSON page of `Stats` beginning at ``start``, and whether more follow."""
    page = stats[start : start + STATS_PAGE]
    return (
        json.dumps([s.as_row() for s in page], separators=(",", ":")),
        start + STATS_PAGE < len(stats),
    )


def encode_stats_rows(rows: Sequence[Sequence[int]]) -> str:
    """The JSON ``sockets`` of `Stats` for rows ``(key, counters...)`` already made."""
    return json.dumps(rows, separators=(",", ":"))


def decode_stats_page(text: str) -> list[SocketStats]:
    """The socket counters of one `Stats` page; raises `WorkerError` when malformed."""
    try:
        rows = json.loads(text)
    except ValueError as exc:
        raise WorkerError(f"Stats answer is not JSON: {exc}") from None
    if not isinstance(rows, list):
        raise WorkerError("Stats answer is not a list")
    return list(_decode_rows(rows))


def _decode_rows(rows: Iterable[Any]) -> Iterator[SocketStats]:
    width = 1 + len(COUNTER_NAMES)
    for row in rows:
        if (
            type(row) is not list
            or len(row) != width
            or not all(type(v) is int for v in row)  # bool is not int here
            or min(row) < 0
        ):
            raise WorkerError(f"Stats answer has a bad row {str(row)[:80]}")
        yield SocketStats(row[0], SocketCounters(*row[1:]))
