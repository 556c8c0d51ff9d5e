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
    cleartext it holds before the handshake and the writes it holds back
    to send together) to the TCP transport, whose
    `FileDescriptor` write buffer is ``dataBuffer`` from ``offset`` on (tried
    and refused) plus the writes of this reactor turn (``_tempDataLen``, not
    tried yet).
    """
    return OutputGauge(transport).read()


#: The attributes of a layer above the TCP transport that hold output back:
#: TLS cleartext waiting for the handshake, the writes sipsock's TLS layer
#: holds during a read, Twisted's TLS write aggregator.
_HOLDING = ("_appSendBuffer", "_held_plaintext", "_aggregator")


def _has_own(layer: Any, name: str) -> bool:
    """Whether ``layer`` has ``name`` itself (not forwarded by a protocol wrapper)."""
    return hasattr(type(layer), name) or name in getattr(layer, "__dict__", ())


class OutputGauge:
    """`pending_output` of one connection, its layers found once.

    The layers of a connection do not change while it is open: the walk
    down to the TCP transport is done at the first reading, later readings
    only sum what each layer holds.
    """

    __slots__ = ("_descriptor", "_holders", "_transport")

    def __init__(self, transport: object) -> None:
        self._transport = transport
        self._holders: list[tuple[Any, tuple[str, ...]]] | None = None
        self._descriptor: Any = None

    def _walk(self) -> list[tuple[Any, tuple[str, ...]]]:
        holders: list[tuple[Any, tuple[str, ...]]] = []
        layer: Any = self._transport
        for _ in range(8):
            if layer is None:
                break
            if _has_own(layer, "dataBuffer"):
                self._descriptor = layer
                break
            names = tuple(name for name in _HOLDING if _has_own(layer, name))
            if names:
                holders.append((layer, names))
            inner = getattr(layer, "transport", None)
            if inner is None:
                inner = getattr(getattr(layer, "protocol", None), "transport", None)
            layer = inner
        self._holders = holders
        return holders

    def read(self) -> tuple[int, int]:
        """(queued, refused) as `pending_output` counts them."""
        holders = self._holders
        if holders is None:
            holders = self._walk()
        total = 0
        for layer, names in holders:
            for name in names:
                chunks = getattr(layer, name)
                if name == "_aggregator":
                    chunks = getattr(chunks, "_buffer", None)
                if chunks:
                    total += sum(map(len, chunks))
        descriptor = self._descriptor
        if descriptor is None:
            return total, 0
        queued, refused = descriptor_output(descriptor)
        return total + queued, refused


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
