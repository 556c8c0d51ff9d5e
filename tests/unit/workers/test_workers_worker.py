# mypy: disable-error-code="no-untyped-call"
"""The worker's side: adopting, updating, releasing sockets; its AMP answers; its log."""

from __future__ import annotations

import io
import json
import os
import socket
from typing import Any, cast

import pytest
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.error import ReactorNotRunning
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import ILogObserver, Logger, LogLevel, globalLogPublisher

from sipsock.apps import Dispatcher
from sipsock.apps.spec import freeze
from sipsock.config import default_settings, parse_config_text
from sipsock.logs import parse_worker_line
from sipsock.sockdef import parse_row
from sipsock.testing import RecordingSink
from sipsock.transport.udp import UdpListener
from sipsock.workers.commands import (
    Adoption,
    WorkerError,
    decode_failures,
    decode_stats_page,
    encode_adoptions,
    encode_entries,
    encode_spec,
    encode_updates,
)
from sipsock.workers.worker import (
    EXIT_STARTUP,
    UdpWorker,
    WorkerProtocol,
    parse_args,
    quiet_socket_lines,
    worker_log_observer,
)


def relay(name: str, data: bytes, peer: tuple[str, int]) -> Deferred[None]:
    return defer.succeed(None)


def bound_fd() -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock.detach()


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def make_worker() -> tuple[UdpWorker, MemoryReactorClock]:
    reactor = MemoryReactorClock()
    return UdpWorker(RecordingSink(), reactor=reactor, relay=relay), reactor


def test_adopting_serves_the_descriptor_and_closes_the_received_copy() -> None:
    worker, reactor = make_worker()
    fd = bound_fd()
    sdef = parse_row(1, "udp:127.0.0.1:5070", tag="edge")
    worker.adopt(7, 2, fd, sdef, shared=True)
    [(adopted_fd, family, _, size)] = reactor.adoptedPorts
    assert (adopted_fd, family, size) == (fd, socket.AF_INET, 65535)
    assert not is_open(fd)
    assert worker.listeners[7].slot == 2
    assert worker.directory.by_tag("edge") is worker.listeners[7]


def test_adopting_a_key_twice_is_refused_and_the_descriptor_closed() -> None:
    worker, _ = make_worker()
    sdef = parse_row(1, "udp:127.0.0.1:5070")
    worker.adopt(1, 0, bound_fd(), sdef, shared=False)
    fd = bound_fd()
    with pytest.raises(WorkerError, match="key 1 is already held"):
        worker.adopt(1, 0, fd, sdef, shared=False)
    assert not is_open(fd)


def test_a_stream_socket_before_start_is_refused_and_its_descriptor_closed() -> None:
    # Stream sockets are adopted by real workers in tests/integration/workers/test_stream_pool.py.
    worker = UdpWorker(reactor=MemoryReactorClock(), relay=lambda *_: defer.succeed(None))
    fd = bound_fd()
    with pytest.raises(WorkerError, match="has not started"):
        worker.adopt(1, 0, fd, parse_row(1, "tcp:127.0.0.1:5070"), shared=False)
    assert not is_open(fd)


def test_release_is_idempotent_and_keeps_the_handled_count() -> None:
    worker, _ = make_worker()
    worker.adopt(3, 0, bound_fd(), parse_row(1, "udp:127.0.0.1:5070"), shared=False)
    worker.listeners[3].counters.received = 5
    worker.release(3)
    worker.release(3)
    assert worker.listeners == {}
    assert worker.handled == 5
    assert worker.directory.by_slot(0) is None


def test_update_and_send_name_the_missing_key() -> None:
    worker, _ = make_worker()
    with pytest.raises(WorkerError, match="key 9 is not held"):
        worker.update(9, parse_row(1, "udp:127.0.0.1:5070"))
    errors: list[Any] = []
    worker.send(9, b"x", ("127.0.0.1", 1)).addErrback(errors.append)
    assert "key 9 is not held" in errors[0].getErrorMessage()


def test_update_to_another_endpoint_is_refused() -> None:
    worker, _ = make_worker()
    worker.adopt(1, 0, bound_fd(), parse_row(1, "udp:127.0.0.1:5070"), shared=False)
    with pytest.raises(WorkerError, match="update refused"):
        worker.update(1, parse_row(1, "udp:127.0.0.1:5071"))


