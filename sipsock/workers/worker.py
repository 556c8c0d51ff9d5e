"""The UDP worker process: adopted UDP sockets, the SIP application, AMP to the control process.

``python -m sipsock.workers --pool NAME --index N --fd 3`` runs `main`: a
fresh interpreter (never a fork of the control process) that installs the
epoll reactor with EPOLLEXCLUSIVE support and speaks AMP over the inherited
UNIX stream socket ``--fd``. Its first command (`Start`) hands it the
control process's frozen `AppSpec`, from which it builds the application and
its `Dispatcher` (`build_dispatcher`, as the control process did); it never
reads the configuration file, nor opens the database: the control process
tells it which sockets to serve. It exits when told to
(`Shutdown`) or when the control process goes away; the kernel kills it
when the control process dies (`lifeline`), even while it is stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import signal
import socket
import sys
from collections.abc import Sequence
from functools import partial
from time import monotonic
from typing import IO, Any

from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.error import ReactorNotRunning
from twisted.internet.protocol import Factory
from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
)
from twisted.protocols import amp
from twisted.python.failure import Failure

from sipsock.apps.spec import AppSpec, SpecError, build_dispatcher, freeze
from sipsock.config import LOG_LEVELS, default_settings
from sipsock.deferreds import wait_all
from sipsock.gcpause import collect_young_less_often, collection_paused
from sipsock.logevents import at_least, parse_level
from sipsock.logs import worker_observer
from sipsock.seams import ListenError, MessageSink
from sipsock.sockdef import SocketDef
from sipsock.stackdump import enable_stack_dump
from sipsock.transport.stream import StreamListener
from sipsock.transport.udp import UdpListener, adopt_udp_listener
from sipsock.workers.commands import (
    AdoptSockets,
    AnnounceMany,
    Busy,
    OpenChannel,
    ReleaseSockets,
    SendDatagram,
    SendDatagrams,
    SendManyThroughSockets,
    Shutdown,
    SocketStats,
    Start,
    Stats,
    UpdateSockets,
    WithdrawMany,
    WorkerError,
    decode_adoptions,
    decode_entries,
    decode_spec,
    decode_updates,
    encode_failures,
    encode_stats_rows,
)
from sipsock.workers.connection_directory import ConnectionChange
from sipsock.workers.direct import DirectRoutes
from sipsock.workers.directory import BookEntry, Relay, WorkerDirectory
from sipsock.workers.directwrite import write_at_once
from sipsock.workers.epoll import is_exclusive, make_exclusive
from sipsock.workers.lifeline import ParentGoneError, die_with_parent
from sipsock.workers.relaybatch import RelayBatcher, send_by_key, send_relays
from sipsock.workers.relaychannel import RelayChannel
from sipsock.workers.reported import StatsReporter
from sipsock.workers.stream_commands import (
    AbortTLS,
    CloseConnection,
    CommitTLS,
    ConnectionsChanged,
    PrepareTLS,
    StopAccepting,
    encode_changes,
)
from sipsock.workers.stream_worker import (
    Report,
    RoutedStream,
    StreamSockets,
    Waiting,
    close_over_cap,
)

#: Exit status of a worker that could not start (no lifeline, unusable AMP descriptor,
#: an application that cannot be built).
EXIT_STARTUP = 3

#: Environment variable that turns EPOLLEXCLUSIVE off (for measurements only).
NO_EXCLUSIVE_ENV = "SIPSOCK_NO_EPOLLEXCLUSIVE"


class UdpWorker:
    """The sockets a worker serves, keyed by the pool's socket keys.

    Every datagram goes to ``sink`` (the application's `Dispatcher`, set by
    `start`; no socket is adopted before); the `WorkerDirectory` lets the
    application send through any socket of the daemon. Counters of released
    sockets stay in `handled`.
    """

    log = Logger()

    def __init__(
        self,
        sink: MessageSink | None = None,
        *,
        reactor: Any,
        relay: Relay,
        exclusive: bool = True,
        report: Report | None = None,
        waiting: Waiting | None = None,
    ) -> None:
        self.sink = sink
        self.reactor = reactor
        self.relay = relay
        self.report = report
        self.waiting = waiting
        self.directory = WorkerDirectory(relay)
        self.listeners: dict[int, UdpListener | StreamListener] = {}
        #: Stream sockets as the application sees them (`RoutedStream`), by key.
        self.routed: dict[int, RoutedStream] = {}
        #: The stream side (`sipsock.workers.stream_worker`), made at the first stream socket.
        self.streams: StreamSockets | None = None
        self.spec: AppSpec | None = None
        #: What the control process was last told of each socket's counters.
        self.reporter = StatsReporter()
        self.exclusive = exclusive
        self._released = 0
        self._plain_warned = False
        #: Limits of its UDP listeners (``[limits]``: `LimitSettings.udp_options`).
        self.udp_limits: dict[str, Any] = {}

    def start(self, spec: AppSpec) -> None:
        """Build the application from ``spec`` (once); raises `WorkerError` with the reason."""
        if self.sink is not None:
            raise WorkerError("Start: this worker has started already")
        try:
            dispatcher = build_dispatcher(spec, clock=self.reactor)
        except SpecError as exc:
            raise WorkerError(str(exc)) from None
        dispatcher.directory = self.directory
        self.spec = spec
        self.udp_limits = spec.settings.limits.udp_options()
        self.sink = dispatcher
        # The application lives as long as the worker: out of the collector's
        # full passes, like everything loaded before the reactor ran.
        gc.freeze()

    @property
    def handled(self) -> int:
        """SIP messages received on every socket this worker served (released ones too)."""
        return self._released + sum(lst.counters.received for lst in self.listeners.values())

    def adopt(
        self,
        key: int,
        slot: int | None,
        fd: int,
        sdef: SocketDef,
        *,
        shared: bool,
        static: bool = False,
    ) -> None:
        """Serve the bound UDP descriptor ``fd`` under ``key``; ``fd`` itself is closed.

        The directory records the socket once, as held here (``static`` ones
        are looked up first); the pool never announces it to this worker.
        """
        try:
            if key in self.listeners:
                raise WorkerError(
                    f"socket {sdef.socket_text}: key {key} is already held "
                    f"({self.listeners[key].sdef.socket_text})"
                )
            if self.sink is None:
                raise WorkerError(f"socket {sdef.socket_text}: the worker has not started")
            if sdef.is_stream:
                self._adopt_stream(key, slot, fd, sdef, static=static)
                return
            sink = self.sink
            os.set_blocking(fd, False)
            exclusive = shared and self.exclusive
            try:
                listener = adopt_udp_listener(
                    fd,
                    sdef,
                    slot,
                    sink,
                    reactor=self.reactor,
                    prepare=partial(make_exclusive, self.reactor) if exclusive else None,
                    **self.udp_limits,
                )
            except OSError as exc:
                raise WorkerError(f"socket {sdef.socket_text}: cannot adopt: {exc}") from exc
        finally:
            os.close(fd)
        if exclusive:
            made = is_exclusive(self.reactor, listener.protocol.transport)
            if not made and not self._plain_warned:
                self._plain_warned = True
                self.log.warn(
                    "socket {socket}: EPOLLEXCLUSIVE unavailable; every worker wakes "
                    "for each datagram",
                    socket=sdef.socket_text,
                )
        self.listeners[key] = listener
        self.directory.hold(listener, static=static)

    def _adopt_stream(
        self, key: int, slot: int | None, fd: int, sdef: SocketDef, *, static: bool
    ) -> None:
        """Accept connections on the listening descriptor ``fd`` (the caller closes it)."""
        if self.streams is None:
            assert self.sink is not None
            spec = self.spec if self.spec is not None else freeze(default_settings())
            self.streams = StreamSockets(
                spec,
                self.sink,
                reactor=self.reactor,
                relay=self.relay,
                report=self.report or (lambda changes: None),
                exclusive=self.exclusive,
                waiting=self.waiting,
            )
        listener, routed = self.streams.adopt(key, slot, fd, sdef)
        self.listeners[key] = listener
        self.routed[key] = routed
        self.directory.hold(routed, static=static)

    def update(self, key: int, sdef: SocketDef) -> None:
        """Apply a new definition of the same endpoint to the socket ``key``."""
        listener = self._listener(key, sdef.socket_text)
        try:
            listener.update(sdef)
        except (ValueError, ListenError) as exc:
            raise WorkerError(f"socket {sdef.socket_text}: update refused: {exc}") from exc
        self.directory.hold(self.routed.get(key, listener))

    def release(self, key: int) -> Deferred[None]:
        """Stop reading the socket ``key`` and close its descriptor (nothing if not held)."""
        listener = self.listeners.pop(key, None)
        if listener is None:
            return defer.succeed(None)
        self._released += listener.counters.received
        routed = self.routed.pop(key, None)
        self.directory.let_go(routed if routed is not None else listener)
        if self.streams is not None and isinstance(listener, StreamListener):
            self.streams.release(listener)
        return listener.stop()

    def send(self, key: int, data: bytes, peer: tuple[str, int]) -> Deferred[None]:
        """Send a datagram from the socket ``key``."""
        try:
            listener = self._listener(key, f"key {key}")
        except WorkerError as exc:
            return defer.fail(exc)
        return listener.send(data, peer)

    def stats(self) -> list[SocketStats]:
        """The counters of every socket held, by key."""
        return [SocketStats(key, lst.counters) for key, lst in sorted(self.listeners.items())]

    def close_all(self) -> Deferred[None]:
        """Release every socket; fires when all are closed."""
        waits = [self.release(key) for key in list(self.listeners)]
        return wait_all(waits)

    def _listener(self, key: int, what: str) -> UdpListener | StreamListener:
        listener = self.listeners.get(key)
        if listener is None:
            raise WorkerError(f"socket {what}: key {key} is not held by this worker")
        return listener


class WorkerProtocol(amp.AMP):
    """The worker's end of the AMP connection: runs the control process's commands."""

    log = Logger()

    def __init__(self, worker: UdpWorker, reactor: Any, routes: DirectRoutes | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.worker = worker
        self.reactor = reactor
        #: Channels straight to the workers of other pools (`OpenChannel`).
        self.routes = routes
        self.shutting_down = False
        #: The process's exit status once the reactor stops.
        self.exit_status = 0
        #: Sends through the control process's sockets, one batch per reactor turn.
        self.relays = RelayBatcher(self._send_batch, reactor)
        #: The relay channel, when the control process gave one (``--relay-fd``):
        #: relays go there both ways instead of in AMP boxes.
        self.channel: RelayChannel | None = None

    def connectionMade(self) -> None:
        super().connectionMade()  # type: ignore[no-untyped-call]
        write_at_once(self.transport)

    @Start.responder
    def start(self, spec: bytes) -> dict[str, Any]:
        try:
            self.worker.start(decode_spec(spec))
        except WorkerError as exc:
            if self.worker.sink is not None:
                raise  # started already: that one stands
            # Nothing to serve without an application: say why, answer, and exit.
            self.log.critical("cannot start: {reason}", reason=exc.reason)
            self.exit_status = EXIT_STARTUP
            self.shutting_down = True
            self.reactor.callLater(0, self._exit)
            raise
        return {}

    @AdoptSockets.responder
    def adopt_sockets(self, sockets: bytes, fds: list[int]) -> dict[str, Any]:
        with collection_paused():  # a batch of sockets: one collection after it
            return self._adopt_sockets(sockets, fds)

    def _adopt_sockets(self, sockets: bytes, fds: list[int]) -> dict[str, Any]:
        try:
            adoptions = decode_adoptions(sockets)
            if len(adoptions) != len(fds):
                raise WorkerError(
                    f"AdoptSockets: {len(adoptions)} socket(s) but {len(fds)} descriptor(s)"
                )
        except WorkerError:
            for fd in fds:
                os.close(fd)
            raise
        failed: dict[int, str] = {}
        for (key, adoption), fd in zip(adoptions, fds, strict=True):
            if isinstance(adoption, WorkerError):
                os.close(fd)
                failed[key] = adoption.reason
                continue
            try:
                self.worker.adopt(
                    adoption.key,
                    adoption.slot,
                    fd,
                    adoption.sdef,
                    shared=adoption.shared,
                    static=adoption.static,
                )
            except WorkerError as exc:
                failed[adoption.key] = exc.reason
            except Exception as exc:  # one socket's surprise must not cost the batch
                self.log.failure(
                    "socket {socket}: adoption failed", socket=adoption.sdef.socket_text
                )
                failed[adoption.key] = f"socket {adoption.sdef.socket_text}: {exc}"
        if failed:
            self.log.warn(
                "adopted {count} of {total} socket(s); refused: {reasons}",
                count=len(adoptions) - len(failed),
                total=len(adoptions),
                reasons="; ".join(failed.values()),
            )
        return {"failed": encode_failures(failed)}

    @UpdateSockets.responder
    def update_sockets(self, sockets: bytes) -> dict[str, Any]:
        failed: dict[int, str] = {}
        for key, sdef in decode_updates(sockets):
            try:
                if isinstance(sdef, WorkerError):
                    raise sdef
                self.worker.update(key, sdef)
            except WorkerError as exc:
                failed[key] = exc.reason
        return {"failed": encode_failures(failed)}

    @ReleaseSockets.responder
    def release_sockets(self, keys: list[int]) -> Deferred[dict[str, Any]]:
        with collection_paused():  # a batch of sockets: one collection after it
            waits = [self.worker.release(key) for key in keys]
        return wait_all(waits).addCallback(lambda _: {})

    @SendDatagram.responder
    def send_datagram(
        self, key: int, host: str, port: int, data: bytes
    ) -> Deferred[dict[str, Any]]:
        return _as_worker_error(self.worker.send(key, data, (host, port)))

    @SendDatagrams.responder
    def send_datagrams(self, messages: bytes) -> Deferred[dict[str, Any]]:
        sending = send_relays(send_by_key(self.worker.send), messages)
        return sending.addCallback(lambda failed: {"failed": failed})

    @AnnounceMany.responder
    def announce_many(self, entries: bytes) -> dict[str, Any]:
        for name, slot, static, sdef in decode_entries(entries):
            if sdef.socket_text != name:
                raise WorkerError(f"AnnounceMany: {name} does not match its definition")
            self.worker.directory.announce(BookEntry(sdef, slot, static))
        return {}

    @WithdrawMany.responder
    def withdraw_many(self, sockets: list[str]) -> dict[str, Any]:
        for name in sockets:
            self.worker.directory.withdraw(name)
        return {}

    @Stats.responder
    def stats(self, start: int, changes: bool | None = None) -> dict[str, Any]:
        counters = {key: lst.counters for key, lst in self.worker.listeners.items()}
        reporter = self.worker.reporter
        page = reporter.changes(counters) if changes else reporter.full(counters, start)
        return {
            "pid": os.getpid(),
            "handled": self.worker.handled,
            "sockets": encode_stats_rows(page.rows),
            "more": page.more,
            "gone": page.gone,
        }

    @CloseConnection.responder
    def close_connection(self, key: int, host: str, port: int, reason: str) -> dict[str, Any]:
        listener = self.worker.listeners.get(key)
        if not isinstance(listener, StreamListener):
            return {"closed": False}
        return {"closed": close_over_cap(listener, (host, port), reason)}

    @StopAccepting.responder
    def stop_accepting(self, drain: float) -> Deferred[dict[str, Any]]:
        from sipsock.workers.stream_drain import drain_streams

        listeners = list(self.worker.listeners.values())
        draining = Deferred.fromCoroutine(drain_streams(listeners, drain, self.reactor))
        return draining.addCallback(lambda left: {"left": left})

    @PrepareTLS.responder
    def prepare_tls(self) -> dict[str, Any]:
        streams = self.worker.streams
        failed = streams.prepare_tls() if streams is not None else []
        return {"failed": json.dumps([list(item) for item in failed]).encode("utf-8")}

    @CommitTLS.responder
    def commit_tls(self) -> dict[str, Any]:
        streams = self.worker.streams
        names = streams.commit_tls() if streams is not None else []
        return {"reloaded": json.dumps(names).encode("utf-8")}

    @AbortTLS.responder
    def abort_tls(self) -> dict[str, Any]:
        if self.worker.streams is not None:
            self.worker.streams.abort_tls()
        return {}

    def report_connections(self, changes: list[ConnectionChange]) -> None:
        """Tell the control process which connections became ready or closed."""
        if self.transport is None or self.shutting_down:
            return
        self.callRemote(ConnectionsChanged, changes=encode_changes(changes))  # type: ignore[no-untyped-call]

    @Busy.responder
    def busy(self) -> dict[str, Any]:
        return {"idle": float(getattr(self.reactor, "idleSeconds", 0.0)), "clock": monotonic()}

    @OpenChannel.responder
    def open_channel(self, fds: list[int], peer: str, pool: str, index: int) -> dict[str, Any]:
        if self.routes is None or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            if self.routes is None:
                raise WorkerError("OpenChannel: this worker relays through the control process")
            raise WorkerError(f"OpenChannel: {len(fds)} descriptor(s), not 1")
        self.routes.open(fds[0], peer, pool, index)
        return {}

    @Shutdown.responder
    def shutdown(self) -> dict[str, Any]:
        self.shutting_down = True
        self.reactor.callLater(0, self._exit)
        return {}

    def relay(self, name: str, data: bytes, peer: tuple[str, int]) -> Deferred[None]:
        """Send through a socket of the control process, with the turn's batch (`RelayBatcher`)."""
        return self.relays.relay(name, data, peer)

    def _send_batch(self, messages: bytes) -> Deferred[bytes]:
        """One batch on the relay channel (else one `SendManyThroughSockets`); fires with
        its ``failed`` answer."""
        if self.channel is not None:
            return self.channel.call(messages)
        sent: Deferred[dict[str, Any]] = self.callRemote(  # type: ignore[no-untyped-call]
            SendManyThroughSockets, messages=messages
        )
        return sent.addCallback(lambda answer: answer["failed"])

    def _exit(self) -> Deferred[None]:
        """Release every socket, then stop the reactor; fires when done."""
        closing = self.worker.close_all()
        return closing.addBoth(lambda _: self._stop_reactor())

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        super().connectionLost(reason)  # type: ignore[no-untyped-call]
        if not self.shutting_down:
            self.log.info("control process connection closed: exiting")
        self._exit()

    def use_channel(self, channel: RelayChannel) -> None:
        """Relay through ``channel`` (both ways); the worker exits when it closes."""
        self.channel = channel

        def lost() -> None:
            if not self.shutting_down:
                self.log.info("control process relay channel closed: exiting")
                self.shutting_down = True
            self._exit()

        channel.on_lost = lost

    def serve_relays(self, messages: bytes) -> Deferred[bytes]:
        """A batch the control process relays through this worker's sockets (by key)."""
        return send_relays(send_by_key(self.worker.send), messages)

    def _stop_reactor(self) -> None:
        # Stopping twice (a Shutdown and a lost connection, say) is one stop.
        if self.reactor.running:
            with contextlib.suppress(ReactorNotRunning):
                self.reactor.stop()


