"""The one order in which every process looks the daemon's sockets up.

An application picks outgoing sockets by tag, slot or protocol
(`sipsock.apps.SocketDirectory`): in the control process the registry
answers, in a UDP worker its `WorkerDirectory`. When several sockets match
(two sockets share a tag), both must pick the same one, so both ask this
module:

1. static sockets first, in ``[core] listen`` order (the order the caller
   keeps them in);
2. then dynamic sockets in table order: by row id, then by slot (a socket
   without a row id, which the table never gives, comes last).

The order of the dynamic sockets comes from their definitions, not from the
order they were opened or announced in, which differs between processes
(a TCP socket opens at once, a UDP one once every worker adopted it).

Pure: no reactor, no I/O. Anything with a ``sdef`` and a ``slot`` can be
looked up (listeners, the workers' book entries).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

from sipsock.sockdef import SocketDef

#: Whether a socket (its definition and slot) is the one looked for.
Match = Callable[[SocketDef, "int | None"], bool]


class Placed(Protocol):
    """A socket as the look-ups see it: its definition and its slot (None: static)."""

    @property
    def sdef(self) -> SocketDef: ...

    @property
    def slot(self) -> int | None: ...


P = TypeVar("P", bound=Placed)


def dynamic_key(sdef: SocketDef, slot: int | None) -> tuple[int, int, int]:
    """Where a dynamic socket stands: row id (table order), then slot; no row id last."""
    if sdef.row_id is None:
        return (1, 0, -1 if slot is None else slot)
    return (0, sdef.row_id, -1 if slot is None else slot)


def in_order(static: Iterable[P], dynamic: Iterable[P]) -> list[P]:
    """Every socket in look-up order: ``static`` as given, then ``dynamic`` in table order."""
    return [*static, *sorted(dynamic, key=lambda item: dynamic_key(item.sdef, item.slot))]


def first_in_order(static: Iterable[P], dynamic: Iterable[P], match: Match) -> P | None:
    """The first socket in look-up order that ``match`` accepts, or None.

    One pass, no sorting: the first static match, else the dynamic match
    with the smallest `dynamic_key`.
    """
    for item in static:
        if match(item.sdef, item.slot):
            return item
    best: P | None = None
    best_key: tuple[int, int, int] | None = None
    for item in dynamic:
        if match(item.sdef, item.slot):
            key = dynamic_key(item.sdef, item.slot)
            if best_key is None or key < best_key:
                best, best_key = item, key
    return best


def has_tag(tag: str) -> Match:
    """Accepts the sockets with this tag."""
    return lambda sdef, slot: sdef.tag == tag


def in_slot(slot: int) -> Match:
    """Accepts the dynamic socket in this slot."""
    return lambda sdef, own: own == slot


def of_proto(proto: str) -> Match:
    """Accepts the sockets of this protocol (udp, tcp, tls, ws, wss)."""
    return lambda sdef, slot: sdef.proto == proto
