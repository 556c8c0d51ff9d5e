"""A small SSH client (Twisted Conch) that logs in with a password and types into a shell."""

from __future__ import annotations

import struct
from typing import Any

from twisted.conch.ssh import channel, common, connection, keys, transport, userauth
from twisted.internet import defer, protocol
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

_SSHClientTransport: Any = transport.SSHClientTransport
_SSHUserAuthClient: Any = userauth.SSHUserAuthClient
_SSHConnection: Any = connection.SSHConnection
_SSHChannel: Any = channel.SSHChannel


class LoginRefusedError(Exception):
    """The server closed the connection without opening a shell (bad credentials)."""


class _Session:
    """What one login wants and what it got."""

    def __init__(self, user: str, password: str, lines: list[str], expect: str) -> None:
        self.user = user.encode()
        self.password = password.encode()
        self.lines = lines
        self.expect = expect
        self.output = b""
        self.host_key: Any = None
        self.shell_open = False
        self.done: Deferred[str] = Deferred()

    def finish(self, result: str | Failure) -> None:
        if not self.done.called:
            if isinstance(result, Failure):
                self.done.errback(result)
            else:
                self.done.callback(result)


class _Shell(_SSHChannel):  # type: ignore[misc]
    name = b"session"

    def __init__(self, session: _Session, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.session = session

    def channelOpen(self, data: bytes) -> None:
        self.session.shell_open = True
        pty = common.NS(b"xterm") + struct.pack(">4L", 40, 200, 0, 0) + common.NS(b"")
        self.conn.sendRequest(self, b"pty-req", pty, wantReply=False)
        self.conn.sendRequest(self, b"shell", b"", wantReply=False)
        for line in self.session.lines:
            self.write(line.encode() + b"\r")

    def dataReceived(self, data: bytes) -> None:
        self.session.output += data
        text = self.session.output.decode(errors="replace")
        if self.session.expect in text:
            self.session.finish(text)
            self.loseConnection()


class _Connection(_SSHConnection):  # type: ignore[misc]
    def __init__(self, session: _Session) -> None:
        super().__init__()
        self.session = session

    def serviceStarted(self) -> None:
        self.openChannel(_Shell(self.session, conn=self))


class _Auth(_SSHUserAuthClient):  # type: ignore[misc]
    def __init__(self, session: _Session, next_service: Any) -> None:
        super().__init__(session.user, next_service)
        self.session = session
        self.tried = False

    def getPassword(self, prompt: bytes | None = None) -> Deferred[bytes] | None:
        if self.tried:
            return None  # one try; then the client gives up
        self.tried = True
        return defer.succeed(self.session.password)

    def getPublicKey(self) -> None:
        return None


class _Transport(_SSHClientTransport):  # type: ignore[misc]
    session: _Session

    def verifyHostKey(self, host_key: bytes, fingerprint: str) -> Deferred[bool]:
        self.session.host_key = keys.Key.fromString(host_key)  # type: ignore[no-untyped-call]
        return defer.succeed(True)

    def connectionSecure(self) -> None:
        self.requestService(_Auth(self.session, _Connection(self.session)))

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        if not self.session.shell_open:
            refused = LoginRefusedError(reason.getErrorMessage())
            self.session.finish(Failure(refused))  # type: ignore[no-untyped-call]
        else:
            text = self.session.output.decode(errors="replace")
            missing = AssertionError(f"{self.session.expect!r} not in the output:\n{text}")
            self.session.finish(Failure(missing))  # type: ignore[no-untyped-call]


async def run_shell(
    reactor: Any,
    port: int,
    user: str,
    password: str,
    lines: list[str],
    expect: str,
    timeout: float = 30.0,
) -> tuple[str, Any]:
    """Log in, type ``lines``, wait until ``expect`` shows; (output, server host key).

    Fails with `LoginRefusedError` when the login is refused.
    """
    session = _Session(user, password, lines, expect)

    class Factory(protocol.ClientFactory):
        def buildProtocol(self, addr: Any) -> _Transport:
            proto = _Transport()
            proto.session = session
            proto.factory = self
            return proto

        def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
            session.finish(reason)

    connector = reactor.connectTCP("127.0.0.1", port, Factory(), timeout=10)
    session.done.addTimeout(timeout, reactor)
    try:
        output = await session.done
    finally:
        connector.disconnect()
    return output, session.host_key
