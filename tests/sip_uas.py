"""A SIP callee in Python for the transports SIPp does not speak (TLS, WebSocket).

`CallRecorder` answers INVITE and BYE with 200 (Record-Route copied, a
Contact on the callee's own address), takes ACK silently, and checks every
request against the test's expectations; `TlsCallee` serves it over TLS
(stdlib ``ssl``), `WsCallee` over WebSocket (the ``websockets`` library,
``sip`` subprotocol). Both run in threads, bounded by their timeouts.
"""

from __future__ import annotations

import hashlib
import re
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from websockets.sync.server import Server, ServerConnection, serve
from websockets.typing import Subprotocol

from sipsock.sip import Request, SipFramingError, StreamFramer, make_response, parse


@dataclass
class CallRecorder:
    """The callee's side of every call: answers, and what was wrong with the requests.

    ``check(request)`` returns problems (empty when the request is as
    expected); ``contact`` is the callee's Contact URI.
    """

    contact: str
    check: Callable[[Request], list[str]]
    methods: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, data: bytes) -> bytes | None:
        """The answer to one message (None for an ACK or a response)."""
        message = parse(data)
        if not isinstance(message, Request):
            return None
        with self.lock:
            self.methods.setdefault(message.call_id, []).append(message.method)
            self.problems += [
                f"{message.method} {message.call_id}: {p}" for p in self.check(message)
            ]
        if message.method == "ACK":
            return None
        tag = hashlib.sha1(message.call_id.encode()).hexdigest()[:10]
        headers = [("Record-Route", value) for value in message.get_all("record-route")]
        headers.append(("Contact", f"<{self.contact}>"))
        return bytes(make_response(message, 200, "OK", to_tag=tag, headers=headers))

    def complete_calls(self) -> int:
        """Calls that got INVITE, ACK and BYE, in that order.

        A stateless proxy forwards retransmissions too: a request seen again
        does not count against the call.
        """
        with self.lock:
            return sum(
                1
                for seen in self.methods.values()
                if list(dict.fromkeys(seen)) == ["INVITE", "ACK", "BYE"]
            )


class TlsCallee:
    """`CallRecorder` behind a TLS listening socket on 127.0.0.1 (one thread per connection)."""

    def __init__(self, recorder: CallRecorder, port: int, context: ssl.SSLContext) -> None:
        self.recorder = recorder
        self.server = socket.create_server(("127.0.0.1", port))
        self.server.settimeout(0.2)
        self.context = context
        self.stopping = threading.Event()
        self.errors: list[str] = []
        self.accepted = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                raw, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        try:
            raw.settimeout(30)
            with self.context.wrap_socket(raw, server_side=True) as sock:
                framer = StreamFramer()
                while not self.stopping.is_set():
                    data = sock.recv(65535)
                    if not data:
                        return
                    for message in framer.feed(data):
                        answer = self.recorder.handle(message)
                        if answer is not None:
                            sock.sendall(answer)
        except (OSError, SipFramingError) as error:
            if not self.stopping.is_set():
                self.errors.append(repr(error))

    def stop(self) -> None:
        self.stopping.set()
        self.server.close()
        self.thread.join(5)


class WsCallee:
    """`CallRecorder` behind a WebSocket server (``sip`` subprotocol) on 127.0.0.1."""

    def __init__(self, recorder: CallRecorder, port: int) -> None:
        self.recorder = recorder
        self.origins: list[str | None] = []
        self.subprotocols: list[str | None] = []
        self.server: Server = serve(
            self._serve,
            "127.0.0.1",
            port,
            subprotocols=[Subprotocol("sip")],
            compression=None,
            ping_interval=None,
        )
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _serve(self, connection: ServerConnection) -> None:
        self.origins.append(
            connection.request.headers.get("Origin") if connection.request else None
        )
        self.subprotocols.append(connection.subprotocol)
        for message in connection:
            data = message.encode() if isinstance(message, str) else message
            answer = self.recorder.handle(data)
            if answer is not None:
                connection.send(answer.decode())

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join(5)


def top_via_problems(request: Request, pattern: str) -> list[str]:
    """A problem when the topmost Via does not match ``pattern`` (a Python regex)."""
    top = request.get_all("via")[0]
    return [] if re.fullmatch(pattern, top) else [f"top Via {top!r} !~ {pattern!r}"]
