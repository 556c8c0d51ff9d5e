"""Which repeated reports are news: a key is reported again only when its text changes.

A reload of an unchanged table finds the same bad rows every time; logging
each of them at every reload buried everything else (4,900 lines per reload
of a 5,000-row table). `ChangedOnly` remembers the last text of each key
seen in the previous round and answers which of this round's are new or
different. A key absent from a round is forgotten, so a row that is fixed
and later broken again is reported again. Memory: the keys of one round.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class ChangedOnly(Generic[K]):
    """Remembers one round of ``(key, text)`` reports; answers which are news."""

    def __init__(self) -> None:
        self._last: dict[K, str] = {}
        self._current: dict[K, str] = {}

    def seen(self, key: K, text: str) -> bool:
        """Note one report of this round; True when it is news (new, or its text changed)."""
        if key in self._current:
            return False
        self._current[key] = text
        return self._last.get(key) != text

    def end_round(self) -> None:
        """The round is over: its reports are what the next round is compared with."""
        self._last, self._current = self._current, {}

    def news(self, reports: Iterable[tuple[K, str]]) -> list[K]:
        """The keys of a whole round whose text is new or changed, in order; ends the round."""
        fresh = [key for key, text in reports if self.seen(key, text)]
        self.end_round()
        return fresh

    def __len__(self) -> int:
        return len(self._last)
