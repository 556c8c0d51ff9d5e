"""What the manhole allows before a login succeeds (telnet and SSH alike).

Each accepted connection is *unauthenticated* until its login succeeds.
While it is:

* it has ``login_timeout`` seconds to log in, then it is cut;
* it counts against ``max_unauthenticated`` (all addresses) and
  ``max_unauthenticated_per_ip`` (one address, an IPv6 /64 counting as
  one): a connection over either cap is closed as soon as it is accepted,
  before any telnet or SSH work, so a flood of idle connections cannot
  take the daemon's descriptors;
* an address with ``max_login_failures`` failed logins within
  ``login_failure_window`` seconds is refused without a password check
  until they age out (`LoginThrottle`, pure).

Password checks (bcrypt) run in a `PasswordPool` of their own: a small
bounded pool, never the reactor's shared one, so a guessing flood cannot
starve name resolution or anything else that uses threads. Refusals and
failed logins are logged folded: the first of each kind in full, then one
line per minute with the count.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any, Final, TypeVar

from twisted.cred import error
from twisted.internet import defer, threads
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.protocols import policies
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from sipsock.config import ManholeSettings
from sipsock.limits import Summary, address_key
from sipsock.transport.base import PeriodicLog

T = TypeVar("T")

#: Threads checking passwords, and checks that may wait for one.
PASSWORD_THREADS: Final = 2
PASSWORD_QUEUE: Final = 32
#: Addresses the throttle remembers at most (the oldest are forgotten first).
MAX_TRACKED_ADDRESSES: Final = 4096
#: Seconds between two log lines about the same kind of refusal.
LOG_INTERVAL: Final = 60.0


# -- rules (pure) ----------------------------------------------------------------------


class LoginThrottle:
    """Failed logins per address in a sliding window: who is refused (pure, clock passed in)."""

    def __init__(
        self, max_failures: int, window: float, max_addresses: int = MAX_TRACKED_ADDRESSES
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        self.max_addresses = max_addresses
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._failures.get(key)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return None
        return times

    def refusal(self, host: str, now: float) -> str | None:
        """Why a login attempt from ``host`` is refused now, or None to check it."""
        key = address_key(host)
        times = self._recent(key, now)
        if times is None or len(times) < self.max_failures:
            return None
        wait = times[0] + self.window - now
        return (
            f"{len(times)} failed logins from {key} in the last {self.window:g} s "
            f"(max_login_failures); retry in {wait:.0f} s"
        )

    def failed(self, host: str, now: float) -> None:
        """Note one failed login from ``host``."""
        key = address_key(host)
        times = self._recent(key, now)
        if times is None:
            times = self._failures[key] = deque(maxlen=self.max_failures)
        self._failures.move_to_end(key)
        times.append(now)
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)


def admission_refusal(
    *, total: int, from_ip: int, max_total: int, max_per_ip: int, ip: str
) -> str | None:
    """Why one more unauthenticated connection is refused, or None to accept it."""
    if total >= max_total:
        return f"{total} connections waiting to log in (max_unauthenticated)"
    if from_ip >= max_per_ip:
        return f"{from_ip} connections from {ip} waiting to log in (max_unauthenticated_per_ip)"
    return None


# -- the password pool -----------------------------------------------------------------


class PasswordPool:
    """A small thread pool of its own for password checks, with a bounded queue.

    Started on first use, stopped when the reactor shuts down. A check that
    finds ``threads + queue`` checks already waiting fails at once with
    `UnauthorizedLogin` ("busy").
    """

    def __init__(
        self, reactor: Any, threads: int = PASSWORD_THREADS, queue: int = PASSWORD_QUEUE
    ) -> None:
        self._reactor = reactor
        self.limit = threads + queue
        self.pending = 0
        self._pool = ThreadPool(minthreads=0, maxthreads=threads, name="sipsock-manhole-passwords")
        self._started = False

    def run(self, call: Callable[..., T], *args: Any) -> Deferred[T]:
        """Run ``call(*args)`` in the pool; its result as a Deferred."""
        if self.pending >= self.limit:
            return defer.fail(error.UnauthorizedLogin("password checks busy; try again"))
        if not self._started:
            self._started = True
            self._pool.start()
            self._reactor.addSystemEventTrigger("during", "shutdown", self.stop)
        self.pending += 1
        result: Deferred[T] = threads.deferToThreadPool(self._reactor, self._pool, call, *args)

        def done(outcome: Any) -> Any:
            self.pending -= 1
            return outcome

        return result.addBoth(done)

    def stop(self) -> None:
        """Stop the threads (waits for the checks running now)."""
        if self._started:
            self._started = False
            self._pool.stop()


# -- the gate --------------------------------------------------------------------------


class GatedConnection(policies.ProtocolWrapper):
    """A manhole connection as the gate sees it: unauthenticated until told otherwise."""

    factory: GatedFactory

    def __init__(self, factory: GatedFactory, wrapped: Any) -> None:
        super().__init__(factory, wrapped)
        self.host = ""
        self.kind = factory.kind
        self.authenticated = False
        self.timer: IDelayedCall | None = None

    def connectionMade(self) -> None:
        self.host = str(getattr(self.getPeer(), "host", ""))  # type: ignore[no-untyped-call]
        self.factory.gate.opened(self)
        super().connectionMade()  # type: ignore[no-untyped-call]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.factory.gate.closed(self)
        super().connectionLost(reason)  # type: ignore[no-untyped-call]


class GatedFactory(policies.WrappingFactory[GatedConnection]):
    """Wraps the telnet or SSH factory: refuses connections over the caps at accept."""

    protocol = GatedConnection

    def __init__(self, gate: LoginGate, kind: str, wrapped: Any) -> None:
        super().__init__(wrapped)  # type: ignore[no-untyped-call]
        self.gate = gate
        self.kind = kind
        self.noisy = False

    def buildProtocol(self, addr: Any) -> Any:
        if not self.gate.admit(str(getattr(addr, "host", "")), self.kind):
            return None  # closed at once: no descriptor kept
        return super().buildProtocol(addr)


def gated_connection(transport: Any) -> GatedConnection | None:
    """The `GatedConnection` under a protocol's transport (telnet or SSH layers)."""
    layer = transport
    for _ in range(6):
        if layer is None:
            return None
        if isinstance(layer, GatedConnection):
            return layer
        layer = getattr(layer, "transport", None)
    return None


