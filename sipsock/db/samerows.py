"""`SameRows`: a read's rows as `SocketRow` objects, the very same object for an unchanged row.

A reload matches the rows that did not change by identity
(`sipsock.reloadplan.RowScreen`, `plan_reload`), so every store hands back the
`SocketRow` of its last read for a row whose values are unchanged. Each row
is compared first with the row at the same place in the last read (tuple
equality, C-level: no hashing of the fresh strings a driver returns), then
looked up by value among the rows read lately (a row moved by an insert or a
delete); only a row never seen is built. Memory: the rows of the last read,
and by value at most about twice as many.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import compress, repeat
from operator import ne

from sipsock.db.store import SocketRow, row_from_tuple

#: Rows remembered by value, at most this many times the rows of a read (plus a few).
KEPT_PER_ROW = 2


class SameRows:
    """The rows of each read, reusing the objects of unchanged rows (see the module)."""

    def __init__(self) -> None:
        self._raw: list[tuple[object, ...]] = []
        #: The rows of the last read, in order.
        self.rows: list[SocketRow] = []
        self._known: dict[tuple[object, ...], SocketRow] = {}

    def rows_of(self, raw: Iterable[Sequence[object]]) -> list[SocketRow]:
        """The rows of a result (tuples of `Statements.select_rows`), a new list each time."""
        values: list[tuple[object, ...]] = list(map(tuple, raw))
        last_raw, last_rows = self._raw, self.rows
        if values == last_raw:
            return list(last_rows)
        count = min(len(values), len(last_raw))
        found: list[SocketRow | None] = [*last_rows[:count], *repeat(None, len(values) - count)]
        changed = list(compress(range(count), map(ne, values, last_raw)))
        changed.extend(range(count, len(values)))
        try:
            known = self._known
            if len(known) + len(changed) > KEPT_PER_ROW * len(values) + 64:
                known = self._known = dict(zip(last_raw, last_rows, strict=True))
            for index in changed:
                value = values[index]
                row = known.get(value)
                if row is None:
                    row = known[value] = row_from_tuple(value)
                found[index] = row
        except TypeError:  # an unhashable value from the driver: build the changed rows
            self._known = {}
            for index in changed:
                found[index] = row_from_tuple(values[index])
        rows: list[SocketRow] = found  # type: ignore[assignment]
        self._raw, self.rows = values, rows
        return list(rows)
