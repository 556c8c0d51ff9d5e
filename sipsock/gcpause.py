"""`collection_paused`: no cyclic garbage collection during one bounded batch of work.

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
