"""The manhole: a Python shell inside the running daemon, over SSH and/or telnet.

Built the way ``twisted.conch.manhole_tap`` builds one, with stricter rules
(`sipsock.config` checks the addresses; this module the files):

* a password is always asked: ``users_file`` holds ``name:password`` lines,
  the password bcrypt-hashed (``$2b$...``, recommended) or plain; ``#``
  comments and blank lines are ignored. A missing, empty, malformed or
  world-accessible file stops start-up with one line saying so;
* SSH uses a host key generated on first start in the state directory
  (``manhole_host_key``, Ed25519, mode 0600, never shipped); its public key
  is logged so an operator can pin it;
* telnet (passwords in clear text) only on a loopback address;
* before a login succeeds, a connection has a deadline, counts against caps
  (in all and per address) and failed logins throttle their address
  (`sipsock.manholeguard`); passwords are checked in a small thread pool of
  the manhole's own. Telnet allows one try per connection, SSH three.

The shell's namespace holds ``registry`` (the `SocketRegistry`), ``pools``
(the UDP worker pools), ``settings``, ``stats`` (`sipsock.stats.Statistics`)
and ``mi(name, **params)``, which runs an MI command: a command that answers
at once returns its result; a slower one (``sockets_reload``) returns a
Deferred, which the shell shows as ``<Deferred #N>`` and then
``Deferred #N called back: ...`` when it fires, as Twisted's manhole does.
Sessions share the namespace.
"""

from __future__ import annotations

import hmac
import os
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import bcrypt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.conch import interfaces as conch_interfaces
from twisted.conch import manhole, manhole_ssh, telnet
from twisted.conch.error import IgnoreAuthentication
from twisted.conch.insults import insults
from twisted.conch.ssh import keys, userauth
from twisted.conch.ssh.common import getNS
from twisted.conch.ssh.transport import DISCONNECT_NO_MORE_AUTH_METHODS_AVAILABLE
from twisted.cred import credentials, error, portal
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from sipsock.config import ManholeSettings
from sipsock.manholeguard import GatedFactory, LoginGate, PasswordPool, gated_connection

HOST_KEY_NAME: Final = "manhole_host_key"
#: Largest users file read (a few hundred users).
MAX_USERS_FILE: Final = 64 * 1024
_BCRYPT_PREFIXES: Final = (b"$2a$", b"$2b$", b"$2y$")
#: A bcrypt hash of a random string nobody knows: unknown users are checked
#: against it when the file holds hashes, so they take as long as known ones.
_DUMMY_HASH: Final = b"$2b$12$r90sc/7Mno.wnAR6Nvq0TOhRbBAKjxngxLcMYKcuXj4bAYRxlmz1K"

#: Seconds before a failed telnet login is answered (SSH: Conch's passwordDelay, 1 s).
FAILED_LOGIN_DELAY: Final = 1.0

_log = Logger()
# Conch has no type hints: its classes are used through these names.
_Key: Any = keys.Key
_TerminalRealm: Any = manhole_ssh.TerminalRealm
_ConchFactory: Any = manhole_ssh.ConchFactory
_ServerProtocol: Any = insults.ServerProtocol
_TelnetBootstrapProtocol: Any = telnet.TelnetBootstrapProtocol
_TelnetTransport: Any = telnet.TelnetTransport
_AuthenticatingTelnetProtocol: Any = telnet.AuthenticatingTelnetProtocol
_SSHUserAuthServer: Any = userauth.SSHUserAuthServer


class ManholeError(Exception):
    """The manhole cannot start; the message names the file or port and the fix."""


# --- users ----------------------------------------------------------------------------


def parse_users(text: str, source: str) -> dict[bytes, bytes]:
    """``name:password`` lines to {name: password or bcrypt hash} (pure).

    Raises `ManholeError` naming the line for a malformed one, or when no
    user is left.
    """
    users: dict[bytes, bytes] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, password = line.partition(":")
        name = name.strip()
        if not sep or not name or not password:
            raise ManholeError(f"{source} line {number}: expected name:password")
        if name.encode() in users:
            raise ManholeError(f"{source} line {number}: user {name!r} is listed twice")
        users[name.encode()] = password.encode()
    if not users:
        raise ManholeError(
            f"{source}: no users (add name:password lines; the manhole never runs open)"
        )
    return users


