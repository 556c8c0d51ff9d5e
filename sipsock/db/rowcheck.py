"""``sipsock-db add``: would the daemon take this row beside the table and the static sockets?

The daemon's own rules, not a copy: `sipsock.sockdef.parse_row` for the row,
`sipsock.reloadplan.screen_rows` for the rows already there,
`sipsock.reloadplan.host_names` and a lookup for the names, and
`sipsock.reloadplan.new_row_conflict` (the daemon's `screen_conflicts`) for a
row on the address of another row or of a static socket (``[core] listen``
of the same configuration file).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence

from sipsock.db.store import SocketRow
from sipsock.reloadplan import host_names, new_row_conflict, screen_rows
from sipsock.resolver import lookup_addresses
from sipsock.sockdef import SocketDef


class RowConflictError(Exception):
    """The row would be rejected by the daemon; the message says why and with what."""


def check_new_row(
    new: SocketDef,
    rows: Sequence[SocketRow],
    static: Sequence[SocketDef],
    lookup: Callable[[str], list[str]] = lookup_addresses,
) -> None:
    """Raise `RowConflictError` if the daemon would not open ``new`` beside ``rows``, ``static``.

    Host names are resolved as the daemon does (the first address); rows
    already rejected, or on names that do not resolve, are left out.
    """
    existing, _ = screen_rows(rows)
    resolved: dict[str, str] = {}
    for name in host_names([new, *existing, *static]):
        try:
            addresses = lookup(name)
        except OSError as error:
            if name == new.host:
                reason = error.args[1] if isinstance(error, socket.gaierror) else str(error)
                raise RowConflictError(
                    f"socket {new.text}: cannot resolve host name {name!r}: {reason}"
                ) from None
            continue
        if addresses:
            resolved[name] = addresses[0]
        elif name == new.host:
            raise RowConflictError(f"socket {new.text}: host name {name!r} has no address")
    known = set(resolved)
    names = set(host_names([new, *existing, *static]))

    def settled(defs: Sequence[SocketDef]) -> list[SocketDef]:
        return [
            sdef.with_host(resolved[sdef.host]) if sdef.host in known else sdef
            for sdef in defs
            if sdef.host in known or sdef.host not in names
        ]

    reason = new_row_conflict(settled([new])[0], settled(existing), settled(static))
    if reason is not None:
        raise RowConflictError(reason)
