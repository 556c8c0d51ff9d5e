"""`Memo`, and every memo of the SIP core bounded in bytes against long unique lines and names.

The OPTIONS shortcut's memos are those of one `OptionsMemo` (each dispatcher
owns one); the others are module-level.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sipsock.apps import Dispatcher
from sipsock.apps.proxy import _addresses, normal_address
from sipsock.sip import checks, grammar, parse, parser, via
from sipsock.sip.memo import ENTRY_OVERHEAD, Memo
from sipsock.sip.options_answer import answer_options
from sipsock.sip.options_memo import BUDGET, OptionsMemo
from tests.unit.sip.test_options_answer import RESPONDER, SIPP, UDP

OPTIONS_MEMO = OptionsMemo()

#: Every module-level memo of sipsock, and those of an `OptionsMemo`, by name.
MEMOS: dict[str, Memo[Any, Any]] = {
    "grammar.KNOWN_NAMES": grammar.KNOWN_NAMES,
    "checks._TOKEN_NAMES": checks._TOKEN_NAMES,
    "checks._GOOD_URIS": checks._GOOD_URIS,
    "checks._GOOD_ADDRESSES": checks._GOOD_ADDRESSES,
    "checks._CSEQS": checks._CSEQS,
    "via._GOOD_VIAS": via._GOOD_VIAS,
    "parser._LINES": parser._LINES,
    **{f"OptionsMemo.{name}": memo for name, memo in OPTIONS_MEMO.memos().items()},
    "proxy._addresses": _addresses,
}


@pytest.fixture(autouse=True)
def empty_memos() -> Iterator[None]:
    for memo in MEMOS.values():
        memo.clear()
    yield
    for memo in MEMOS.values():
        memo.clear()


def text_bytes(memo: Memo[Any, Any]) -> int:
    """The text a memo really holds: its keys and values, strings and bytes, counted deep."""

    def size(item: object) -> int:
        if isinstance(item, str | bytes):
            return len(item)
        if isinstance(item, tuple):
            return sum(map(size, item))
        if hasattr(item, "__slots__"):
            return sum(size(getattr(item, name)) for name in item.__slots__)
        return 0

    return sum(size(key) + size(value) for key, value in memo.items())


def test_a_memo_is_emptied_when_one_more_entry_would_pass_its_entries() -> None:
    memo: Memo[str, int] = Memo(max_entries=3, max_bytes=10**6, max_item=100)
    for number in range(3):
        memo.remember(str(number), number, 1)
    assert memo.remember("3", 3, 1) == 3
    assert dict(memo) == {"3": 3}
    assert memo.size == 1 + ENTRY_OVERHEAD


def test_a_memo_is_emptied_when_one_more_entry_would_pass_its_bytes() -> None:
    memo: Memo[str, int] = Memo(max_entries=100, max_bytes=3 * (ENTRY_OVERHEAD + 50), max_item=60)
    for number in range(3):
        memo.remember(str(number), number, 50)
    assert len(memo) == 3
    memo.remember("3", 3, 50)
    assert dict(memo) == {"3": 3}


def test_an_entry_above_the_item_limit_is_not_kept() -> None:
    memo: Memo[str, int] = Memo(max_item=10)
    assert memo.remember("x" * 11, 1, 11) == 1
    assert len(memo) == 0 and memo.size == 0


def long_line_options(number: int, size: int) -> bytes:
    """SIPp's OPTIONS with a unique header line and a unique header name, each ``size`` long."""
    unique = b"%08d" % number
    name = b"X-" + unique + b"n" * size
    line = b"Subject: " + unique + b"v" * size
    head, _, _ = SIPP.partition(b"\r\n\r\n")
    return head + b"\r\n" + line + b"\r\n" + name + b": 1\r\n\r\n"


def test_long_unique_lines_and_names_keep_every_memo_within_its_bytes() -> None:
    reply = Dispatcher(RESPONDER).options_reply(UDP)
    assert reply is not None
    for number in range(300):
        data = long_line_options(number, 20_000)
        assert answer_options(data, "192.0.2.7", 5099, reply, OPTIONS_MEMO) is not None
        message = parse(data)
        message.validate()
        normal_address("h" * 20_000 + str(number))
    for name, memo in MEMOS.items():
        assert text_bytes(memo) <= memo.max_bytes, name
        assert not any(len(str(key)) > 20_000 for key in memo), name
    assert OPTIONS_MEMO.size <= BUDGET


def test_the_answers_stay_those_of_the_general_path_with_long_lines() -> None:
    reply = Dispatcher(RESPONDER).options_reply(UDP)
    assert reply is not None
    data = long_line_options(1, 5_000)
    first = answer_options(data, "192.0.2.7", 5099, reply, OPTIONS_MEMO)
    assert first is not None
    assert answer_options(data, "192.0.2.7", 5099, reply, OPTIONS_MEMO) == first
