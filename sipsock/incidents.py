"""`Incidents`: a short journal of process faults, for the reports of the operations they hit.

A worker pool records a worker that missed a deadline (and was killed and
replaced); a reload reports the incidents recorded while it ran
(`ReloadReport.workers`). Only the last `KEEP` incidents are kept.
"""

from __future__ import annotations

from collections import deque
from typing import Final

#: Incidents kept; older ones are forgotten (they were logged).
KEEP: Final = 100


class Incidents:
    """Numbered incident lines: ``mark()`` now, ``since(mark)`` later."""

    def __init__(self, keep: int = KEEP) -> None:
        self._lines: deque[str] = deque(maxlen=keep)
        self._count = 0

    def record(self, line: str) -> None:
        """Add one incident (a sentence naming the process and what it failed to do)."""
        self._lines.append(line)
        self._count += 1

    def mark(self) -> int:
        """How many incidents were recorded so far (a position for `since`)."""
        return self._count

    def since(self, mark: int) -> list[str]:
        """The incidents recorded after ``mark`` (the kept ones), oldest first."""
        newer = self._count - mark
        if newer <= 0:
            return []
        return list(self._lines)[-newer:]