def test_the_protocol_answers_adopt_and_stats_from_the_worker() -> None:
    worker, reactor = make_worker()
    protocol = WorkerProtocol(worker, reactor)
    [adoption] = adoptions(5070)
    protocol.adopt_sockets(
        encode_adoptions([Adoption(4, 1, True, False, adoption.sdef)]), [bound_fd()]
    )
    answer = protocol.stats(0)
    assert answer["pid"] == os.getpid()
    assert answer["more"] is False
    assert [s.key for s in decode_stats_page(answer["sockets"])] == [4]
    # Then only changes: none, and after the release the key is gone.
    answer = protocol.stats(0, changes=True)
    assert (decode_stats_page(answer["sockets"]), answer["gone"]) == ([], [])
    protocol.release_sockets([4])
    answer = protocol.stats(0, changes=True)
    assert (decode_stats_page(answer["sockets"]), answer["gone"]) == ([], [4])


def test_an_adopted_socket_is_recorded_once_in_its_place_and_forgotten_on_release() -> None:
    worker, reactor = make_worker()
    protocol = WorkerProtocol(worker, reactor)
    tcp = parse_row(1, "tcp:127.0.0.1:5060", tag="edge")
    protocol.announce_many(encode_entries([(tcp.socket_text, 1, False, tcp)]))
    static = parse_row(2, "udp:127.0.0.1:5070", tag="edge")
    worker.adopt(1, None, bound_fd(), static, shared=True, static=True)
    worker.adopt(2, 3, bound_fd(), parse_row(3, "udp:127.0.0.1:5071"), shared=True)
    # Static first, then in the order the sockets came (as the control process looks up).
    assert worker.directory.names() == [
        "udp:127.0.0.1:5070",
        "tcp:127.0.0.1:5060",
        "udp:127.0.0.1:5071",
    ]
    assert worker.directory.by_tag("edge") is worker.listeners[1]
    worker.update(2, parse_row(3, "udp:127.0.0.1:5071", tag="new"))
    assert worker.directory.names()[2] == "udp:127.0.0.1:5071"
    worker.release(1)
    assert worker.directory.names() == ["tcp:127.0.0.1:5060", "udp:127.0.0.1:5071"]
    assert worker.directory.by_tag("edge") is not None
    assert worker.directory.by_tag("edge").sdef == tcp  # type: ignore[union-attr]


def test_start_builds_the_application_from_the_spec_once() -> None:
    reactor = MemoryReactorClock()
    worker = UdpWorker(reactor=reactor, relay=relay)
    protocol = WorkerProtocol(worker, reactor)
    fd = bound_fd()
    with pytest.raises(WorkerError, match="has not started"):
        worker.adopt(1, 0, fd, parse_row(1, "udp:127.0.0.1:5070"), shared=True)
    assert not is_open(fd)
    text = "[core]\nmax_message_size = 4096\n[limits]\nmax_udp_message_size = 2048\n"
    spec = freeze(parse_config_text(text, source="/etc/sipsock.toml"))
    assert protocol.start(encode_spec(spec)) == {}
    assert isinstance(worker.sink, Dispatcher)
    assert worker.sink.max_message_size == 4096
    assert worker.sink.directory is worker.directory
    assert worker.udp_limits["max_message_size"] == 2048
    with pytest.raises(WorkerError, match="started already"):
        protocol.start(encode_spec(spec))
    assert protocol.exit_status == 0


def test_a_spec_whose_application_cannot_be_built_is_refused_and_the_worker_exits() -> None:
    reactor = StoppingReactor()
    protocol = WorkerProtocol(UdpWorker(reactor=reactor, relay=relay), reactor)
    protocol.makeConnection(StringTransport())
    text = "[core]\napplication = 'no.such.module:App'\n"
    spec = freeze(parse_config_text(text, source="/etc/bad.toml"))
    with pytest.raises(WorkerError, match=r"/etc/bad\.toml: \[core\] application"):
        protocol.start(encode_spec(spec))
    assert protocol.exit_status == EXIT_STARTUP
    reactor.advance(0)
    assert reactor.stops == 1
    assert freeze(default_settings()).text is None


