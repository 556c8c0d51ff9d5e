"""Back-pressure of a stream connection: output its peer has not taken, and when it is too much.

Pure rules (no reactor): `pending_output` reads the write buffers a
connection's transport layers hold; `overflowing` says whether that is past
``[limits] max_pending_send``. `sipsock.transport.stream_connection` applies
them after each write.
"""

from __future__ import annotations

from typing import Any


def pending_output(transport: object) -> tuple[int, int]:
    """Bytes written to a connection and not yet handed to the kernel: (queued, refused).

    ``queued`` is everything waiting; ``refused`` the part the kernel already
    refused once (its send buffer was full: the peer is not reading fast
    enough). Walks down the layers: a WebSocket `MessageTransport` to its
    protocol's transport, TLS (`TLSMemoryBIOProtocol`, counting the
    cleartext it holds before the handshake and the small writes it
    aggregates) to the TCP transport, whose
    `FileDescriptor` write buffer is ``dataBuffer`` from ``offset`` on (tried
    and refused) plus the writes of this reactor turn (``_tempDataLen``, not
    tried yet).
    """
    total = 0
    layer: Any = transport
    for _ in range(8):
        if layer is None:
            break
        waiting = getattr(layer, "_appSendBuffer", None)
        if waiting:
            total += sum(len(chunk) for chunk in waiting)
        # Twisted's BufferingTLSTransport holds small writes (up to 64 kB)
        # until the next reactor turn.
        aggregated = getattr(getattr(layer, "_aggregator", None), "_buffer", None)
        if aggregated:
            total += sum(len(chunk) for chunk in aggregated)
        # (A TLS protocol wrapper forwards unknown attributes to its transport:
        # this finds the TCP buffer from the TLS layer on.)
        buffered = getattr(layer, "dataBuffer", None)
        if isinstance(buffered, bytes):
            queued, refused = descriptor_output(layer)
            return total + queued, refused
        inner = getattr(layer, "transport", None)
        if inner is None:
            inner = getattr(getattr(layer, "protocol", None), "transport", None)
        layer = inner
    return total, 0


def descriptor_output(descriptor: Any) -> tuple[int, int]:
    """(queued, refused) of a Twisted `FileDescriptor` (a TCP transport): see `pending_output`.

    A plain TCP connection has no layer above its descriptor: its
    connection reads this directly after each write.
    """
    refused = len(descriptor.dataBuffer) - int(getattr(descriptor, "offset", 0))
    return refused + int(getattr(descriptor, "_tempDataLen", 0)), refused


def overflowing(queued: int, refused: int, limit: int) -> bool:
    """Whether a connection holding ``queued`` bytes (``refused`` of them refused) is cut.

    A burst written in one reactor turn has not been offered to the kernel
    yet: past the limit, a peer is cut once the kernel refused some of its
    output (it does not read), and in any case past twice the limit (memory
    stays bounded whatever the burst).
    """
    return queued > limit and (refused > 0 or queued > 2 * limit)
