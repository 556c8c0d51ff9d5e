"""The pure rules of a reload: screening rows, conflicts, and the diff."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sipsock.reloadplan import (
    ReloadReport,
    RowScreen,
    new_row_conflict,
    plan_reload,
    screen_conflicts,
    screen_rows,
)
from sipsock.sockdef import SocketDef, parse_row


@dataclass(frozen=True)
class Row:
    id: int
    socket: Any
    advertised: Any = None
    tag: Any = None
    flags: Any = None
    tos: Any = None


def sd(row_id: int, socket: str, **columns: str) -> SocketDef:
    return parse_row(row_id, socket, **columns)


def test_bad_rows_are_rejected_and_good_rows_kept() -> None:
    rows = [
        Row(1, "udp:127.0.0.1:5070"),
        Row(2, None),
        Row(3, "bin:127.0.0.1:5555"),
        Row(4, "udp:127.0.0.1:5071", tos="IPTOS_BOGUS"),
        Row(5, "tcp:127.0.0.1:5072"),
    ]
    defs, rejected = screen_rows(rows)
    assert [d.row_id for d in defs] == [1, 5]
    assert [(r.row_id, r.socket) for r in rejected] == [
        (2, "NULL"),
        (3, "bin:127.0.0.1:5555"),
        (4, "udp:127.0.0.1:5071"),
    ]
    assert rejected[0].reason == "row 2: socket NULL: the socket column is empty"


def test_a_null_first_row_does_not_hide_the_table() -> None:
    defs, rejected = screen_rows([Row(1, None), Row(2, "udp:127.0.0.1:5070")])
    assert [d.row_id for d in defs] == [2]
    assert len(rejected) == 1


def test_identical_rows_collapse_into_the_first() -> None:
    defs = [sd(1, "udp:127.0.0.1:5070"), sd(2, "UDP:127.0.0.1:5070")]
    kept, rejected = screen_conflicts(defs, [])
    assert [d.row_id for d in kept] == [1]
    assert rejected == []


def test_a_row_on_a_static_address_is_rejected() -> None:
    static = [sd(0, "tcp:127.0.0.1:5060")]
    kept, rejected = screen_conflicts(
        [sd(1, "tls:127.0.0.1:5060"), sd(2, "udp:127.0.0.1:5060")], static
    )
    assert [d.row_id for d in kept] == [2]
    assert "on the address of the static socket tcp:127.0.0.1:5060" in rejected[0].reason


def test_two_different_rows_on_one_address_keep_the_first() -> None:
    kept, rejected = screen_conflicts(
        [sd(1, "udp:127.0.0.1:5070", tag="a"), sd(2, "udp:127.0.0.1:5070", tag="b")], []
    )
    assert [d.row_id for d in kept] == [1]
    assert "same address as row 1" in rejected[0].reason


def test_reuse_port_rows_may_share_an_address() -> None:
    defs = [
        sd(1, "udp:127.0.0.1:5070", tag="a", flags="reuse_port"),
        sd(2, "udp:127.0.0.1:5070", tag="b", flags="reuse_port"),
    ]
    assert screen_conflicts(defs, [])[0] == defs


def test_plan_keeps_equal_sockets_and_adds_in_table_order() -> None:
    a, b, c = sd(1, "udp:127.0.0.1:5070"), sd(2, "udp:127.0.0.1:5071"), sd(3, "tcp:127.0.0.1:5072")
    plan = plan_reload({a: True}, [c, a, b])
    assert plan.keep == (a,)
    assert plan.add == (c, b)
    assert plan.remove == ()
    assert plan.update == ()


def test_plan_updates_in_place_when_only_tag_advertised_tos_or_frag_change() -> None:
    old = sd(1, "udp:127.0.0.1:5070", tag="a")
    for change in ({"tag": "b"}, {"advertised": "1.2.3.4"}, {"tos": "16"}, {"flags": "frag"}):
        new = sd(1, "udp:127.0.0.1:5070", **change)
        plan = plan_reload({old: True}, [new])
        assert plan.update == ((old, new),), change
        assert plan.add == plan.remove == ()


def test_plan_replaces_when_endpoint_changes() -> None:
    old = sd(1, "udp:127.0.0.1:5070")
    for new in (
        sd(1, "tcp:127.0.0.1:5070"),
        sd(1, "udp:127.0.0.1:5071"),
        sd(1, "udp:127.0.0.2:5070"),
        sd(1, "udp:127.0.0.1:5070", flags="reuse_port"),
    ):
        plan = plan_reload({old: True}, [new])
        assert (plan.remove, plan.add, plan.update) == ((old,), (new,), ())


def test_plan_retries_a_failed_socket_and_replaces_a_failed_one_that_changed() -> None:
    failed = sd(1, "udp:127.0.0.1:5070")
    assert plan_reload({failed: False}, [failed]).retry == (failed,)
    changed = sd(1, "udp:127.0.0.1:5070", tag="x")
    plan = plan_reload({failed: False}, [changed])
    assert (plan.remove, plan.add, plan.update) == ((failed,), (changed,), ())


def test_plan_removes_what_is_gone() -> None:
    a, b = sd(1, "udp:127.0.0.1:5070"), sd(2, "udp:127.0.0.1:5071")
    plan = plan_reload({a: True, b: True}, [b])
    assert plan.remove == (a,)
    assert plan.keep == (b,)


def test_report_renders_every_list() -> None:
    report = ReloadReport(added=["udp:127.0.0.1:5070"], seconds=0.0123456)
    assert report.as_dict()["added"] == ["udp:127.0.0.1:5070"]
    assert report.as_dict()["seconds"] == 0.012346
    assert report.summary().startswith("1 added, 0 updated")
    assert report.changed


def test_row_screen_gives_the_same_answers_and_reparses_only_changed_rows() -> None:
    screen = RowScreen()
    rows = [Row(1, "udp:127.0.0.1:5070"), Row(2, "bin:1.2.3.4"), Row(3, "udp:127.0.0.1:5071")]
    first = screen.screen(rows)
    assert first == screen_rows(rows)
    again = screen.screen(rows)
    assert again == first
    assert again[0][0] is first[0][0]  # not parsed again
    changed = [Row(1, "udp:127.0.0.1:5070", tag="t"), *rows[1:]]
    defs, _ = screen.screen(changed)
    assert defs[0].tag == "t"
    assert defs[1] is first[0][1]


def test_row_screen_copes_with_unhashable_values() -> None:
    screen = RowScreen()
    defs, rejected = screen.screen([Row(1, ["udp:127.0.0.1:5070"])])
    assert defs == []
    assert "not text but list" in rejected[0].reason


def test_socket_defs_hash_by_identity() -> None:
    a = sd(1, "udp:127.0.0.1:5070", tag="x")
    b = sd(2, "UDP:127.0.0.1:5070", tag="x")
    assert a != sd(1, "udp:127.0.0.1:5070")
    assert {a: 1}[b] == 1
    assert hash(a) == hash(b)


def test_new_row_conflict_names_the_row_or_static_socket_it_collides_with() -> None:
    existing = [parse_row(3, "udp:10.0.0.1:5060", tag="a"), parse_row(4, "tcp:10.0.0.1:5070")]
    static = [parse_row(None, "udp:10.0.0.9:5060")]
    conflict = new_row_conflict
    assert conflict(parse_row(None, "udp:10.0.0.2:5060"), existing, static) is None
    assert conflict(parse_row(None, "udp:10.0.0.1:5070"), existing, static) is None  # UDP vs TCP
    assert "already defined by row 3" in str(
        conflict(parse_row(None, "udp:10.0.0.1:5060", tag="a"), existing, static)
    )
    assert "same address as row 3 (udp:10.0.0.1:5060)" in str(
        conflict(parse_row(None, "udp:10.0.0.1:5060", tag="b"), existing, static)
    )
    assert "same address as row 4" in str(
        conflict(parse_row(None, "tls:10.0.0.1:5070"), existing, static)
    )
    assert "static socket udp:10.0.0.9:5060" in str(
        conflict(parse_row(None, "udp:10.0.0.9:5060"), existing, static)
    )
    reuse = [parse_row(5, "udp:10.0.0.5:5060", flags="reuse_port")]
    assert (
        conflict(parse_row(None, "udp:10.0.0.5:5060", "x:1", flags="reuse_port"), reuse, []) is None
    )


def test_a_row_with_a_null_or_non_integer_id_is_rejected_and_the_others_load() -> None:
    rows: list[Any] = [
        Row(1, "udp:127.0.0.1:5070"),
        Row(None, "udp:127.0.0.1:5071"),  # type: ignore[arg-type]
        Row("x7", "udp:127.0.0.1:5072"),  # type: ignore[arg-type]
        Row("8", "udp:127.0.0.1:5073"),  # type: ignore[arg-type]
    ]
    defs, rejected = screen_rows(rows)
    assert [d.row_id for d in defs] == [1, 8]
    assert [(r.row_id, r.socket) for r in rejected] == [
        (None, "udp:127.0.0.1:5071"),
        (None, "udp:127.0.0.1:5072"),
    ]
    assert rejected[0].reason == "id NULL: not an integer row id (NULL)"
    assert rejected[1].reason == "id 'x7': not an integer row id (a str)"