def _as_worker_error(sending: Deferred[None]) -> Deferred[dict[str, Any]]:
    def failed(failure: Failure) -> dict[str, Any]:
        if isinstance(failure.value, WorkerError):
            raise failure.value
        raise WorkerError(failure.getErrorMessage() or type(failure.value).__name__)

    def sent(_: None) -> dict[str, Any]:
        return {}

    return sending.addCallbacks(sent, failed)


def worker_log_observer(out: IO[str], level: LogLevel) -> FilteringLogObserver:
    """The worker's log: flat JSON lines on ``out`` (stderr) that the control process
    re-logs, at ``level`` (``[core] log_level``) and above.

    Twisted's own chatter (protocol starting, port closed, connection made;
    legacy log events) and the UDP transport's line per socket are left out
    below warnings: the control process logs every socket it opens, updates
    and closes, and a line per socket from each worker as well made a reload
    of N sockets re-log 2N lines there (most of its time in bench/reload.py).
    Problems still show.
    """
    quiet = at_least(level, LogLevel.warn)
    levels = LogLevelFilterPredicate(defaultLogLevel=level)
    for namespace in ("twisted", "log_legacy", "sipsock.transport.udp"):
        levels.setLogLevelForNamespace(namespace, quiet)
    return FilteringLogObserver(worker_observer(out, level), [levels])


