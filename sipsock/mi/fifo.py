"""JSON-RPC over a FIFO, in OpenSIPS's mi_fifo dialect.

What ``opensips-mi -t fifo`` (and opensips-cli) does: it creates a reply FIFO
``opensips_fifo_reply_<pid>_<time>`` in its reply directory (``/tmp/`` by
default), writes ``:<reply fifo name>:<JSON request>`` (no newline) to the
server FIFO, closes it, then opens the reply FIFO for reading and reads one
line. The server joins the bare name to *its* reply directory (the two must
agree, ``/tmp/`` on both sides by default), refuses names holding ``.``,
``/`` or ``\\``, opens the reply FIFO non-blocking (retrying while the client
has not opened it yet), checks that it is a FIFO and not a link, and writes
the JSON reply followed by a newline. An empty name (``::{...}``) means no
reply is wanted.

`FifoFramer` holds the framing rule (pure); `FifoListener` does the I/O.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.application.service import Service
from twisted.internet import abstract, defer, fdesc
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorFDSet, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from sipsock.mi import jsonrpc
from sipsock.mi.commands import CommandTable, answer_jsonrpc

DEFAULT_REPLY_DIR = "/tmp/"
MAX_REPLY_NAME = 255
_WHITESPACE = b" \t\r\n"
_FORBIDDEN_IN_NAME = frozenset(b"./\\\x00")
_FRAME_START = re.compile(rb"[ \t\r\n]*:[^:./\\\s]{0,255}:[ \t\r\n]*[{\[]")


@dataclass(frozen=True)
class FifoFrame:
    """One request read from the FIFO.

    ``reply_name`` is the bare reply FIFO name (None: no reply wanted or
    possible). ``error`` is set when the request was refused before parsing
    (too large, bad reply name); ``body`` is then what was kept of it.
    """

    reply_name: str | None
    body: bytes
    error: str | None = None


class FifoFramer:
    """Cuts the FIFO byte stream into `FifoFrame` s (pure, incremental).

    A frame is ``:name:`` followed by one JSON object or array, found by
    matching brackets outside strings. A body that does not start with ``{``
    or ``[`` runs to the end of the line. Bytes outside a frame are skipped
    up to the next newline. A body past ``max_request`` bytes is dropped and
    reported. `flush` ends a frame left unfinished (a writer that died).
    """

    def __init__(self, max_request: int = jsonrpc.MAX_REQUEST_BYTES) -> None:
        self.max_request = max_request
        self._reset()

    def _reset(self) -> None:
        self._phase = "idle"
        self._name = bytearray()
        self._body = bytearray()
        self._overflow = False
        self._depth = 0
        self._in_string = False
        self._escaped = False

    @property
    def pending(self) -> bool:
        """True while a frame has started and is not complete."""
        return self._phase not in ("idle", "junk")

    def feed(self, data: bytes) -> list[FifoFrame]:
        """Consume bytes; return the frames they complete."""
        frames: list[FifoFrame] = []
        for byte in data:
            frame = self._step(byte)
            if frame is not None:
                frames.append(frame)
        return frames

    def feed_read(self, chunk: bytes) -> list[FifoFrame]:
        """Consume what one read returned.

        Clients write a whole request at once (atomic up to PIPE_BUF), so a
        read that starts like a new request (``:name:{``) while a frame is
        still open means the earlier writer died mid-request: that frame is
        ended first, and the new request is not swallowed by it.
        """
        frames: list[FifoFrame] = []
        if self.pending and _FRAME_START.match(chunk):
            frames += self.flush()
        return frames + self.feed(chunk)

    def flush(self) -> list[FifoFrame]:
        """End an unfinished frame (its body is then handed over as is)."""
        frames: list[FifoFrame] = []
        if self._phase in ("body_start", "body", "line"):
            frames.append(self._finish())
        elif self._phase == "name":
            frames.append(FifoFrame(None, b"", "request ended inside the reply fifo name"))
        self._reset()
        return frames

    def _step(self, byte: int) -> FifoFrame | None:
        phase = self._phase
        if phase == "idle":
            if byte in _WHITESPACE:
                return None
            if byte == ord(":"):
                self._phase = "name"
                return None
            self._phase = "junk"
            return None
        if phase == "junk":
            if byte == ord("\n"):
                self._phase = "idle"
            return None
        if phase == "name":
            if byte == ord(":"):
                self._phase = "body_start"
                return None
            if byte == ord("\n") or len(self._name) >= MAX_REPLY_NAME:
                self._reset()
                self._phase = "idle" if byte == ord("\n") else "junk"
                return FifoFrame(None, b"", "reply fifo name missing or too long")
            self._name.append(byte)
            return None
        if phase == "body_start":
            if byte in _WHITESPACE:
                return None
            if byte in b"{[":
                self._phase = "body"
                self._depth = 1
            else:
                self._phase = "line"
            self._append(byte)
            return None
        if phase == "line":
            if byte == ord("\n"):
                return self._finish()
            self._append(byte)
            return None
        # phase == "body": a JSON object or array, matched by brackets
        self._append(byte)
        if self._in_string:
            if self._escaped:
                self._escaped = False
            elif byte == ord("\\"):
                self._escaped = True
            elif byte == ord('"'):
                self._in_string = False
            return None
        if byte == ord('"'):
            self._in_string = True
        elif byte in b"{[":
            self._depth += 1
        elif byte in b"}]":
            self._depth -= 1
            if self._depth == 0:
                return self._finish()
        return None

    def _append(self, byte: int) -> None:
        if len(self._body) >= self.max_request:
            self._overflow = True
        else:
            self._body.append(byte)

    def _finish(self) -> FifoFrame:
        name, error = check_reply_name(bytes(self._name))
        body = bytes(self._body)
        if error is None and self._overflow:
            error = f"request larger than {self.max_request} bytes"
        self._reset()
        return FifoFrame(name, body, error)


def check_reply_name(raw: bytes) -> tuple[str | None, str | None]:
    """The reply FIFO name, or the reason it is refused (OpenSIPS's rule).

    Empty means no reply wanted: ``(None, None)``.
    """
    if not raw:
        return None, None
    if any(byte in _FORBIDDEN_IN_NAME for byte in raw) or raw.strip() != raw:
        return None, f"forbidden reply fifo name {raw!r}"
    try:
        return raw.decode("ascii"), None
    except UnicodeDecodeError:
        return None, f"forbidden reply fifo name {raw!r}"


class _FifoReader(abstract.FileDescriptor):
    """Reads the server FIFO (non-blocking) and feeds what it reads on."""

    def __init__(self, fd: int, on_data: Callable[[bytes], None], reactor: Any) -> None:
        super().__init__(reactor)
        self._fd = fd
        self._on_data = on_data

    def fileno(self) -> int:
        return self._fd

    def doRead(self) -> Any:
        return fdesc.readFromFD(self._fd, self._on_data)  # type: ignore[no-untyped-call]

    def writeSomeData(self, data: bytes) -> int:
        raise NotImplementedError("the MI FIFO reader does not write")

    def connectionLost(self, reason: Failure) -> None:
        abstract.FileDescriptor.connectionLost(self, reason)  # type: ignore[no-untyped-call]


class _ReplyWriter(abstract.FileDescriptor):
    """Writes one reply to a reply FIFO without blocking, then closes it."""

    def __init__(self, fd: int, reactor: Any) -> None:
        super().__init__(reactor)
        self._fd = fd
        self.connected = 1
        self.closed_ = defer.Deferred[None]()

    def fileno(self) -> int:
        return self._fd

    def writeSomeData(self, data: bytes) -> Any:
        return fdesc.writeToFD(self._fd, data)  # type: ignore[no-untyped-call]

    def doRead(self) -> None:
        """Never reading."""

    def connectionLost(self, reason: Failure) -> None:
        abstract.FileDescriptor.connectionLost(self, reason)  # type: ignore[no-untyped-call]
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)
        if not self.closed_.called:
            self.closed_.callback(None)


class FifoListener:
    """Serves JSON-RPC requests written to a FIFO (OpenSIPS's mi_fifo dialect).

    The FIFO is created with ``mode`` (0600); a FIFO left at the path by an
    earlier run is replaced, any other file there is an error. Replies go to
    ``reply_dir`` joined with the name the client gave. Bad input is logged
    and skipped; the reader keeps serving.
    """

    log = Logger()

    def __init__(
        self,
        table: CommandTable,
        path: str,
        *,
        reply_dir: str = DEFAULT_REPLY_DIR,
        mode: int = 0o600,
        max_request: int = jsonrpc.MAX_REQUEST_BYTES,
        frame_timeout: float = 5.0,
        reply_open_timeout: float = 2.0,
        reply_write_timeout: float = 10.0,
        reactor: Any = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self._table = table
        self.path = path
        self.reply_dir = reply_dir
        self.mode = mode
        self.frame_timeout = frame_timeout
        self.reply_open_timeout = reply_open_timeout
        self.reply_write_timeout = reply_write_timeout
        self._reactor: Any = reactor
        self._framer = FifoFramer(max_request)
        self._reader: _FifoReader | None = None
        self._keepalive_fd = -1
        self._inode: tuple[int, int] | None = None
        self._frame_timer: IDelayedCall | None = None
        self._pending: set[Deferred[Any]] = set()

    @property
    def _clock(self) -> IReactorTime:
        clock: IReactorTime = self._reactor
        return clock

    def startListening(self) -> None:
        """Create the FIFO and start reading it."""
        self._create_fifo()
        read_fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            # Our own writer keeps the FIFO from reading EOF between clients.
            self._keepalive_fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            os.close(read_fd)
            raise
        self._reader = _FifoReader(read_fd, self._data_received, self._reactor)
        fdset: IReactorFDSet = self._reactor
        fdset.addReader(self._reader)
        self.log.info("MI FIFO listening at {path}", path=self.path)

    def _create_fifo(self) -> None:
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISFIFO(info.st_mode):
                raise OSError(
                    errno.EEXIST, f"{self.path} exists and is not a FIFO; remove it or pick another"
                )
            os.unlink(self.path)
        os.mkfifo(self.path, self.mode)
        os.chmod(self.path, self.mode)
        info = os.lstat(self.path)
        self._inode = (info.st_dev, info.st_ino)

    def stopListening(self) -> Deferred[None]:
        """Stop reading, remove the FIFO; fires when pending replies are done."""
        if self._frame_timer is not None and self._frame_timer.active():
            self._frame_timer.cancel()
        self._frame_timer = None
        if self._reader is not None:
            fdset: IReactorFDSet = self._reactor
            fdset.removeReader(self._reader)
            os.close(self._reader.fileno())
            self._reader = None
        if self._keepalive_fd >= 0:
            os.close(self._keepalive_fd)
            self._keepalive_fd = -1
        if self._inode is not None:
            try:
                info = os.lstat(self.path)
                if (info.st_dev, info.st_ino) == self._inode:
                    os.unlink(self.path)
            except OSError:
                pass
            self._inode = None
        pending = list(self._pending)
        done: Deferred[None] = defer.DeferredList(pending, consumeErrors=True).addCallback(
            lambda _: None
        )
        return done

    def _data_received(self, data: bytes) -> None:
        for frame in self._framer.feed_read(data):
            self._handle(frame)
        if self._frame_timer is not None and self._frame_timer.active():
            self._frame_timer.cancel()
        self._frame_timer = None
        if self._framer.pending:
            self._frame_timer = self._clock.callLater(self.frame_timeout, self._frame_expired)

    def _frame_expired(self) -> None:
        self._frame_timer = None
        self.log.warn("MI FIFO request left unfinished for {timeout}s", timeout=self.frame_timeout)
        for frame in self._framer.flush():
            self._handle(frame)

    def _handle(self, frame: FifoFrame) -> None:
        if frame.error is not None:
            self.log.warn("MI FIFO request refused: {reason}", reason=frame.error)
            if frame.reply_name is not None:
                body = jsonrpc.encode_error(
                    None, jsonrpc.PARSE_ERROR, jsonrpc.MESSAGES[jsonrpc.PARSE_ERROR], frame.error
                )
                self._track(self._send_reply(frame.reply_name, body))
            return
        answer = answer_jsonrpc(self._table, frame.body)
        if frame.reply_name is not None:
            name = frame.reply_name
            answer.addCallback(lambda reply: self._send_reply(name, reply) if reply else None)
        self._track(answer)

    def _track(self, work: Deferred[Any]) -> None:
        self._pending.add(work)

        def done(result: Any) -> None:
            self._pending.discard(work)
            if isinstance(result, Failure):
                self.log.failure("MI FIFO request failed", result)

        work.addBoth(done)

    def _send_reply(self, name: str, reply: bytes) -> Deferred[None]:
        path = os.path.join(self.reply_dir, name)
        deadline = self._clock.seconds() + self.reply_open_timeout
        result: Deferred[None] = Deferred()

        def attempt() -> None:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
            except OSError as exc:
                if exc.errno == errno.ENXIO and self._clock.seconds() < deadline:
                    # The client has not opened its end for reading yet.
                    self._clock.callLater(0.01, attempt)
                    return
                self.log.warn("MI FIFO reply to {path} not sent: {reason}", path=path, reason=exc)
                result.callback(None)
                return
            problem = _reply_fifo_problem(fd, path)
            if problem is not None:
                os.close(fd)
                self.log.warn(
                    "MI FIFO reply to {path} refused: {reason}", path=path, reason=problem
                )
                result.callback(None)
                return
            self._write_reply(fd, reply + b"\n").chainDeferred(result)

        attempt()
        return result

    def _write_reply(self, fd: int, data: bytes) -> Deferred[None]:
        writer = _ReplyWriter(fd, self._reactor)
        writer.write(data)
        writer.loseConnection()  # type: ignore[no-untyped-call]
        timer = self._clock.callLater(
            self.reply_write_timeout,
            writer.connectionLost,
            Failure(TimeoutError("reply not read")),  # type: ignore[no-untyped-call]
        )

        def stop_timer(_: None) -> None:
            if timer.active():
                timer.cancel()

        writer.closed_.addCallback(stop_timer)
        return writer.closed_


def _reply_fifo_problem(fd: int, path: str) -> str | None:
    """Why an opened reply path must not be written to (OpenSIPS's checks)."""
    info = os.fstat(fd)
    if not stat.S_ISFIFO(info.st_mode):
        return "not a FIFO"
    if info.st_nlink > 1:
        return f"hard-linked {info.st_nlink} times"
    link = os.lstat(path)
    if (link.st_dev, link.st_ino) != (info.st_dev, info.st_ino):
        return "replaced while being opened"
    return None


class FifoService(Service):
    """A service running a `FifoListener` (the FIFO exists while it runs)."""

    def __init__(self, listener: FifoListener) -> None:
        self.listener = listener

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self.listener.startListening()

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        return self.listener.stopListening()


def fifo_service(
    table: CommandTable,
    path: str,
    *,
    reply_dir: str = DEFAULT_REPLY_DIR,
    mode: int = 0o600,
    max_request: int = jsonrpc.MAX_REQUEST_BYTES,
) -> FifoService:
    """A service serving JSON-RPC on the FIFO at ``path`` while running."""
    listener = FifoListener(table, path, reply_dir=reply_dir, mode=mode, max_request=max_request)
    return FifoService(listener)
