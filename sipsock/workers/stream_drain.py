"""A stream worker leaving an auto-scaled pool: it stops accepting, then drains.

Scaling down picks a worker (`SeatResizer`); for a stream worker, draining
is `StopAccepting`: the worker closes its copy of every listening descriptor
at once (the other workers hold the same listening sockets, so connections
waiting in the accept queue, and every new one, go to them), keeps serving
the connections it holds, and answers when the last one closed or after
the drain time. The control process then asks it to exit: a connection
still open at that deadline (a long-lived WSS, say) is closed and its
client reconnects, to another worker.

The drain time is ``[core] stream_idle_timeout``, at most `MAX_DRAIN`
seconds: a quiet connection is closed by the idle timeout anyway, and a
busy one should not keep a pool from shrinking for long.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

from twisted.internet import defer, task
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from sipsock.transport.base import stop_port
from sipsock.transport.stream import StreamListener
from sipsock.workers.stream_commands import StopAccepting

if TYPE_CHECKING:
    from sipsock.workers.supervisor import WorkerProcess

#: Longest drain of a leaving stream worker, in seconds.
MAX_DRAIN: Final = 30.0
#: How often a draining worker looks at its open connections, in seconds.
DRAIN_POLL: Final = 0.1

log = Logger(namespace="sipsock.workers.stream_pool.StreamWorkerPool")


def drain_time(stream_idle_timeout: float) -> float:
    """Seconds a leaving stream worker serves its open connections."""
    return min(stream_idle_timeout, MAX_DRAIN)


def open_connections(listeners: Iterable[StreamListener]) -> int:
    return sum(len(listener.connections) for listener in listeners)


async def drain_streams(listeners: Iterable[Any], seconds: float, reactor: Any) -> int:
    """Worker side of `StopAccepting`: connections still open after ``seconds``."""
    streams = [item for item in listeners if isinstance(item, StreamListener)]
    await defer.gatherResults(
        [stop_port(item.port) for item in streams if item.port is not None], consumeErrors=True
    )
    deadline = reactor.seconds() + seconds
    while open_connections(streams) and reactor.seconds() < deadline:
        await task.deferLater(reactor, DRAIN_POLL, lambda: None)
    return open_connections(streams)


def drain_stream_worker(
    process: WorkerProcess,
    seconds: float,
    fetch_counters: Callable[[WorkerProcess], Deferred[None]],
) -> Deferred[None]:
    """Control side: ``process`` stops accepting and drains (bounded), counters read last.

    Without the command deadline (`WorkerProcess.call`): the answer comes
    after the drain; its own bound is the drain time plus the command timeout.
    """

    async def drain() -> None:
        if process.amp is None or not process.live:
            return
        asking: Deferred[dict[str, int]] = process.amp.callRemote(StopAccepting, drain=seconds)  # type: ignore[no-untyped-call]
        supervisor = process.supervisor
        asking.addTimeout(seconds + supervisor.settings.command_timeout, supervisor.reactor)
        answer = await asking
        left = answer["left"]
        log.info(
            "stream worker {worker} (pid {pid}) drained: {left} connection(s) still open "
            "after {seconds:g} s are closed as it exits",
            worker=process.label,
            pid=process.pid,
            left=left,
            seconds=seconds,
        )
        await fetch_counters(process)

    return Deferred.fromCoroutine(drain())
