# mypy: disable-error-code="no-untyped-call"
"""AMP commands between the control process and its UDP workers, and their wire forms.

Control process to worker: `AdoptSocket` (a bound UDP descriptor, passed with
``amp.Descriptor``), `UpdateSocket`, `ReleaseSocket`, `SendDatagram` (the
control process sends UDP through a worker when it holds no descriptor),
`Announce` / `Withdraw` (the daemon's other sockets, so the worker's
application can choose them by tag or slot), `Stats` and `Shutdown`.

Worker to control process: `SendStream`, for a message the worker's
application sends through a socket the worker does not hold (TCP, TLS, WS,
WSS, or a UDP socket of another pool).

A pool-local integer ``key`` names each adopted socket on the wire; a
daemon-wide socket is named by its ``socket_text`` (``proto:host:port``).
The encoders and decoders here are pure; a value that does not decode raises
`WorkerError` naming what was wrong.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Final

from twisted.protocols import amp

from sipsock.sockdef import FLAG_NAMES, SocketDef
from sipsock.transport.base import SocketCounters

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


# --- control process -> worker -------------------------------------------------------


class AdoptSocket(amp.Command):
    """Serve a bound UDP descriptor under ``key``; ``shared`` when other workers read it too.

    The worker reads its own duplicate of the descriptor and closes the one
    it received. Adopting a key it already holds is an error.
    """

    arguments = [
        (b"key", amp.Integer()),
        (b"slot", amp.Integer(optional=True)),
        (b"fd", amp.Descriptor()),
        (b"definition", amp.Unicode()),
        (b"shared", amp.Boolean()),
    ]
    response = []
    errors = {WorkerError: b"WORKER_ERROR"}


class UpdateSocket(amp.Command):
    """New tag / advertised / tos / frag for the socket ``key`` (same endpoint)."""

    arguments = [(b"key", amp.Integer()), (b"definition", amp.Unicode())]
    response = []
    errors = {WorkerError: b"WORKER_ERROR"}


class ReleaseSocket(amp.Command):
    """Stop reading the socket ``key`` and close the worker's descriptor (idempotent)."""

    arguments = [(b"key", amp.Integer())]
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


class Announce(amp.Command):
    """A socket of the daemon (any transport, any process) the application may send through."""

    arguments = [
        (b"socket", amp.Unicode()),
        (b"slot", amp.Integer(optional=True)),
        (b"static", amp.Boolean()),
        (b"definition", amp.Unicode()),
    ]
    response = []
    errors = {WorkerError: b"WORKER_ERROR"}


class Withdraw(amp.Command):
    """The socket named ``socket`` is gone (idempotent)."""

    arguments = [(b"socket", amp.Unicode())]
    response = []
    errors = {WorkerError: b"WORKER_ERROR"}


class Stats(amp.Command):
    """The worker's pid, messages handled and per-socket counters, from socket ``start`` on.

    ``sockets`` is a JSON list of ``[key, counters...]`` (`COUNTER_NAMES`
    order), at most `STATS_PAGE` of them; ``more`` says another page follows.
    """

    arguments = [(b"start", amp.Integer())]
    response = [
        (b"pid", amp.Integer()),
        (b"handled", amp.Integer()),
        (b"sockets", amp.Unicode()),
        (b"more", amp.Boolean()),
    ]
    errors = {WorkerError: b"WORKER_ERROR"}


class Shutdown(amp.Command):
    """Close every socket and exit (status 0) once the answer has been sent."""

    arguments = []
    response = []


# --- worker -> control process -------------------------------------------------------


class SendStream(amp.Command):
    """Send ``data`` to ``host``:``port`` through the daemon's socket ``socket``.

    The control process sends it on the named socket whatever its transport
    (a stream socket reuses or opens a connection). Fails with the reason.
    """

    arguments = [
        (b"socket", amp.Unicode()),
        (b"host", amp.Unicode()),
        (b"port", amp.Integer()),
        (b"data", LargeBytes()),
    ]
    response = []
    errors = {WorkerError: b"WORKER_ERROR"}


# --- wire forms ------------------------------------------------------------------------


def encode_definition(sdef: SocketDef) -> str:
    """A `SocketDef` as JSON text (every field, the row's text and id included)."""
    return json.dumps(
        {
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
        },
        separators=(",", ":"),
    )


_PROTOS: Final = frozenset({"udp", "tcp", "tls", "ws", "wss"})


def decode_definition(text: str) -> SocketDef:
    """The `SocketDef` of `encode_definition`; raises `WorkerError` for anything else."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise WorkerError(f"socket definition is not JSON: {exc}") from None
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
            not isinstance(row, list)
            or len(row) != width
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in row)
        ):
            raise WorkerError(f"Stats answer has a bad row {str(row)[:80]}")
        yield SocketStats(row[0], SocketCounters(**dict(zip(COUNTER_NAMES, row[1:], strict=True))))