class WarningsLogger(Logger):
    """A `Logger` that drops debug and info events before it builds them."""

    def emit(self, level: LogLevel, format: str | None = None, **kwargs: object) -> None:
        if level is LogLevel.debug or level is LogLevel.info:
            return
        super().emit(level, format, **kwargs)


def quiet_socket_lines() -> None:
    """Drop the UDP transport's lines below warnings where they are made, not in the filter.

    `worker_log_observer` drops them anyway; built and filtered, a "listening"
    and a "closed" line per socket were a tenth of a worker's CPU in a reload.
    """
    UdpListener.log = WarningsLogger()
    UdpListener.socket_lines = False


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The worker's command line."""
    parser = argparse.ArgumentParser(
        prog="python -m sipsock.workers",
        description="A sipsock UDP worker (started by the daemon, not by hand).",
    )
    parser.add_argument("--pool", default="dynamic", help="the pool's name, for logs")
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default="info",
        help="[core] log_level, as the control process loaded it",
    )
    parser.add_argument("--index", type=int, default=0, help="the worker's number in its pool")
    parser.add_argument("--fd", type=int, required=True, help="the inherited AMP socket")
    parser.add_argument(
        "--relay-fd", type=int, help="the inherited relay channel's socket (relayed messages)"
    )
    parser.add_argument(
        "--parent", type=int, help="the control process's pid (the worker dies with it)"
    )
    return parser.parse_args(list(argv))


