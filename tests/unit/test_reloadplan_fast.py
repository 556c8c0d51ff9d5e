"""The reload rules' C-level shortcuts give exactly what the row-by-row rules give.

`RowScreen.screen`, `screen_conflicts` and `plan_reload` skip their Python
loops when nothing needs them (no row changed, no address twice, every wanted
socket running). The references below are the row-by-row rules as they were
written before the shortcuts; any table must give the same answer both ways.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st

from sipsock.db import SocketRow
from sipsock.reloadplan import (
    Rejection,
    RowScreen,
    plan_reload,
    screen_conflicts,
    screen_rows,
)
from sipsock.sockdef import SocketDef

SOCKETS = [
    "udp:127.0.0.1:5060",
    "udp:127.0.0.1:5061",
    "tcp:127.0.0.1:5060",
    "tls:127.0.0.1:5060",
    "udp:127.0.0.2:5060",
    "udp:[::1]:5060",
    "bogus",
    "udp:127.0.0.1:99999",
]
TAGS = [None, "a", "b"]
FLAGS = [None, "reuse_port", "frag"]

rows_strategy = st.lists(
    st.builds(
        lambda socket, tag, flags: (socket, tag, flags),
        st.sampled_from(SOCKETS),
        st.sampled_from(TAGS),
        st.sampled_from(FLAGS),
    ),
    max_size=12,
)


def make_rows(specs: Sequence[tuple[str, str | None, str | None]]) -> list[SocketRow]:
    return [
        SocketRow(index + 1, socket, tag=tag, flags=flags)
        for index, (socket, tag, flags) in enumerate(specs)
    ]


def reference_conflicts(
    defs: Sequence[SocketDef], static: Sequence[SocketDef]
) -> tuple[list[SocketDef], list[str]]:
    """`screen_conflicts` row by row, as written before its shortcut (reasons only)."""
    static_keys = {s.bind_key: s for s in static}
    seen: set[SocketDef] = set()
    taken: dict[tuple[str, str, int], SocketDef] = {}
    kept: list[SocketDef] = []
    reasons: list[str] = []
    for sdef in defs:
        key = ("udp" if sdef.proto == "udp" else "tcp", sdef.host, sdef.port)
        other = taken.get(key)
        if other is not None and sdef in seen:
            continue
        if key in static_keys:
            reasons.append(f"static {sdef.row_id}")
            continue
        if other is not None and not (sdef.reuse_port and other.reuse_port):
            reasons.append(f"same address {sdef.row_id} {other.row_id}")
            continue
        seen.add(sdef)
        taken[key] = sdef
        kept.append(sdef)
    return kept, reasons


def reference_plan(running: Mapping[SocketDef, bool], wanted: Sequence[SocketDef]) -> Any:
    """`plan_reload` as written before its shortcuts: (keep, update, remove, add, retry)."""
    keep: list[SocketDef] = []
    retry: list[SocketDef] = []
    new: list[SocketDef] = []
    for sdef in wanted:
        state = running.get(sdef)
        if state is None:
            new.append(sdef)
        elif state:
            keep.append(sdef)
        else:
            retry.append(sdef)
    wanted_set = set(wanted)
    gone = [s for s in running if s not in wanted_set]
    by_endpoint = {s.endpoint: s for s in gone if running[s]}
    update: list[tuple[SocketDef, SocketDef]] = []
    add: list[SocketDef] = []
    for sdef in new:
        old = by_endpoint.pop(sdef.endpoint, None)
        if old is not None:
            update.append((old, sdef))
        else:
            add.append(sdef)
    updated_old = {old for old, _ in update}
    remove = [s for s in gone if s not in updated_old]
    return keep, update, remove, add, retry


@settings(max_examples=300, deadline=None)
@given(before=rows_strategy, after=rows_strategy, static=rows_strategy)
def test_the_shortcuts_answer_as_the_rules_row_by_row(
    before: list[tuple[str, str | None, str | None]],
    after: list[tuple[str, str | None, str | None]],
    static: list[tuple[str, str | None, str | None]],
) -> None:
    screen = RowScreen()
    old_rows, new_rows = make_rows(before), make_rows(after)
    # The second table keeps the first's row objects where a row did not change,
    # as the stores do.
    kept_objects = {(r.id, r.socket, r.tag, r.flags): r for r in old_rows}
    new_rows = [kept_objects.get((r.id, r.socket, r.tag, r.flags), r) for r in new_rows]
    for rows in (old_rows, new_rows, new_rows):
        defs, rejected = screen.screen(rows)
        want_defs, want_rejected = screen_rows(rows)
        assert defs == want_defs
        assert [d.row_id for d in defs] == [d.row_id for d in want_defs]
        assert rejected == want_rejected
        assert all(isinstance(r, Rejection) for r in rejected)

    static_defs, _ = screen_rows(make_rows(static[:3]))
    old_defs, _ = screen_rows(old_rows)
    new_defs, _ = screen_rows(new_rows)
    for defs, fixed in ((new_defs, static_defs), (new_defs, []), (old_defs, static_defs)):
        kept, rejections = screen_conflicts(defs, fixed)
        want_kept, want_reasons = reference_conflicts(defs, fixed)
        assert kept == want_kept
        assert [r.row_id for r in kept] == [r.row_id for r in want_kept]
        assert len(rejections) == len(want_reasons)

    running_defs, _ = screen_conflicts(old_defs, [])
    wanted, _ = screen_conflicts(new_defs, [])
    for running in (
        dict.fromkeys(running_defs, True),
        {s: index % 2 == 0 for index, s in enumerate(running_defs)},
    ):
        for target in (wanted, running_defs):
            plan = plan_reload(running, target)
            keep, update, remove, add, retry = reference_plan(running, target)
            assert list(plan.keep) == keep
            assert list(plan.update) == update
            assert list(plan.remove) == remove
            assert list(plan.add) == add
            assert list(plan.retry) == retry


def test_a_row_screened_twice_in_one_table_gives_one_definition() -> None:
    rows = [SocketRow(1, "udp:127.0.0.1:5060"), SocketRow(1, "udp:127.0.0.1:5060")]
    defs, rejected = RowScreen().screen(rows)
    assert rejected == []
    assert defs[0] is defs[1]


def test_a_row_with_an_unhashable_value_is_screened_every_time() -> None:
    screen = RowScreen()
    rows = [
        SocketRow(1, "udp:127.0.0.1:5060", tag=cast(Any, ["a"])),
        SocketRow(2, "udp:127.0.0.1:5061"),
    ]
    for _ in range(2):
        defs, rejected = screen.screen(rows)
        assert [d.socket_text for d in defs] == ["udp:127.0.0.1:5061"]
        assert [r.row_id for r in rejected] == [1]


class MutableRow:
    """A row object a store might change in place (not one of the frozen classes)."""

    def __init__(self, row_id: int, socket: str, tag: str | None = None) -> None:
        self.id, self.socket, self.tag = row_id, socket, tag
        self.advertised = self.flags = self.tos = None


def test_only_rows_of_frozen_classes_are_matched_by_identity() -> None:
    screen = RowScreen(frozen=(SocketRow,))
    row = MutableRow(1, "udp:127.0.0.1:5060")
    screen.screen([row])
    row.tag = "changed"
    defs, _ = screen.screen([row])
    assert defs[0].tag == "changed"


@settings(max_examples=300, deadline=None)
@given(before=rows_strategy, after=rows_strategy, order=st.randoms(use_true_random=False))
def test_identity_first_screening_and_planning_give_the_rules_answer_and_objects(
    before: list[tuple[str, str | None, str | None]],
    after: list[tuple[str, str | None, str | None]],
    order: Any,
) -> None:
    """Rows kept (same objects), moved, new or equal copies: the same answer, the same objects."""
    screen = RowScreen(frozen=(SocketRow,))
    old_rows = make_rows(before)
    kept_objects = {(r.id, r.socket, r.tag, r.flags): r for r in old_rows}
    new_rows = [kept_objects.get((r.id, r.socket, r.tag, r.flags), r) for r in make_rows(after)]
    order.shuffle(new_rows)
    for rows in (old_rows, new_rows, list(new_rows), old_rows):
        defs, rejected = screen.screen(rows)
        want_defs, want_rejected = screen_rows(rows)
        assert defs == want_defs
        assert [d.row_id for d in defs] == [d.row_id for d in want_defs]
        assert rejected == want_rejected

    running_defs, _ = screen_conflicts(screen.screen(old_rows)[0], [])
    new_defs, _ = screen_conflicts(screen.screen(new_rows)[0], [])
    # Some wanted definitions are the running objects, others equal copies.
    copies = [SocketDef(**{f: getattr(s, f) for f in COPIED}) for s in new_defs[::2]]
    mixed = list(new_defs)
    mixed[::2] = copies
    for running in (
        dict.fromkeys(running_defs, True),
        {s: index % 3 != 1 for index, s in enumerate(running_defs)},
    ):
        for target in (new_defs, mixed, running_defs, running_defs[::-1]):
            plan = plan_reload(running, target)
            want = reference_plan(running, target)
            got = (plan.keep, plan.update, plan.remove, plan.add, plan.retry)
            for mine, theirs in zip(got, want, strict=True):
                assert list(mine) == theirs
                flat = [x for item in mine for x in (item if isinstance(item, tuple) else (item,))]
                flat_want = [
                    x for item in theirs for x in (item if isinstance(item, tuple) else (item,))
                ]
                assert all(a is b for a, b in zip(flat, flat_want, strict=True))


COPIED = (
    "proto",
    "host",
    "port",
    "advertised_host",
    "advertised_port",
    "tag",
    "flags",
    "tos",
    "text",
    "row_id",
)
