"""The rules of a reload, without I/O: which rows become sockets, what changes.

`screen_rows` turns table rows into socket definitions and rejections,
`screen_conflicts` removes definitions that cannot coexist with the static
sockets or with each other, and `plan_reload` diffs the running set against
the wanted one. `ReloadReport` is what ``sockets_reload`` answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import and_, attrgetter, is_, is_not, not_
from typing import Any, Protocol, TypeVar

from sipsock.addresses import is_ip
from sipsock.sockdef import SocketDef, SocketDefError, parse_row, parse_row_id, show_value

T = TypeVar("T")


class RowLike(Protocol):
    """A row of the sockets table as a store returns it."""

    @property
    def id(self) -> Any: ...
    @property
    def socket(self) -> Any: ...
    @property
    def advertised(self) -> Any: ...
    @property
    def tag(self) -> Any: ...
    @property
    def flags(self) -> Any: ...
    @property
    def tos(self) -> Any: ...


@dataclass(frozen=True)
class Rejection:
    """A row that does not become a socket, and why."""

    row_id: int | None
    socket: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.row_id, "socket": self.socket, "reason": self.reason}


@dataclass(frozen=True)
class Failure:
    """A socket that was wanted but could not be opened (bind error, ...)."""

    socket: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"socket": self.socket, "reason": self.reason}


@dataclass
class ReloadReport:
    """What one reload did, socket by socket."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    failed: list[Failure] = field(default_factory=list)
    #: Worker processes that missed a deadline during the reload (killed and replaced).
    workers: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": list(self.added),
            "updated": list(self.updated),
            "removed": list(self.removed),
            "kept": list(self.kept),
            "rejected": [r.as_dict() for r in self.rejected],
            "failed": [f.as_dict() for f in self.failed],
            "workers": list(self.workers),
            "seconds": round(self.seconds, 6),
        }

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.updated)} updated, "
            f"{len(self.removed)} removed, {len(self.kept)} kept, "
            f"{len(self.rejected)} rejected, {len(self.failed)} failed"
            + (f", {len(self.workers)} late worker(s)" if self.workers else "")
        )


@dataclass(frozen=True)
class ReloadPlan:
    """The difference between the running sockets and the wanted ones.

    ``update`` pairs (old, new) definitions with the same endpoint (proto,
    host, port, reuse_port): they change in place, keeping descriptor and slot.
    ``retry`` are wanted definitions equal to a socket that failed to open.
    ``add`` is in table order, so slots are handed out in that order.
    """

    keep: tuple[SocketDef, ...] = ()
    update: tuple[tuple[SocketDef, SocketDef], ...] = ()
    remove: tuple[SocketDef, ...] = ()
    add: tuple[SocketDef, ...] = ()
    retry: tuple[SocketDef, ...] = ()


def row_text(value: object) -> str:
    """The socket column for a report: text as written, or NULL."""
    if isinstance(value, str):
        return value.strip(" \t")[:128]
    return "NULL" if value is None else show_value(value)


def screen_rows(rows: Iterable[RowLike]) -> tuple[list[SocketDef], list[Rejection]]:
    """Parse every row; a bad row becomes a rejection and never stops the others."""
    defs: list[SocketDef] = []
    rejections: list[Rejection] = []
    for row in rows:
        try:
            row_id = parse_row_id(row.id)
            defs.append(parse_row(row_id, row.socket, row.advertised, row.tag, row.flags, row.tos))
        except SocketDefError as error:
            rejections.append(Rejection(error.row_id, row_text(row.socket), str(error)))
    return defs, rejections


def changed_places(new: Sequence[object], old: Sequence[object]) -> list[int]:
    """The places of ``new`` that do not hold the very object ``old`` holds there.

    C-level (no hashing, no Python loop): a reload's rows, definitions and
    sockets come in table order, so what did not change is usually the same
    object at the same place, and the changed places are few.
    """
    count = min(len(new), len(old))
    changed = list(compress(range(count), map(is_not, new, old)))
    changed.extend(range(count, len(new)))
    return changed


def kept_at(values: Sequence[T], count: int, changed: Sequence[int]) -> list[T | None]:
    """``values`` cut or padded with None to ``count`` items, None at the ``changed`` places."""
    found: list[T | None] = list(values[:count])
    found.extend(repeat(None, count - len(found)))
    for index in changed:
        found[index] = None
    return found


#: A row's id and columns, the key of `RowScreen`'s memory (one C-level call a row).
_row_key = attrgetter("id", "socket", "advertised", "tag", "flags", "tos")

