"""`collection_paused`: no cyclic garbage collection during one bounded batch of work.

And `collect_young_less_often`, which a worker calls once at start-up.

A batch that builds hundreds of long-lived objects (a worker adopting a
batch of sockets, the control process binding a reload's) makes the
collector run many times over the objects it is still building, and its
full passes walk every object the daemon keeps (about a sixth of a worker's
samples while it adopts 500 sockets). Paused for the batch, the collector
runs once afterwards, at the next allocation, over what the batch left. The
batch must be synchronous and bounded (no reactor turn inside).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

#: Allocations (less deallocations) of tracked objects between two young
#: collections in a worker (the interpreter's default is 700).
YOUNG_THRESHOLD: Final = 10_000


@contextmanager
def collection_paused() -> Iterator[None]:
    """Pause automatic collection for the ``with`` block (unless it was off already)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def collect_young_less_often() -> None:
    """Run the young collection every `YOUNG_THRESHOLD` allocations, not every 700.

    A worker that relays messages between processes or holds stream
    connections keeps a few hundred objects alive across reactor turns (the
    Deferreds of a relay batch waiting for its answer, a connection's
    buffers). The allocation count then grows by them, and at the default
    threshold the collector ran several hundred young and tens of middle
    collections a second that found nothing to free: about 2 us of CPU per
    forwarded message under a stateless proxy's UDP -> TCP load
    (``gc.callbacks`` in the UDP and the stream worker). A message handled
    within one turn frees what it allocated and never triggers a collection;
    cyclic garbage is still collected, at most a few thousand objects later.
    The middle and old thresholds stay as they are.
    """
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