def _adopt_unix_stream(reactor: Any, fd: int, protocol: Any, what: str, log: Logger) -> bool:
    """Serve ``protocol`` on the inherited UNIX socket ``fd`` (closed here either way).

    False, with a critical line naming the ``what`` descriptor, when it cannot be used.
    """
    try:
        os.set_blocking(fd, False)
        os.set_inheritable(fd, False)
        reactor.adoptStreamConnection(fd, socket.AF_UNIX, Factory.forProtocol(lambda: protocol))
    except OSError as exc:
        log.critical(
            "cannot use the {what} descriptor {fd}: {reason}", what=what, fd=fd, reason=exc
        )
        return False
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Run one worker until the control process lets it go; the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        no_lifeline = die_with_parent(args.parent)
    except ParentGoneError as exc:
        sys.stderr.write(f"warn {exc}: not starting\n")
        return EXIT_STARTUP
    from sipsock.workers.epoll import install

    reactor = install()
    globalLogBeginner.beginLoggingTo(
        [worker_log_observer(sys.stderr, parse_level(args.log_level))],
        discardBuffer=True,
        redirectStandardIO=False,
    )
    quiet_socket_lines()
    log = Logger(namespace=f"sipsock.worker.{args.pool}.{args.index}")
    if no_lifeline is not None:
        log.warn("this worker may outlive the control process: {reason}", reason=no_lifeline)
    protocol: WorkerProtocol | None = None

    routes: DirectRoutes | None = None

    def to_control(name: str, data: bytes, peer: tuple[str, int]) -> Deferred[None]:
        if protocol is None:
            return defer.fail(WorkerError("not connected to the control process"))
        return protocol.relay(name, data, peer)

    def relay(name: str, data: bytes, peer: tuple[str, int]) -> Deferred[None]:
        if routes is None:
            return to_control(name, data, peer)
        return routes.relay(name, data, peer)

    def waiting(name: str, peer: tuple[str, int]) -> bool:
        return routes is not None and routes.waiting(name, peer)

    def report(changes: list[ConnectionChange]) -> None:
        if protocol is not None:
            protocol.report_connections(changes)

    worker = UdpWorker(
        reactor=reactor,
        relay=relay,
        exclusive=os.environ.get(NO_EXCLUSIVE_ENV, "") in ("", "0"),
        report=report,
        waiting=waiting,
    )
    routes = DirectRoutes(reactor, to_control, worker.directory.held, worker.directory.is_static)
    protocol = WorkerProtocol(worker, reactor, routes)
    if not _adopt_unix_stream(reactor, args.fd, protocol, "AMP", log):
        return EXIT_STARTUP
    if args.relay_fd is not None:
        channel = RelayChannel(protocol.serve_relays, "relay channel to the control process")
        if not _adopt_unix_stream(reactor, args.relay_fd, channel, "relay", log):
            return EXIT_STARTUP
        protocol.use_channel(channel)
    # The control process decides when workers stop: an interrupt from the
    # terminal, or a SIGTERM to the whole process group (systemd's
    # KillMode=control-group), reaches it too, and it shuts the workers down in
    # order (sockets released first). A worker whose control process dies is
    # killed by the kernel (`die_with_parent`).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    enable_stack_dump()
    log.info("running; the control process gives the application and the sockets")
    # Everything loaded so far lives as long as the worker: keep it out of the
    # collector's full passes, which otherwise cost tens of milliseconds while
    # hundreds of sockets are adopted or released.
    gc.freeze()
    collect_young_less_often()
    # No Twisted signal handlers: its SIGTERM handler would stop the reactor
    # behind the control process's back (and a worker starts no children).
    reactor.run(installSignalHandlers=False)
    return protocol.exit_status
