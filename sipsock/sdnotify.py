"""The systemd notification protocol (``sd_notify``), a few lines of socket code.

systemd passes ``NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract
namespace) to a ``Type=notify`` service; the service sends datagrams of
``KEY=value`` lines to it: ``READY=1``, ``STATUS=...``, ``STOPPING=1``,
``WATCHDOG=1``. `Notifier.from_environ` takes those variables out of the
environment, so the UDP workers (started later, with this environment) never
talk to systemd: the unit says ``NotifyAccess=main``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import MutableMapping

from twisted.logger import Logger

#: The variables systemd sets for the main process only.
_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Notifier:
    """Sends notifications to ``address`` (None: outside systemd, every call a no-op)."""

    log = Logger()

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address
        #: The watchdog interval systemd asks for, in microseconds (None: no watchdog).
        self.watchdog_usec = watchdog_usec
        self._warned = False

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str]) -> Notifier:
        """The notifier systemd set up for this process; removes its variables."""
        values = {name: environ.pop(name, None) for name in _VARIABLES}
        address = values["NOTIFY_SOCKET"] or None
        watchdog = values["WATCHDOG_USEC"]
        watchdog_pid = values["WATCHDOG_PID"]
        usec: int | None = None
        for_us = not watchdog_pid or watchdog_pid == str(os.getpid())
        if watchdog and watchdog.isdigit() and int(watchdog) > 0 and for_us:
            usec = int(watchdog)
        return cls(address, usec)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def ready(self, status: str) -> bool:
        return self.send(READY="1", STATUS=status)

    def status(self, status: str) -> bool:
        return self.send(STATUS=status)

    def stopping(self, status: str = "stopping") -> bool:
        return self.send(STOPPING="1", STATUS=status)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG="1")

    def send(self, **fields: str) -> bool:
        """One datagram of ``KEY=value`` lines; whether it went out (never raises)."""
        if self.address is None:
            return False
        message = "".join(f"{key}={_one_line(value)}\n" for key, value in fields.items())
        address = self.address
        if address.startswith("@"):
            address = "\0" + address[1:]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.sendto(message.encode("utf-8", "replace"), address)
        except OSError as error:
            if not self._warned:  # once: systemd gone, or a wrong NOTIFY_SOCKET
                self._warned = True
                self.log.warn(
                    "cannot notify systemd at {address}: {reason}",
                    address=self.address,
                    reason=error.strerror or str(error),
                )
            return False
        return True


def _one_line(value: str) -> str:
    return " ".join(value.split())