#: Rows remembered by value, at most this many times the table's rows (plus a few):
#: beyond, the memory starts again from the rows of the last call.
_KEPT_PER_ROW = 2


class RowScreen:
    """`screen_rows` with a memory of the previous reloads.

    A row whose id and columns are unchanged since the last call gives the same
    definition or rejection without being parsed again, so a reload of a large
    table that changed in a few rows costs a dictionary look-up per other row
    (done by C-level ``map`` calls, not a Python loop).

    Rows of the classes in ``frozen`` (immutable: the stores' `SocketRow`)
    are first matched by identity with the row at the same place in the
    last call (`changed_places`): a store hands back the very row object of the
    last read for a row that did not change, and an object kept alive since
    has the columns it had. Only the other rows build their key of six columns.
    """

    def __init__(self, frozen: tuple[type, ...] = ()) -> None:
        self._frozen = frozenset(frozen)
        #: By value (row id and columns): each row's result, kept between calls.
        self._previous: dict[tuple[Any, ...], SocketDef | Rejection] = {}
        #: The rows of the last call and each one's result, in order (empty unless
        #: every row was of a ``frozen`` class).
        self._rows: list[RowLike] = []
        self._results: list[SocketDef | Rejection] = []

    def screen(self, rows: Iterable[RowLike]) -> tuple[list[SocketDef], list[Rejection]]:
        rows = list(rows)
        frozen = bool(self._frozen) and self._frozen.issuperset(map(type, rows))
        if frozen:
            missing = changed_places(rows, self._rows)
            found = kept_at(self._results, len(rows), missing)
        else:
            missing, found = list(range(len(rows))), [None] * len(rows)
        if missing:
            try:
                keys: list[tuple[Any, ...]] = [_row_key(rows[index]) for index in missing]
                looked_up = list(map(self._previous.get, keys))
            except TypeError:  # an unhashable column value: row by row
                return self._screen_each(rows)
            if len(self._previous) + len(keys) > _KEPT_PER_ROW * len(rows) + 64:
                self._previous = {}  # bounded: what is still in the table comes back below
            for index, key, known in zip(missing, keys, looked_up, strict=True):
                # (A row twice in one table is parsed once: the first put it there.)
                result = known or self._previous.get(key)
                if result is None:
                    parsed, rejected = screen_rows([rows[index]])
                    result = parsed[0] if parsed else rejected[0]
                found[index] = self._previous[key] = result
            if len(self._previous) < len(rows):
                # Started again: every row of this table is remembered by value too.
                every = zip(map(_row_key, rows), found, strict=True)
                self._previous.update(every)  # type: ignore[arg-type]
        results: list[SocketDef | Rejection] = found  # type: ignore[assignment]
        self._rows, self._results = (rows, results) if frozen else ([], [])
        if Rejection not in set(map(type, results)):
            return results, []  # type: ignore[return-value]
        rejections = [r for r in results if r.__class__ is Rejection]
        return [r for r in results if r.__class__ is not Rejection], rejections  # type: ignore[misc]

    def _screen_each(self, rows: list[RowLike]) -> tuple[list[SocketDef], list[Rejection]]:
        """`screen` one row at a time: a row with an unhashable value is parsed every time."""
        current: dict[tuple[Any, ...], SocketDef | Rejection] = {}
        defs: list[SocketDef] = []
        rejections: list[Rejection] = []
        for row in rows:
            key: tuple[Any, ...] = (row.id, row.socket, row.advertised, row.tag, row.flags, row.tos)
            try:
                result = self._previous.get(key) or current.get(key)
            except TypeError:  # an unhashable column value: parse it every time
                key, result = (), None
            if result is None:
                parsed, rejected = screen_rows([row])
                result = parsed[0] if parsed else rejected[0]
            if key:
                current[key] = result
            if isinstance(result, Rejection):
                rejections.append(result)
            else:
                defs.append(result)
        self._previous = current
        return defs, rejections


_bind_key = attrgetter("bind_key")
_host = attrgetter("host")


def _where(sdef: SocketDef) -> str:
    return f"row {sdef.row_id}: " if sdef.row_id is not None else ""


