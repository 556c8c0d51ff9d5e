# mypy: disable-error-code="no-untyped-call"
"""AMP commands of the stream worker pool beyond the UDP pool's, and their wire forms.

Stream workers speak every command of `sipsock.workers.commands` (a stream
socket is adopted, updated, released and counted like a UDP one); on top:

* `ConnectionsChanged` (worker -> control): connections that became ready or
  closed since the last report, for the control process's
  `sipsock.workers.connection_directory.ConnectionDirectory`.
* `CloseConnection` (control -> worker): an accepted connection that puts a
  socket or a remote IP over its cap, counted across the workers.
* `PrepareTLS` / `CommitTLS` / `AbortTLS` (control -> worker): ``tls_reload``
  in two phases, so that every worker switches to the new certificates or
  none does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from twisted.protocols import amp

from sipsock.workers.commands import LargeBytes, WorkerError
from sipsock.workers.connection_directory import ConnectionChange


class ConnectionsChanged(amp.Command):
    """Connections of this worker that became ready or closed (`encode_changes`)."""

    arguments = [(b"changes", LargeBytes())]
    response = []
    errors = {WorkerError: b"WORKER_ERROR"}
    requiresAnswer = False


class CloseConnection(amp.Command):
    """Close the accepted connection from ``host``:``port`` on socket ``key``: over a cap.

    The control process counts accepted connections across the workers; one
    that puts a socket or a remote IP over its cap is closed by its worker,
    counted as a ``connections`` limit hit with ``reason``.
    """

    arguments = [
        (b"key", amp.Integer()),
        (b"host", amp.Unicode()),
        (b"port", amp.Integer()),
        (b"reason", amp.Unicode()),
    ]
    response = [(b"closed", amp.Boolean())]
    errors = {WorkerError: b"WORKER_ERROR"}


class PrepareTLS(amp.Command):
    """Load every TLS domain from its files again, without using it yet.

    ``failed`` is a JSON list of ``[domain, reason]`` (empty: ready to commit).
    """

    arguments = []
    response = [(b"failed", LargeBytes())]
    errors = {WorkerError: b"WORKER_ERROR"}


class CommitTLS(amp.Command):
    """Serve the domains loaded by the last `PrepareTLS`; ``reloaded``: JSON list of names."""

    arguments = []
    response = [(b"reloaded", LargeBytes())]
    errors = {WorkerError: b"WORKER_ERROR"}


class AbortTLS(amp.Command):
    """Forget the domains loaded by the last `PrepareTLS` (idempotent)."""

    arguments = []
    response = []
    errors = {WorkerError: b"WORKER_ERROR"}


def encode_changes(changes: Sequence[ConnectionChange]) -> bytes:
    """``[[key, host, port, up, inbound], ...]`` with ``up`` and ``inbound`` 1 or 0."""
    rows = [[c.key, c.peer[0], c.peer[1], int(c.up), int(c.inbound)] for c in changes]
    return json.dumps(rows, separators=(",", ":")).encode("utf-8")


def decode_changes(data: bytes) -> list[ConnectionChange]:
    """The changes of `encode_changes`; `WorkerError` names a bad item."""
    try:
        rows: Any = json.loads(data)
    except ValueError as exc:
        raise WorkerError(f"ConnectionsChanged: not JSON: {exc}") from None
    if not isinstance(rows, list):
        raise WorkerError("ConnectionsChanged: not a JSON list")
    changes: list[ConnectionChange] = []
    for row in rows:
        if (
            not isinstance(row, list)
            or len(row) != 5
            or type(row[0]) is not int
            or not isinstance(row[1], str)
            or type(row[2]) is not int
            or row[3] not in (0, 1)
            or row[4] not in (0, 1)
        ):
            raise WorkerError(f"ConnectionsChanged: bad item {str(row)[:80]}")
        changes.append(ConnectionChange(row[0], (row[1], row[2]), bool(row[3]), bool(row[4])))
    return changes


class StopAccepting(amp.Command):
    """Leave the pool: stop accepting on every listening socket at once, then drain.

    The worker keeps serving its open connections and answers when all are
    closed or ``drain`` seconds have passed; ``left`` is how many were still
    open then (they close when the worker exits).
    """

    arguments = [(b"drain", amp.Float())]
    response = [(b"left", amp.Integer())]
    errors = {WorkerError: b"WORKER_ERROR"}