def test_log_lines_are_one_json_object_each_with_level_and_fields() -> None:
    out = io.StringIO()
    observer = worker_log_observer(out, LogLevel.info)
    log = Logger(namespace="sipsock.apps.dispatch", observer=observer)
    log.warn("one\ntwo {x}", x=3, peer=("127.0.0.1", 5060))
    log.debug("not at info")
    Logger(namespace="twisted.internet", observer=observer).info("twisted chatter")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    level, message, fields = parse_worker_line(lines[0])
    assert (level, message) == (LogLevel.warn, "one\ntwo 3")
    assert fields == {"logger": "sipsock.apps.dispatch", "x": 3, "peer": ["127.0.0.1", 5060]}


def test_a_worker_drops_the_udp_sockets_info_lines_at_the_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(UdpListener, "log", UdpListener.log)  # restored after the test
    monkeypatch.setattr(UdpListener, "socket_lines", True)
    quiet_socket_lines()
    events: list[dict[str, Any]] = []
    observer = cast(ILogObserver, events.append)
    globalLogPublisher.addObserver(observer)
    try:
        worker, _ = make_worker()
        [adoption] = adoptions(5072)
        worker.adopt(1, 0, bound_fd(), adoption.sdef, shared=False)
        listener = worker.listeners[1]
        worker.release(1)
        listener.log.warn("socket {socket}: kept", socket="x")
    finally:
        globalLogPublisher.removeObserver(observer)
    mine = [e for e in events if e.get("log_namespace", "").startswith("sipsock.transport")]
    assert [e["log_format"] for e in mine] == ["socket {socket}: kept"]


def test_a_debug_worker_logs_debug_lines() -> None:
    out = io.StringIO()
    log = Logger(namespace="sipsock.x", observer=worker_log_observer(out, LogLevel.debug))
    log.debug("detail {n}", n=1)
    assert parse_worker_line(out.getvalue())[:2] == (LogLevel.debug, "detail 1")


def test_the_command_line_needs_the_descriptor_and_takes_no_config() -> None:
    args = parse_args(["--pool", "static", "--index", "2", "--fd", "3"])
    assert (args.pool, args.index, args.fd) == ("static", 2, 3)
    assert args.log_level == "info"
    assert parse_args(["--log-level", "debug", "--fd", "3"]).log_level == "debug"
    with pytest.raises(SystemExit):
        parse_args(["--pool", "static"])
    with pytest.raises(SystemExit):
        parse_args(["--config", "x.toml", "--fd", "3"])


def adoptions(*ports: int) -> list[Adoption]:
    return [
        Adoption(key, key - 1, True, False, parse_row(key, f"udp:127.0.0.1:{port}"))
        for key, port in enumerate(ports, start=1)
    ]


def test_a_batch_is_adopted_socket_by_socket_and_only_the_refused_one_reported() -> None:
    worker, reactor = make_worker()
    protocol = WorkerProtocol(worker, reactor)
    worker.adopt(2, 9, bound_fd(), parse_row(9, "udp:127.0.0.1:5099"), shared=True)
    batch = adoptions(5070, 5071, 5072)
    fds = [bound_fd() for _ in batch]
    answer = protocol.adopt_sockets(encode_adoptions(batch), fds)
    assert decode_failures(answer["failed"]) == {
        2: "socket udp:127.0.0.1:5071: key 2 is already held (udp:127.0.0.1:5099)"
    }
    assert sorted(worker.listeners) == [1, 2, 3]
    assert worker.listeners[3].sdef.port == 5072
    assert not any(is_open(fd) for fd in fds)


def test_a_garbled_batch_closes_every_received_descriptor() -> None:
    worker, reactor = make_worker()
    protocol = WorkerProtocol(worker, reactor)
    fds = [bound_fd(), bound_fd()]
    with pytest.raises(WorkerError, match=r"2 socket\(s\) but 1 descriptor"):
        protocol.adopt_sockets(encode_adoptions(adoptions(5070, 5071)), fds[:1])
    with pytest.raises(WorkerError, match="not JSON"):
        protocol.adopt_sockets(b"{", fds[1:])
    assert not any(is_open(fd) for fd in fds)
    assert worker.listeners == {}