def screen_conflicts(
    defs: Sequence[SocketDef], static: Sequence[SocketDef]
) -> tuple[list[SocketDef], list[Rejection]]:
    """Drop what cannot be bound beside the static sockets or an earlier row.

    Identical definitions collapse into the first (OpenSIPS's rule); a row on
    the address of a static socket, or on the address of an earlier different
    row, is rejected with the reason.
    """
    static_keys = {s.bind_key: s for s in static}
    keys = list(map(_bind_key, defs))
    distinct = set(keys)
    if len(distinct) == len(keys) and distinct.isdisjoint(static_keys):
        return list(defs), []  # every address once, none static: nothing to drop
    seen: set[SocketDef] = set()
    taken: dict[tuple[str, str, int], SocketDef] = {}
    kept: list[SocketDef] = []
    rejections: list[Rejection] = []
    for sdef, key in zip(defs, keys, strict=True):
        other = taken.get(key)
        if other is not None and sdef in seen:  # an identical definition has the same key
            continue
        if static_keys and key in static_keys:
            rejections.append(
                Rejection(
                    sdef.row_id,
                    sdef.text,
                    f"{_where(sdef)}socket {sdef.socket_text} is on the address of the static "
                    f"socket {static_keys[key].socket_text}",
                )
            )
            continue
        if other is not None and not (sdef.reuse_port and other.reuse_port):
            rejections.append(
                Rejection(
                    sdef.row_id,
                    sdef.text,
                    f"{_where(sdef)}socket {sdef.socket_text} uses the same address as row "
                    f"{other.row_id} ({other.text}); set both apart or merge them",
                )
            )
            continue
        seen.add(sdef)
        taken[key] = sdef
        kept.append(sdef)
    return kept, rejections


def new_row_conflict(
    new: SocketDef, existing: Sequence[SocketDef], static: Sequence[SocketDef]
) -> str | None:
    """Why a row about to be added would not become a socket beside the table's rows
    and the static sockets (None: it would); `screen_conflicts`'s rule, plus: a row
    identical to one already there adds nothing."""
    for sdef in existing:
        if sdef == new:
            return (
                f"socket {new.text} is already defined by row {sdef.row_id} ({sdef.text}): "
                "nothing to add"
            )
    _, rejected = screen_conflicts([*existing, new], static)
    return next((r.reason for r in rejected if r.row_id == new.row_id), None)


def host_names(defs: Iterable[SocketDef]) -> list[str]:
    """The host names (not addresses) of ``defs``, sorted; each host once."""
    return sorted(host for host in set(map(_host, defs)) if not is_ip(host))


def plan_reload(running: Mapping[SocketDef, bool], wanted: Sequence[SocketDef]) -> ReloadPlan:
    """Diff running sockets (definition -> is it open) against the wanted ones.

    A wanted definition is first matched with the running one at the same
    place by identity (`changed_places`: a row that did not change gives the very
    definition its socket runs under), the others by equality
    (`SocketDef.__hash__` is a Python call).
    """
    running_defs = list(running)
    # Where wanted and running do not hold the same object: by equality.
    others = changed_places(wanted, running_defs)
    states = kept_at(list(running.values()), len(wanted), others)
    for index in others:
        states[index] = running.get(wanted[index])
    gone_places = [i for i in others if i < len(running_defs)]
    gone_places.extend(range(len(wanted), len(running_defs)))
    gone: list[SocketDef] = []
    if gone_places:
        equal = {wanted[index] for index in others}
        gone = [running_defs[i] for i in gone_places if running_defs[i] not in equal]
    if None not in states and False not in states:
        keep: list[SocketDef] = list(wanted)
        retry: list[SocketDef] = []
        new: list[SocketDef] = []
    else:  # C-level sorting: running and open, new, running but not open
        keep = list(compress(wanted, states))
        new = list(compress(wanted, map(is_, states, repeat(None))))
        retry = []
        if len(keep) + len(new) < len(wanted):
            failed = map(and_, map(not_, states), map(is_not, states, repeat(None)))
            retry = list(compress(wanted, failed))
    # A gone socket that is open and shares its endpoint with a new definition
    # is updated in place instead of closed and opened again.
    gone_by_endpoint = {s.endpoint: s for s in gone if running[s]}
    update: list[tuple[SocketDef, SocketDef]] = []
    add: list[SocketDef] = []
    for sdef in new:
        old = gone_by_endpoint.pop(sdef.endpoint, None)
        if old is not None:
            update.append((old, sdef))
        else:
            add.append(sdef)
    updated_old = {old for old, _ in update}
    remove = [s for s in gone if s not in updated_old]
    return ReloadPlan(
        keep=tuple(keep),
        update=tuple(update),
        remove=tuple(remove),
        add=tuple(add),
        retry=tuple(retry),
    )