class LoginGate:
    """Unauthenticated manhole connections, their timers, caps and failed logins.

    Shared by the telnet and SSH listeners of one manhole.
    """

    log = Logger()

    def __init__(self, settings: ManholeSettings, reactor: Any) -> None:
        self.settings = settings
        self.reactor = reactor
        self.throttle = LoginThrottle(settings.max_login_failures, settings.login_failure_window)
        self.waiting: set[GatedConnection] = set()
        self._by_ip: dict[str, int] = {}
        self.counts: dict[str, int] = {
            "refused_connections": 0,
            "login_timeouts": 0,
            "failed_logins": 0,
            "throttled_logins": 0,
        }
        self._periods = PeriodicLog(reactor, LOG_INTERVAL, self._summarize)

    # -- connections

    def admit(self, host: str, kind: str) -> bool:
        """Whether a connection just accepted from ``host`` may try to log in."""
        ip = address_key(host)
        refusal = admission_refusal(
            total=len(self.waiting),
            from_ip=self._by_ip.get(ip, 0),
            max_total=self.settings.max_unauthenticated,
            max_per_ip=self.settings.max_unauthenticated_per_ip,
            ip=ip,
        )
        if refusal is None:
            return True
        self._note(
            "refused_connections",
            "manhole: {kind} connection from {host} refused: {reason}",
            kind=kind,
            host=host,
            reason=refusal,
        )
        return False

    def opened(self, connection: GatedConnection) -> None:
        ip = address_key(connection.host)
        self.waiting.add(connection)
        self._by_ip[ip] = self._by_ip.get(ip, 0) + 1
        connection.timer = self.reactor.callLater(
            self.settings.login_timeout, self._timed_out, connection
        )

    def _leave(self, connection: GatedConnection) -> None:
        if connection not in self.waiting:
            return
        self.waiting.discard(connection)
        ip = address_key(connection.host)
        left = self._by_ip.get(ip, 1) - 1
        if left > 0:
            self._by_ip[ip] = left
        else:
            self._by_ip.pop(ip, None)
        timer, connection.timer = connection.timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def closed(self, connection: GatedConnection) -> None:
        self._leave(connection)

    def _timed_out(self, connection: GatedConnection) -> None:
        connection.timer = None
        self._leave(connection)
        self._note(
            "login_timeouts",
            "manhole: {kind} connection from {host} cut: no login within {timeout:g} s",
            kind=connection.kind,
            host=connection.host,
            timeout=self.settings.login_timeout,
        )
        transport: Any = connection.transport
        if transport is not None:
            transport.abortConnection()

    # -- logins

    def login_refusal(self, connection: GatedConnection | None) -> str | None:
        """Why a login attempt on ``connection`` is refused before any check, or None."""
        if connection is None:
            return None
        refusal = self.throttle.refusal(connection.host, self.reactor.seconds())
        if refusal is not None:
            self._note(
                "throttled_logins",
                "manhole: {kind} login from {host} refused: {reason}",
                kind=connection.kind,
                host=connection.host,
                reason=refusal,
            )
        return refusal

    def login_failed(self, connection: GatedConnection | None, user: bytes | str) -> None:
        if connection is None:
            return
        self.throttle.failed(connection.host, self.reactor.seconds())
        name = user.decode(errors="replace") if isinstance(user, bytes) else user
        self._note(
            "failed_logins",
            "manhole: login refused for {user} from {host} ({kind})",
            kind=connection.kind,
            user=name[:64],
            host=connection.host,
        )

    def login_succeeded(self, connection: GatedConnection | None, user: bytes | str) -> None:
        name = user.decode(errors="replace") if isinstance(user, bytes) else user
        if connection is not None:
            connection.authenticated = True
            self._leave(connection)
        self.log.info(
            "manhole: {user} logged in from {host} ({kind})",
            kind=connection.kind if connection is not None else "?",
            user=name[:64],
            host=connection.host if connection is not None else "?",
        )

    # -- folded logs

    def _note(self, counter: str, text: str, **fields: Any) -> None:
        self.counts[counter] += 1
        if self._periods.hit(counter):
            self.log.warn(
                text + " (repeats are summed up every {interval:g} s)",
                interval=LOG_INTERVAL,
                **fields,
            )

    def _summarize(self, summary: Summary) -> None:
        self.log.warn(
            "manhole: {count} more {what} in the last {seconds:.3g} s",
            count=summary.suppressed,
            what=str(summary.key).replace("_", " "),
            seconds=summary.seconds,
        )

    def stop(self) -> None:
        """Log what is left of the folded counts; cancel every login timer."""
        for connection in list(self.waiting):
            self._leave(connection)
        self._periods.stop()
