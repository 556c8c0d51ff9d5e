"""`OptionsMemo`: one bounded object for everything the OPTIONS shortcut remembers."""

from __future__ import annotations

from sipsock.sip.memo import MAX_ITEM, Memo
from sipsock.sip.options_memo import BUDGET, OptionsMemo


def test_a_line_keeps_its_number_and_a_forgotten_line_gets_a_new_one() -> None:
    memo = OptionsMemo()
    first = memo.line_id(b"To: <sip:a@b>")
    assert memo.line_id(b"To: <sip:a@b>") == first
    other = memo.line_id(b"Max-Forwards: 70")
    assert other != first
    memo.clear()
    assert memo.line_id(b"To: <sip:a@b>") not in (first, other)


def test_a_line_too_long_to_keep_gets_a_new_number_every_time() -> None:
    memo = OptionsMemo()
    long_line = b"Subject: " + b"x" * MAX_ITEM
    assert memo.line_id(long_line) != memo.line_id(long_line)
    assert len(memo) == 0


def test_size_and_entries_count_every_memo_and_clear_forgets_them_all() -> None:
    memo = OptionsMemo()
    memo.good_uris.remember("sip:a@b", True, 7)
    memo.token_names.remember("To", "to", 4)
    assert len(memo) == 2
    assert 0 < memo.size <= BUDGET
    memo.clear()
    assert (len(memo), memo.size) == (0, 0)
    assert set(memo.memos()) == {
        "from_templates",
        "good_addresses",
        "good_uris",
        "layouts",
        "line_ids",
        "lines",
        "rport_templates",
        "token_names",
        "via_templates",
    }


def test_memos_names_every_memo_attribute_compiled_or_not() -> None:
    # A class compiled by mypyc has no __slots__ to read: the names are listed,
    # and every attribute holding a Memo must be among them.
    memo = OptionsMemo()
    held = {
        name
        for name in dir(memo)
        if not name.startswith("__") and isinstance(getattr(memo, name, None), Memo)
    }
    assert held == set(memo.memos())
    assert all(memo.memos()[name] is getattr(memo, name) for name in held)