def load_users(path: Path) -> dict[bytes, bytes]:
    """Read the users file; refuses one that others may read or write."""
    try:
        info = path.stat()
        if info.st_size > MAX_USERS_FILE:
            raise ManholeError(f"{path}: larger than {MAX_USERS_FILE} bytes")
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise ManholeError(f"[manhole] users_file {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ManholeError(f"[manhole] users_file {path}: cannot read: {reason}") from None
    if info.st_mode & (stat.S_IRWXO):
        raise ManholeError(
            f"[manhole] users_file {path}: readable or writable by others "
            f"(mode {stat.S_IMODE(info.st_mode):o}); chmod 600 it"
        )
    return parse_users(text, f"[manhole] users_file {path}")


def password_matches(given: bytes, stored: bytes) -> bool:
    """Whether ``given`` is the password ``stored`` (a bcrypt hash or plain text)."""
    if stored.startswith(_BCRYPT_PREFIXES):
        try:
            return bcrypt.checkpw(given, stored)
        except ValueError:  # a malformed hash never matches
            return False
    return hmac.compare_digest(given, stored)


@implementer(ICredentialsChecker)
class UsersChecker:
    """Checks user names and passwords against the users file.

    bcrypt runs in ``pool`` (a `PasswordPool` of the manhole's own, made
    here when not given), never in the reactor's shared thread pool. The
    caller logs the outcome (it knows the peer).
    """

    credentialInterfaces = (credentials.IUsernamePassword,)

    def __init__(
        self, users: Mapping[bytes, bytes], reactor: Any, pool: PasswordPool | None = None
    ) -> None:
        self._users = dict(users)
        hashed = any(value.startswith(_BCRYPT_PREFIXES) for value in self._users.values())
        self._dummy = _DUMMY_HASH if hashed else b"\0" * 32
        self._pool = pool if pool is not None or not hashed else PasswordPool(reactor)

    def requestAvatarId(self, creds: Any) -> defer.Deferred[bytes | tuple[()]]:
        name: bytes = creds.username
        # Unknown users are checked against a dummy so the answer takes as long.
        stored = self._users.get(name, self._dummy)
        given: bytes = creds.password
        if stored.startswith(_BCRYPT_PREFIXES) and self._pool is not None:
            check: defer.Deferred[bool] = self._pool.run(password_matches, given, stored)
        else:
            check = defer.succeed(password_matches(given, stored))

        def decide(ok: bool) -> bytes | tuple[()]:
            if ok and name in self._users:
                return name
            raise error.UnauthorizedLogin("wrong user name or password")

        return check.addCallback(decide)


# --- SSH host key ---------------------------------------------------------------------


def ensure_host_key(state_dir: Path) -> keys.Key:
    """The SSH host key in the state directory, generated (Ed25519, 0600) on first use."""
    path = state_dir / HOST_KEY_NAME
    if not path.exists():
        private = ed25519.Ed25519PrivateKey.generate()
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise ManholeError(f"cannot create the SSH host key {path}: {exc.strerror}") from None
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        key = _Key.fromString(pem)
        _log.info(
            "manhole: new SSH host key {path}: {fingerprint}",
            path=str(path),
            fingerprint=key.fingerprint(keys.FingerprintFormats.SHA256_BASE64),
        )
        return key  # type: ignore[no-any-return]
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ManholeError(
            f"SSH host key {path} is accessible by others (mode {mode:o}); chmod 600"
        )
    try:
        return _Key.fromFile(str(path))  # type: ignore[no-any-return]
    except (OSError, keys.BadKeyError) as exc:
        raise ManholeError(f"SSH host key {path} cannot be read: {exc}") from None


# --- namespace --------------------------------------------------------------------------


def mi_caller(call: Callable[[str, dict[str, Any] | None], defer.Deferred[Any]]) -> Any:
    """``mi(name, **params)`` for the shell, running commands through ``call``.

    A result already there is returned as is (a failure raised); otherwise the
    Deferred, which the manhole shows when it fires.
    """

    def mi(name: str, **params: Any) -> Any:
        result = call(name, params or None)
        outcome: list[Any] = []
        result.addBoth(outcome.append)  # the result is ours from here on
        if not outcome:
            # A fresh Deferred: the manhole shows "<Deferred #N>", then the result.
            later: defer.Deferred[Any] = defer.Deferred()
            result.addCallback(lambda _: later.callback(outcome[0]))
            return later
        if isinstance(outcome[0], Failure):
            outcome[0].raiseException()
        return outcome[0]

    mi.__doc__ = "mi(name, **params): run an MI command, e.g. mi('sockets_list', details=True)"
    return mi


# --- listeners ------------------------------------------------------------------------


@implementer(portal.IRealm)
class _TelnetRealm:
    """Gives an authenticated telnet user a manhole (as manhole_tap's realm does)."""

    def __init__(self, namespace: dict[str, Any]) -> None:
        self.namespace = namespace

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> Any:
        if telnet.ITelnetProtocol in interfaces:
            protocol = _TelnetBootstrapProtocol(
                insults.ServerProtocol, manhole.ColoredManhole, self.namespace
            )
            return telnet.ITelnetProtocol, protocol, lambda: None
        raise NotImplementedError()


class _GatedTelnetLogin(_AuthenticatingTelnetProtocol):  # type: ignore[misc]
    """Twisted's telnet login, one try per connection, through the `LoginGate`."""

    def __init__(self, portal: Any, gate: LoginGate) -> None:
        super().__init__(portal)
        self.gate = gate
        self.user = b""

    def telnet_Password(self, line: bytes) -> str:
        self.user = self.username
        refusal = self.gate.login_refusal(gated_connection(self.transport))
        if refusal is not None:
            self.transport.write(b"\r\nToo many failed logins: try again later\r\n")
            self.transport.loseConnection()
            return "Discard"
        state: str = super().telnet_Password(line)
        return state

    def _cbLogin(self, ial: Any) -> None:
        self.gate.login_succeeded(gated_connection(self.transport), self.user)
        super()._cbLogin(ial)

    def _ebLogin(self, failure: Failure) -> None:
        # (a retry on the same connection hangs in Twisted's telnet: one try)
        self.gate.login_failed(gated_connection(self.transport), self.user)
        # Answered after a delay, as Conch's SSH login does.
        self.gate.reactor.callLater(FAILED_LOGIN_DELAY, self._refuse)

    def _refuse(self) -> None:
        self.transport.write(b"\r\nAuthentication failed\r\n")
        self.transport.loseConnection()


class _GatedUserAuth(_SSHUserAuthServer):  # type: ignore[misc]
    """Conch's password login through the `LoginGate` (three tries per connection)."""

    gate: LoginGate
    attemptsBeforeDisconnect = 2

    def auth_password(self, packet: bytes) -> defer.Deferred[Any]:
        connection = gated_connection(self.transport)
        refusal = self.gate.login_refusal(connection)
        if refusal is not None:
            self.transport.sendDisconnect(
                DISCONNECT_NO_MORE_AUTH_METHODS_AVAILABLE,
                b"too many failed logins: try again later",
            )
            return defer.fail(IgnoreAuthentication())
        user = self.user
        creds = credentials.UsernamePassword(user, getNS(packet[1:])[0])

        def failed(reason: Failure) -> Failure:
            if reason.check(error.UnauthorizedLogin):  # type: ignore[no-untyped-call]
                self.gate.login_failed(connection, user)
            return reason

        login: defer.Deferred[Any] = self.portal.login(creds, None, conch_interfaces.IConchUser)
        return login.addErrback(failed).addErrback(self._ebPassword)

    def _cbFinishedAuth(self, result: Any) -> None:
        self.gate.login_succeeded(gated_connection(self.transport), self.user)
        super()._cbFinishedAuth(result)


def _ssh_factory(
    checker: UsersChecker, namespace: dict[str, Any], key: Any, gate: LoginGate
) -> Any:
    realm = _TerminalRealm()

    def shell() -> Any:
        return _ServerProtocol(manhole.ColoredManhole, namespace)

    realm.chainedProtocolFactory = shell
    factory = _ConchFactory(portal.Portal(realm, [checker]))
    # ConchFactory's key tables are class attributes: give this one its own.
    factory.publicKeys = {b"ssh-ed25519": key.public()}
    factory.privateKeys = {b"ssh-ed25519": key}
    auth = type("ManholeUserAuth", (_GatedUserAuth,), {"gate": gate})
    factory.services = {**factory.services, b"ssh-userauth": auth}
    return GatedFactory(gate, "ssh", factory)


def _telnet_factory(
    checker: UsersChecker, namespace: dict[str, Any], gate: LoginGate
) -> GatedFactory:
    telnet_portal = portal.Portal(_TelnetRealm(namespace), [checker])
    factory = ServerFactory()

    def build() -> Any:
        return _TelnetTransport(_GatedTelnetLogin, telnet_portal, gate)

    factory.protocol = build  # type: ignore[assignment,unused-ignore]
    return GatedFactory(gate, "telnet", factory)


def listen_manhole(
    settings: ManholeSettings,
    state_dir: Path,
    namespace: dict[str, Any],
    *,
    reactor: Any,
) -> list[IListeningPort]:
    """Bind the manhole's SSH and telnet ports now; raises `ManholeError` naming the problem."""
    if settings.users_file is None:
        raise ManholeError("[manhole] users_file is missing")
    checker = UsersChecker(load_users(settings.users_file), reactor, PasswordPool(reactor))
    gate = LoginGate(settings, reactor)
    plans: list[tuple[str, int, Any]] = []
    if settings.ssh_port is not None:
        factory = _ssh_factory(checker, namespace, ensure_host_key(state_dir), gate)
        plans.append(("ssh_port", settings.ssh_port, factory))
    if settings.telnet_port is not None:
        telnet_factory = _telnet_factory(checker, namespace, gate)
        plans.append(("telnet_port", settings.telnet_port, telnet_factory))
    ports: list[IListeningPort] = []
    for key, number, factory in plans:
        try:
            ports.append(reactor.listenTCP(number, factory, interface=settings.address))
        except CannotListenError as exc:
            for port in ports:
                port.stopListening()
            reason = getattr(exc.socketError, "strerror", None) or str(exc.socketError)
            raise ManholeError(
                f"[manhole] {key}: cannot listen on {settings.address}:{number}: {reason}"
            ) from None
        _log.info(
            "manhole ({kind}) on {address}:{port}",
            kind=key.split("_")[0],
            address=settings.address,
            port=getattr(ports[-1].getHost(), "port", number),
        )
    return ports