def test_updates_and_releases_come_in_batches() -> None:
    worker, reactor = make_worker()
    protocol = WorkerProtocol(worker, reactor)
    batch = adoptions(5070, 5071)
    protocol.adopt_sockets(encode_adoptions(batch), [bound_fd(), bound_fd()])
    new = parse_row(1, "udp:127.0.0.1:5070", advertised="203.0.113.5:5999", tag="t")
    moved = parse_row(2, "udp:127.0.0.1:6000")
    answer = protocol.update_sockets(encode_updates([(1, new), (2, moved), (8, new)]))
    failed = decode_failures(answer["failed"])
    assert sorted(failed) == [2, 8]
    assert "update refused" in failed[2]
    assert "key 8 is not held" in failed[8]
    assert worker.listeners[1].sdef == new
    released: list[Any] = []
    protocol.release_sockets([1, 2, 3]).addCallback(released.append)
    assert released == [{}]
    assert worker.listeners == {}


def test_announcements_and_withdrawals_come_in_batches() -> None:
    worker, reactor = make_worker()
    protocol = WorkerProtocol(worker, reactor)
    tcp = parse_row(1, "tcp:127.0.0.1:5060")
    tls = parse_row(2, "tls:127.0.0.1:5061")
    entries = [(tcp.socket_text, None, True, tcp), (tls.socket_text, 3, False, tls)]
    protocol.announce_many(encode_entries(entries))
    assert worker.directory.names() == ["tcp:127.0.0.1:5060", "tls:127.0.0.1:5061"]
    with pytest.raises(WorkerError, match="does not match"):
        protocol.announce_many(encode_entries([("tcp:127.0.0.1:9", None, True, tcp)]))
    protocol.withdraw_many(["tcp:127.0.0.1:5060", "tls:127.0.0.1:5061", "udp:127.0.0.1:1"])
    assert worker.directory.names() == []


class StoppingReactor(MemoryReactorClock):
    """`ReactorBase.stop`'s rule: a second stop raises, and ``running`` stays
    true until the shutdown has run (the window of a SIGTERM to the group)."""

    def __init__(self) -> None:
        super().__init__()
        self.running = True
        self.stops = 0

    def stop(self) -> None:
        if self.stops:
            raise ReactorNotRunning("Can't stop reactor that isn't running.")
        self.stops += 1


def test_a_shutdown_after_the_reactor_began_stopping_is_no_error() -> None:
    reactor = StoppingReactor()
    protocol = WorkerProtocol(UdpWorker(RecordingSink(), reactor=reactor, relay=relay), reactor)
    protocol.makeConnection(StringTransport())
    reactor.stop()  # its own SIGTERM, say: the shutdown still has to run
    exits: list[Any] = []
    protocol._exit().addBoth(exits.append)  # Shutdown: nothing to release, stop again
    protocol._exit().addBoth(exits.append)  # the lost connection: once more
    assert exits == [None, None]
    assert reactor.stops == 1


def test_the_control_process_relogs_a_worker_line_with_its_fields() -> None:
    from types import SimpleNamespace

    from sipsock.logevents import flat_record
    from sipsock.workers.supervisor import Supervisor

    out = io.StringIO()
    log = Logger(
        namespace="sipsock.apps.dispatch", observer=worker_log_observer(out, LogLevel.info)
    )
    log.warn("odd {what}", what="thing", socket="udp:127.0.0.1:5060", line="l", pid=7)
    line = json.loads(out.getvalue())
    line.update(format="x", self="s")  # the names of Logger.emit's own parameters
    events: list[Any] = []
    observer = cast(ILogObserver, events.append)
    pool = SimpleNamespace(log=Logger(namespace="sipsock.workers.pool", observer=observer))
    process = SimpleNamespace(label="dynamic/2", kind="UDP worker", pid=4242)
    said = Supervisor.worker_said
    said(pool, process, json.dumps(line))  # type: ignore[arg-type]
    said(pool, process, "Traceback (most recent call last):")  # type: ignore[arg-type]
    first, second = (flat_record(event) for event in events)
    assert first["level"] == "warn"
    assert first["logger"] == "sipsock.apps.dispatch"
    assert first["message"] == "UDP worker dynamic/2 (pid 4242): odd thing"
    assert (first["worker"], first["pid"]) == ("dynamic/2", 4242)
    assert first["socket"] == "udp:127.0.0.1:5060"
    assert (first["field_line"], first["field_pid"], first["field_format"]) == ("l", 7, "x")
    assert second["level"] == "info"
    assert second["message"].endswith("(pid 4242): Traceback (most recent call last):")
