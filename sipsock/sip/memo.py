"""`Memo`: a dict that remembers answers, bounded in entries and in bytes (pure).

Every memo of sipsock (header-name spellings, lines and layouts of
keep-alives, checked addresses, normalised hosts) is keyed by text a peer
sent. A bound on entries alone lets a peer fill it with 4,096 keys of
60 kB each: a quarter of a gigabyte per memo. A `Memo` is bounded three
ways: an entry larger than ``max_item`` bytes is not kept at all (reading
it again costs less than the memory), and when one more entry would pass
``max_entries`` or ``max_bytes`` the memo is emptied first (a peer's
working set comes back within a few messages; an LRU would cost time on
every hit).

Lookups are plain dict lookups (``memo.get(key)``, ``key in memo``), at
full speed on the hot paths; only `remember` (on a miss) does the
accounting.
"""

from __future__ import annotations

from typing import Final, TypeVar

K = TypeVar("K")
V = TypeVar("V")

#: What an entry costs besides its text: the dict slot and the objects' headers.
ENTRY_OVERHEAD: Final = 128
#: Entries of a memo, at most (the bound every memo had before bytes were counted).
MAX_ENTRIES: Final = 4096
#: Bytes of a memo, at most (text plus `ENTRY_OVERHEAD` per entry).
MAX_BYTES: Final = 2 * 1024 * 1024
#: Largest entry kept: no header line of a keep-alive is near it.
MAX_ITEM: Final = 1024
#: Largest header name kept (the longest registered names have about 30 characters).
MAX_NAME: Final = 64


class Memo(dict[K, V]):
    """A dict of at most ``max_entries`` entries and ``max_bytes`` bytes, emptied when full.

    Add entries with `remember` only, never by item assignment, so that the
    byte count stays true.
    """

    __slots__ = ("max_bytes", "max_entries", "max_item", "size")

    def __init__(
        self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES, max_item: int = MAX_ITEM
    ) -> None:
        super().__init__()
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_item = max_item
        #: Bytes remembered: the sizes given to `remember`, plus `ENTRY_OVERHEAD` each.
        self.size = 0

    def remember(self, key: K, value: V, size: int) -> V:
        """Keep ``key: value``, whose text is ``size`` bytes, unless above ``max_item``.

        Gives ``value``.
        """
        if size > self.max_item:
            return value
        size += ENTRY_OVERHEAD
        if len(self) >= self.max_entries or self.size + size > self.max_bytes:
            self.clear()
        self[key] = value
        self.size += size
        return value

    def clear(self) -> None:
        """Forget every entry."""
        super().clear()
        self.size = 0
