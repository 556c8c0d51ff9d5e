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

    def news(self, reports: Iterable[tuple[K, str]]) -> list[K]:
        """The keys of this round whose text is new or changed, in order; starts a new round."""
        current: dict[K, str] = {}
        fresh: list[K] = []
        for key, text in reports:
            if key in current:
                continue
            current[key] = text
            if self._last.get(key) != text:
                fresh.append(key)
        self._last = current
        return fresh

    def __len__(self) -> int:
        return len(self._last)
