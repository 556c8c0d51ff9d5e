"""`OptionsMemo`: everything the OPTIONS shortcut remembers, in one bounded object (pure).

`sipsock.sip.options_answer.answer_options` remembers what it checked
(header-name spellings, Request-URIs, addresses, whole header lines) and
`sipsock.sip.options_layout` the layouts of the messages it answered (line
numbers, layouts, Via and From templates). Each of those is a `Memo`, with
the one limit policy of `Memo`: bounded in entries and in bytes, an entry
above its item size never kept, emptied when full. An `OptionsMemo` holds
them all; its owner (each `sipsock.apps.dispatch.Dispatcher`) passes it to
every call, so nothing is remembered across dispatchers or in a module
global, and its `size` is the bytes it holds.

The bounds, per `OptionsMemo`: at most `ENTRIES` entries in each memo,
and `BUDGET` bytes in all (the sum of the byte bounds below). The bytes
are the bound that matters; the entries are bounded above what the bytes
hold for a few thousand peers (a layout, a Via template, a From template,
a Contact line and address each), so that keep-alives from 5,000 peers stay
answered by their layouts instead of emptying the memos every 4,096.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Final

from sipsock.sip.memo import MAX_BYTES, MAX_ITEM, MAX_NAME, Memo

#: ``(action, key, name, value, text, number)``: one header line as read by
#: `sipsock.sip.options_answer` (``text`` is the line as the answer writes it).
Line = tuple[int, str, str, str, str, int]

#: ``(index, prefix, gap)`` of one varying line: its position in the
#: message, the bytes it starts with up to its colon, and the index of the
#: gap for its value in `Layout.pieces` (the piece before the gap ends with
#: the text the answer writes before the value, ``Name: ``).
Varying = tuple[int, bytes, int]

#: ``(index, prefix, line)`` of a line checked but not copied (a Contact):
#: its position, the bytes it starts with up to its colon, and the line of
#: the message recorded (the same line again needs no check).
Checked = tuple[int, bytes, bytes]


@dataclass(frozen=True, slots=True)
class Layout:
    """How to answer every OPTIONS with one key (see `sipsock.sip.options_layout`).

    The varying lines are ``top_via``, ``from_``, ``call_id``, ``cseq``,
    the other Via lines and the ``addresses`` (Contact lines: checked, not
    copied); ``pieces`` is the answer with a None gap for each of them and
    for the To tag's value (``tag_gap``, after ``;tag=``; -1 when the To has a tag);
    ``content_length`` is the Content-Length value (0 without one).
    """

    top_via: Varying
    from_: Varying
    call_id: Varying
    cseq: Varying
    other_vias: tuple[Varying, ...]
    addresses: tuple[Checked, ...]
    pieces: tuple[bytes | None, ...]
    tag_gap: int
    content_length: int


def layout_size(layout: Layout) -> int:
    """The bytes a layout holds (its pieces, prefixes and key), for its memo."""
    varying = (layout.top_via, layout.from_, layout.call_id, layout.cseq, *layout.other_vias)
    pieces = sum(len(piece) for piece in layout.pieces if piece is not None)
    checked = sum(len(line) + 16 for _, _, line in layout.addresses)
    return pieces + checked + sum(len(prefix) + 32 for _, prefix, _ in varying)


#: Bytes of the header-name memo, at most (names are short: a few hundred kB
#: hold every spelling a peer could use in earnest).
NAME_BYTES: Final = 512 * 1024
#: Bytes of the line memo, at most (a line is held about three times).
LINE_BYTES: Final = 4 * MAX_BYTES
#: Largest layout or Via template kept (a layout holds a whole answer).
MAX_LAYOUT: Final = 4096
#: Entries of each memo, at most (the byte bounds are reached first for most entries).
ENTRIES: Final = 16 * 1024
#: Bytes of one `OptionsMemo`, at most: the sum of its memos' bounds.
BUDGET: Final = NAME_BYTES + LINE_BYTES + 7 * MAX_BYTES


# The memos of `OptionsMemo`, by attribute name: its ``__slots__`` but
# ``_numbers`` (a class compiled by mypyc has no ``__slots__`` to read).
_MEMO_NAMES: Final = (
    "from_templates",
    "good_addresses",
    "good_uris",
    "layouts",
    "line_ids",
    "lines",
    "rport_templates",
    "token_names",
    "via_templates",
)


class OptionsMemo:
    """What the OPTIONS shortcut of one dispatcher remembers (see the module docstring).

    ``token_names``: header-name spellings seen to be tokens, to their
    canonical names; ``good_uris`` and ``good_addresses``: Request-URIs and
    addresses their checks accepted; ``lines``: header lines read before, to
    how they were read (only lines that hold no per-request value).
    ``line_ids``: those lines to their numbers (`line_id`); ``layouts``:
    keys (a tuple of line numbers, None for varying lines) to their
    layouts; ``via_templates``: ``(value before the branch, value after it,
    peer host, peer port)`` of a top Via to the stamped text before and
    after the branch; ``from_templates``: ``(value before the tag, value
    after it)`` of From values checked once.
    """

    __slots__ = ("_numbers", *_MEMO_NAMES)

    def __init__(self) -> None:
        self.token_names: Memo[str, str] = Memo(
            ENTRIES, max_bytes=NAME_BYTES, max_item=2 * MAX_NAME
        )
        self.good_uris: Memo[str, bool] = Memo(ENTRIES)
        self.good_addresses: Memo[str, bool] = Memo(ENTRIES)
        self.lines: Memo[str, Line] = Memo(ENTRIES, max_bytes=LINE_BYTES, max_item=3 * MAX_ITEM)
        self.line_ids: Memo[bytes, int] = Memo(ENTRIES)
        self.layouts: Memo[tuple[int | None, ...], Layout] = Memo(ENTRIES, max_item=MAX_LAYOUT)
        self.via_templates: Memo[tuple[bytes, bytes, str, int], tuple[bytes, bytes]] = Memo(
            ENTRIES, max_item=MAX_LAYOUT
        )
        self.from_templates: Memo[tuple[bytes, bytes], bool] = Memo(ENTRIES)
        self.rport_templates: Memo[tuple[bytes, bytes, bytes], tuple[bool, int]] = Memo(
            ENTRIES, max_item=MAX_LAYOUT
        )
        # Numbers are never given twice, so a layout of forgotten lines is unreachable.
        self._numbers = itertools.count(1)

    def memos(self) -> dict[str, Memo[object, object]]:
        """Every memo, by name (for tests and statistics)."""
        return {name: getattr(self, name) for name in _MEMO_NAMES}

    @property
    def size(self) -> int:
        """Bytes remembered, in every memo (at most `BUDGET`)."""
        return sum(memo.size for memo in self.memos().values())

    def __len__(self) -> int:
        """Entries remembered, in every memo."""
        return sum(len(memo) for memo in self.memos().values())

    def clear(self) -> None:
        """Forget everything."""
        for memo in self.memos().values():
            memo.clear()

    def line_id(self, line: bytes) -> int:
        """The number of a line that holds no per-request value (given on first sight).

        A line longer than the memo keeps gets a new number every time: a
        layout holding it is never recorded (the caller checks the lengths
        first).
        """
        number = self.line_ids.get(line)
        if number is None:
            return self.line_ids.remember(line, next(self._numbers), len(line))
        return number
